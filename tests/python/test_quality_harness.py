"""The quality harness (bench/quality/, bench/corpus.py) on tiny inputs: metrics, document
construction and one real longenc-encode round trip through the cache. Not the evaluation."""
import pathlib
import sys

import numpy as np
import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "bench" / "quality"))

import common  # noqa: E402
import corpus  # noqa: E402  (put on the path by common)
import doc_retrieval  # noqa: E402
import passkey  # noqa: E402


def test_ranks_top1_and_ndcg_on_hand_made_vectors():
    candidates = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    queries = np.array([[1.0, 0.1], [0.1, 1.0], [1.0, 0.0]])
    # Query 0 → candidate 0 (rank 1); query 1 → candidate 1 (rank 1); query 2 wants
    # candidate 2, but candidate 0 is closer (rank 2).
    r = common.ranks(queries, candidates, [0, 1, 2])
    assert r.tolist() == [1, 1, 2]
    assert common.top1(queries, candidates, [0, 1, 2]) == pytest.approx(2 / 3)
    assert common.ndcg_at(np.array([1, 2, 11]), 10) == pytest.approx((1 + 1 / np.log2(3)) / 3)


def test_ties_count_against_the_gold_in_ranks_and_as_chance_in_top1():
    same = np.ones((4, 3))
    assert common.ranks(same[:1], same, [0]).tolist() == [4]
    assert common.top1(same[:2], same, [0, 1]) == pytest.approx(0.25)


def test_cosine_is_scale_free():
    a = np.array([[3.0, 4.0], [1.0, 0.0]])
    assert common.cosine(a, 2 * a) == pytest.approx([1.0, 1.0])
    assert common.cosine(a[1:], np.array([[0.0, 5.0]])) == pytest.approx([0.0])


def test_truncation_keeps_the_final_token_and_short_documents():
    m = common.Method(truncate=4)
    assert m.prepare([101, 1, 2, 3, 4, 102]) == [101, 1, 2, 102]
    assert m.prepare([101, 1, 102]) == [101, 1, 102]
    assert common.Method().prepare([101, 1, 2, 3, 102]) == [101, 1, 2, 3, 102]


def test_method_spelling():
    m = passkey.method_from_arg("iclustered+clusters=64;topk=16/grouped:logscale")
    assert (m.attention, m.options, m.position) == ("iclustered", "clusters=64,topk=16",
                                                    "grouped,logscale")
    assert passkey.method_from_arg("chunk").position == "chunk"
    assert passkey.method_from_arg("truncate256").truncate == 256
    assert passkey.method_from_arg("full/recurrent").label == "full recurrent"


def test_stable_order_and_select_are_deterministic():
    docs = [corpus.Document(f"d{i}.rst", "x") for i in range(10)]
    lengths = [100 * i for i in range(10)]
    a = corpus.select(docs, 300, 700, count=3, seed=1, lengths=lengths)
    assert a == corpus.select(list(reversed(docs)), 300, 700, count=3, seed=1,
                              lengths=list(reversed(lengths)))
    assert all(300 <= lengths[docs.index(d)] <= 700 for d in a) and len(a) == 3
    names = [f"n{i}" for i in range(20)]
    assert sorted(corpus.stable_order(names, 0)) == list(range(20))
    assert corpus.stable_order(names, 0) != corpus.stable_order(names, 1)


def test_concatenated_ids_has_exactly_n_tokens():
    docs = [corpus.Document("a.rst", "hello world. " * 20), corpus.Document("b.rst", "kernel")]
    ids = corpus.concatenated_ids(30, seed=0, docs=docs)
    assert len(ids) == 30 and ids[0] == corpus.CLS_ID and ids[-1] == corpus.SEP_ID
    with pytest.raises(ValueError):
        corpus.concatenated_ids(10_000, seed=0, docs=docs)


def test_passkey_documents_have_the_length_and_the_key():
    docs, queries, names = passkey.build_length(300, 4, seed=3)
    assert len(set(names)) == 4 and all(len(d) == 300 for d in docs)
    tok = corpus.tokenizer()
    for d, q, name in zip(docs, queries, names):
        text = tok.decode(d)
        assert f"pass key for {name.lower()}" in text and text.count("pass key is") == 1
        assert tok.decode(q) == f"[CLS] what is the passkey for {name.lower()}? [SEP]"
    assert passkey.build_length(300, 4, seed=3)[0] == docs  # deterministic


def test_paragraph_query_is_prose_near_the_middle():
    prose = "The driver registers a callback that the core invokes on every interrupt. " * 3
    text = "\n\n".join(["Title\n=====", "intro " * 30, ".. code-block:: c", prose,
                        "| a | b |", "tail words " * 40])
    start, end = doc_retrieval.pick_paragraph(text)
    assert text[start:end].strip() == prose.strip()


@pytest.mark.needs_programs("longenc-encode")
def test_encoder_round_trip_and_cache(tmp_path, build_dir):
    binary = build_dir / "bin" / "longenc-encode"
    enc = common.Encoder(binary, threads=1, jobs=2, cache_dir=tmp_path, verbose=False)
    assert "full" in enc.variants()
    docs = [[101, 7592, 2088, 102], [101, 7592, 102], [101, 7592, 2088, 102]]
    first = enc.encode(common.Method(), docs)
    assert first.shape == (3, 384)
    assert np.linalg.norm(first, axis=1) == pytest.approx([1, 1, 1], abs=1e-5)
    assert np.array_equal(first[0], first[2])
    runs = enc.seconds.copy()
    again = enc.encode(common.Method(position="grouped"), docs)  # short: same cache entries
    assert enc.seconds == runs and np.array_equal(first, again)
