"""Late chunking (docs/API.md "Late chunking") against the real longenc-server with the default
model:

- chunk vectors equal the mean of the reference implementation's final hidden states
  (transformers' BertModel on the same ids) over the same tokens, cosine >= 0.99999, for
  documents up to 512 tokens with exact attention, by max_tokens and by caller spans; the
  document embedding is unchanged by chunking;
- the windowed position mode "chunk" ("long late chunking") takes each chunk from the window,
  of windows advancing by half their length, where it has the most context: equal to the
  reference run on that window; the document embedding stays that of the non-overlapping windows;
- chunk spans follow the rule for combinations of length, size and overlap, with Tokenize's
  byte offsets;
- bad values are refused with INVALID_ARGUMENT naming the field;
- a 100k-token document in 256-token chunks under attention iclustered comes back in one
  response within the message limits;
- longenc_chunks_total counts the chunks.
"""
import pathlib
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
import corpus  # noqa: E402
import soak  # noqa: E402

pytestmark = pytest.mark.needs_programs("longenc-server")

COSINE = 0.99999


@pytest.fixture(scope="module")
def server():
    """One real server with the default model for the module."""
    s = soak.start_server(threads=2)
    yield s
    assert s.stop() == 0


@pytest.fixture(scope="module")
def api(server):
    """(encoder_pb2, a stub of the server)."""
    pb2, pb2_grpc = soak.load_stubs()
    return pb2, pb2_grpc.EncoderStub(server.channel)


@pytest.fixture(scope="module")
def bert(model_dir):
    import torch
    from transformers import BertModel
    torch.set_num_threads(2)
    return BertModel.from_pretrained(str(model_dir)).eval()


def hidden_states(bert, ids):
    import torch
    with torch.no_grad():
        out = bert(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids)))
    return out.last_hidden_state[0].double().numpy()


def unit(v):
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def cosine(a, b):
    return float(unit(a) @ unit(b))


@pytest.fixture(scope="module")
def texts():
    """linux-doc texts of 40 to 510 tokens."""
    return soak.corpus_texts(510, 6, seed=3)


def tokenize(stub, pb2, text):
    r = stub.Tokenize(pb2.TokenizeRequest(texts=[text]), timeout=60).results[0]
    return list(r.ids), [(o.start, o.end) for o in r.offsets]


def rule(num_tokens, size, overlap):
    """The chunk rule of docs/API.md over content tokens [1, num_tokens - 1)."""
    first, last = 1, num_tokens - 1
    spans, start = [], first
    while first < last:
        end = min(start + size, last)
        spans.append((start, end))
        if end == last:
            break
        start += size - overlap
    return spans


def test_chunks_equal_reference_hidden_state_means(api, bert, texts):
    pb2, stub = api
    for text in texts:
        ids, _ = tokenize(stub, pb2, text)
        assert len(ids) <= 512
        states = hidden_states(bert, ids)
        r = stub.Embed(pb2.EmbedRequest(
            documents=[pb2.Document(text=text)], attention="full",
            chunking=pb2.Chunking(max_tokens=64, overlap_tokens=16)), timeout=120)
        e = r.embeddings[0]
        assert [(c.token_start, c.token_end) for c in e.chunks] == rule(len(ids), 64, 16)
        for c in e.chunks:
            want = states[c.token_start:c.token_end].mean(axis=0)
            assert cosine(c.values, want) >= COSINE, (c.token_start, c.token_end)
            assert abs(np.linalg.norm(c.values) - 1) < 1e-5
        assert cosine(e.values, states.mean(axis=0)) >= COSINE
        plain = stub.Embed(pb2.EmbedRequest(documents=[pb2.Document(text=text)],
                                            attention="full"), timeout=120)
        np.testing.assert_allclose(e.values, plain.embeddings[0].values, atol=1e-6)
        assert not plain.embeddings[0].chunks


def test_unnormalised_chunks_are_the_plain_mean(api, bert, texts):
    pb2, stub = api
    ids, _ = tokenize(stub, pb2, texts[0])
    states = hidden_states(bert, ids)
    r = stub.Embed(pb2.EmbedRequest(
        documents=[pb2.Document(tokens=pb2.TokenIds(ids=ids))], attention="full",
        normalize=False, chunking=pb2.Chunking(max_tokens=32)), timeout=120)
    for c in r.embeddings[0].chunks:
        assert (c.char_start, c.char_end) == (0, 0)  # token-id documents carry no text
        np.testing.assert_allclose(c.values, states[c.token_start:c.token_end].mean(axis=0),
                                   atol=2e-5)


def test_caller_spans_pool_the_tokens_that_overlap_them(api, bert, texts):
    pb2, stub = api
    text = texts[-1]
    ids, offsets = tokenize(stub, pb2, text)
    states = hidden_states(bert, ids)
    size = len(text.encode())
    # Sentence-like spans from our own splitter, cutting words in half on purpose.
    cuts = sorted({0, size} | {size * k // 7 for k in range(1, 7)})
    spans = [(a, b) for a, b in zip(cuts, cuts[1:])]
    r = stub.Embed(pb2.EmbedRequest(
        documents=[pb2.Document(text=text)], attention="full",
        chunking=pb2.Chunking(spans=[pb2.Offset(start=a, end=b) for a, b in spans])),
        timeout=120)
    chunks = r.embeddings[0].chunks
    assert len(chunks) == len(spans)
    for (a, b), c in zip(spans, chunks):
        overlapping = [t for t in range(1, len(ids) - 1)
                       if offsets[t][0] < b and offsets[t][1] > a]
        assert (c.token_start, c.token_end) == (overlapping[0], overlapping[-1] + 1)
        assert (c.char_start, c.char_end) == (offsets[c.token_start][0],
                                              offsets[c.token_end - 1][1])
        want = states[c.token_start:c.token_end].mean(axis=0)
        assert cosine(c.values, want) >= COSINE


def test_spans_follow_the_rule(api, texts):
    pb2, stub = api
    text = texts[-1]
    ids, offsets = tokenize(stub, pb2, text)
    for length in (3, 4, 10, 57, 300, len(ids)):
        doc = ids[:length - 1] + [ids[-1]]  # [CLS] ... [SEP] of `length` tokens
        for size in (1, 2, 7, 64, 255, 512):
            for overlap in sorted({0, 1, size // 2, size - 1}):
                if overlap >= size:
                    continue
                r = stub.Embed(pb2.EmbedRequest(
                    documents=[pb2.Document(tokens=pb2.TokenIds(ids=doc))],
                    chunking=pb2.Chunking(max_tokens=size, overlap_tokens=overlap)), timeout=60)
                got = [(c.token_start, c.token_end) for c in r.embeddings[0].chunks]
                assert got == rule(length, size, overlap), (length, size, overlap)
    # Text documents: the same spans, with Tokenize's byte offsets.
    r = stub.Embed(pb2.EmbedRequest(documents=[pb2.Document(text=text)],
                                    chunking=pb2.Chunking(max_tokens=50, overlap_tokens=10)),
                   timeout=60)
    for c in r.embeddings[0].chunks:
        assert (c.char_start, c.char_end) == (offsets[c.token_start][0],
                                              offsets[c.token_end - 1][1])
    assert [(c.token_start, c.token_end) for c in r.embeddings[0].chunks] == rule(len(ids), 50, 10)


def late_windows(n, window, chunks):
    """docs/API.md "Long late chunking", written out independently of model/late_windows.cc:
    windows of `window` tokens between the frame starting at 1, 1 + window/2, 1 + window, ...
    (covering [0, ...) / [..., n) at the document's edges); each chunk from the window holding
    it where min(context before, context after) is largest, then the larger sum, then the
    earlier window. Returns, per chunk, the interior range (begin, end) of its window."""
    starts = sorted(set(range(1, n - 1, window)) | set(range(1 + window // 2, n - 1, window)))
    wins = [(b, min(b + window, n - 1)) for b in starts]
    picked = []
    for s, e in chunks:
        best = None
        for b, end in wins:
            lo, hi = (0 if b == 1 else b), (n if end == n - 1 else end)
            if lo <= s and e <= hi:
                key = (min(s - lo, hi - e), (s - lo) + (hi - e))
                if best is None or key > best[0]:
                    best = (key, (b, end))
        assert best is not None, (s, e)  # chunks of at most window/2 + 1 tokens always fit
        picked.append(best[1])
    return picked


def test_long_late_chunking_takes_each_chunk_from_its_most_central_window(api, bert):
    pb2, stub = api
    ids = corpus.concatenated_ids(1300, seed=5)
    window = 510  # the position table (512) minus the frame
    r = stub.Embed(pb2.EmbedRequest(
        documents=[pb2.Document(tokens=pb2.TokenIds(ids=ids))], attention="full",
        position_mode="chunk", chunking=pb2.Chunking(max_tokens=200, overlap_tokens=50)),
        timeout=300)
    chunks = r.embeddings[0].chunks
    assert [(c.token_start, c.token_end) for c in chunks] == rule(len(ids), 200, 50)
    picked = late_windows(len(ids), window, [(c.token_start, c.token_end) for c in chunks])
    # Chunks that straddle a tiling boundary (511, 1021) come from a shifted window.
    assert {(256, 766), (766, 1276)} <= set(picked)
    states = {}
    for c, (b, e) in zip(chunks, picked):
        if (b, e) not in states:
            states[b, e] = hidden_states(bert, [ids[0]] + ids[b:e] + [ids[-1]])
        h = states[b, e]  # window position p is document token b - 1 + p
        want = h[c.token_start - b + 1:c.token_end - b + 1].mean(axis=0)
        assert cosine(c.values, want) >= COSINE, (c.token_start, c.token_end, b, e)
    # The document embedding still comes from the non-overlapping windows alone.
    tiles = [hidden_states(bert, [ids[0]] + ids[b:min(b + window, len(ids) - 1)] + [ids[-1]])
             for b in range(1, len(ids) - 1, window)]
    doc = np.concatenate(tiles).mean(axis=0)
    assert cosine(r.embeddings[0].values, doc) >= COSINE


def error_of(call):
    import grpc
    with pytest.raises(grpc.RpcError) as e:
        call()
    return e.value.code(), e.value.details()


def test_bad_values_are_refused_naming_the_field(api, texts):
    import grpc
    pb2, stub = api
    text = texts[0]
    size = len(text.encode())
    doc = pb2.Document(text=text)
    tokens = pb2.Document(tokens=pb2.TokenIds(ids=tokenize(stub, pb2, text)[0]))
    long_doc = pb2.Document(tokens=pb2.TokenIds(ids=corpus.concatenated_ids(5000, seed=2)))
    span = pb2.Offset
    cases = [
        ([doc], pb2.Chunking(), "chunking.max_tokens = 0: must be > 0"),
        ([doc], pb2.Chunking(max_tokens=-4), "chunking.max_tokens = -4"),
        ([doc], pb2.Chunking(max_tokens=8, overlap_tokens=8), "chunking.overlap_tokens = 8"),
        ([doc], pb2.Chunking(max_tokens=8, overlap_tokens=-1), "chunking.overlap_tokens = -1"),
        ([doc], pb2.Chunking(max_tokens=8, spans=[span(start=0, end=4)]), "not both"),
        ([doc, doc], pb2.Chunking(spans=[span(start=0, end=4)]), "one document per request"),
        ([tokens], pb2.Chunking(spans=[span(start=0, end=4)]), "given as token ids"),
        ([doc], pb2.Chunking(spans=[span(start=0, end=size + 1)]),
         f"chunking.spans[0] = [0, {size + 1}) is out of range"),
        ([doc], pb2.Chunking(spans=[span(start=5, end=9), span(start=0, end=4)]),
         "chunking.spans[1] = [0, 4) is unordered"),
        ([doc], pb2.Chunking(spans=[span(start=3, end=3)]), "chunking.spans[0] = [3, 3)"),
        ([long_doc], pb2.Chunking(max_tokens=1), "over the limit of 4096"),
        ([doc], pb2.Chunking(spans=[span(start=0, end=1)] * 4097), "over the limit of 4096"),
    ]
    for documents, chunking, message in cases:
        code, details = error_of(lambda: stub.Embed(
            pb2.EmbedRequest(documents=documents, chunking=chunking), timeout=60))
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (message, details)
        assert message in details, (message, details)


def test_chunks_are_counted_in_the_metrics(api, server, texts):
    pb2, stub = api
    before = server.value("longenc_chunks_total")
    r = stub.Embed(pb2.EmbedRequest(documents=[pb2.Document(text=t) for t in texts[:3]],
                                    chunking=pb2.Chunking(max_tokens=40, overlap_tokens=8)),
                   timeout=120)
    chunks = sum(len(e.chunks) for e in r.embeddings)
    assert chunks > 3
    assert server.value("longenc_chunks_total") - before == chunks


def test_100k_token_document_in_256_token_chunks(api):
    pb2, stub = api
    n = 100_000
    ids = corpus.concatenated_ids(n, seed=13)
    request = pb2.EmbedRequest(documents=[pb2.Document(tokens=pb2.TokenIds(ids=ids))],
                               attention="iclustered",
                               chunking=pb2.Chunking(max_tokens=256))
    r = stub.Embed(request, timeout=1800)
    e = r.embeddings[0]
    assert e.num_tokens == n and not e.truncated
    assert [(c.token_start, c.token_end) for c in e.chunks] == rule(n, 256, 0)
    assert len(e.chunks) == 391
    vectors = np.array([c.values for c in e.chunks])
    assert np.isfinite(vectors).all()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    # Well within gRPC's default 4 MB receive limit of clients (and --max_message_bytes).
    assert r.ByteSize() < 4 << 20
