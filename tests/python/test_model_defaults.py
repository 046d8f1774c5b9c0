"""The model directory's sentence-transformers metadata honoured by the real longenc-server
(docs/API.md, "Model defaults and prompts"), on 127.0.0.1 port 0 with the default model's
weights and tokenizer under other metadata:

- "cls": 1_Pooling in CLS mode, no Normalize module, two prompts, no default prompt,
  max_seq_length 128. Requests that choose nothing get CLS pooling, unnormalised; GetInfo
  reports the defaults and the prompts; prompt_name equals the prompt prepended by hand; late
  chunks with a prompt cover only the caller's tokens, with offsets into the caller's text;
  unknown names and names with token ids are refused naming the field while a concurrent
  request is served.
- "default_prompt": no modules.json (so mean pooling, normalised, as before) and a default
  prompt, applied to text documents only.
- "bpe": a small random BERT with a byte-level BPE tokenizer whose token after the prompt
  starts inside it (" The" takes the prompt's trailing space): that token is the document's,
  its chunk offsets start at 0.

The default model's own directory (mean + Normalize) is covered unchanged by the error table
(tests/integration/error_table_test.cc) and tests/python/test_late_chunking.py; here only its
GetInfo fields.
"""
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
import soak  # noqa: E402

pytestmark = pytest.mark.needs_programs("longenc-server", "longenc-encode")

PROMPTS = {"query": "query: ", "passage": "passage of a document: "}
TEXT = ("The scheduler picks the next task to run. It keeps a red-black tree of runnable "
        "tasks, ordered by their virtual runtime, and takes the leftmost one.")
# Files of the default model that carry weights and the tokenizer (not its metadata).
MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
               "special_tokens_map.json", "vocab.txt")


def _model_copy(model_dir, path):
    """A directory with the default model's weights and tokenizer, and no metadata yet."""
    path.mkdir()
    for name in MODEL_FILES:
        if (model_dir / name).exists():
            (path / name).symlink_to(model_dir / name)
    return path


def _write_json(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value))


@pytest.fixture(scope="module")
def stubs():
    return soak.load_stubs()


def _serve(model_dir, stubs):
    server = soak.start_server([f"--model_dir={model_dir}"], threads=2)
    return server, stubs[1].EncoderStub(server.channel)


@pytest.fixture(scope="module")
def cls_dir(model_dir, tmp_path_factory):
    path = _model_copy(model_dir, tmp_path_factory.mktemp("st") / "cls")
    _write_json(path / "modules.json", [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling",
         "type": "sentence_transformers.models.Pooling"}])
    _write_json(path / "1_Pooling" / "config.json",
                {"word_embedding_dimension": 384, "pooling_mode_cls_token": True,
                 "pooling_mode_mean_tokens": False})
    _write_json(path / "sentence_bert_config.json", {"max_seq_length": 128})
    _write_json(path / "config_sentence_transformers.json", {"prompts": PROMPTS})
    return path


@pytest.fixture(scope="module")
def cls_server(cls_dir, stubs):
    server, stub = _serve(cls_dir, stubs)
    yield stub
    assert server.stop() == 0


@pytest.fixture(scope="module")
def default_prompt_server(model_dir, stubs, tmp_path_factory):
    path = _model_copy(model_dir, tmp_path_factory.mktemp("st") / "default_prompt")
    _write_json(path / "config_sentence_transformers.json",
                {"prompts": PROMPTS, "default_prompt_name": "query"})
    server, stub = _serve(path, stubs)
    yield stub
    assert server.stop() == 0


@pytest.fixture(scope="module")
def text_states(model_dir, cls_server, stubs):
    """transformers' BertModel's final hidden states of TEXT as the server tokenizes it."""
    import torch
    from transformers import BertModel
    torch.set_num_threads(2)
    ids, _ = _ids(cls_server, stubs[0], TEXT)
    model = BertModel.from_pretrained(str(model_dir)).eval()
    with torch.no_grad():
        states = model(input_ids=torch.tensor([ids])).last_hidden_state[0]
    return states.double().numpy()


def _embed(stub, pb2, docs, **fields):
    """The EmbedResponse for `docs` (str: text, list: token ids)."""
    request = pb2.EmbedRequest(**fields)
    for d in docs:
        if isinstance(d, str):
            request.documents.add(text=d)
        else:
            request.documents.add(tokens=pb2.TokenIds(ids=d))
    return stub.Embed(request, timeout=120)


def _vector(stub, pb2, doc, **fields):
    return np.array(_embed(stub, pb2, [doc], **fields).embeddings[0].values, dtype=np.float64)


def _ids(stub, pb2, text):
    r = stub.Tokenize(pb2.TokenizeRequest(texts=[text]), timeout=60).results[0]
    return list(r.ids), [(o.start, o.end) for o in r.offsets]


def _close(a, b, tol=1e-5):
    return float(np.abs(np.asarray(a) - np.asarray(b)).max()) <= tol


def test_getinfo_reports_the_metadata(cls_server, default_prompt_server, stubs, model_dir):
    pb2, _ = stubs
    info = cls_server.GetInfo(pb2.GetInfoRequest(), timeout=60)
    assert {p.name: p.text for p in info.prompts} == PROMPTS
    assert info.default_prompt_name == ""
    assert info.default_pooling == pb2.POOLING_CLS
    assert info.default_normalize is False
    assert info.max_seq_length == 128
    # max_seq_length is reported, not enforced: the document limit is the server's.
    assert info.limits.max_tokens_per_document > 128

    info = default_prompt_server.GetInfo(pb2.GetInfoRequest(), timeout=60)
    assert info.default_prompt_name == "query"
    assert info.default_pooling == pb2.POOLING_MEAN and info.default_normalize is True
    assert info.max_seq_length == 0


def test_default_model_dir_getinfo(model_dir, stubs):
    """all-MiniLM-L6-v2 as exported: modules.json with mean pooling and Normalize."""
    pb2, _ = stubs
    server, stub = _serve(model_dir, stubs)
    try:
        info = stub.GetInfo(pb2.GetInfoRequest(), timeout=60)
        assert info.default_pooling == pb2.POOLING_MEAN and info.default_normalize is True
        assert info.max_seq_length == 256
        assert list(info.prompts) == [] and info.default_prompt_name == ""
        v = _vector(stub, pb2, TEXT)
        assert abs(np.linalg.norm(v) - 1) < 1e-5
        assert _close(v, _vector(stub, pb2, TEXT, pooling=pb2.POOLING_MEAN, normalize=True))
    finally:
        assert server.stop() == 0


def test_pooling_and_normalize_default_to_the_model(cls_server, stubs, text_states):
    pb2, _ = stubs
    hidden = text_states
    default = _vector(cls_server, pb2, TEXT)
    cls = _vector(cls_server, pb2, TEXT, pooling=pb2.POOLING_CLS, normalize=False)
    mean = _vector(cls_server, pb2, TEXT, pooling=pb2.POOLING_MEAN, normalize=False)
    assert _close(default, cls)
    assert _close(default, hidden[0], 1e-4)
    assert not _close(default, mean, 1e-2)
    assert _close(mean, hidden.mean(0), 1e-4)
    # No Normalize module: unnormalised unless the request asks.
    assert abs(np.linalg.norm(default) - 1) > 0.1
    normalized = _vector(cls_server, pb2, TEXT, normalize=True)
    assert _close(normalized, cls / np.linalg.norm(cls))
    last = _vector(cls_server, pb2, TEXT, pooling=pb2.POOLING_LAST_TOKEN)
    assert _close(last, hidden[-1], 1e-4)


def test_prompt_name_equals_the_prompt_prepended_by_hand(cls_server, stubs):
    pb2, _ = stubs
    for name, text in PROMPTS.items():
        named = _embed(cls_server, pb2, [TEXT], prompt_name=name)
        by_hand = _embed(cls_server, pb2, [text + TEXT])
        assert _close(named.embeddings[0].values, by_hand.embeddings[0].values)
        # num_tokens and usage count what the model saw, the prompt included.
        assert named.embeddings[0].num_tokens == by_hand.embeddings[0].num_tokens
        assert named.usage.tokens == len(_ids(cls_server, pb2, text + TEXT)[0])
        assert not _close(named.embeddings[0].values, _vector(cls_server, pb2, TEXT), 1e-3)


def test_default_prompt_is_applied_to_text_only(default_prompt_server, cls_server, stubs):
    pb2, _ = stubs
    plain = dict(pooling=pb2.POOLING_MEAN, normalize=True)
    default = _vector(default_prompt_server, pb2, TEXT)
    assert _close(default, _vector(default_prompt_server, pb2, TEXT, prompt_name="query"))
    # The same weights without a default prompt, the prompt prepended by hand.
    assert _close(default, _vector(cls_server, pb2, PROMPTS["query"] + TEXT, **plain))
    other = _vector(default_prompt_server, pb2, TEXT, prompt_name="passage")
    assert _close(other, _vector(cls_server, pb2, PROMPTS["passage"] + TEXT, **plain))
    # Token ids are used as given: no default prompt.
    ids, _ = _ids(cls_server, pb2, TEXT)
    assert _close(_vector(default_prompt_server, pb2, ids),
                  _vector(cls_server, pb2, ids, **plain))


def _refused_while_serving(stub, pb2, bad, good_text):
    """The status of `bad`, after checking that a request sent with it succeeded."""
    import grpc
    good = stub.Embed.future(pb2.EmbedRequest(documents=[pb2.Document(text=good_text)]),
                             timeout=120)
    with pytest.raises(grpc.RpcError) as refused:
        stub.Embed(bad, timeout=120)
    assert len(good.result().embeddings) == 1
    assert stub.GetInfo(pb2.GetInfoRequest(), timeout=60).embedding_dim == 384
    return refused.value


def test_bad_prompt_names_are_refused(cls_server, default_prompt_server, stubs):
    import grpc
    pb2, _ = stubs
    bad = pb2.EmbedRequest(documents=[pb2.Document(text=TEXT)], prompt_name="instruction")
    e = _refused_while_serving(cls_server, pb2, bad, TEXT)
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.details().startswith("prompt_name: unknown prompt 'instruction'; known: ")
    assert "passage" in e.details() and "query" in e.details()

    ids, _ = _ids(cls_server, pb2, TEXT)
    bad = pb2.EmbedRequest(documents=[pb2.Document(text=TEXT),
                                      pb2.Document(tokens=pb2.TokenIds(ids=ids), id="t")],
                           prompt_name="query")
    for stub in (cls_server, default_prompt_server):
        e = _refused_while_serving(stub, pb2, bad, TEXT)
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert e.details().startswith(
            "prompt_name 'query' is set and documents[1] (id \"t\") is given as token ids")


def test_chunks_with_a_prompt_refer_to_the_callers_text(cls_server, stubs):
    pb2, _ = stubs
    prompt = PROMPTS["passage"]
    with_prompt, _ = _ids(cls_server, pb2, prompt + TEXT)
    alone, offsets = _ids(cls_server, pb2, TEXT)
    prompt_tokens = len(with_prompt) - len(alone)  # WordPiece splits at the prompt's ": "
    assert prompt_tokens == 5
    chunking = pb2.Chunking(max_tokens=8, overlap_tokens=2)
    named = _embed(cls_server, pb2, [TEXT], prompt_name="passage", chunking=chunking)
    chunks = named.embeddings[0].chunks
    # Only the caller's tokens: the first chunk starts after [CLS] and the prompt.
    assert chunks[0].token_start == 1 + prompt_tokens
    assert chunks[-1].token_end == len(with_prompt) - 1
    for c in chunks:
        first = c.token_start - prompt_tokens
        last = c.token_end - 1 - prompt_tokens
        assert (c.char_start, c.char_end) == (offsets[first][0], offsets[last][1])
    assert chunks[0].char_start == 0 and chunks[-1].char_end == len(TEXT.encode())
    # The same vectors as by hand with spans shifted by the prompt's length.
    spans = [pb2.Offset(start=c.char_start, end=c.char_end) for c in chunks]
    named = _embed(cls_server, pb2, [TEXT], prompt_name="passage",
                   chunking=pb2.Chunking(spans=spans))
    shift = len(prompt.encode())
    by_hand = _embed(cls_server, pb2, [prompt + TEXT], chunking=pb2.Chunking(
        spans=[pb2.Offset(start=s.start + shift, end=s.end + shift) for s in spans]))
    for a, b, c in zip(named.embeddings[0].chunks, by_hand.embeddings[0].chunks, chunks):
        assert (a.token_start, a.token_end) == (b.token_start, b.token_end) == \
            (c.token_start, c.token_end)
        assert (a.char_start + shift, a.char_end + shift) == (b.char_start, b.char_end)
        assert _close(a.values, b.values) and _close(a.values, c.values)
    # A span over the prompt's bytes is outside the caller's text.
    import grpc
    with pytest.raises(grpc.RpcError) as e:
        _embed(cls_server, pb2, [TEXT], prompt_name="passage", chunking=pb2.Chunking(
            spans=[pb2.Offset(start=0, end=len(TEXT.encode()) + 1)]))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "out of range" in e.value.details()


@pytest.fixture(scope="module")
def bpe_server(stubs, tmp_path_factory):
    """A small random BERT with a byte-level BPE tokenizer whose offsets keep the space before a
    word (ModernBERT's template, no offset trimming): the token after the prompt "query: "
    starts inside the prompt. (server stub, HF tokenizers.Tokenizer)"""
    import tokenizers
    import torch
    import transformers
    path = tmp_path_factory.mktemp("st") / "bpe"
    path.mkdir()
    bpe = tokenizers.ByteLevelBPETokenizer()
    bpe.train_from_iterator([p + TEXT for p in PROMPTS.values()] * 4, vocab_size=400, min_frequency=1,
                            special_tokens=["[CLS]", "[SEP]", "[PAD]", "[UNK]"])
    tok = tokenizers.Tokenizer.from_str(bpe.to_str())
    tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.post_processor = tokenizers.processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[(t, tok.token_to_id(t)) for t in ("[CLS]", "[SEP]")])
    tok.save(str(path / "tokenizer.json"))
    config = transformers.BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=32,
                                     num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=48, max_position_embeddings=512)
    torch.manual_seed(0)
    transformers.BertModel(config).save_pretrained(path)
    _write_json(path / "config_sentence_transformers.json", {"prompts": PROMPTS})
    server, stub = _serve(path, stubs)
    yield stub, tok
    assert server.stop() == 0


def test_chunks_when_a_token_crosses_the_prompts_end(bpe_server, stubs):
    pb2, _ = stubs
    stub, tok = bpe_server
    prompt = PROMPTS["query"]
    shift = len(prompt.encode())
    enc = tok.encode(prompt + TEXT)
    assert list(enc.ids) == _ids(stub, pb2, prompt + TEXT)[0]
    # [CLS] "query" ":" then " The", which starts at the prompt's space.
    assert enc.offsets[3] == (shift - 1, shift + 3)
    named = _embed(stub, pb2, [TEXT], prompt_name="query",
                   chunking=pb2.Chunking(max_tokens=4, overlap_tokens=1))
    assert _close(named.embeddings[0].values, _vector(stub, pb2, prompt + TEXT))
    chunks = named.embeddings[0].chunks
    assert chunks[0].token_start == 3 and chunks[-1].token_end == len(enc.ids) - 1
    for c in chunks:
        start = max(0, enc.offsets[c.token_start][0] - shift)
        assert (c.char_start, c.char_end) == (start, enc.offsets[c.token_end - 1][1] - shift)
    assert chunks[0].char_start == 0 and chunks[-1].char_end == len(TEXT.encode())
    # A span over the caller's first word is the token that crosses the boundary.
    spans = _embed(stub, pb2, [TEXT], prompt_name="query",
                   chunking=pb2.Chunking(spans=[pb2.Offset(start=0, end=3)]))
    c = spans.embeddings[0].chunks[0]
    assert (c.token_start, c.token_end, c.char_start, c.char_end) == (3, 4, 0, 3)


def _encode(build_dir, model_dir, lines, *flags):
    """longenc-encode's output rows for JSON `lines`."""
    run = subprocess.run([str(build_dir / "bin" / "longenc-encode"), f"--model_dir={model_dir}",
                          "--threads=2", "--progress=false", *flags],
                         input="".join(json.dumps(l) + "\n" for l in lines),
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    return [json.loads(l) for l in run.stdout.splitlines()]


def test_longenc_encode_takes_the_same_defaults_and_prompts(build_dir, cls_dir, cls_server,
                                                            stubs):
    """longenc-encode reads the directory as the server does: CLS, unnormalised, prompts."""
    pb2, _ = stubs
    [row] = _encode(build_dir, cls_dir, [{"id": "a", "text": TEXT}])
    assert _close(row["embedding"], _vector(cls_server, pb2, TEXT))
    [row] = _encode(build_dir, cls_dir, [{"text": TEXT}], "--prompt_name=passage",
                    "--normalize=true")
    assert _close(row["embedding"], _vector(cls_server, pb2, TEXT, prompt_name="passage",
                                            normalize=True))
    rows = _encode(build_dir, cls_dir, [{"text": TEXT}], "--prompt_name=passage", "--chunk=8",
                   "--overlap=2")
    served = _embed(cls_server, pb2, [TEXT], prompt_name="passage",
                    chunking=pb2.Chunking(max_tokens=8, overlap_tokens=2)).embeddings[0].chunks
    assert len(rows) == len(served)
    for r, c in zip(rows, served):
        assert (r["token_start"], r["token_end"], r["char_start"], r["char_end"]) == \
            (c.token_start, c.token_end, c.char_start, c.char_end)
        assert _close(r["embedding"], c.values)
    # Refusals name the flag: an unknown prompt at start, a prompt with token ids per line.
    run = subprocess.run([str(build_dir / "bin" / "longenc-encode"), f"--model_dir={cls_dir}",
                          "--prompt_name=instruction"], input="", capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 2 and "--prompt_name: unknown prompt 'instruction'" in run.stderr
    run = subprocess.run([str(build_dir / "bin" / "longenc-encode"), f"--model_dir={cls_dir}",
                          "--prompt_name=query", "--progress=false"],
                         input=json.dumps({"token_ids": [101, 1996, 102]}) + "\n",
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 1 and "--prompt_name applies to \"text\" lines" in run.stderr
