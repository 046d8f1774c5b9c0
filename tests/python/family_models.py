"""Small random models of every encoder family, as transformers 5.23 builds them; shared by the
parity tests from token ids (test_family_parity.py) and from text (test_family_text_parity.py).

config_of(family, **overrides) is a small config in the transformers 5 dialect (overrides replace
any key: a tokenizer's vocabulary size and special ids); random_model(config) is the family's
base model with eager attention and weights large enough that positions matter.
"""
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

FAMILIES = ["xlm_roberta", "nomic_bert", "gte", "modernbert"]
SIZES = dict(vocab_size=120, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
             intermediate_size=48)


def config_of(family, **overrides):
    """A small config of `family` (or "bert", the control) in the transformers 5 dialect."""
    if family == "bert":
        return transformers.BertConfig(**{**SIZES, "max_position_embeddings": 2200, **overrides})
    if family == "xlm_roberta":
        return transformers.XLMRobertaConfig(**{**SIZES, "max_position_embeddings": 2200 + 2,
                                                "pad_token_id": 1, "type_vocab_size": 1, **overrides})
    if family == "nomic_bert":
        return transformers.NomicBertConfig(**{**SIZES, "max_position_embeddings": 512, **overrides})
    if family == "gte":
        return transformers.GteConfig(**{**SIZES, "max_position_embeddings": 512, "pad_token_id": 0,
                                         "type_vocab_size": 0, **overrides})
    if family == "modernbert":
        return transformers.ModernBertConfig(**{
            **SIZES, "num_hidden_layers": 4, "max_position_embeddings": 512, "pad_token_id": 0,
            "bos_token_id": 2, "eos_token_id": 3, "cls_token_id": 2, "sep_token_id": 3,
            "local_attention": 16, "global_attn_every_n_layers": 3, **overrides})
    raise ValueError(family)


def random_model(config, seed=0):
    """transformers' base model with weights large enough that positions matter."""
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = transformers.AutoModel.from_config(config, attn_implementation="eager")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1 and ("norm" in name.lower() or "LayerNorm" in name):
                p.copy_(1 + 0.2 * torch.randn_like(p) if name.endswith("weight") else 0.2 * torch.randn_like(p))
            else:
                p.normal_(0, 0.2)
    return model.eval()
