"""One client cannot hurt another (docs/API.md "Per-request attention options", docs/RELIABILITY.md
"Mixed traffic"), against the real longenc-server with the default model:

- per-request options: anything naming a file is refused with one message that does not depend
  on the file; numeric options outside the request ranges are refused; operator presets work;
- cost-aware limits: a deadline no server could meet is DEADLINE_EXCEEDED; exact attention has
  its own document limit and the error names the variants that take longer documents;
- preemption: a short request sent while a long document is encoded finishes first;
- work stops when nobody waits: after a long document's deadline passes (or its client cancels)
  the server's CPU goes idle; after the drain's grace a running document stops;
- EmbedStream: messages pipelined after a failing one do not crash the server.

Every test checks that a concurrent good request still gets the right numbers. Timings are not
asserted beyond generous bounds (bench/head_of_line.py measures them).
"""
import os
import pathlib
import signal
import sys
import threading
import time

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
import corpus  # noqa: E402
import soak  # noqa: E402

pytestmark = pytest.mark.needs_programs("longenc-server")

GOOD_TEXT = "Short requests must not wait behind long documents."
LONG_TOKENS = 16384


@pytest.fixture(scope="module")
def stubs():
    return soak.load_stubs()


@pytest.fixture(scope="module")
def server():
    s = soak.start_server(["--attention_preset=fast=iclustered:topk=64,clusters=64"], threads=2)
    yield s
    assert s.stop() == 0


@pytest.fixture(scope="module")
def stub(server, stubs):
    return stubs[1].EncoderStub(server.channel)


@pytest.fixture(scope="module")
def reference(stub, stubs):
    pb2 = stubs[0]
    r = stub.Embed(pb2.EmbedRequest(documents=[pb2.Document(text=GOOD_TEXT)]), timeout=60)
    return np.array(r.embeddings[0].values)


@pytest.fixture(scope="module")
def long_ids():
    return corpus.concatenated_ids(LONG_TOKENS, seed=11)


def check_good(stub, pb2, reference):
    r = stub.Embed(pb2.EmbedRequest(documents=[pb2.Document(text=GOOD_TEXT)]), timeout=60)
    np.testing.assert_allclose(np.array(r.embeddings[0].values), reference, atol=1e-6)


def error_of(call):
    import grpc
    with pytest.raises(grpc.RpcError) as e:
        call()
    return e.value.code(), e.value.details()


def cpu_seconds(pid):
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_options_naming_files_are_refused_alike(stub, stubs, reference):
    import grpc
    pb2 = stubs[0]
    fifo = pathlib.Path(f"/tmp/longenc-fifo-{os.getpid()}")
    os.mkfifo(fifo)
    try:
        details = set()
        for path in ("/etc/passwd", "/nonexistent", str(fifo)):
            code, message = error_of(lambda: stub.Embed(pb2.EmbedRequest(
                documents=[pb2.Document(text="x")], attention="cast",
                attention_options=f"surrogates={path}"), timeout=10))
            assert code == grpc.StatusCode.INVALID_ARGUMENT
            assert path not in message
            details.add(message)
        assert len(details) == 1, details  # no oracle: one message whatever the file
        assert "--attention_preset" in details.pop()
    finally:
        fifo.unlink()
    check_good(stub, pb2, reference)


@pytest.mark.parametrize("attention,options,named", [
    ("yoso", "tau=24", "tau=24"),
    ("yoso", "tau=20", "tau=20"),
    ("iclustered", "clusters=65536,topk=1048576", "clusters=65536"),
    ("full", "query_block=1", "query_block=1"),
    ("clustered", "iterations=1000", "iterations=1000"),
    ("yoso", "expectation=1", "expectation"),
    ("iclustered", "min_len_efficient=131072", "min_len_efficient=131072"),
])
def test_numeric_options_outside_the_request_ranges_are_refused(stub, stubs, reference,
                                                                 attention, options, named):
    import grpc
    pb2 = stubs[0]
    code, message = error_of(lambda: stub.Embed(pb2.EmbedRequest(
        documents=[pb2.Document(text="x " * 600)], attention=attention,
        attention_options=options), timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert named in message and "request" in message
    check_good(stub, pb2, reference)


def test_options_within_the_ranges_and_presets_work(stub, stubs, reference):
    pb2 = stubs[0]
    info = stub.GetInfo(pb2.GetInfoRequest(), timeout=10)
    assert list(info.attention_presets) == ["fast"]
    assert info.limits.max_exact_tokens == 16384
    text = " ".join(["document"] * 700)
    by_preset = stub.Embed(pb2.EmbedRequest(documents=[pb2.Document(text=text)],
                                            attention="fast"), timeout=60)
    by_options = stub.Embed(pb2.EmbedRequest(documents=[pb2.Document(text=text)],
                                             attention="iclustered",
                                             attention_options="topk=64,clusters=64"), timeout=60)
    np.testing.assert_allclose(by_preset.embeddings[0].values, by_options.embeddings[0].values,
                               atol=1e-6)
    import grpc
    code, message = error_of(lambda: stub.Embed(pb2.EmbedRequest(
        documents=[pb2.Document(text="x")], attention="fast", attention_options="topk=8"),
        timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "preset" in message
    check_good(stub, pb2, reference)


def test_deadline_no_server_could_meet_is_deadline_exceeded(stub, stubs, reference):
    import grpc
    pb2 = stubs[0]
    check_good(stub, pb2, reference)  # the server has a throughput estimate
    request = pb2.EmbedRequest(documents=[pb2.Document(text="word " * 400)] * 64)
    code, message = error_of(lambda: stub.Embed(request, timeout=0.02))
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED, message
    check_good(stub, pb2, reference)


def test_exact_attention_has_its_own_document_limit(stub, stubs, long_ids, reference):
    import grpc
    pb2 = stubs[0]
    ids = long_ids[:-1] + long_ids[1:3] + [long_ids[-1]]  # 16386 tokens
    code, message = error_of(lambda: stub.Embed(pb2.EmbedRequest(
        documents=[pb2.Document(tokens=pb2.TokenIds(ids=ids))], attention="full"), timeout=30))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "--max_exact_tokens" in message and "iclustered" in message and "131072" in message
    check_good(stub, pb2, reference)


def test_short_request_finishes_while_a_long_document_runs(stub, stubs, long_ids, reference):
    pb2 = stubs[0]
    finished = {}

    def long_call():
        stub.Embed(pb2.EmbedRequest(documents=[pb2.Document(tokens=pb2.TokenIds(ids=long_ids))],
                                    attention="iclustered"), timeout=300)
        finished["long"] = time.monotonic()

    t = threading.Thread(target=long_call)
    t.start()
    time.sleep(1.0)  # the long document is computing
    t0 = time.monotonic()
    check_good(stub, pb2, reference)
    finished["short"] = time.monotonic()
    t.join()
    assert finished["short"] < finished["long"]
    # Generous: a step is ~0.2 s; the long document takes several seconds.
    assert finished["short"] - t0 < 3.0


@pytest.mark.parametrize("how", ["deadline", "cancel"])
def test_work_stops_when_nobody_waits(server, stub, stubs, long_ids, reference, how):
    import grpc
    pb2 = stubs[0]
    request = pb2.EmbedRequest(documents=[pb2.Document(tokens=pb2.TokenIds(ids=long_ids))],
                               attention="iclustered")
    if how == "deadline":
        code, _ = error_of(lambda: stub.Embed(request, timeout=1.5))
        assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    else:
        future = stub.Embed.future(request, timeout=300)
        time.sleep(1.5)
        future.cancel()
    time.sleep(1.0)  # the next checkpoint is well within this
    before = cpu_seconds(server.pid)
    time.sleep(2.0)
    used = cpu_seconds(server.pid) - before
    assert used < 0.3, f"the server used {used:.2f} s of CPU after the call ended"
    check_good(stub, pb2, reference)


def test_stream_messages_after_an_error_do_not_reach_a_finished_stream(stub, stubs, reference):
    import grpc
    pb2 = stubs[0]
    good = pb2.EmbedRequest(documents=[pb2.Document(text=GOOD_TEXT)])
    for _ in range(20):
        messages = [pb2.EmbedRequest()] + [good] * 30  # the first one fails (no documents)
        code, message = error_of(lambda: list(stub.EmbedStream(iter(messages), timeout=30)))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "message 0" in message
    check_good(stub, pb2, reference)


def test_drain_grace_stops_a_running_document(stubs, long_ids):
    import grpc
    pb2, pb2_grpc = stubs
    s = soak.start_server(["--shutdown_timeout=1s"], threads=2)
    stub = pb2_grpc.EncoderStub(s.channel)
    future = stub.Embed.future(pb2.EmbedRequest(
        documents=[pb2.Document(tokens=pb2.TokenIds(ids=long_ids))], attention="iclustered"),
        timeout=300)
    time.sleep(1.5)
    t0 = time.monotonic()
    os.kill(s.pid, signal.SIGTERM)
    assert s.proc.wait(timeout=30) == 0
    assert time.monotonic() - t0 < 8.0
    assert future.exception() is not None
    assert future.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)


def test_health_and_small_calls_answer_while_a_large_message_is_decoded(server, stub, stubs,
                                                                        reference):
    import grpc
    pb2 = stubs[0]
    big = pb2.EmbedRequest(documents=[pb2.Document(text="tokenization takes a while " * 2_000_000)])
    assert big.ByteSize() > 50_000_000
    future = stub.Embed.future(big, timeout=120)
    time.sleep(0.5)  # sent; the server decodes and tokenizes it
    checked = 0
    while not future.done() and checked < 5:
        t0 = time.monotonic()
        assert server.serving()
        check_good(stub, pb2, reference)
        assert time.monotonic() - t0 < 2.0
        checked += 1
    assert checked > 0, "the large message was handled before anything could be checked"
    assert future.exception() is not None
    assert future.code() == grpc.StatusCode.INVALID_ARGUMENT  # over the document limit
