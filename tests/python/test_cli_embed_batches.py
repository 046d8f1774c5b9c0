"""`longenc embed --jsonl` on a corpus bigger than one batch, against the real longenc-server
and the real model (issue 15, item 6).

1. A corpus of many batches embeds fully, in input order, equal to one Embed call per document
   (jsonl and npy output).
2. Lines that fail (a line that is not JSON, a document over the server's token limit) are
   listed with their line numbers, the others are written, the exit code says so; after the
   input is fixed, the printed resume command (plus --truncate) completes the output. A
   rejection of the request itself (an unknown variant) stops the run at once.
3. The server stopped mid-run: the CLI retries, gives up, names the lines not embedded and
   prints the resume command; with a server back on the same port that command completes the
   file, each document exactly once.
4. Ctrl-C: the calls in flight finish, exit code 130, the resume command fills the NaN rows of
   the npy output and leaves the finished ones as they are.
5. A server whose queue is full (RESOURCE_EXHAUSTED): the refused batches are retried until
   every document is embedded.

Needs $LONGENC_BUILD_DIR/bin/longenc-server and bin/longenc (a missing one fails the test).
"""
import json
import pathlib
import random
import re
import shlex
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
import soak  # noqa: E402  (bench/soak.py: server start-up and stubs)
from scaleout_cluster import CLI, SERVER  # noqa: E402

ATOL = 1e-4  # batch-mates (padding) move the float32 results by ~1e-6
WORDS = ("the kernel schedules memory pages across processors while drivers register devices "
         "interrupts arrive from hardware timers and the scheduler balances tasks between queues "
         "filesystems cache blocks write back dirty data and journal metadata for recovery").split()
MAX_TOKENS = 300  # the server's --max_tokens_per_document in these tests


def texts(count, seed, min_words=5, max_words=120):
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(min_words, max_words)))
            for _ in range(count)]


def write_jsonl(path, docs):
    """`docs`: dicts or raw strings (written as they are)."""
    path.write_text("".join((d if isinstance(d, str) else json.dumps(d)) + "\n" for d in docs))


def run_cli(*args, timeout=300):
    return subprocess.run([str(CLI), *args], capture_output=True, text=True, timeout=timeout)


def reference(stub, pb2, doc, truncate=False):
    """The embedding of `doc` ({"text"} or {"token_ids"}) from an Embed call of its own."""
    d = (pb2.Document(text=doc["text"]) if "text" in doc
         else pb2.Document(tokens=pb2.TokenIds(ids=doc["token_ids"])))
    over = pb2.OVER_LIMIT_TRUNCATE if truncate else pb2.OVER_LIMIT_ERROR
    r = stub.Embed(pb2.EmbedRequest(documents=[d], over_limit=over), timeout=60)
    return np.array(r.embeddings[0].values, dtype=np.float32)


def embedding_dim(stub, pb2):
    return stub.GetInfo(pb2.GetInfoRequest(), timeout=60).embedding_dim


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def resume_command(stderr):
    """The command the CLI printed to resume, as argv."""
    match = re.search(r"to resume \(embeds only what .* lacks\):\n  (.*)\n", stderr)
    assert match, stderr
    argv = shlex.split(match.group(1))
    assert argv[0] == str(CLI) and "--resume" in argv, argv
    return argv


@pytest.fixture(scope="module")
def stubs():
    assert SERVER.exists(), f"{SERVER} not built"
    assert CLI.exists(), f"{CLI} not built"
    return soak.load_stubs()


@pytest.fixture(scope="module")
def server(stubs, tmp_path_factory):
    s = soak.start_server([f"--max_tokens_per_document={MAX_TOKENS}"], threads=2,
                          workdir=tmp_path_factory.mktemp("server"))
    yield s
    s.stop()


def corpus(count=70, seed=1):
    """Text documents with ids, and every fifth pre-tokenized (no id: the default one)."""
    docs = []
    for i, t in enumerate(texts(count, seed)):
        docs.append({"text": t, "id": f"doc-{i}"})
    for i in range(0, count, 5):
        rng = random.Random(i)
        docs[i] = {"token_ids": [101] + [rng.randrange(1000, 29000) for _ in range(40)] + [102]}
    return docs


@pytest.mark.parametrize("fmt", ["jsonl", "npy"])
def test_a_corpus_of_many_batches_equals_one_call_per_document(server, stubs, tmp_path, fmt):
    pb2, pb2_grpc = stubs
    stub = pb2_grpc.EncoderStub(server.channel)
    docs = corpus()
    path = tmp_path / "corpus.jsonl"
    write_jsonl(path, docs)
    out = tmp_path / f"out.{fmt}"
    r = run_cli("embed", f"--server={server.address}", f"--jsonl={path}", f"--format={fmt}",
                f"--output={out}", "--batch_documents=4", "--batch_tokens=400",
                "--in_flight=3", "--progress=always")
    assert r.returncode == 0, r.stderr
    assert re.search(rf"{len(docs)}/{len(docs)} documents \(100%\), \d+ tokens/s", r.stderr), \
        r.stderr
    refs = np.stack([reference(stub, pb2, d) for d in docs])
    if fmt == "npy":
        got = np.load(out)
    else:
        rows = read_jsonl(out)
        assert [row["id"] for row in rows] == [d.get("id", str(i)) for i, d in enumerate(docs)]
        got = np.array([row["embedding"] for row in rows], dtype=np.float32)
    assert got.shape == refs.shape
    np.testing.assert_allclose(got, refs, atol=ATOL)


@pytest.mark.parametrize("fmt", ["jsonl", "npy"])
def test_failed_lines_are_named_and_a_resume_completes_the_file(server, stubs, tmp_path, fmt):
    pb2, pb2_grpc = stubs
    stub = pb2_grpc.EncoderStub(server.channel)
    docs = corpus(30, seed=2)
    long_text = " ".join(WORDS * 20)  # far over MAX_TOKENS
    bad = {6: "this line is not json", 17: {"text": long_text, "id": "long"}}
    lines = [bad.get(i, d) for i, d in enumerate(docs)]
    path = tmp_path / "corpus.jsonl"
    write_jsonl(path, lines)
    out = tmp_path / f"out.{fmt}"
    r = run_cli("embed", f"--server={server.address}", f"--jsonl={path}", f"--format={fmt}",
                f"--output={out}", "--batch_documents=8", "--progress=never")
    assert r.returncode == 5, r.stderr  # a document rejected by the server
    assert f"{path}:7: input: not a JSON object" in r.stderr
    assert f"{path}:18: INVALID_ARGUMENT" in r.stderr
    assert f"not embedded: {path} lines 7,18" in r.stderr
    if fmt == "npy":
        first = np.load(out)
        assert first.shape == (30, embedding_dim(stub, pb2))
        assert np.isnan(first[[6, 17]]).all() and not np.isnan(first[:6]).any()
    else:
        assert len(read_jsonl(out)) == 28
    # The user fixes line 7 and resumes with --truncate for the long document.
    fixed = {"text": "a fixed line about kernel memory", "id": "fixed"}
    lines[6] = fixed
    write_jsonl(path, lines)
    r = subprocess.run(resume_command(r.stderr) + ["--truncate"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    expected = {}
    for i, d in enumerate(lines):
        expected[d.get("id", str(i))] = reference(stub, pb2, d, truncate=(i == 17))
    if fmt == "npy":
        got = np.load(out)
        np.testing.assert_allclose(got, np.stack(list(expected.values())), atol=ATOL)
    else:
        rows = read_jsonl(out)
        assert sorted(row["id"] for row in rows) == sorted(expected)
        assert [row["id"] for row in rows[-2:]] == ["fixed", "long"]  # appended, in input order
        assert rows[-1]["truncated"] is True
        for row in rows:
            np.testing.assert_allclose(row["embedding"], expected[row["id"]], atol=ATOL)


def test_a_rejection_of_the_request_itself_stops_at_once(server, tmp_path):
    """An unknown attention variant would refuse every batch: the run stops (no call per
    document), nothing is written."""
    path = tmp_path / "corpus.jsonl"
    write_jsonl(path, corpus(30, seed=7))
    out = tmp_path / "out.jsonl"
    r = run_cli("embed", f"--server={server.address}", f"--jsonl={path}", f"--output={out}",
                "--attention=no-such-variant", "--batch_documents=8", "--progress=never")
    assert r.returncode == 5, r.stderr
    assert "stopped: INVALID_ARGUMENT" in r.stderr and "no-such-variant" in r.stderr, r.stderr
    assert f"not embedded: {path} lines 1-" in r.stderr, r.stderr
    assert out.read_text() == ""


def test_a_server_stopped_mid_run_is_resumed_on_its_return(stubs, tmp_path):
    pb2, pb2_grpc = stubs
    docs = [{"text": t, "id": f"d{i}"} for i, t in enumerate(texts(150, 3, 150, 200))]
    path = tmp_path / "corpus.jsonl"
    write_jsonl(path, docs)
    out = tmp_path / "out.jsonl"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = soak.start_server([f"--max_tokens_per_document={MAX_TOKENS}"], threads=2,
                              workdir=tmp_path / "a")
    port = first.port
    try:
        cli = subprocess.Popen(
            [str(CLI), "embed", f"--server={first.address}", f"--jsonl={path}",
             f"--output={out}", "--batch_documents=2", "--in_flight=1", "--retries=2",
             "--backoff=100ms", "--progress=never"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 120
        while (not out.exists() or len(out.read_text().splitlines()) < 6) and \
                time.time() < deadline and cli.poll() is None:
            time.sleep(0.01)
        assert cli.poll() is None, "the run ended before the server was stopped"
        assert first.stop() == 0
        _, stderr = cli.communicate(timeout=120)
    finally:
        first.stop()
    assert cli.returncode == 4, stderr  # UNAVAILABLE after the retries
    assert "stopped: UNAVAILABLE" in stderr and "retr" in stderr, stderr
    done = read_jsonl(out)
    assert 6 <= len(done) < len(docs)
    assert [row["id"] for row in done] == [f"d{i}" for i in range(len(done))]
    match = re.search(rf"not embedded: {re.escape(str(path))} lines ([0-9,-]+)", stderr)
    assert match, stderr
    first_missing = len(done) + 1
    assert match.group(1).startswith(str(first_missing)), (match.group(1), len(done))
    second = soak.start_server([f"--max_tokens_per_document={MAX_TOKENS}", f"--port={port}"],
                               threads=2, workdir=tmp_path / "b")
    try:
        r = subprocess.run(resume_command(stderr), capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        rows = read_jsonl(out)
        assert [row["id"] for row in rows] == [d["id"] for d in docs]  # each once, in order
        stub = pb2_grpc.EncoderStub(second.channel)
        for i in [0, len(done) - 1, len(done), len(docs) - 1]:
            np.testing.assert_allclose(rows[i]["embedding"], reference(stub, pb2, docs[i]),
                                       atol=ATOL)
    finally:
        second.stop()


def test_ctrl_c_finishes_the_calls_in_flight_and_prints_the_resume_command(server, stubs,
                                                                           tmp_path):
    pb2, pb2_grpc = stubs
    docs = [{"text": t, "id": f"c{i}"} for i, t in enumerate(texts(150, 4, 150, 200))]
    path = tmp_path / "corpus.jsonl"
    write_jsonl(path, docs)
    out = tmp_path / "out.npy"
    cli = subprocess.Popen(
        [str(CLI), "embed", f"--server={server.address}", f"--jsonl={path}", "--format=npy",
         f"--output={out}", "--batch_documents=2", "--progress=never"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    dim = embedding_dim(pb2_grpc.EncoderStub(server.channel), pb2)
    row_bytes = dim * 4
    # The npy file grows row by row: interrupt after a few rows.
    while (not out.exists() or out.stat().st_size < 128 + 6 * row_bytes) and \
            time.time() < deadline and cli.poll() is None:
        time.sleep(0.01)
    assert cli.poll() is None, "the run ended before it was interrupted"
    cli.send_signal(signal.SIGINT)
    _, stderr = cli.communicate(timeout=120)
    assert cli.returncode == 130, stderr
    assert "interrupted" in stderr, stderr
    first = np.load(out)
    assert first.shape == (len(docs), dim)
    done = int((~np.isnan(first).any(axis=1)).sum())
    assert 6 <= done < len(docs)
    assert not np.isnan(first[:done]).any()  # finished rows are a prefix: input order
    r = subprocess.run(resume_command(stderr), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    got = np.load(out)
    assert not np.isnan(got).any()
    np.testing.assert_array_equal(got[:done], first[:done])  # kept, not embedded again
    stub = pb2_grpc.EncoderStub(server.channel)
    for i in [0, done - 1, done, len(docs) - 1]:
        np.testing.assert_allclose(got[i], reference(stub, pb2, docs[i]), atol=ATOL)


def test_a_full_queue_is_retried_until_every_batch_is_embedded(stubs, tmp_path):
    """--max_queue=4: with four batches of four in flight the server refuses some with
    RESOURCE_EXHAUSTED "queue full"; the CLI waits and retries them, and every document is
    embedded, in order."""
    pb2, pb2_grpc = stubs
    docs = [{"text": t, "id": f"q{i}"} for i, t in enumerate(texts(48, 6, 150, 200))]
    path = tmp_path / "corpus.jsonl"
    write_jsonl(path, docs)
    out = tmp_path / "out.jsonl"
    server = soak.start_server(["--max_documents_per_request=4", "--max_queue=4"], threads=2,
                               workdir=tmp_path)
    try:
        r = run_cli("embed", f"--server={server.address}", f"--jsonl={path}", f"--output={out}",
                    "--batch_documents=4", "--in_flight=4", "--retries=50", "--backoff=50ms",
                    "--progress=never")
        assert r.returncode == 0, r.stderr
        refused = server.value("longenc_rejected_requests_total", reason="queue_full")
        assert refused > 0, "the queue never filled: nothing was retried"
        assert re.search(r"longenc: embed: \d+ retries \(UNAVAILABLE or RESOURCE_EXHAUSTED\)",
                         r.stderr), r.stderr
        rows = read_jsonl(out)
        assert [row["id"] for row in rows] == [d["id"] for d in docs]
        stub = pb2_grpc.EncoderStub(server.channel)
        for i in [0, 23, 47]:
            np.testing.assert_allclose(rows[i]["embedding"], reference(stub, pb2, docs[i]),
                                       atol=ATOL)
    finally:
        server.stop()
