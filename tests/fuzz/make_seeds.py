#!/usr/bin/env python3
"""Writes the seed corpora of the safetensors, config, embed_request, tokenizer_files and
tokenizer_json fuzz targets (the tokenizer seeds are hand-written).

The seeds are committed; run this again only to change them:
    .venv/bin/python tests/fuzz/make_seeds.py
Safetensors seeds are written byte by byte (the format is tiny), so they do not depend on a
library's choices; EmbedRequest seeds are serialised with the project's own proto, compiled
to a temporary directory with grpc_tools.
"""
import json
import pathlib
import struct
import subprocess
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent


def write(path: pathlib.Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def safetensors(header: dict, data: bytes, pad_header: bool = True) -> bytes:
    text = json.dumps(header, separators=(",", ":")).encode()
    if pad_header:  # the reference writer pads the header with spaces to 8 bytes
        text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def safetensors_seeds() -> None:
    out = HERE / "safetensors" / "corpus"
    f32 = struct.pack("<6f", 0.5, -1.0, 2.0, 3.25, 0.0, -0.125)
    i64 = struct.pack("<2q", 7, -3)
    write(out / "valid_two_tensors", safetensors({
        "__metadata__": {"format": "pt"},
        "embeddings.weight": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
        "position_ids": {"dtype": "I64", "shape": [2], "data_offsets": [24, 40]},
    }, f32 + i64))
    write(out / "valid_all_dtypes", safetensors({
        "a": {"dtype": "F64", "shape": [1], "data_offsets": [0, 8]},
        "b": {"dtype": "F16", "shape": [2], "data_offsets": [8, 12]},
        "c": {"dtype": "BF16", "shape": [1, 1], "data_offsets": [12, 14]},
        "d": {"dtype": "I32", "shape": [], "data_offsets": [14, 18]},
        "e": {"dtype": "I16", "shape": [1], "data_offsets": [18, 20]},
        "f": {"dtype": "I8", "shape": [1], "data_offsets": [20, 21]},
        "g": {"dtype": "U8", "shape": [1], "data_offsets": [21, 22]},
        "h": {"dtype": "BOOL", "shape": [1], "data_offsets": [22, 23]},
        "z": {"dtype": "F32", "shape": [0, 5], "data_offsets": [23, 23]},
    }, bytes(range(23))))
    write(out / "empty_header", safetensors({}, b""))
    write(out / "overlap", safetensors({
        "a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
        "b": {"dtype": "U8", "shape": [4], "data_offsets": [2, 6]},
    }, bytes(6)))
    write(out / "gap", safetensors({"a": {"dtype": "U8", "shape": [2], "data_offsets": [2, 4]}},
                                   bytes(4)))
    write(out / "huge_shape", safetensors({
        "a": {"dtype": "F64", "shape": [4294967296, 4294967296], "data_offsets": [0, 8]}},
        bytes(8)))
    write(out / "duplicate_name", b"\x40\0\0\0\0\0\0\0" + (
        b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8"}}'[:64]) + b"x")
    write(out / "truncated", safetensors({
        "a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, bytes(7)))
    write(out / "header_too_long", struct.pack("<Q", 1 << 40) + b"{}")


def config_seeds() -> None:
    out = HERE / "config" / "corpus"
    real = (ROOT / "models" / "all-MiniLM-L6-v2" / "config.json").read_text()
    write(out / "all_minilm_l6_v2.json", real.encode())
    base = json.loads(real)
    variants = {
        "bert_base.json": dict(base, hidden_size=768, num_attention_heads=12,
                               num_hidden_layers=12, intermediate_size=3072),
        "minimal.json": {k: base[k] for k in ("vocab_size", "hidden_size", "num_hidden_layers",
                                              "num_attention_heads", "intermediate_size",
                                              "max_position_embeddings")},
        "heads_not_dividing.json": dict(base, num_attention_heads=7),
        "roberta.json": dict(base, model_type="roberta"),
        "relative_positions.json": dict(base, position_embedding_type="relative_key"),
        "gelu_tanh_null_pad.json": dict(base, hidden_act="gelu_pytorch_tanh", pad_token_id=None),
        "negative_eps.json": dict(base, layer_norm_eps=-1.0),
        "float_vocab.json": dict(base, vocab_size=30522.5),
        "huge_ints.json": dict(base, vocab_size=2**63 - 1, hidden_size=2**64 - 1),
    }
    for name, value in variants.items():
        write(out / name, json.dumps(value, indent=1).encode())
    write(out / "not_an_object.json", b"[1, 2, 3]")
    write(out / "truncated.json", real.encode()[: len(real) // 2])


def embed_request_seeds() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{ROOT / 'proto'}",
                        f"--python_out={tmp}", "longenc/v1/encoder.proto"], check=True)
        sys.path.insert(0, tmp)
        from longenc.v1 import encoder_pb2 as pb  # pylint: disable=import-outside-toplevel

    def request(limits_byte: int, **fields) -> bytes:
        return bytes([limits_byte]) + pb.EmbedRequest(**fields).SerializeToString()

    out = HERE / "embed_request" / "corpus"
    text = pb.Document(text="Long documents are embedded chunk by chunk.", id="doc-1")
    tokens = pb.Document(tokens=pb.TokenIds(ids=[101, 7592, 2088, 102]), id="t")
    # Limits byte: bits 0-1 pick max_tokens_per_document {3, 8, 64, 131072}, bits 2-3 pick
    # max_documents_per_request {1, 4, 256, 256}.
    write(out / "text_defaults", request(0x0B, documents=[text]))
    write(out / "tokens_cls_pooling", request(0x0B, documents=[tokens], pooling=pb.POOLING_CLS,
                                              normalize=False))
    write(out / "truncate_text", request(0x05, documents=[text, tokens],
                                         over_limit=pb.OVER_LIMIT_TRUNCATE))
    write(out / "too_long_error", request(0x01, documents=[text], over_limit=pb.OVER_LIMIT_ERROR))
    write(out / "too_many_documents", request(0x03, documents=[text, tokens]))
    write(out / "attention_options", request(0x0B, documents=[tokens], attention="yoso",
                                             attention_options="hashes=8,bits=4",
                                             position_mode="chunk", request_id="r1"))
    write(out / "unknown_attention", request(0x0B, documents=[tokens], attention="sparse"))
    write(out / "id_out_of_range", request(0x0B, documents=[pb.Document(
        tokens=pb.TokenIds(ids=[101, 30522, 102]))]))
    write(out / "empty_documents", request(0x0B, documents=[pb.Document(), pb.Document(text="")]))
    write(out / "cjk_accents_specials", request(0x0B, documents=[pb.Document(
        text="Crème brûlée 東京 [MASK] [SEP]\u0000\ufffd")]))
    # Invalid UTF-8 in documents[0].text: written by hand, the library refuses to serialise it.
    bad = b"\x0a\x05\x0a\x03a\xff\xfe"
    write(out / "invalid_utf8_text", bytes([0x0B]) + bad)
    write(out / "empty_request", bytes([0x0B]))


def tokenizer_files_seeds() -> None:
    out = HERE / "tokenizer_files" / "corpus"
    model = ROOT / "models" / "all-MiniLM-L6-v2"
    config = (model / "tokenizer_config.json").read_bytes()
    specials = ["[PAD]", "[unused0]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = ["hello", ",", "world", "!", "na", "##ive", "##ï", "東", "京", "a", "##s", "x", "##"]
    vocab = "\n".join(specials + words).encode() + b"\n"
    # Input = tokenizer_config.json, NUL, vocab.txt (no NUL: vocab.txt alone).
    write(out / "real_config_small_vocab", config + b"\0" + vocab)
    write(out / "vocab_only", vocab)
    write(out / "crlf_vocab", vocab.replace(b"\n", b"\r\n"))
    write(out / "no_unk", config + b"\0" + vocab.replace(b"[UNK]\n", b""))
    write(out / "duplicate_token", vocab + b"hello\n")
    write(out / "invalid_utf8_token", vocab + b"\xc3\n")
    write(out / "content_objects", json.dumps({
        "do_lower_case": False, "strip_accents": True, "tokenize_chinese_chars": False,
        "cls_token": {"content": "[CLS]", "lstrip": False}, "unk_token": None,
        "added_tokens_decoder": {"5": {"content": "[MASK]", "special": True,
                                       "normalized": False}},
    }).encode() + b"\0" + vocab)
    write(out / "custom_specials", json.dumps({"cls_token": "<s>", "sep_token": "</s>"}).encode()
          + b"\0" + vocab + b"<s>\n</s>\n")
    write(out / "bad_config", b'{"do_lower_case": "yes"}\0' + vocab)
    write(out / "empty_vocab", config + b"\0")


# A SentencePiece precompiled_charsmap for the rules A->a, B->b, U+FF21->A, A+U+0301->U+00C1,
# U+2460->1, U+FB01->fi, U+3000->space, U+200B->nothing (spm_train --normalization_rule_tsv;
# tests/unit/tokenizer/tokenizer_json_test.cc uses the same map).
SMALL_CHARSMAP = (
    "AAQAAAAAAQBBCQAAQhEAAAcAAICBBQAADgAAgAkAAICAEAIAiwUAAAAAAICgBQAAAwAAgIAEAgCADQAAAQAAgKx4Ag"
    "CBBQAACwAAgKEFAAAFAACAFQAAABQAAACR8AIAFgAAABkAAAAYAAAAGwAAABoAAAAdAAAAHAAAAB8AAAC8sAIAIQAA"
    "ACAAAAAjAAAAIgAAACUAAAAkAAAAJwAAACYAAAApAAAAKAAAACsAAAAqAAAALQAAACwAAAAvAAAALgAAADEAAAAwAA"
    "AAMwAAADIAAAA1AAAANAAAADcAAAA2AAAAOQAAADgAAAA7AAAAOgAAAD0AAAA8AAAAPwAAAD4AAABBAAAAQAAAAEMA"
    "AABCAAAARQAAAEQAAABHAAAARgAAAEkAAABIAAAASwAAAEoAAABNAAAATAAAAE8AAABOAAAAUQAAAFAAAABTAAAAUg"
    "AAAFUAAABUAAAAVwAAAFYAAABZAAAAWAAAAFsAAABaAAAAXQAAAFwAAABfAAAAXgAAAGEAAABgAAAAYwAAAGIAAABl"
    "AAAAZAAAAGcAAABmAAAAaQAAAGgAAABrAAAAagAAAG0AAABsAAAAbwAAAG4AAABxAAAAcAAAAHMAAAByAAAAdQAAAH"
    "QAAAB3AAAAdgAAAHkAAAB4AAAAewAAAHoAAAB9AAAAfAAAAH8AAAB+AAAAgQAAAIAAAACDAAAAggAAAIUAAACEAAAA"
    "hwAAAIYAAACJAAAAiAAAAIsAAACKAAAAjQAAAIwAAACPAAAAjgAAAJEAAACQAAAAkwAAAJIAAACVAAAAlAAAAJcAAA"
    "CWAAAAmQAAAJgAAACbAAAAmgAAAJ0AAACcAAAAnwAAAJ4AAAChAAAAoAAAAOKUAADjvAAApQAAAKQAAACnAAAApgAA"
    "AKkAAACoAAAAqwAAAKoAAACtAAAArAAAAK8AAADvMAAAsQAAALAAAACzAAAAsgAAALUAAAC0AAAAtwAAALYAAAC5AA"
    "AAuAAAALsAAAC6AAAAvQAAALwAAAC/AAAAvgAAAMEAAADAAAAAwwAAAMIAAADFAAAAxAAAAMcAAADGAAAAyQAAAMgA"
    "AADLAAAAygAAAM0AAADMAAAAzwAAAMwoAQDRAAAA0AAAANMAAADSAAAA1QAAANQAAADXAAAA1gAAANkAAADYAAAA2w"
    "AAANoAAADdAAAA3AAAAN8AAADeAAAA4QAAAOAAAADjAAAA4gAAAOUAAADkAAAA5wAAAOYAAADpAAAA6AAAAOsAAADq"
    "AAAA7QAAAOwAAADvAAAA7gAAAPEAAADwAAAA8wAAAPIAAAD1AAAA9AAAAPcAAAD2AAAA+QAAAPgAAAD7AAAA+gAAAP"
    "0AAAD8AAAA/wAAAP4AAAAAIAAxAEEAYQBiAGZpAMOBAA==")


def _added(i, content, lstrip=False):
    return {"id": i, "content": content, "single_word": False, "lstrip": lstrip,
            "rstrip": False, "normalized": False, "special": True}


def _template(cls, cls_id, sep, sep_id):
    return {"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": cls, "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}},
                       {"SpecialToken": {"id": sep, "type_id": 0}}],
            "pair": [{"Sequence": {"id": "A", "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {cls: {"id": cls, "ids": [cls_id], "tokens": [cls]},
                               sep: {"id": sep, "ids": [sep_id], "tokens": [sep]}}}


def tokenizer_json_seeds() -> None:
    out = HERE / "tokenizer_json" / "corpus"
    dump = lambda spec: json.dumps(spec, ensure_ascii=False).encode()
    letters = "abcdefghijklmnopqrstuvwxyzĠÃ©'"
    vocab = {"[CLS]": 0, "[SEP]": 1, **{c: i + 2 for i, c in enumerate(letters)}}
    merges = ["h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "' s", "Ã ©"]
    for m in merges:
        vocab.setdefault(m.replace(" ", ""), len(vocab))
    bpe = {"version": "1.0", "added_tokens": [_added(0, "[CLS]"), _added(1, "[SEP]")],
           "normalizer": {"type": "NFC"},
           "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False,
                             "trim_offsets": True, "use_regex": True},
           "post_processor": _template("[CLS]", 0, "[SEP]", 1),
           "model": {"type": "BPE", "dropout": None, "unk_token": None, "vocab": vocab,
                     "merges": merges}}
    write(out / "bpe_modernbert", dump(bpe))
    roberta = json.loads(json.dumps(bpe))
    roberta["normalizer"] = {"type": "Sequence", "normalizers": [{"type": "Lowercase"},
                                                                  {"type": "NFKC"}]}
    roberta["post_processor"] = {"type": "Sequence", "processors": [
        {"type": "ByteLevel", "trim_offsets": True, "add_prefix_space": True},
        {"type": "RobertaProcessing", "sep": ["[SEP]", 1], "cls": ["[CLS]", 0]}]}
    roberta["model"]["merges"] = [m.split(" ") for m in merges]
    roberta["model"]["unk_token"] = "a"
    roberta["model"]["fuse_unk"] = True
    write(out / "bpe_roberta", dump(roberta))
    pieces = [["<s>", 0.0], ["<pad>", 0.0], ["</s>", 0.0], ["<unk>", 0.0], ["\u2581", -2.0]]
    pieces += [[c, -3.0 - i / 10] for i, c in enumerate("abcdefghijklmnopqrstuvwxyz")]
    pieces += [["\u2581the", -4.0], ["\u2581a", -3.5], ["he", -5.0], ["<0x41>", -9.0]]
    unigram = {"added_tokens": [_added(0, "<s>"), _added(2, "</s>"),
                                _added(len(pieces), "<mask>", lstrip=True)],
               "normalizer": {"type": "Sequence", "normalizers": [
                   {"type": "Precompiled", "precompiled_charsmap": SMALL_CHARSMAP},
                   {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "}]},
               "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                   {"type": "WhitespaceSplit"},
                   {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always",
                    "split": True}]},
               "post_processor": _template("<s>", 0, "</s>", 2),
               "model": {"type": "Unigram", "unk_id": 3, "vocab": pieces,
                         "byte_fallback": True}}
    write(out / "unigram_bge_m3", dump(unigram))
    legacy = json.loads(json.dumps(unigram))
    legacy["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581",
                               "add_prefix_space": True}
    legacy["normalizer"] = {"type": "Replace", "pattern": {"String": "``"}, "content": "\""}
    write(out / "unigram_legacy_metaspace", dump(legacy))
    wordpiece = {"added_tokens": [_added(0, "[PAD]"), _added(1, "[UNK]"), _added(2, "[CLS]"),
                                  _added(3, "[SEP]")],
                 "normalizer": {"type": "BertNormalizer", "clean_text": True,
                                "handle_chinese_chars": True, "strip_accents": None,
                                "lowercase": True},
                 "pre_tokenizer": {"type": "BertPreTokenizer"},
                 "post_processor": {"type": "BertProcessing", "sep": ["[SEP]", 3],
                                    "cls": ["[CLS]", 2]},
                 "model": {"type": "WordPiece", "unk_token": "[UNK]",
                           "continuing_subword_prefix": "##", "max_input_chars_per_word": 100,
                           "vocab": {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "un": 4,
                                     "##aff": 5, "##able": 6, "東": 7}}}
    write(out / "wordpiece", dump(wordpiece))
    broken = json.loads(json.dumps(unigram))
    broken["normalizer"]["normalizers"][0]["precompiled_charsmap"] = "AAQAAAAA"
    write(out / "bad_charsmap", dump(broken))
    write(out / "template_id_out_of_range",
          dump({**bpe, "post_processor": _template("[CLS]", 0, "[SEP]", 99999)}))
    write(out / "not_json", b'{"model": {"type": "BPE", "vocab": {')


if __name__ == "__main__":
    tokenizer_json_seeds()
    tokenizer_files_seeds()
    safetensors_seeds()
    config_seeds()
    embed_request_seeds()
