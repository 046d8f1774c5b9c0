"""Every encoder family equals transformers' own class, from token ids.

For xlm_roberta, nomic_bert, gte and modernbert (and bert as the control) a small random model
is written with save_pretrained (fp32, safetensors) and encoded by transformers (eager
attention) and by longenc-embed-ids; mean, CLS and last-token pooling of the last hidden state
must agree to cosine >= 0.99999 and max abs difference <= 1e-5 for documents from 3 tokens to
past 2k (past the RoPE models' trained length). Also: batched equals one-by-one; the hub's
original config/weight dialects of nomic_bert and gte; sharded and bf16 checkpoints; dynamic
NTK and YaRN scaling; sentence-transformers metadata reaching the backend.
"""
import json
import os
import pathlib
import subprocess

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from safetensors.torch import load_file, save_file  # noqa: E402

from family_models import SIZES, config_of as _config, random_model as _model  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")

LENGTHS = [3, 7, 64, 300, 1100, 2100]


def _docs(config, seed=1):
    rng = np.random.default_rng(seed)
    pad = config.pad_token_id if config.pad_token_id is not None else -1
    low = max(pad + 1, 4)  # no pad (RoBERTa positions count non-pad tokens) nor specials
    return [rng.integers(low, config.vocab_size, size=n).tolist() for n in LENGTHS]


def _reference(model, docs):
    """{pooling: [vector]} from transformers' last hidden state, one document at a time."""
    out = {"mean": [], "cls": [], "last": []}
    with torch.no_grad():
        for ids in docs:
            hidden = model(input_ids=torch.tensor([ids]),
                           attention_mask=torch.ones(1, len(ids), dtype=torch.long)).last_hidden_state[0]
            out["mean"].append(hidden.mean(0).numpy())
            out["cls"].append(hidden[0].numpy())
            out["last"].append(hidden[-1].numpy())
    return out


def _ours(build_dir, model_dir, docs, *flags):
    tool = pathlib.Path(build_dir) / "bin" / "longenc-embed-ids"
    assert tool.exists(), f"{tool} is missing: run `make build`"
    lines = [json.dumps({"token_ids": ids, "pooling": p}) for ids in docs for p in ("mean", "cls", "last")]
    run = subprocess.run([str(tool), f"--model_dir={model_dir}", "--threads=2", "--normalize=false", *flags],
                         input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    rows = [np.array(json.loads(l)["embedding"], dtype=np.float32) for l in run.stdout.splitlines()]
    assert len(rows) == 3 * len(docs), run.stderr
    return {p: rows[k::3] for k, p in enumerate(("mean", "cls", "last"))}


def _assert_close(expected, got, what):
    for pooling in ("mean", "cls", "last"):
        for n, e, g in zip(LENGTHS, expected[pooling], got[pooling]):
            cosine = float(np.dot(e, g) / (np.linalg.norm(e) * np.linalg.norm(g)))
            diff = float(np.abs(e - g).max())
            assert cosine >= 0.99999 and diff <= 1e-5, \
                f"{what}, {pooling}, {n} tokens: cosine {cosine}, max abs diff {diff}"


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """family -> (model directory, transformers model, docs) in the transformers 5 dialect."""
    out = {}
    for family in ("bert", "xlm_roberta", "nomic_bert", "gte", "modernbert"):
        config = _config(family)
        model = _model(config)
        path = tmp_path_factory.mktemp(family)
        model.save_pretrained(path)
        out[family] = (path, model, _docs(config))
    return out


@pytest.mark.parametrize("family", ["bert", "xlm_roberta", "nomic_bert", "gte", "modernbert"])
def test_family_equals_transformers(build_dir, saved, family):
    path, model, docs = saved[family]
    expected = _reference(model, docs)
    _assert_close(expected, _ours(build_dir, path, docs), family)


@pytest.mark.parametrize("family", ["xlm_roberta", "modernbert"])
def test_batched_equals_one_by_one(build_dir, saved, family):
    path, _, docs = saved[family]
    alone = _ours(build_dir, path, docs)
    together = _ours(build_dir, path, docs, "--together")
    for pooling in alone:
        for a, b in zip(alone[pooling], together[pooling]):
            assert np.abs(a - b).max() <= 1e-5


def _hub_nomic(path, model, config):
    """The remote-code dialect of nomic-embed-text: n_embd keys, fused Wqkv, fc11/fc12."""
    hub = {"model_type": "nomic_bert", "architectures": ["NomicBertModel"], "vocab_size": config.vocab_size,
           "n_embd": config.hidden_size, "n_layer": config.num_hidden_layers, "n_head": config.num_attention_heads,
           "n_inner": config.intermediate_size, "n_positions": 8192, "max_trained_positions": 512,
           "activation_function": "swiglu", "rotary_emb_fraction": 1.0, "rotary_emb_base": 1000,
           "rotary_emb_interleaved": False, "rotary_emb_scale_base": None, "rotary_scaling_factor": None,
           "qkv_proj_bias": False, "mlp_fc1_bias": False, "mlp_fc2_bias": False, "prenorm": False,
           "layer_norm_epsilon": config.layer_norm_eps, "type_vocab_size": config.type_vocab_size,
           "pad_token_id": config.pad_token_id}
    state = model.state_dict()
    weights = {"embeddings.word_embeddings.weight": state["embeddings.word_embeddings.weight"],
               "embeddings.token_type_embeddings.weight": state["embeddings.token_type_embeddings.weight"],
               "emb_ln.weight": state["embeddings.LayerNorm.weight"], "emb_ln.bias": state["embeddings.LayerNorm.bias"]}
    for i in range(config.num_hidden_layers):
        s = f"layers.{i}."
        h = f"encoder.layers.{i}."
        weights[h + "attn.Wqkv.weight"] = torch.cat([state[s + f"self_attn.{x}_proj.weight"] for x in "qkv"])
        weights[h + "attn.out_proj.weight"] = state[s + "self_attn.o_proj.weight"]
        weights[h + "mlp.fc11.weight"] = state[s + "mlp.up_proj.weight"]
        weights[h + "mlp.fc12.weight"] = state[s + "mlp.gate_proj.weight"]
        weights[h + "mlp.fc2.weight"] = state[s + "mlp.down_proj.weight"]
        for ours, theirs in (("norm1", "post_attention_layernorm"), ("norm2", "post_mlp_layernorm")):
            for kind in ("weight", "bias"):
                weights[h + f"{ours}.{kind}"] = state[s + f"{theirs}.{kind}"]
    path.mkdir()
    (path / "config.json").write_text(json.dumps(hub))
    save_file({k: v.contiguous() for k, v in weights.items()}, str(path / "model.safetensors"))


def _hub_gte(path, model, config, factor):
    """The Alibaba-NLP/new-impl dialect: model_type "new", qkv_proj, up_gate_proj, ntk scaling."""
    head_dim = config.hidden_size // config.num_attention_heads
    theta = config.rope_parameters["rope_theta"] / factor
    hub = {"model_type": "new", "architectures": ["NewModel"], "vocab_size": config.vocab_size,
           "hidden_size": config.hidden_size, "num_hidden_layers": config.num_hidden_layers,
           "num_attention_heads": config.num_attention_heads, "intermediate_size": config.intermediate_size,
           "hidden_act": "gelu", "layer_norm_eps": config.layer_norm_eps, "layer_norm_type": "layer_norm",
           "max_position_embeddings": 512, "pack_qkv": True, "pad_token_id": config.pad_token_id,
           "position_embedding_type": "rope", "rope_scaling": {"factor": factor, "type": "ntk"},
           "rope_theta": theta, "type_vocab_size": 0, "unpad_inputs": False,
           "use_memory_efficient_attention": False, "logn_attention_scale": False,
           "logn_attention_clip1": False}
    assert abs(config.rope_parameters["factor"] - factor ** (2 / head_dim)) < 1e-12
    state = model.state_dict()
    weights = {"embeddings.word_embeddings.weight": state["embeddings.word_embeddings.weight"],
               "embeddings.LayerNorm.weight": state["embeddings.LayerNorm.weight"],
               "embeddings.LayerNorm.bias": state["embeddings.LayerNorm.bias"]}
    for i in range(config.num_hidden_layers):
        s = f"layers.{i}."
        h = f"encoder.layer.{i}."
        for kind in ("weight", "bias"):
            weights[h + f"attention.qkv_proj.{kind}"] = torch.cat(
                [state[s + f"self_attn.{x}_proj.{kind}"] for x in "qkv"])
            weights[h + f"attention.o_proj.{kind}"] = state[s + f"self_attn.o_proj.{kind}"]
            weights[h + f"attn_ln.{kind}"] = state[s + f"post_attention_layernorm.{kind}"]
            weights[h + f"mlp_ln.{kind}"] = state[s + f"post_mlp_layernorm.{kind}"]
        weights[h + "mlp.up_gate_proj.weight"] = torch.cat([state[s + "mlp.up_proj.weight"],
                                                           state[s + "mlp.gate_proj.weight"]])
        weights[h + "mlp.down_proj.weight"] = state[s + "mlp.down_proj.weight"]
        weights[h + "mlp.down_proj.bias"] = state[s + "mlp.down_proj.bias"]
    path.mkdir()
    (path / "config.json").write_text(json.dumps(hub))
    save_file({k: v.contiguous() for k, v in weights.items()}, str(path / "model.safetensors"))


def test_nomic_hub_dialect(build_dir, saved, tmp_path):
    _, model, docs = saved["nomic_bert"]
    _hub_nomic(tmp_path / "hub", model, model.config)
    _assert_close(_reference(model, docs), _ours(build_dir, tmp_path / "hub", docs), "nomic hub dialect")


def test_gte_hub_dialect_with_ntk(build_dir, tmp_path):
    # transformers 5 reads the hub's static NTK (factor f over theta) as linear f^(2/d) over theta·f.
    factor, head_dim = 2.0, SIZES["hidden_size"] // SIZES["num_attention_heads"]
    config = _config("gte", rope_parameters={"rope_type": "linear", "rope_theta": 500000.0 * factor,
                                             "factor": factor ** (2 / head_dim)})
    model, docs = _model(config), _docs(config)
    model.save_pretrained(tmp_path / "tf5")
    _hub_gte(tmp_path / "hub", model, config, factor)
    expected = _reference(model, docs)
    _assert_close(expected, _ours(build_dir, tmp_path / "tf5", docs), "gte linear")
    _assert_close(expected, _ours(build_dir, tmp_path / "hub", docs), "gte hub ntk")


def test_dynamic_ntk_and_yarn(build_dir, tmp_path):
    cases = {
        "dynamic": ("nomic_bert", {"rope_type": "dynamic", "rope_theta": 1000.0, "factor": 2.0}),
        "yarn": ("gte", {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
                         "original_max_position_embeddings": 512}),
    }
    for name, (family, rope) in cases.items():
        config = _config(family, rope_parameters=rope)
        docs = _docs(config)
        _model(config).save_pretrained(tmp_path / name)
        # Dynamic scaling keeps the longest length seen in the model: a fresh one per document.
        expected = {"mean": [], "cls": [], "last": []}
        for ids in docs:
            one = _reference(_model(config), [ids])
            for k in expected:
                expected[k] += one[k]
        _assert_close(expected, _ours(build_dir, tmp_path / name, docs), name)


def test_sharded_bf16_checkpoint(build_dir, saved, tmp_path):
    _, model, docs = saved["modernbert"]
    # The reference holds the bf16-rounded weights in fp32 (a cast of the whole model would also
    # round its rotary frequencies).
    rounded = _model(model.config)
    rounded.load_state_dict({k: v.to(torch.bfloat16).to(torch.float32) for k, v in model.state_dict().items()})
    copy = _model(model.config)
    copy.load_state_dict(model.state_dict())
    copy.to(torch.bfloat16).save_pretrained(tmp_path, max_shard_size="20KB")
    assert (tmp_path / "model.safetensors.index.json").exists()
    assert len(list(tmp_path.glob("model-*.safetensors"))) > 2
    _assert_close(_reference(rounded, docs), _ours(build_dir, tmp_path, docs), "sharded bf16")


def test_sentence_transformers_metadata(build_dir, saved, tmp_path):
    path, model, docs = saved["gte"]
    tool = pathlib.Path(build_dir) / "bin" / "longenc-embed-ids"
    st = tmp_path / "st"
    st.mkdir()
    for f in ("config.json", "model.safetensors"):
        (st / f).symlink_to(path / f)
    (st / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
    (st / "1_Pooling").mkdir()
    (st / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": 32, "pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}))
    (st / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 8192, "do_lower_case": False}))
    (st / "config_sentence_transformers.json").write_text(json.dumps(
        {"prompts": {"query": "search_query: ", "document": "search_document: "},
         "default_prompt_name": "document"}))
    info = json.loads(subprocess.run([str(tool), f"--model_dir={st}", "--info"], capture_output=True,
                                     text=True, check=True, timeout=120).stdout)
    assert info["family"] == "gte" and info["default_position_mode"] == "native"
    assert info["pooling"] == "cls" and info["normalize"] is False and info["max_seq_length"] == 8192
    assert info["prompts"] == {"query": "search_query: ", "document": "search_document: "}
    assert info["default_prompt_name"] == "document"
    # The model's CLS pooling is what the backend uses when a request does not choose.
    run = subprocess.run([str(tool), f"--model_dir={st}", "--threads=2"],
                         input=json.dumps({"token_ids": docs[2]}) + "\n", capture_output=True, text=True,
                         check=True, timeout=120)
    got = np.array(json.loads(run.stdout)["embedding"], dtype=np.float32)
    expected = _reference(model, [docs[2]])["cls"][0]
    assert np.abs(got - expected).max() <= 1e-5

    (st / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_max_tokens": True}))
    run = subprocess.run([str(tool), f"--model_dir={st}", "--info"], capture_output=True, text=True, timeout=120)
    assert run.returncode != 0 and "pooling_mode_max_tokens" in run.stderr


@pytest.mark.parametrize("variant", ["clustered", "iclustered", "cast", "yoso"])
def test_every_variant_runs_on_every_family(build_dir, saved, variant):
    # The variants see rotated queries and keys; ModernBERT's local layers stay banded.
    for family in ("xlm_roberta", "nomic_bert", "gte", "modernbert"):
        path, _, docs = saved[family]
        docs = docs[3:4]
        exact = _ours(build_dir, path, docs)
        approx = _ours(build_dir, path, docs, f"--attention={variant}",
                       "--attention_options=min_len_efficient=0")
        for e, a in zip(exact["mean"], approx["mean"]):
            assert np.isfinite(a).all(), f"{family} {variant}"
            cosine = float(np.dot(e, a) / (np.linalg.norm(e) * np.linalg.norm(a)))
            assert cosine > 0.5, f"{family} {variant}: cosine {cosine} with exact attention"
