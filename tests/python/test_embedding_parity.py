"""longenc-encode's embeddings equal sentence-transformers' on the pretrained model.

Same model directory, max length 512, mean pooling, L2-normalised, fp32: cosine >= 0.99999 and
max abs difference <= 1e-5 for >= 100 linux-doc texts from 1 to 512 tokens. Also: batched
equals one-by-one, token-id input equals text input, long inputs are truncated and flagged.
"""
import gzip
import json
import os
import pathlib
import subprocess

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
LINUX_DOC = pathlib.Path("/usr/share/doc/linux-doc/Documentation")


def _texts(count=120):
    """Paragraph-based texts of geometrically growing size, from distinct documents."""
    files = sorted(LINUX_DOC.rglob("*.rst.gz"))
    assert files, f"no .rst.gz under {LINUX_DOC}: install the Debian package linux-doc"
    words = []
    texts = []
    sizes = np.unique(np.geomspace(1, 700, count).astype(int))
    file_index = 0
    while len(texts) < count:
        if len(words) < 800:
            text = gzip.decompress(files[file_index % len(files)].read_bytes()).decode("utf-8", "replace")
            words.extend(text.split())
            file_index += 7
            continue
        size = int(sizes[len(texts) % len(sizes)])
        texts.append(" ".join(words[:size]))
        del words[: size + 3]
    return texts


def _encode(build_dir, model_dir, lines, *flags):
    tool = pathlib.Path(build_dir) / "bin" / "longenc-encode"
    assert tool.exists(), f"{tool} is missing: run `make build`"
    out = subprocess.run(
        [str(tool), f"--model_dir={model_dir}", "--threads=2", "--progress=false", *flags],
        input="".join(json.dumps(l) + "\n" for l in lines), capture_output=True, text=True,
        check=True, timeout=900)
    rows = [json.loads(l) for l in out.stdout.splitlines()]
    assert len(rows) == len(lines), out.stderr
    return rows


@pytest.fixture(scope="module")
def texts():
    return _texts()


@pytest.fixture(scope="module")
def reference(model_dir, texts):
    from sentence_transformers import SentenceTransformer
    model = SentenceTransformer(str(model_dir), device="cpu")
    model.max_seq_length = 512
    return model, model.encode(texts, batch_size=16, normalize_embeddings=True,
                                convert_to_numpy=True)


@pytest.fixture(scope="module")
def ours(build_dir, model_dir, texts):
    rows = _encode(build_dir, model_dir, [{"id": i, "text": t} for i, t in enumerate(texts)],
                   "--max_length=512")
    assert [r["id"] for r in rows] == list(range(len(texts)))
    return rows


def test_texts_cover_1_to_512_tokens(reference, texts):
    model, _ = reference
    lengths = [len(model.tokenizer(t)["input_ids"]) for t in texts]
    assert len(texts) >= 100
    assert min(lengths) <= 3 and max(lengths) >= 512


def test_embeddings_equal_sentence_transformers(reference, ours):
    _, expected = reference
    got = np.array([r["embedding"] for r in ours], dtype=np.float32)
    assert got.shape == expected.shape
    cosine = np.sum(got * expected, axis=1) / (
        np.linalg.norm(got, axis=1) * np.linalg.norm(expected, axis=1))
    worst = int(np.argmin(cosine))
    assert cosine.min() >= 0.99999, f"text {worst}: cosine {cosine[worst]}"
    diff = np.abs(got - expected).max(axis=1)
    assert diff.max() <= 1e-5, f"text {int(np.argmax(diff))}: max abs diff {diff.max()}"


def test_long_inputs_are_truncated_and_flagged(reference, ours, texts):
    model, _ = reference
    for row, text in zip(ours, texts):
        full = len(model.tokenizer(text)["input_ids"])
        assert row["truncated"] == (full > 512)
        assert row["num_tokens"] == min(full, 512)


def test_batched_equals_one_by_one(build_dir, model_dir, texts, ours):
    subset = texts[::6]
    alone = _encode(build_dir, model_dir, [{"text": t} for t in subset], "--max_length=512",
                    "--batch_tokens=1")
    for a, b in zip(alone, ours[::6]):
        assert np.abs(np.array(a["embedding"]) - np.array(b["embedding"])).max() <= 1e-6


def test_token_ids_equal_text(build_dir, model_dir, reference, texts, ours):
    model, _ = reference
    subset = list(range(0, len(texts), 10))
    ids = [model.tokenizer(texts[i], truncation=True, max_length=512)["input_ids"] for i in subset]
    rows = _encode(build_dir, model_dir, [{"id": f"d{i}", "token_ids": x} for i, x in zip(subset, ids)],
                   "--max_length=512")
    for i, row in zip(subset, rows):
        assert row["id"] == f"d{i}"
        assert np.abs(np.array(row["embedding"]) - np.array(ours[i]["embedding"])).max() <= 1e-6


def test_bad_lines_are_reported_and_the_rest_encoded(build_dir, model_dir):
    tool = pathlib.Path(build_dir) / "bin" / "longenc-encode"
    lines = ['{"text": "fine"}', "not json", '{"token_ids": [101, 99999, 102]}', '{"other": 1}',
             '{"text": "also fine"}']
    out = subprocess.run([str(tool), f"--model_dir={model_dir}", "--progress=false"],
                         input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=300)
    assert out.returncode == 1
    rows = [json.loads(l) for l in out.stdout.splitlines()]
    assert [("embedding" in r) for r in rows] == [True, False, False, False, True]
    assert "line 2: not valid JSON" in rows[1]["error"]
    assert "token id 99999" in rows[2]["error"]
    assert "expected a string" in rows[3]["error"]
