"""The shared linux-doc corpus of the benchmarks: real long documents, selected deterministically.

Documents are the .rst files of Debian's `linux-doc` package
(/usr/share/doc/linux-doc/Documentation/**/*.rst.gz), one file one document, named by their
path relative to that directory and read in sorted path order. Token counts come from the
Hugging Face tokenizer of the embedded model (the C++ tokenizer is tested equal to it) and are
cached in bench/results/corpus_lengths.raw (git-ignored) keyed by path, size and mtime.

Selections never depend on the filesystem's listing order or on Python's hash seed: they sort
by path, then order by a SHA-1 of (seed, path).

    from bench import corpus            # or: sys.path.insert(0, "bench"); import corpus
    docs = corpus.documents()           # [Document(name, text)], sorted by name
    lengths = corpus.token_lengths(docs)
    picked = corpus.select(docs, min_tokens=2048, max_tokens=8192, count=20, seed=0)
    ids = corpus.concatenated_ids(8192, seed=1)   # [CLS] + real text + [SEP], exactly 8192 ids
"""
from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import json
import os
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
LINUX_DOC = pathlib.Path(os.environ.get("LONGENC_LINUX_DOC",
                                        "/usr/share/doc/linux-doc/Documentation"))
MODEL_DIR = pathlib.Path(os.environ.get("LONGENC_MODEL_DIR",
                                        ROOT / "models" / "all-MiniLM-L6-v2"))
LENGTH_CACHE = ROOT / "bench" / "results" / "corpus_lengths.raw"
CLS_ID, SEP_ID = 101, 102  # bert-base-uncased vocabulary, as in the embedded model


@dataclasses.dataclass(frozen=True)
class Document:
    name: str  # path relative to LINUX_DOC, without .gz
    text: str


def files(root: pathlib.Path = LINUX_DOC) -> list[pathlib.Path]:
    found = sorted(pathlib.Path(r) / n for r, _, names in os.walk(root)
                   for n in names if n.endswith(".rst.gz"))
    if not found:
        sys.exit(f"no .rst.gz under {root}: install the Debian package linux-doc")
    return found


@functools.lru_cache(maxsize=2)
def _documents(root: str) -> tuple[Document, ...]:
    base = pathlib.Path(root)
    return tuple(Document(str(f.relative_to(base))[:-3],
                          gzip.decompress(f.read_bytes()).decode("utf-8", errors="replace"))
                 for f in files(base))


def documents(root: pathlib.Path = LINUX_DOC) -> list[Document]:
    """Every document, sorted by name."""
    return list(_documents(str(root)))


@functools.lru_cache(maxsize=1)
def tokenizer():
    """The embedded model's fast HF tokenizer, without a length limit."""
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(str(MODEL_DIR))
    tok.model_max_length = 1 << 30
    return tok


def encode(text: str) -> list[int]:
    """Token ids of `text` without [CLS]/[SEP]."""
    return tokenizer()(text, add_special_tokens=False)["input_ids"]


def encode_many(texts: list[str]) -> list[list[int]]:
    return tokenizer()(list(texts), add_special_tokens=False)["input_ids"] if texts else []


def _cache_key(doc: Document) -> str:
    return hashlib.sha1(doc.text.encode("utf-8", errors="replace")).hexdigest()[:16]


def token_lengths(docs: list[Document], cache: pathlib.Path | None = LENGTH_CACHE) -> list[int]:
    """Token count of each document, [CLS] and [SEP] included."""
    known: dict[str, int] = {}
    if cache is not None and cache.exists():
        known = json.loads(cache.read_text())
    keys = [f"{d.name}:{_cache_key(d)}" for d in docs]
    missing = [i for i, k in enumerate(keys) if k not in known]
    if missing:
        for i, ids in zip(missing, encode_many([docs[i].text for i in missing])):
            known[keys[i]] = len(ids) + 2
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps(known, sort_keys=True))
    return [known[k] for k in keys]


def stable_order(names: list[str], seed: int) -> list[int]:
    """Indices of `names` in a pseudo-random order fixed by `seed` (SHA-1, not hash())."""
    return sorted(range(len(names)),
                  key=lambda i: hashlib.sha1(f"{seed}:{names[i]}".encode()).hexdigest())


def select(docs: list[Document], min_tokens: int = 0, max_tokens: int | None = None,
           count: int | None = None, seed: int = 0,
           lengths: list[int] | None = None) -> list[Document]:
    """Up to `count` documents whose token count is in [min_tokens, max_tokens], in the
    seed's stable order."""
    lengths = token_lengths(docs) if lengths is None else lengths
    keep = [i for i, n in enumerate(lengths)
            if n >= min_tokens and (max_tokens is None or n <= max_tokens)]
    order = [keep[j] for j in stable_order([docs[i].name for i in keep], seed)]
    return [docs[i] for i in order[:count]]


def concatenated_ids(n: int, seed: int = 0, docs: list[Document] | None = None) -> list[int]:
    """Exactly `n` token ids: [CLS], documents in the seed's order concatenated (each cut
    only where the budget ends), [SEP]."""
    if n < 2:
        raise ValueError("n must be at least 2 ([CLS] and [SEP])")
    docs = documents() if docs is None else docs
    body: list[int] = []
    for i in stable_order([d.name for d in docs], seed):
        if len(body) >= n - 2:
            break
        body.extend(encode(docs[i].text))
    if len(body) < n - 2:
        raise ValueError(f"the corpus has fewer than {n} tokens")
    return [CLS_ID] + body[: n - 2] + [SEP_ID]
