"""The C++ WordPiece tokenizer gives the same token ids (and offsets) as Hugging Face's.

The C++ side is `longenc-tokenize-dump` from the build directory (conftest `build_dir`), which
reads the model's tokenizer.json (its vocab.txt + tokenizer_config.json must give the same); the
reference is `transformers.AutoTokenizer` on the exported model (special tokens added, no
truncation). Texts: >= 5,000 lines of real text from Debian's linux-doc (English plus the
zh_CN/zh_TW/ja_JP/ko_KR/it_IT translations), whole documents as single long texts, a list of
edge cases, and every Unicode scalar value. HF offsets count characters; they are converted to
the byte offsets the C++ tokenizer reports.
"""
import gzip
import json
import os
import pathlib
import subprocess

import pytest

LINUX_DOC = pathlib.Path("/usr/share/doc/linux-doc/Documentation")
MIN_DOC_LINES = 5000
MAX_REPORTED = 8

EDGE_CASES = [
    "",
    " ",
    "\t\n\r \u3000\u00a0\u2028\u2029  ",
    "Hello, world!",
    # accents and case
    "Café naïve résumé Ångström façade Zoë coöperate",
    "ÀÉÎÕÜ àéîõü ÇÑ çñ ŁŚŻ łśż Đđ Øø Ææ Œœ",
    "İstanbul ıi İI",
    "Straße STRASSE ẞ ß",
    "ǅemal ǈ ǋ ǲ",
    "Ελληνικά ΣΊΣΥΦΟΣ σοφός ᾂ ῼ",
    "Tiếng Việt có dấu: Nguyễn Thị Minh Khai",
    # combining marks, canonical reordering
    "e\u0301 a\u0308 o\u0303\u0304 n\u0303",
    "a\u0307\u0323 a\u0323\u0307 q\u0323\u0307\u0301",
    "\u0301start x\u0345y \u0345",
    "שָׁלוֹם עוֹלָם",
    "\u1100\u1161\u11a8 한국어",
    # CJK
    "中文分词测试",
    "日本語のテキスト、カタカナ。ひらがな",
    "한국어 텍스트입니다",
    "𠀀𪜀𫝀𬺰 兀 豈",
    "mixed中文english日本",
    # emoji (including ones newer than Unicode 8) and symbols
    "😀 👍🏽 👨‍👩‍👧‍👦 🇩🇪 ❤️ 🥰 🫠 ✔️",
    "Ⅻ ½ ²³ ﬁ ﬀ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝟙𝟚𝟛 Ｆｕｌｌｗｉｄｔｈ",
    # control, format and zero-width characters
    "a\x00b\x01c\x7fd\x1b[0me",
    "tab\there\vvt\fff\x1cfs\x1fus",
    "\x85nel \ufffdreplacement \ufeffBOM soft\u00adhyphen",
    "zero\u200bwidth\u200cnon\u200djoiner\u2060word\u200e\u200f",
    "\u0378\U000e0001\U0010ffff\ue000private",
    # long words: HF makes a word of more than 100 characters one [UNK]
    "a" * 200,
    "x" * 100,
    "x" * 101,
    "é" * 100,
    "é" * 101,
    "supercalifragilistic" * 10,
    "a" * 99 + "\u0301" * 5,
    "word " * 2000,
    # punctuation
    "hello,world!(test)[x]{y}<z> a-b_c a/b a.b.c",
    "“quoted” ‘single’ «guillemets» — dash … ellipsis",
    "¿Qué? ¡Sí! 100% $5 #tag @user ^caret `tick` ~tilde |pipe \\back",
    "foo.bar() -> baz[0]; x += 1 // comment /* c */",
    # special tokens in text
    "[CLS] [SEP] [PAD] [UNK] [MASK]",
    "x[MASK]y [mask] [CLS [SEP",
    # other scripts
    "مرحبا بالعالم، هذا نص عربي. العَرَبِيَّة",
    "नमस्ते दुनिया। हिन्दी पाठ क़ ड़",
    "สวัสดีชาวโลก ภาษาไทย",
    "Hello мир 世界 κόσμε عالم שלום",
    "ሰላም ዓለም ᠮᠣᠩᠭᠣᠯ ꦗꦮ ᜑᜈᜓᜈᜓ",
]


def _hf_byte_offsets(text, char_offsets):
    prefix = [0]
    for ch in text:
        prefix.append(prefix[-1] + len(ch.encode("utf-8")))
    return [[prefix[a], prefix[b]] for a, b in char_offsets]


@pytest.fixture(scope="session")
def dump_tool(build_dir):
    tool = pathlib.Path(build_dir) / "bin" / "longenc-tokenize-dump"
    assert tool.is_file(), (
        f"{tool} is missing: build the CMake target longenc-tokenize-dump (make build), or "
        "point LONGENC_BUILD_DIR at a build that has it")
    return tool


@pytest.fixture(scope="session")
def hf_tokenizer(model_dir):
    import transformers  # scripts/requirements.txt: the reference tokenizer
    transformers.logging.set_verbosity_error()  # "sequence longer than 512" is expected here
    return transformers.AutoTokenizer.from_pretrained(str(model_dir))


def run_dump(tool, texts, *args):
    """Token ids and byte offsets of each text from the C++ tool ({"error": ...} on failure)."""
    stdin = "".join(json.dumps(t) + "\n" for t in texts).encode("utf-8")
    proc = subprocess.run([str(tool), "--json_input", "--offsets", *args], input=stdin,
                          capture_output=True, check=False, timeout=600)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    results = [json.loads(line) for line in proc.stdout.decode("utf-8").splitlines()]
    assert len(results) == len(texts), "the tool must print one line per input line"
    return results


def hf_encode(tokenizer, texts):
    enc = tokenizer(list(texts), add_special_tokens=True, truncation=False,
                    return_offsets_mapping=True)
    return [{"ids": ids, "offsets": _hf_byte_offsets(t, offs)}
            for t, ids, offs in zip(texts, enc["input_ids"], enc["offset_mapping"])]


def _describe(label, text, ours, theirs):
    if "error" in ours:
        return f"{label}: {text[:300]!r}\n  C++ error: {ours['error']}\n  HF ids:  {theirs['ids']}"
    a, b = ours["ids"], theirs["ids"]
    if a == b:
        return (f"{label}: {text[:300]!r}\n  ids equal, offsets differ\n"
                f"  C++ offsets: {ours['offsets'][:60]}\n  HF offsets:  {theirs['offsets'][:60]}")
    first = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    lo = max(0, first - 10)
    where = "" if lo == 0 and max(len(a), len(b)) <= 80 else f" (from token {lo})"
    return (f"{label}: {text[:300]!r}\n  first difference at token {first} of {len(a)} (C++) / "
            f"{len(b)} (HF){where}\n  C++ ids: {a[lo:lo + 80]}\n  HF ids:  {b[lo:lo + 80]}")


def assert_same(texts, ours, theirs, labels=None, check_offsets=True):
    bad = []
    for i, (text, o, t) in enumerate(zip(texts, ours, theirs)):
        if "error" in o or o["ids"] != t["ids"] or (check_offsets and o["offsets"] != t["offsets"]):
            bad.append(_describe(labels[i] if labels else f"text {i}", text, o, t))
    if bad:
        pytest.fail(f"{len(bad)} of {len(texts)} texts differ from Hugging Face:\n"
                    + "\n".join(bad[:MAX_REPORTED]), pytrace=False)


def _doc_files():
    files = []
    for root, _, names in os.walk(LINUX_DOC):
        files.extend(pathlib.Path(root) / n for n in names if n.endswith(".rst.gz"))
    return sorted(files)


@pytest.fixture(scope="session")
def linux_doc():
    """(labels, lines, documents): a deterministic sample of lines and a few whole files."""
    files = _doc_files()
    assert files, f"no .rst.gz files under {LINUX_DOC}: install the Debian package linux-doc"
    labelled = []
    texts = {}
    for f in files:
        text = gzip.decompress(f.read_bytes()).decode("utf-8", errors="replace")
        texts[f] = text
        rel = f.relative_to(LINUX_DOC)
        labelled.extend((f"{rel}:{n}", line)
                        for n, line in enumerate(text.split("\n"), 1) if line.strip())
    ascii_lines = [x for x in labelled if x[1].isascii()]
    other_lines = [x for x in labelled if not x[1].isascii()]
    sample = ascii_lines[::40] + other_lines[::8]
    by_size = sorted(files, key=lambda f: len(texts[f]), reverse=True)
    translated = [f for f in by_size if "translations" in f.parts]
    documents = [(str(f.relative_to(LINUX_DOC)), texts[f]) for f in by_size[:6] + translated[:4]]
    return [x[0] for x in sample], [x[1] for x in sample], documents


def test_linux_doc_lines(dump_tool, hf_tokenizer, model_dir, linux_doc):
    labels, lines, _ = linux_doc
    assert len(lines) >= MIN_DOC_LINES
    assert sum(not line.isascii() for line in lines) >= 1000
    ours = run_dump(dump_tool, lines, f"--model_dir={model_dir}")
    assert_same(lines, ours, hf_encode(hf_tokenizer, lines), labels)


def test_linux_doc_whole_documents(dump_tool, hf_tokenizer, model_dir, linux_doc):
    labels = [d[0] for d in linux_doc[2]]
    docs = [d[1] for d in linux_doc[2]]
    ours = run_dump(dump_tool, docs, f"--model_dir={model_dir}")
    assert max(len(o["ids"]) for o in ours) > 50_000  # really long inputs
    assert_same(docs, ours, hf_encode(hf_tokenizer, docs), labels)


def test_edge_cases(dump_tool, hf_tokenizer, model_dir):
    ours = run_dump(dump_tool, EDGE_CASES, f"--model_dir={model_dir}")
    assert_same(EDGE_CASES, ours, hf_encode(hf_tokenizer, EDGE_CASES))


def _code_point_lines(limit=0x110000, per_line=256):
    """Every scalar value below `limit`, inside a word and alone: "x{c}x {c} " each."""
    cps = [c for c in range(limit) if not 0xD800 <= c <= 0xDFFF]
    return [("U+%04X.." % cps[i], "".join(f"x{chr(c)}x {chr(c)} " for c in cps[i:i + per_line]))
            for i in range(0, len(cps), per_line)]


def test_every_code_point(dump_tool, hf_tokenizer, model_dir):
    labelled = _code_point_lines()
    texts = [t for _, t in labelled]
    ours = run_dump(dump_tool, texts, f"--model_dir={model_dir}")
    assert_same(texts, ours, hf_encode(hf_tokenizer, texts), [label for label, _ in labelled])


# The exported model lower-cases; the other normalisation switches are checked with its
# vocabulary and HF's BertTokenizer built with the same switches.
@pytest.mark.parametrize("options", [
    {"do_lower_case": False},
    {"do_lower_case": True, "strip_accents": False},
    {"do_lower_case": False, "strip_accents": True},
    {"do_lower_case": True, "tokenize_chinese_chars": False},
])
def test_normalisation_options(dump_tool, model_dir, linux_doc, options):
    import transformers
    from transformers.models.bert.tokenization_bert import load_vocab
    vocab_path = pathlib.Path(model_dir) / "vocab.txt"
    reference = transformers.BertTokenizer(vocab=load_vocab(str(vocab_path)), **options)
    flags = [f"--vocab={vocab_path}",
             f"--lower_case={str(options['do_lower_case']).lower()}",
             f"--chinese={str(options.get('tokenize_chinese_chars', True)).lower()}"]
    if "strip_accents" in options:
        flags.append(f"--strip_accents={str(options['strip_accents']).lower()}")
    labelled = ([(f"edge case {i}", t) for i, t in enumerate(EDGE_CASES)]
                + list(zip(linux_doc[0][::5], linux_doc[1][::5]))
                + _code_point_lines(limit=0x30000))
    texts = [t for _, t in labelled]
    ours = run_dump(dump_tool, texts, *flags)
    assert_same(texts, ours, hf_encode(reference, texts), [label for label, _ in labelled])


def test_invalid_utf8_is_reported_with_its_offset(dump_tool, model_dir):
    proc = subprocess.run([str(dump_tool), f"--model_dir={model_dir}"],
                          input=b"ok line\nabc\xffdef\n\xe2\x82\n", capture_output=True,
                          check=True, timeout=60)
    lines = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    assert lines[0] == [101, 7929, 2240, 102]
    assert "byte offset 3" in lines[1]["error"]
    assert "byte offset 0" in lines[2]["error"]


def test_vocab_txt_equals_tokenizer_json(dump_tool, model_dir, linux_doc):
    """The model directory has both files: vocab.txt + tokenizer_config.json (the fallback when
    tokenizer.json is absent) must tokenize exactly as tokenizer.json does."""
    texts = linux_doc[1][::4] + EDGE_CASES
    from_json = run_dump(dump_tool, texts, f"--model_dir={model_dir}")
    from_vocab = run_dump(dump_tool, texts, f"--model_dir={model_dir}", "--vocab_txt")
    assert (pathlib.Path(model_dir) / "tokenizer.json").is_file()
    assert_same(texts, from_vocab, from_json)
