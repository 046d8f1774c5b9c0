"""The pieces of bench/quality/late_chunking.py (docs/QUALITY.md §7) on hand-made inputs:
section headings and their bodies in UTF-8 bytes, and the metrics with several relevant
passages and excluded ones."""
import pathlib
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench" / "quality"))
import late_chunking  # noqa: E402


def test_sections_are_headings_of_two_words_with_their_bodies_in_bytes():
    text = ("Title\n=====\n\nintro é\n\nThe first part\n--------------\n\nbody one\n\n"
            "x\n~~~\n\nSecond part here\n^^^^^^^^^^^^^^^^\nbody two\n")
    data = text.encode()
    found = late_chunking.sections(text)
    assert [t for t, _, _ in found] == ["The first part", "Second part here"]
    title, head, body = found[0]
    assert data[head[0]:head[1]] == b"The first part\n--------------"
    assert data[body[0]:body[1]] == b"\n\nbody one\n\n"  # up to the next heading ("x")
    assert data[found[1][2][0]:found[1][2][1]] == b"\nbody two\n"


def test_recall_and_ndcg_with_several_relevant_and_excluded_chunks():
    chunks = np.eye(4)
    queries = np.array([[0.0, 1.0, 0.5, 0.0],    # best: chunk 1, then 2
                        [1.0, 0.0, 0.0, 0.2]])   # best: chunk 0 (excluded), then 3
    recall, ndcg = late_chunking.evaluate(queries, chunks, relevant=[{2, 1}, {3}],
                                          excluded=[set(), {0}])
    assert recall == 1.0
    assert abs(ndcg - 1.0) < 1e-12
    recall, ndcg = late_chunking.evaluate(queries, chunks, relevant=[{2}, {3}],
                                          excluded=[set(), set()])
    assert recall == 0.0
    assert abs(ndcg - (1 / np.log2(3) + 1 / np.log2(3)) / 2) < 1e-12
