"""--dtype on the real longenc-server (127.0.0.1, port 0, the default model):

- --dtype=bfloat16 starts, GetInfo reports dtype "bfloat16", and Embed serves embeddings of real
  text within cosine 0.999 of sentence-transformers' float32 ones;
- --dtype=float16 on a CPU is refused at start-up with a message naming the flag and CUDA;
- the default is float32 and says so.
"""
import pathlib
import subprocess
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
import soak  # noqa: E402

pytestmark = pytest.mark.needs_programs("longenc-server")

TEXTS = [
    "The scheduler picks the next task to run. It keeps a red-black tree of runnable tasks, "
    "ordered by their virtual runtime, and takes the leftmost one.",
    "Memory is reclaimed when free pages run low: kswapd wakes up and scans the LRU lists.",
]


@pytest.fixture(scope="module")
def stubs():
    return soak.load_stubs()


def _embed(stub, pb2, texts):
    request = pb2.EmbedRequest()
    for t in texts:
        request.documents.add(text=t)
    return np.array([e.values for e in stub.Embed(request, timeout=120).embeddings])


def test_bfloat16_server_reports_its_dtype_and_serves(stubs, model_dir):
    pb2, pb2_grpc = stubs
    server = soak.start_server(["--dtype=bfloat16"], threads=2)
    try:
        stub = pb2_grpc.EncoderStub(server.channel)
        assert stub.GetInfo(pb2.GetInfoRequest(), timeout=60).dtype == "bfloat16"
        got = _embed(stub, pb2, TEXTS)
    finally:
        assert server.stop() == 0
    from sentence_transformers import SentenceTransformer
    want = SentenceTransformer(str(model_dir), device="cpu").encode(TEXTS)
    assert got.shape == want.shape
    cos = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    assert cos.min() >= 0.999, cos


def test_float16_on_cpu_is_refused_at_start_naming_the_flag(model_dir):
    proc = subprocess.run([str(soak.SERVER), "--host=127.0.0.1", "--port=0", "--device=cpu",
                           f"--model_dir={model_dir}", "--dtype=float16"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "--dtype=float16" in proc.stderr and "CUDA" in proc.stderr, proc.stderr[-2000:]


def test_default_dtype_is_float32(stubs):
    pb2, pb2_grpc = stubs
    server = soak.start_server([], threads=1)
    try:
        info = pb2_grpc.EncoderStub(server.channel).GetInfo(pb2.GetInfoRequest(), timeout=60)
        assert info.dtype == "float32"
    finally:
        assert server.stop() == 0
