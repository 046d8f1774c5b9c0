"""The longenc gRPC API from another language: Python stubs generated at test time from
proto/longenc/v1/encoder.proto with grpcio-tools, against the real longenc-server binary and
the real model. Also checks the standard health service and server reflection.

Needs $LONGENC_BUILD_DIR/bin/longenc-server (built with LONGENC_BUILD_MODEL=ON); without it the
tests fail.
"""
import importlib
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("LONGENC_BUILD_DIR", ROOT / "build"))
SERVER = BUILD / "bin" / "longenc-server"
MODEL_DIR = pathlib.Path(os.environ.get("LONGENC_MODEL_DIR", ROOT / "models" / "all-MiniLM-L6-v2"))
sys.path.insert(0, str(ROOT / "bench"))
from encoder_stubs import generate_modules  # noqa: E402

# The parts of grpc/reflection/v1alpha/reflection.proto this test uses (field numbers as in
# the standard definition), so that no extra package is needed.
REFLECTION_PROTO = """
syntax = "proto3";
package grpc.reflection.v1alpha;
message ServerReflectionRequest {
  string host = 1;
  oneof message_request {
    string file_by_filename = 3;
    string file_containing_symbol = 4;
    string list_services = 7;
  }
}
message FileDescriptorResponse { repeated bytes file_descriptor_proto = 1; }
message ServiceResponse { string name = 1; }
message ListServiceResponse { repeated ServiceResponse service = 1; }
message ErrorResponse { int32 error_code = 1; string error_message = 2; }
message ServerReflectionResponse {
  string valid_host = 1;
  ServerReflectionRequest original_request = 2;
  oneof message_response {
    FileDescriptorResponse file_descriptor_response = 4;
    ListServiceResponse list_services_response = 6;
    ErrorResponse error_response = 7;
  }
}
service ServerReflection {
  rpc ServerReflectionInfo(stream ServerReflectionRequest) returns (stream ServerReflectionResponse);
}
"""

pytestmark = pytest.mark.needs_programs("longenc-server")


@pytest.fixture(scope="module")
def stubs(tmp_path_factory):
    """Generates Python modules from the protos into a temp dir and imports them."""
    protos = tmp_path_factory.mktemp("protos")
    # The health and reflection protos are generated under other directory names: a Python
    # package named `grpc` would shadow grpcio itself. Their proto packages (what the wire
    # uses) stay grpc.health.v1 / grpc.reflection.v1alpha.
    (protos / "lhealth").mkdir()
    (protos / "lhealth" / "health.proto").write_text(
        (ROOT / "proto" / "grpc" / "health" / "v1" / "health.proto").read_text())
    (protos / "lreflection").mkdir()
    (protos / "lreflection" / "reflection.proto").write_text(REFLECTION_PROTO)
    out = generate_modules([(ROOT / "proto", "longenc/v1/encoder.proto"),
                            (protos, "lhealth/health.proto"),
                            (protos, "lreflection/reflection.proto")],
                           out=tmp_path_factory.mktemp("stubs"))
    mods = {name: importlib.import_module(name) for name in [
        "longenc.v1.encoder_pb2", "longenc.v1.encoder_pb2_grpc",
        "lhealth.health_pb2", "lhealth.health_pb2_grpc",
        "lreflection.reflection_pb2", "lreflection.reflection_pb2_grpc"]}
    yield mods
    sys.path.remove(str(out))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port_file = tmp_path_factory.mktemp("srv") / "port"
    proc = subprocess.Popen(
        [str(SERVER), "--host=127.0.0.1", "--port=0", f"--port_file={port_file}",
         "--metrics_address=127.0.0.1:0", "--device=cpu", "--threads=2",
         f"--model_dir={MODEL_DIR}"],
        stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not port_file.exists() or not port_file.read_text().strip():
        assert proc.poll() is None, f"server exited: {proc.stderr.read()}"
        assert time.time() < deadline, "server did not listen"
        time.sleep(0.05)
    address = f"127.0.0.1:{port_file.read_text().strip()}"
    yield address, proc
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0


@pytest.fixture(scope="module")
def channel(server, stubs):
    import grpc

    address, _ = server
    ch = grpc.insecure_channel(address, options=[("grpc.max_receive_message_length", 64 << 20)])
    health = stubs["lhealth.health_pb2_grpc"].HealthStub(ch)
    req = stubs["lhealth.health_pb2"].HealthCheckRequest(service="longenc.v1.Encoder")
    serving = stubs["lhealth.health_pb2"].HealthCheckResponse.SERVING
    deadline = time.time() + 180
    while True:
        try:
            if health.Check(req, timeout=5).status == serving:
                break
        except grpc.RpcError:
            pass
        assert time.time() < deadline, "server never became SERVING"
        time.sleep(0.1)
    yield ch
    ch.close()


def test_embed_texts_from_python(channel, stubs):
    pb = stubs["longenc.v1.encoder_pb2"]
    stub = stubs["longenc.v1.encoder_pb2_grpc"].EncoderStub(channel)
    texts = ["A cat sits on the mat.", "Long documents need efficient attention.",
             "gRPC works from Python."]
    req = pb.EmbedRequest(documents=[pb.Document(text=t, id=f"d{i}") for i, t in enumerate(texts)],
                          request_id="py")
    resp = stub.Embed(req, timeout=60)
    assert resp.request_id == "py"
    assert [e.id for e in resp.embeddings] == ["d0", "d1", "d2"]
    info = stub.GetInfo(pb.GetInfoRequest(), timeout=10)
    emb = np.array([list(e.values) for e in resp.embeddings], dtype=np.float32)
    assert emb.shape == (3, info.embedding_dim)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-4)
    assert resp.usage.documents == 3
    assert resp.usage.tokens == sum(e.num_tokens for e in resp.embeddings)

    # The same numbers as sentence-transformers on the same model directory.
    from sentence_transformers import SentenceTransformer

    ref = SentenceTransformer(str(MODEL_DIR), device="cpu").encode(texts, normalize_embeddings=True)
    np.testing.assert_allclose(emb, ref, atol=2e-4)


def test_tokenize_then_embed_ids_matches_text(channel, stubs):
    pb = stubs["longenc.v1.encoder_pb2"]
    stub = stubs["longenc.v1.encoder_pb2_grpc"].EncoderStub(channel)
    text = "Tokenize me, then embed the ids."
    tok = stub.Tokenize(pb.TokenizeRequest(texts=[text]), timeout=10).results[0]
    assert len(tok.ids) == len(tok.offsets)
    by_text = stub.Embed(pb.EmbedRequest(documents=[pb.Document(text=text)]), timeout=60)
    by_ids = stub.Embed(pb.EmbedRequest(documents=[pb.Document(tokens=pb.TokenIds(ids=tok.ids))]),
                        timeout=60)
    np.testing.assert_allclose(by_text.embeddings[0].values, by_ids.embeddings[0].values, atol=1e-6)


def test_stream_keeps_order_from_python(channel, stubs):
    pb = stubs["longenc.v1.encoder_pb2"]
    stub = stubs["longenc.v1.encoder_pb2_grpc"].EncoderStub(channel)
    reqs = [pb.EmbedRequest(documents=[pb.Document(text="word " * (1 + 13 * i))], request_id=str(i))
            for i in range(10)]
    out = list(stub.EmbedStream(iter(reqs), timeout=120))
    assert [r.request_id for r in out] == [str(i) for i in range(10)]


def test_errors_carry_codes(channel, stubs):
    import grpc

    pb = stubs["longenc.v1.encoder_pb2"]
    stub = stubs["longenc.v1.encoder_pb2_grpc"].EncoderStub(channel)
    with pytest.raises(grpc.RpcError) as err:
        stub.Embed(pb.EmbedRequest(), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "documents is empty" in err.value.details()


def test_reflection_lists_and_describes_the_service(channel, stubs):
    from google.protobuf import descriptor_pb2

    refl = stubs["lreflection.reflection_pb2"]
    stub = stubs["lreflection.reflection_pb2_grpc"].ServerReflectionStub(channel)
    reqs = [refl.ServerReflectionRequest(list_services=""),
            refl.ServerReflectionRequest(file_containing_symbol="longenc.v1.Encoder")]
    listed, described = list(stub.ServerReflectionInfo(iter(reqs), timeout=10))
    names = {s.name for s in listed.list_services_response.service}
    assert "longenc.v1.Encoder" in names
    assert "grpc.health.v1.Health" in names
    files = [descriptor_pb2.FileDescriptorProto.FromString(b)
             for b in described.file_descriptor_response.file_descriptor_proto]
    encoder = [f for f in files if f.package == "longenc.v1"][0]
    methods = {m.name for m in encoder.service[0].method}
    assert methods == {"Embed", "EmbedStream", "Tokenize", "GetInfo"}
