"""Tokenizers trained here on linux-doc text, in the shapes hub models have (nothing is
downloaded); shared by the tokenizer.json parity test and the family-from-text parity test.

train_variants(work, lines) trains a SentencePiece Unigram model converted by transformers as it
converts XLM-R (Precompiled normaliser, WhitespaceSplit + Metaspace, <s> $A </s>), a byte-level
BPE and a BERT WordPiece trained with `tokenizers`, and returns name -> tokenizer.json object for
the variants below (bge-m3's extra Replace normaliser, ModernBERT's NFC + ByteLevel + [CLS] $A
[SEP] template, RoBERTa's add_prefix_space + RobertaProcessing with trimmed offsets, a <mask>
with lstrip).
"""
import json
import shutil

import pytest

VOCAB_SIZE = 4000
NAMES = ["unigram_xlmr", "unigram_bge_m3", "bpe_modernbert", "bpe_roberta", "wordpiece"]


def _train_texts(lines):
    return lines[::2]


def _unigram(work, lines):
    spm = pytest.importorskip("sentencepiece")
    transformers = pytest.importorskip("transformers")
    corpus = work / "corpus.txt"
    corpus.write_text("\n".join(_train_texts(lines)), encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(work / "spm"),
                                   vocab_size=VOCAB_SIZE, model_type="unigram",
                                   character_coverage=0.9995, minloglevel=2)
    src = work / "spm_dir"
    src.mkdir()
    shutil.copy(work / "spm.model", src / "sentencepiece.bpe.model")
    out = work / "unigram"
    transformers.XLMRobertaTokenizer.from_pretrained(str(src)).save_pretrained(str(out))
    return json.loads((out / "tokenizer.json").read_text(encoding="utf-8"))


def _bpe(lines):
    tokenizers = pytest.importorskip("tokenizers")
    tok = tokenizers.ByteLevelBPETokenizer()
    tok.train_from_iterator(_train_texts(lines), vocab_size=VOCAB_SIZE, min_frequency=2,
                            special_tokens=["[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]",
                                            "<s>", "</s>", "<pad>", "<unk>", "<mask>"])
    return json.loads(tok.to_str())


def _wordpiece(lines):
    tokenizers = pytest.importorskip("tokenizers")
    tok = tokenizers.BertWordPieceTokenizer(lowercase=True)
    tok.train_from_iterator(_train_texts(lines), vocab_size=VOCAB_SIZE)
    tok.post_processor = tokenizers.processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])
    return json.loads(tok.to_str())


def _variants(unigram, bpe, wordpiece):
    """name -> tokenizer.json object, each a hub model's shape."""
    tokenizers = pytest.importorskip("tokenizers")
    bge = json.loads(json.dumps(unigram))
    bge["normalizer"] = {"type": "Sequence", "normalizers": [
        unigram["normalizer"],
        {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "}]}
    for t in bge["added_tokens"]:
        if t["content"] == "<mask>":
            t["lstrip"] = True

    # ModernBERT's parts, written by `tokenizers` itself.
    tok = tokenizers.Tokenizer.from_str(json.dumps(bpe))
    tok.normalizer = tokenizers.normalizers.NFC()
    tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False,
                                                           use_regex=True)
    tok.post_processor = tokenizers.processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[(t, tok.token_to_id(t)) for t in ("[CLS]", "[SEP]")])
    # Non-special added tokens as ModernBERT's tokenizer has them: matched whole-word only,
    # taking the spaces after it, and one matched on the normalised text (NFC composes it).
    tok.add_tokens([tokenizers.AddedToken("memory", single_word=True),
                    tokenizers.AddedToken("PCI", rstrip=True),
                    tokenizers.AddedToken("cafe\u0301", normalized=True)])
    modernbert = json.loads(tok.to_str())

    roberta = json.loads(json.dumps(bpe))
    roberta["normalizer"] = None
    roberta["pre_tokenizer"] = {"type": "ByteLevel", "add_prefix_space": True,
                                "trim_offsets": True, "use_regex": True}
    ids = {t["content"]: t["id"] for t in bpe["added_tokens"]}
    roberta["post_processor"] = {"type": "RobertaProcessing", "sep": ["</s>", ids["</s>"]],
                                 "cls": ["<s>", ids["<s>"]], "trim_offsets": True,
                                 "add_prefix_space": True}
    for t in roberta["added_tokens"]:
        if t["content"] == "<mask>":
            t["lstrip"] = True
    return {"unigram_xlmr": unigram, "unigram_bge_m3": bge, "bpe_modernbert": modernbert,
            "bpe_roberta": roberta, "wordpiece": wordpiece}


def train_variants(work, lines):
    """name -> tokenizer.json object (a dict), trained in directory `work`."""
    return _variants(_unigram(work, lines), _bpe(lines), _wordpiece(lines))
