"""Python modules generated from .proto files with grpcio-tools into a temporary directory:
what every Python client of the benchmarks and tests imports instead of committed generated
code. load_stubs() gives those of proto/longenc/v1/encoder.proto, generated once per process."""
import atexit
import functools
import importlib
import pathlib
import shutil
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]


def generate_modules(protos, out=None):
    """Runs protoc (messages and gRPC stubs) on each (include root, path under it) of `protos`
    into `out` (a new temporary directory by default) and puts `out` first on sys.path; returns
    `out`."""
    from grpc_tools import protoc

    if out is None:
        out = tempfile.mkdtemp(prefix="longenc-stubs-")
        atexit.register(shutil.rmtree, out, ignore_errors=True)
    out = pathlib.Path(out)
    include = pathlib.Path(protoc.__file__).parent / "_proto"
    for proto_root, proto in protos:
        rc = protoc.main(["protoc", f"-I{proto_root}", f"-I{include}", f"--python_out={out}",
                          f"--grpc_python_out={out}", str(pathlib.Path(proto_root) / proto)])
        if rc != 0:
            raise RuntimeError(f"protoc failed on {proto}")
    sys.path.insert(0, str(out))
    return out


@functools.lru_cache(maxsize=None)
def load_stubs():
    """(encoder_pb2, encoder_pb2_grpc)."""
    generate_modules([(ROOT / "proto", "longenc/v1/encoder.proto")])
    return (importlib.import_module("longenc.v1.encoder_pb2"),
            importlib.import_module("longenc.v1.encoder_pb2_grpc"))
