"""The C++ tokenizer.json tokenizers give the same token ids and offsets as Hugging Face's.

Three tokenizers are trained here, in a temporary directory, on linux-doc text (nothing is
downloaded), by trained_tokenizers.py: a SentencePiece Unigram model converted by transformers as
it converts XLM-R, a byte-level BPE and a BERT WordPiece, in five hub shapes. The reference is
`tokenizers.Tokenizer.from_file` on the same file; the C++ side is `longenc-tokenize-dump
--model_dir` (LoadTokenizer), whose byte offsets are turned into character offsets the way the
`tokenizers` Python binding turns its own (BytesToCharOffsetConverter: a byte inside a character
counts as that character), so offsets are compared as Python users see them. Texts: the >= 5,000 linux-doc lines and whole documents of
test_tokenizer_parity.py, its edge cases and the ones below.
"""
import json
import subprocess

import pytest

from test_tokenizer_parity import (EDGE_CASES, MIN_DOC_LINES, assert_same, dump_tool,
                                   linux_doc, run_dump)
from trained_tokenizers import NAMES, train_variants

tokenizers = pytest.importorskip("tokenizers")

EXTRA_EDGE_CASES = [
    "   leading and trailing   ",
    "\n\n\nnewlines\n\n",
    "tabs\t\tand\u3000ideographic\u00a0spaces",
    "don't you'll I'm we've they're he'd 'S 'RE ''s",
    "12345 3.14159 1,000,000 ½ ² ٣ 〇",
    "▁already ▁▁ metaspace ▁",
    "Ġ Ċ byte level lookalikes",
    "ＡＢＣ ﬁ ℌ ㍻ ① ｶﾀｶﾅ",  # NFKC-changed characters
    "e\u0301\u0301 \u0301 Å Å",  # composed / decomposed forms
    "<s> </s> <pad> <unk> <mask>",
    "a<mask>b  <mask>  c <s>x</s>",
    "[CLS] [SEP] [MASK] x[MASK]y",
    "\u200b\u200d\ufeff\u2060",
    "🤗" * 50,
    "x" * 5000,
    "é" * 3000,
    "a " * 2000,
    "memory memorymap the memory, PCI   bus café cafe\u0301s",
]


@pytest.fixture(scope="session")
def trained(tmp_path_factory, linux_doc):
    """name -> (model directory holding tokenizer.json, HF tokenizers.Tokenizer)."""
    work = tmp_path_factory.mktemp("tokenizer_json")
    lines = linux_doc[1]
    variants = train_variants(work, lines)
    out = {}
    for name, spec in variants.items():
        directory = work / name
        directory.mkdir()
        path = directory / "tokenizer.json"
        path.write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
        reference = tokenizers.Tokenizer.from_file(str(path))
        reference.no_truncation()
        reference.no_padding()
        out[name] = (directory, reference)
    return out


def hf_encode(reference, texts):
    encodings = reference.encode_batch(list(texts), add_special_tokens=True)
    return [{"ids": e.ids, "offsets": [list(o) for o in e.offsets]} for e in encodings]


def char_offsets(text, offsets):
    """Byte offsets -> character offsets, as tokenizers' BytesToCharOffsetConverter does."""
    char_of = {}
    byte = 0
    for i, ch in enumerate(text):
        for _ in range(len(ch.encode("utf-8"))):
            char_of[byte] = i
            byte += 1
    char_of[byte] = len(text)  # the end (HF converts before trimming, so never misses it)
    out = []
    for begin, end in offsets:
        if begin in char_of and end in char_of:
            out.append([char_of[begin], char_of[end]])
        elif begin in char_of:
            out.append([char_of[begin], char_of.get(end - 1, char_of[begin]) + 1])
        else:
            out.append([begin, end])
    return out


def compare(dump_tool, trained, name, texts, labels=None):
    directory, reference = trained[name]
    ours = run_dump(dump_tool, texts, f"--model_dir={directory}")
    for text, o in zip(texts, ours):
        if "offsets" in o:
            o["offsets"] = char_offsets(text, o["offsets"])
    theirs = hf_encode(reference, texts)
    mismatches = sum(o.get("ids") != t["ids"] or o.get("offsets") != t["offsets"]
                     for o, t in zip(ours, theirs))
    print(f"{name}: {len(texts)} texts compared, {mismatches} differ")
    assert_same(texts, ours, theirs, labels)


def test_tokenizer_kinds(trained):
    kinds = {name: json.loads((d / "tokenizer.json").read_text())["model"]["type"]
             for name, (d, _) in trained.items()}
    assert kinds == {"unigram_xlmr": "Unigram", "unigram_bge_m3": "Unigram",
                     "bpe_modernbert": "BPE", "bpe_roberta": "BPE", "wordpiece": "WordPiece"}
    unigram = json.loads((trained["unigram_xlmr"][0] / "tokenizer.json").read_text())
    assert unigram["normalizer"]["type"] == "Precompiled"


@pytest.mark.parametrize("name", NAMES)
def test_linux_doc_lines(dump_tool, trained, linux_doc, name):
    labels, lines, _ = linux_doc
    assert len(lines) >= MIN_DOC_LINES
    compare(dump_tool, trained, name, lines, labels)


@pytest.mark.parametrize("name", NAMES)
def test_linux_doc_whole_documents(dump_tool, trained, linux_doc, name):
    labels = [d[0] for d in linux_doc[2]]
    docs = [d[1] for d in linux_doc[2]]
    compare(dump_tool, trained, name, docs, labels)


@pytest.mark.parametrize("name", NAMES)
def test_edge_cases(dump_tool, trained, name):
    texts = EDGE_CASES + EXTRA_EDGE_CASES
    compare(dump_tool, trained, name, texts)


@pytest.mark.parametrize("name", NAMES)
def test_invalid_utf8_is_refused(dump_tool, trained, name):
    directory, _ = trained[name]
    proc = subprocess.run([str(dump_tool), f"--model_dir={directory}"],
                          input=b"ok\nabc\xffdef\n\xe2\x82\n", capture_output=True, check=True,
                          timeout=60)
    lines = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    assert isinstance(lines[0], list) and len(lines[0]) >= 3
    assert "byte offset 3" in lines[1]["error"]
    assert "byte offset 0" in lines[2]["error"]


# The character classes that matter are the Precompiled map with grapheme clusters (Unigram)
# and NFC with GPT-2's letter/number/space classes (BPE); the other variants add nothing here.
@pytest.mark.parametrize("name", ["unigram_xlmr", "bpe_modernbert"])
def test_every_code_point(dump_tool, trained, name):
    from test_tokenizer_parity import _code_point_lines
    labelled = _code_point_lines()
    compare(dump_tool, trained, name, [t for _, t in labelled], [label for label, _ in labelled])
