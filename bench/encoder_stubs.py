"""The Python modules of proto/longenc/v1/encoder.proto, generated once per process with
grpcio-tools into a temporary directory: what every Python client of the benchmarks and tests
imports instead of committed generated code."""
import functools
import importlib
import pathlib
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]


@functools.lru_cache(maxsize=None)
def load_stubs():
    """(encoder_pb2, encoder_pb2_grpc)."""
    from grpc_tools import protoc

    out = pathlib.Path(tempfile.mkdtemp(prefix="longenc-stubs-"))
    include = pathlib.Path(protoc.__file__).parent / "_proto"
    rc = protoc.main(["protoc", f"-I{ROOT / 'proto'}", f"-I{include}", f"--python_out={out}",
                      f"--grpc_python_out={out}", str(ROOT / "proto/longenc/v1/encoder.proto")])
    if rc != 0:
        raise RuntimeError("protoc failed on proto/longenc/v1/encoder.proto")
    sys.path.insert(0, str(out))
    return (importlib.import_module("longenc.v1.encoder_pb2"),
            importlib.import_module("longenc.v1.encoder_pb2_grpc"))
