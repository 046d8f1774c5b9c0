"""Python port of longenc's i-clustered attention inside Hugging Face MiniLM, used to explore
settings quickly: document-embedding cosine to exact attention on linux-doc text.

  .venv/bin/python bench/speed_iclustered_proto.py N DOCS CONFIG...
  CONFIG = label:clusters=25,topk=32,bits=63,iters=10,euclid=0[,center=1|2][,plain=1]

  iters   Hamming Lloyd rounds (as `iterations`), euclid  L2 Lloyd rounds (as `refine`),
  center  hash queries after subtracting their mean (2: and scaling to unit RMS),
  plain   clustered attention without the top-k part.

Same algorithm as model/attention/clustering.cc (hash-rank initialisation, Hamming k-means,
L2 refinement, top-k correction) but its own seeded planes and linear interpolation of the
position table for N > 512, so cosines differ slightly from bench/quality/fidelity.py (which
runs the real binary and is the reference for every stated figure). Single document batch,
no padding.
"""
import math
import sys
import time

import torch
import torch.nn.functional as F
from transformers import BertModel
from transformers.models.bert import modeling_bert

sys.path.insert(0, "/work/main/bench")
import corpus

torch.set_num_threads(2)
CFG = None
LAYER_SEED = [0]


def hash_bits(x, planes):  # x [H,N,D], planes [H,bits,D+1]
    d = x.shape[-1]
    proj = torch.matmul(x, planes[:, :, :d].transpose(1, 2))
    return (proj > planes[:, :, d].unsqueeze(1)).float()


def hamming_kmeans(bits, C, iters):
    H, N, B = bits.shape
    powers = 2 ** torch.arange(B, dtype=torch.long)
    hashes = (bits.long() * powers).sum(-1)
    order = torch.sort(hashes, stable=True, dim=-1).indices
    ranks = ((torch.arange(C) * 2 + 1) * N) // (2 * C)
    init = order[:, ranks]
    mu = torch.gather(bits, 1, init.unsqueeze(-1).expand(-1, -1, B))
    xp = bits.sum(-1, keepdim=True)
    sb = bits * 2 - 1
    for it in range(iters + 1):
        dist = xp + mu.sum(-1).unsqueeze(-2) - 2 * bits @ mu.transpose(1, 2)
        md, a = dist.min(-1)
        if it == iters:
            break
        votes = torch.zeros(H, C, B).scatter_add_(1, a.unsqueeze(-1).expand(-1, -1, B), sb)
        counts = torch.zeros(H, C).scatter_add_(1, a, torch.ones(H, N))
        maj = (votes > 0).float()
        empty = counts == 0
        far = torch.topk(md, min(C, N), -1).indices
        er = (empty.long().cumsum(-1) - 1).clamp(0, min(C, N) - 1)
        rs = torch.gather(bits, 1, torch.gather(far, 1, er).unsqueeze(-1).expand(-1, -1, B))
        mu = torch.where(empty.unsqueeze(-1), rs, maj)
    return a


def centroids_of(q, a, C):
    H, N, D = q.shape
    oh = F.one_hot(a, C).float()  # [H,N,C]
    cnt = oh.sum(1).clamp_min(1)
    return oh.transpose(1, 2) @ q / cnt.unsqueeze(-1), cnt


def euclid_refine(q, a, C, iters):
    for _ in range(iters):
        c, cnt = centroids_of(q, a, C)
        d = (c * c).sum(-1).unsqueeze(1) - 2 * q @ c.transpose(1, 2)  # [H,N,C]
        # keep empty clusters unattractive
        d = d.masked_fill((cnt <= 0.5).unsqueeze(1), float("inf"))
        a = d.argmin(-1)
    return a


def iclustered(q, k, v, cfg, planes):
    H, N, D = q.shape
    C, kk = cfg["clusters"], min(cfg["topk"], N)
    xq = q
    if cfg.get("center"):
        xq = q - q.mean(1, keepdim=True)
        if cfg.get("center") == 2:
            xq = xq / xq.pow(2).mean((1, 2), keepdim=True).sqrt()
    bits = hash_bits(xq, planes)
    if cfg["iters"] >= 0:
        a = hamming_kmeans(bits, C, cfg["iters"])
    a = euclid_refine(q, a, C, cfg.get("euclid", 0))
    cent, _ = centroids_of(q, a, C)
    s = 1 / math.sqrt(D)
    logits = cent @ k.transpose(1, 2) * s  # [H,C,N]
    tl, ti = logits.topk(kk, -1)
    mass = torch.exp(torch.logsumexp(tl, -1) - torch.logsumexp(logits, -1))
    bottom = torch.softmax(logits, -1).scatter(-1, ti, 0.0)
    bout = bottom @ v  # [H,C,D]
    if cfg.get("plain"):
        return (torch.softmax(logits, -1) @ v).gather(1, a.unsqueeze(-1).expand(-1, -1, D))
    idx = torch.gather(ti, 1, a.unsqueeze(-1).expand(-1, -1, kk))  # [H,N,kk]
    kg = torch.gather(k, 1, idx.reshape(H, N * kk, 1).expand(-1, -1, D)).view(H, N, kk, D)
    vg = torch.gather(v, 1, idx.reshape(H, N * kk, 1).expand(-1, -1, D)).view(H, N, kk, D)
    lg = (kg @ q.unsqueeze(-1)).squeeze(-1) * s
    p = torch.softmax(lg, -1) * mass.gather(1, a).unsqueeze(-1)
    return bout.gather(1, a.unsqueeze(-1).expand(-1, -1, D)) + (p.unsqueeze(-2) @ vg).squeeze(-2)


PLANES = {}


def attn(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kw):
    if CFG is None:
        out = F.scaled_dot_product_attention(query, key, value)
        return out.transpose(1, 2).contiguous(), None
    layer = id(module)
    if layer not in PLANES:
        g = torch.Generator().manual_seed(len(PLANES) + 1234)
        PLANES[layer] = torch.randn(query.shape[1], CFG["bits"], query.shape[-1] + 1, generator=g)
        if CFG.get("hash_bias", 1) == 0:
            PLANES[layer][:, :, -1] = 0
    out = iclustered(query[0], key[0], value[0], CFG, PLANES[layer]).unsqueeze(0)
    return out.transpose(1, 2).contiguous(), None


modeling_bert.eager_attention_forward = attn

model = BertModel.from_pretrained("/work/main/models/all-MiniLM-L6-v2", attn_implementation="eager").eval()
table = model.embeddings.position_embeddings.weight.data.clone()


def embed(ids):
    n = len(ids)
    if n > 512:
        t = F.interpolate(table.T.unsqueeze(0), size=n, mode="linear", align_corners=True)[0].T
    else:
        t = table[:n]
    emb = torch.nn.Embedding(n, t.shape[1])
    emb.weight.data = t.contiguous()
    model.embeddings.position_embeddings = emb
    x = torch.tensor([ids])
    with torch.inference_mode():
        h = model(input_ids=x, position_ids=torch.arange(n)[None], token_type_ids=torch.zeros_like(x)).last_hidden_state[0]
    e = h.mean(0)
    return e / e.norm()


def parse(s):
    name, _, opts = s.partition(":")
    cfg = dict(clusters=25, topk=32, bits=63, iters=10)
    for kv in filter(None, opts.split(",")):
        k_, v_ = kv.split("=")
        cfg[k_] = int(v_)
    return cfg


if __name__ == "__main__":
    global_n = int(sys.argv[1])
    ndocs = int(sys.argv[2])
    docs = [corpus.concatenated_ids(global_n, seed=s) for s in range(ndocs)]
    CFG = None
    exact = [embed(d) for d in docs]
    for spec in sys.argv[3:]:
        CFG = parse(spec)
        PLANES.clear()
        t0 = time.time()
        cos = [float(embed(d) @ e) for d, e in zip(docs, exact)]
        print(f"N={global_n} {spec}: mean {sum(cos)/len(cos):.5f} min {min(cos):.5f} "
              f"({time.time()-t0:.1f}s)", flush=True)
