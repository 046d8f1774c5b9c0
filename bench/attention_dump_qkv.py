"""Dump real MiniLM queries, keys and values of one layer for a long linux-doc text, as input
for bench/attention_bench.cc (fidelity of each attention variant to exact attention on
activations of the pretrained model rather than on random data).

Positions beyond the 512-entry table use position id mod 512 (the "recurrent" mode); layers
before `--layer` run exact SDPA attention.

  .venv/bin/python bench/attention_dump_qkv.py --tokens 32768 --layer 2 --out /tmp/qkv
writes /tmp/qkv.bin (float32 [3, H, N, D]: q, k, v) and /tmp/qkv.json (shape, source).
"""
import argparse
import glob
import gzip
import json

import numpy as np
import torch
from transformers import AutoTokenizer, BertModel


def linux_doc_text(min_chars):
    parts, total = [], 0
    for path in sorted(glob.glob("/usr/share/doc/linux-doc/Documentation/**/*.rst*", recursive=True)):
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rt", errors="replace") as f:
            parts.append(f.read())
        total += len(parts[-1])
        if total >= min_chars:
            break
    return "\n".join(parts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/all-MiniLM-L6-v2")
    ap.add_argument("--tokens", type=int, default=32768)
    ap.add_argument("--layer", type=int, default=2)
    ap.add_argument("--out", default="/tmp/qkv")
    args = ap.parse_args()
    torch.set_num_threads(2)
    tok = AutoTokenizer.from_pretrained(args.model)
    model = BertModel.from_pretrained(args.model, attn_implementation="sdpa").eval()
    ids = tok(linux_doc_text(args.tokens * 8), add_special_tokens=False)["input_ids"][: args.tokens - 2]
    ids = torch.tensor([[tok.cls_token_id] + ids + [tok.sep_token_id]])
    n = ids.shape[1]
    pos = (torch.arange(n) % model.config.max_position_embeddings)[None]
    captured = {}
    layer = model.encoder.layer[args.layer].attention.self

    def hook(module, inputs, kwargs):
        hidden = inputs[0] if inputs else kwargs["hidden_states"]
        h, d = module.num_attention_heads, module.attention_head_size
        split = lambda x: x.view(1, n, h, d).transpose(1, 2)[0]
        captured["qkv"] = torch.stack([split(module.query(hidden)), split(module.key(hidden)),
                                       split(module.value(hidden))])
        raise StopIteration  # nothing after this layer is needed

    layer.register_forward_pre_hook(hook, with_kwargs=True)
    with torch.inference_mode():
        try:
            model(input_ids=ids, position_ids=pos)
        except StopIteration:
            pass
    qkv = captured["qkv"].float().contiguous().numpy()
    qkv.tofile(args.out + ".bin")
    with open(args.out + ".json", "w") as f:
        json.dump({"shape": list(qkv.shape), "layer": args.layer, "tokens": n,
                   "source": "linux-doc Documentation/*.rst, positions mod 512"}, f)
    print("wrote", args.out + ".bin", qkv.shape)


if __name__ == "__main__":
    main()
