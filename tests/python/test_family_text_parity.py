"""Every encoder family served from text equals transformers, through the real programs.

For each family (xlm_roberta, nomic_bert, gte, modernbert) and each tokenizer type (WordPiece,
byte-level BPE, Unigram with the Precompiled normaliser and Metaspace), a directory is written
the way the hub has one: a small random model by transformers' save_pretrained (fp32
safetensors), the tokenizer as tokenizer.json + tokenizer_config.json (the tokenizers are
trained here by trained_tokenizers.py; nothing is downloaded) and sentence-transformers metadata
with the family's usual pooling (bge-m3: CLS, normalised; nomic: mean, normalised; gte v1.5:
CLS, not normalised; modernbert-embed: mean, normalised). A real longenc-server on 127.0.0.1:0
embeds short texts and linux-doc documents of more than 1,000 tokens (past the RoPE models'
512 trained positions) over gRPC, and `longenc-encode --model_dir` embeds the same texts; both
must equal transformers' AutoTokenizer + AutoModel (eager attention, fp32, the same pooling) at
cosine >= 0.99999 and max abs difference <= 1e-5, and the server's token ids must equal
AutoTokenizer's.
"""
import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

from family_models import FAMILIES, config_of, random_model
from test_tokenizer_parity import linux_doc  # noqa: F401  (a fixture)
from trained_tokenizers import train_variants

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "bench"))
import soak  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytestmark = pytest.mark.needs_programs("longenc-server", "longenc-encode")

KINDS = ["wordpiece", "bpe", "unigram"]
# The tokenizer.json shape of each type: RoBERTa's byte-level BPE (<s> </s>) for xlm_roberta,
# ModernBERT's ([CLS] [SEP], NFC) for the others; bge-m3's Unigram for every family.
VARIANT = {"wordpiece": "wordpiece", "unigram": "unigram_bge_m3"}
SPECIALS = {
    "wordpiece": dict(cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]", unk_token="[UNK]",
                      mask_token="[MASK]"),
    "bpe_modernbert": dict(cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]",
                           unk_token="[UNK]", mask_token="[MASK]"),
    "bpe_roberta": dict(bos_token="<s>", eos_token="</s>", cls_token="<s>", sep_token="</s>",
                        pad_token="<pad>", unk_token="<unk>", mask_token="<mask>"),
}
# family -> (pooling, normalise) of its usual sentence-transformers model.
POOLING = {"xlm_roberta": ("cls", True), "nomic_bert": ("mean", True), "gte": ("cls", False),
           "modernbert": ("mean", True)}
SHORT_TEXTS = ["Hello, world!", "The scheduler picks the next task: a red-black tree, ordered "
               "by virtual runtime. Café, naïve, 東京 🤗."]
LONG_TOKENS = (1100, 1900)  # within xlm_roberta's 2,200 learned positions


def _variant(family, kind):
    if kind == "bpe":
        return "bpe_roberta" if family == "xlm_roberta" else "bpe_modernbert"
    return VARIANT[kind]


@pytest.fixture(scope="module")
def tokenizer_dirs(tmp_path_factory, linux_doc):  # noqa: F811
    """variant name -> directory with tokenizer.json and tokenizer_config.json as transformers
    writes them (XLMRobertaTokenizer's for the Unigram model, as bge-m3 has it)."""
    work = tmp_path_factory.mktemp("family_text_tokenizers")
    variants = train_variants(work, linux_doc[1])
    out = {}
    for name in {_variant(f, k) for f in FAMILIES for k in KINDS}:
        directory = work / ("hub_" + name)
        directory.mkdir()
        if name.startswith("unigram"):
            shutil.copy(work / "unigram" / "tokenizer_config.json", directory)
            (directory / "tokenizer.json").write_text(json.dumps(variants[name]), encoding="utf-8")
        else:
            backend = tokenizers.Tokenizer.from_str(json.dumps(variants[name]))
            transformers.PreTrainedTokenizerFast(tokenizer_object=backend,
                                                 **SPECIALS[name]).save_pretrained(directory)
        out[name] = directory
    return out


@pytest.fixture(scope="module")
def texts(tokenizer_dirs, linux_doc):  # noqa: F811
    """variant name -> short texts and two documents (English, a translation), each cut to the
    most lines that the variant's tokenizer turns into fewer than 1,900 tokens."""
    docs = linux_doc[2]
    long_docs = [next(t for name, t in docs if "translations" not in name),
                 next(t for name, t in docs if "translations" in name)]
    out = {}
    for name, directory in tokenizer_dirs.items():
        tok = tokenizers.Tokenizer.from_file(str(directory / "tokenizer.json"))
        out[name] = list(SHORT_TEXTS)
        for doc in long_docs:
            lines = doc.split("\n")
            counts = np.cumsum([len(tok.encode(line, add_special_tokens=False).ids) + 1
                                for line in lines])
            keep = int(np.searchsorted(counts, LONG_TOKENS[1] - 50))
            out[name].append("\n".join(lines[:keep]))
    return out


def _model_dir(path, family, kind, tokenizer_dir):
    """The hub-layout directory of `family` with the tokenizer of `kind`; its transformers
    model and tokenizer."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(tokenizer_dir))
    ids = {"pad_token_id": tokenizer.pad_token_id, "vocab_size": len(tokenizer)}
    if family == "modernbert":
        ids.update(bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id,
                   cls_token_id=tokenizer.cls_token_id, sep_token_id=tokenizer.sep_token_id)
    model = random_model(config_of(family, **ids))
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    pooling, normalize = POOLING[family]
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize",
                        "type": "sentence_transformers.models.Normalize"})
        (path / "2_Normalize").mkdir()
    (path / "modules.json").write_text(json.dumps(modules))
    (path / "1_Pooling").mkdir()
    (path / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": model.config.hidden_size,
         "pooling_mode_cls_token": pooling == "cls", "pooling_mode_mean_tokens": pooling == "mean"}))
    (path / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 8192}))
    return model, tokenizer


def _reference(model, tokenizer, family, texts):
    """(token ids, vectors) as sentence-transformers computes them with transformers."""
    pooling, normalize = POOLING[family]
    all_ids, vectors = [], []
    with torch.no_grad():
        for text in texts:
            ids = tokenizer(text)["input_ids"]
            hidden = model(input_ids=torch.tensor([ids]),
                           attention_mask=torch.ones(1, len(ids), dtype=torch.long)).last_hidden_state[0]
            v = hidden[0] if pooling == "cls" else hidden.mean(0)
            if normalize:
                v = torch.nn.functional.normalize(v, dim=0)
            all_ids.append(ids)
            vectors.append(v.numpy())
    return all_ids, vectors


def _assert_close(expected, got, what):
    assert len(expected) == len(got), what
    for i, (e, g) in enumerate(zip(expected, got)):
        cosine = float(np.dot(e, g) / (np.linalg.norm(e) * np.linalg.norm(g)))
        diff = float(np.abs(e - g).max())
        assert cosine >= 0.99999 and diff <= 1e-5, \
            f"{what}, text {i}: cosine {cosine}, max abs diff {diff}"


def _served(build_dir, model_dir, texts):
    """(token ids, vectors) from a real longenc-server with the model's default settings."""
    pb2, pb2_grpc = soak.load_stubs()
    server = soak.start_server([f"--model_dir={model_dir}"], threads=2)
    try:
        stub = pb2_grpc.EncoderStub(server.channel)
        tokenized = stub.Tokenize(pb2.TokenizeRequest(texts=texts), timeout=120).results
        request = pb2.EmbedRequest()
        for t in texts:
            request.documents.add(text=t)
        response = stub.Embed(request, timeout=300)
        ids = [list(r.ids) for r in tokenized]
        vectors = [np.array(e.values, dtype=np.float32) for e in response.embeddings]
        assert [e.num_tokens for e in response.embeddings] == [len(i) for i in ids]
    finally:
        assert server.stop() == 0
    return ids, vectors


def _encoded(build_dir, model_dir, texts, normalize):
    tool = build_dir / "bin" / "longenc-encode"
    lines = "".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts))
    run = subprocess.run([str(tool), f"--model_dir={model_dir}", "--threads=2", "--progress=false",
                          f"--normalize={str(normalize).lower()}"],
                         input=lines, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    rows = [json.loads(line) for line in run.stdout.splitlines()]
    assert [r["id"] for r in rows] == list(range(len(texts))), run.stderr
    return [np.array(r["embedding"], dtype=np.float32) for r in rows]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("family", FAMILIES)
def test_family_from_text_equals_transformers(build_dir, tokenizer_dirs, texts, tmp_path,
                                              family, kind):
    torch.set_num_threads(2)
    path = tmp_path / f"{family}_{kind}"
    variant = _variant(family, kind)
    model, tokenizer = _model_dir(path, family, kind, tokenizer_dirs[variant])
    texts = texts[variant]
    ids, expected = _reference(model, tokenizer, family, texts)
    assert min(len(i) for i in ids[len(SHORT_TEXTS):]) >= LONG_TOKENS[0], [len(i) for i in ids]

    served_ids, served = _served(build_dir, path, texts)
    for i, (theirs, ours) in enumerate(zip(ids, served_ids)):
        assert ours == theirs, f"{family}/{kind}, text {i}: token ids differ from AutoTokenizer's"
    _assert_close(expected, served, f"{family}/{kind} longenc-server")

    # longenc-encode --normalize is a plain flag (true by default), not the model's setting.
    _assert_close(expected, _encoded(build_dir, path, texts, POOLING[family][1]),
                  f"{family}/{kind} longenc-encode")
