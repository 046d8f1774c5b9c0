"""Late chunks from the command line, against the real longenc-server and the real model:
`longenc embed --chunk/--overlap` and `--spans` (issue 14 item 3), and `longenc-encode` with the
same flags, write one row per chunk (common/chunk_rows.h):

1. the rows of every document follow the span rule of docs/API.md ("Late chunking") with
   Tokenize's byte offsets, and their vectors equal an Embed call of that document with
   EmbedRequest.chunking (jsonl and npy with its .rows.jsonl sidecar);
2. --spans: one row per caller span, equal to Embed with chunking.spans; a line without spans
   fails alone;
3. --resume after a run killed mid-document (a cut-off output) completes the output with every
   document's rows exactly once (jsonl and npy);
4. longenc-encode (the model in-process) writes the same rows, equal to the server's vectors.

Needs $LONGENC_BUILD_DIR/bin/longenc-server, bin/longenc and bin/longenc-encode.
"""
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
import soak  # noqa: E402  (bench/soak.py: server start-up and stubs)
from scaleout_cluster import BUILD, CLI, SERVER  # noqa: E402
from test_late_chunking import rule  # noqa: E402  (the span rule of docs/API.md)

ENCODE = BUILD / "bin" / "longenc-encode"
ATOL = 1e-4  # batch-mates (padding) move the float32 results by ~1e-6
SIZE, OVERLAP = 64, 16
ROW_KEYS = ["id", "chunk", "chunks", "token_start", "token_end", "char_start", "char_end"]


@pytest.fixture(scope="module")
def stubs():
    for program in (SERVER, CLI, ENCODE):
        assert program.exists(), f"{program} not built"
    return soak.load_stubs()


@pytest.fixture(scope="module")
def server(stubs, tmp_path_factory):
    """A real server with the default model, and a stub of it (.stub)."""
    s = soak.start_server(threads=2, workdir=tmp_path_factory.mktemp("server"))
    s.stub = stubs[1].EncoderStub(s.channel)
    yield s
    assert s.stop() == 0


@pytest.fixture(scope="module")
def stub(server):
    return server.stub


@pytest.fixture(scope="module")
def docs():
    """linux-doc texts of up to 500 tokens, one of them all together (longer than the position
    table), and a token-id document without an id (the default id: its position)."""
    texts = soak.corpus_texts(500, 5, seed=11)
    texts.append("\n\n".join(texts))
    out = [{"id": f"doc-{i}", "text": t} for i, t in enumerate(texts)]
    out.insert(2, {"token_ids": [101] + list(range(2000, 2150)) + [102]})
    return out


def paragraph_spans(text):
    """UTF-8 byte spans of the text's non-empty paragraphs (blank-line separated)."""
    data, spans, start = text.encode(), [], 0
    for part in data.split(b"\n\n"):
        end = start + len(part)
        if part.strip():
            spans.append([start, end])
        start = end + 2
    return spans


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def read_rows(out, fmt):
    """[(metadata dict, vector)] of a jsonl output or an npy output and its sidecar."""
    if fmt == "jsonl":
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        return [({k: r[k] for k in ROW_KEYS}, np.array(r["embedding"], dtype=np.float32))
                for r in rows]
    matrix = np.load(out)
    side = [json.loads(line) for line in pathlib.Path(f"{out}.rows.jsonl").read_text().splitlines()]
    assert [s["row"] for s in side] == list(range(len(matrix)))
    return [({k: s[k] for k in ROW_KEYS}, matrix[s["row"]]) for s in side]


def expected(stub, pb2, doc, index, **chunking):
    """The rows an Embed call of `doc` alone with `chunking` gives: [(metadata, vector)]."""
    d = (pb2.Document(text=doc["text"]) if "text" in doc
         else pb2.Document(tokens=pb2.TokenIds(ids=doc["token_ids"])))
    spans = chunking.pop("spans", None)
    c = (pb2.Chunking(spans=[pb2.Offset(start=s, end=e) for s, e in spans]) if spans
         else pb2.Chunking(**chunking))
    e = stub.Embed(pb2.EmbedRequest(documents=[d], chunking=c), timeout=120).embeddings[0]
    doc_id = doc.get("id", str(index))
    return [({"id": doc_id, "chunk": k, "chunks": len(e.chunks), "token_start": ch.token_start,
              "token_end": ch.token_end, "char_start": ch.char_start, "char_end": ch.char_end},
             np.array(ch.values, dtype=np.float32)) for k, ch in enumerate(e.chunks)]


def check_rows(got, want):
    assert [m for m, _ in got] == [m for m, _ in want]
    np.testing.assert_allclose(np.stack([v for _, v in got]), np.stack([v for _, v in want]),
                               atol=ATOL)


def run(program, *args, timeout=600):
    return subprocess.run([str(program), *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("fmt", ["jsonl", "npy"])
def test_chunk_rows_follow_the_rule_and_equal_embed(stub, stubs, server, docs, tmp_path, fmt):
    pb2, _ = stubs
    path = tmp_path / "docs.jsonl"
    write_jsonl(path, docs)
    out = tmp_path / f"chunks.{fmt}"
    r = run(CLI, "embed", f"--server={server.address}", f"--jsonl={path}", f"--chunk={SIZE}",
            f"--overlap={OVERLAP}", f"--format={fmt}", f"--output={out}", "--batch_documents=3")
    assert r.returncode == 0, r.stderr
    got = read_rows(out, fmt)
    want = []
    for i, doc in enumerate(docs):
        want += expected(stub, pb2, doc, i, max_tokens=SIZE, overlap_tokens=OVERLAP)
    check_rows(got, want)
    # The span rule, with Tokenize's offsets, checked here too (not only through the server).
    texts = [d["text"] for d in docs if "text" in d]
    tokenized = iter(stub.Tokenize(pb2.TokenizeRequest(texts=texts), timeout=60).results)
    for i, doc in enumerate(docs):
        rows = [m for m, _ in got if m["id"] == doc.get("id", str(i))]
        if "text" in doc:
            t = next(tokenized)
            n, offsets = len(t.ids), t.offsets
        else:
            n, offsets = len(doc["token_ids"]), None
        assert [(m["token_start"], m["token_end"]) for m in rows] == rule(n, SIZE, OVERLAP)
        for m in rows:
            chars = ((offsets[m["token_start"]].start, offsets[m["token_end"] - 1].end)
                     if offsets else (0, 0))
            assert (m["char_start"], m["char_end"]) == chars
    assert any(m["token_end"] > 512 for m, _ in got)  # the document over the position table


def test_spans_give_one_row_per_span_and_a_line_without_spans_fails_alone(
        stub, stubs, server, docs, tmp_path):
    pb2, _ = stubs
    lines = [dict(d, spans=paragraph_spans(d["text"])) for d in docs if "text" in d][:4]
    bad = {"id": "no-spans", "text": "a line without spans"}
    path = tmp_path / "spans.jsonl"
    write_jsonl(path, lines[:2] + [bad] + lines[2:])
    out = tmp_path / "spans.jsonl.out"
    r = run(CLI, "embed", f"--server={server.address}", f"--jsonl={path}", "--spans",
            f"--output={out}")
    assert r.returncode == 3, r.stderr  # only an unreadable line failed
    assert "spans.jsonl:3: input: --spans: needs \"spans\"" in r.stderr, r.stderr
    want = []
    for i, doc in enumerate(lines):
        want += expected(stub, pb2, doc, i, spans=doc["spans"])
    assert len(want) == sum(len(d["spans"]) for d in lines)
    check_rows(read_rows(out, "jsonl"), want)


@pytest.mark.parametrize("fmt", ["jsonl", "npy"])
def test_resume_after_a_run_cut_mid_document_writes_each_document_once(
        stub, stubs, server, docs, tmp_path, fmt):
    path = tmp_path / "docs.jsonl"
    write_jsonl(path, docs)
    out = tmp_path / f"chunks.{fmt}"
    args = ["embed", f"--server={server.address}", f"--jsonl={path}", f"--chunk={SIZE}",
            f"--overlap={OVERLAP}", f"--format={fmt}", f"--output={out}"]
    r = run(CLI, *args)
    assert r.returncode == 0, r.stderr
    full = read_rows(out, fmt)
    # A run killed inside the third document: its rows and a line are cut off mid-way.
    first_of = [k for k, (m, _) in enumerate(full) if m["chunk"] == 0]
    cut = first_of[2] + 1
    if fmt == "jsonl":
        data = out.read_bytes()
        lines = data.split(b"\n")
        out.write_bytes(b"\n".join(lines[:cut]) + b"\n" + lines[cut][:40])
    else:
        side = pathlib.Path(f"{out}.rows.jsonl")
        side_lines = side.read_bytes().split(b"\n")
        side.write_bytes(b"\n".join(side_lines[:cut + 1]) + b"\n" + side_lines[cut + 1][:20])
        dim = np.load(out).shape[1]
        with open(out, "r+b") as f:
            f.truncate(128 + cut * dim * 4 + 100)  # a row cut in half
    r = run(CLI, *args, "--resume")
    assert r.returncode == 0, r.stderr
    resumed = read_rows(out, fmt)
    # Whole documents kept in place, the rest appended: the same rows, each once.
    assert [m for m, _ in resumed] == [m for m, _ in full]
    np.testing.assert_allclose(np.stack([v for _, v in resumed]),
                               np.stack([v for _, v in full]), atol=ATOL)


def test_usage_errors_name_the_flag(server, tmp_path):
    path = tmp_path / "one.jsonl"
    write_jsonl(path, [{"text": "one"}])
    for args, message in [
            (["--overlap=8"], "--overlap=8: needs --chunk"),
            (["--chunk=8", "--overlap=8"], "0 <= overlap < chunk"),
            (["--chunk=8", "--spans"], "--chunk and --spans"),
            (["--chunk=8", "--format=npy"], "--format=npy with --chunk/--spans writes a file")]:
        r = run(CLI, "embed", f"--server={server.address}", f"--jsonl={path}", *args)
        assert r.returncode == 2 and message in r.stderr, (args, r.stderr)
    r = run(CLI, "embed", f"--server={server.address}", "--spans", "text")
    assert r.returncode == 2 and "--spans reads each document's spans from --jsonl" in r.stderr


def test_longenc_encode_writes_the_same_rows(stub, stubs, docs, tmp_path):
    pb2, _ = stubs
    path = tmp_path / "docs.jsonl"
    # longenc-encode's default id is the line number (1-based).
    write_jsonl(path, [dict(d, id=d.get("id", "2")) for d in docs])
    out = tmp_path / "encode.jsonl"
    r = run(ENCODE, f"--input={path}", f"--chunk={SIZE}", f"--overlap={OVERLAP}",
            f"--output={out}", "--threads=2", "--progress=false")
    assert r.returncode == 0, r.stderr
    want = []
    for i, doc in enumerate(docs):
        want += expected(stub, pb2, dict(doc, id=doc.get("id", "2")), i, max_tokens=SIZE,
                         overlap_tokens=OVERLAP)
    check_rows(read_rows(out, "jsonl"), want)

    lines = [dict(d, spans=paragraph_spans(d["text"])) for d in docs if "text" in d][:3]
    path = tmp_path / "spans.jsonl"
    write_jsonl(path, lines)
    out = tmp_path / "encode.npy"
    r = run(ENCODE, f"--input={path}", "--spans", "--format=npy", f"--output={out}",
            "--threads=2", "--progress=false")
    assert r.returncode == 0, r.stderr
    want = []
    for i, doc in enumerate(lines):
        want += expected(stub, pb2, doc, i, spans=doc["spans"])
    check_rows(read_rows(out, "npy"), want)
