#!/usr/bin/env python3
"""Whole-encoder speed and memory of every attention variant (docs/BENCHMARKS.md).

For each N (tokens per document) and each method, one `longenc-encode` process encodes
max(1, 4096 // N) copies of one linux-doc document of exactly N tokens (bench/corpus.py), one
document per forward pass (--batch_tokens=N), and reports:
  - tokens/s: from longenc-encode's own clock, which starts after the model is loaded;
  - peak RSS of the whole process (ru_maxrss from wait4), model and LibTorch included;
  - the ceiling: a GEMM rate measured in this run (torch.matmul, same threads) divided by the
    FLOPs per token of the forward pass: 21.2 MFLOP for MiniLM-L6's linear layers plus the
    attention term of the method (cost model of docs/ATTENTION.md §5, `attention_flops`);
    each row's fraction of that ceiling is printed.
Methods run interleaved per N (exact first), so every ratio "variant vs exact" comes from
measurements taken minutes apart on the same load. The scaling exponent is the least-squares
slope of log(seconds per document) over log N for 4k ≤ N ≤ 64k.

Peer: sentence-transformers (same torch, same threads) on the same documents, chunked into
512-token windows (510 word pieces + [CLS]/[SEP]) and mean-pooled over windows, timed in its
own process after a warm-up; longenc's `full` with `--position_mode=chunk` is the same
computation inside longenc.

  .venv/bin/python bench/speed.py --binary build-speed/bin/longenc-encode \\
      --lengths 512,2048,4096,16384,65536,8192,32768,1024 --exact_max 16384 \\
      --out bench/results/speed.raw
  .venv/bin/python bench/speed.py --plot bench/results/speed.raw --png docs/benchmarks_speed.png

The raw results (JSON) go to bench/results/speed.raw, which git ignores.

Prints a markdown table per N and a summary of the goals of docs/BENCHMARKS.md.
"""
import argparse
import json
import math
import os
import pathlib
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

LINEAR_FLOPS_PER_TOKEN = 21.2e6  # MiniLM-L6: 6 layers x (4·384² + 2·384·1536) x 2 flops
LAYERS, HEADS, HEAD_DIM = 6, 12, 32

# (label, --attention, --attention_options, --position_mode); options spelled out so that the
# cost model below sees the values actually run.
METHODS = [
    ("full", "full", "", ""),
    ("clustered", "clustered", "", ""),
    ("iclustered", "iclustered", "topk=256", ""),
    ("yoso", "yoso", "", ""),
    ("cast", "cast", "", ""),
    ("full chunk", "full", "", "chunk"),
]

# Defaults of the variants as built (model/attention/*_attention.cc); used by the cost model
# when a method gives no option of that name.
DEFAULTS = {
    "clustered": {"clusters": 100, "bits": 63, "iterations": 10, "refine": 0},
    "iclustered": {"clusters": 128, "bits": 32, "iterations": 0, "refine": 2, "topk": 256},
    "yoso": {"tau": 8, "hashes": 32},
    "cast": {"clusters": 64, "kappa": 256},
}


def options_of(attention, options):
    merged = dict(DEFAULTS.get(attention, {}))
    for kv in filter(None, options.split(",")):
        k, v = kv.split("=")
        merged[k] = float(v) if v.replace(".", "").isdigit() else v
    return merged


def attention_flops(attention, options, n, position):
    """Attention FLOPs per token per forward (all heads and layers), docs/ATTENTION.md §5."""
    d = HEAD_DIM
    o = options_of(attention, options)
    if attention == "full":
        per_head = 4 * min(n, 512) * d if position == "chunk" else 4 * n * d
    elif n < 512:
        per_head = 4 * n * d  # min_len_efficient: exact below 512 tokens
    elif attention in ("clustered", "iclustered"):
        c, b = min(o["clusters"], n), o["bits"]
        per_head = (2 * d * b                       # hashing
                    + (o["iterations"] + 1) * 2 * b * c  # Hamming distances as a GEMM
                    + (o.get("refine", 0) + 1) * 4 * c * d  # centroids + refinement rounds
                    + 4 * c * d)                    # centroid logits and their values
        if attention == "iclustered":
            per_head += 4 * min(o["topk"], n) * d
    elif attention == "yoso":
        per_head = 2 * 2 * d * o["hashes"] * o["tau"] + 2 * o["hashes"] * d
    elif attention == "cast":
        nc, kappa = o["clusters"], o["kappa"]
        per_head = 4 * nc * d + 4 * nc * kappa * kappa * d / n + 2 * nc * d
    else:
        raise ValueError(attention)
    return per_head * HEADS * LAYERS


def gemm_rate(threads):
    import torch
    torch.set_num_threads(threads)
    a, b = torch.randn(4096, 384), torch.randn(384, 1536)
    torch.matmul(a, b)
    best = math.inf
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(10):
            torch.matmul(a, b)
        best = min(best, (time.perf_counter() - start) / 10)
    return 2 * 4096 * 384 * 1536 / best


def run_longenc(binary, attention, options, position, ids, threads, env):
    copies = max(1, 4096 // len(ids))
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
        for i in range(copies):
            f.write(json.dumps({"id": str(i), "token_ids": ids}) + "\n")
    cmd = [str(binary), f"--attention={attention}", f"--attention_options={options}",
           f"--threads={threads}", f"--max_length={max(len(ids), 512)}",
           f"--batch_tokens={len(ids)}", "--progress=true", f"--input={f.name}"]
    if position:
        cmd.append(f"--position_mode={position}")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **env})
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    os.unlink(f.name)
    if status != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {stderr[-1000:]}")
    last = [line for line in stderr.replace("\r", "\n").splitlines() if "tokens/s" in line][-1]
    tokens_per_s = float(last.split(",")[-1].split()[0])
    return {"tokens_per_s": tokens_per_s, "seconds_per_doc": len(ids) / tokens_per_s,
            "peak_rss_mb": usage.ru_maxrss / 1024, "copies": copies,
            "cpu_seconds": usage.ru_utime + usage.ru_stime}


def st_child(n, threads):
    """Runs in a child process: sentence-transformers, chunked at 512, prints JSON."""
    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer
    import corpus
    torch.set_num_threads(threads)
    ids = corpus.concatenated_ids(n, seed=0)[1:-1]
    model = SentenceTransformer(str(corpus.MODEL_DIR), device="cpu")
    model.max_seq_length = 512
    tok = model.tokenizer
    windows = [ids[i:i + 510] for i in range(0, len(ids), 510)]
    texts = [tok.decode(w) for w in windows]  # re-tokenised by the model: same windows ±1
    copies = max(1, 4096 // n)
    model.encode(texts[:1])  # warm-up
    start = time.perf_counter()
    for _ in range(copies):
        emb = model.encode(texts, batch_size=8, convert_to_numpy=True)
        doc = emb.mean(0)
        doc /= np.linalg.norm(doc)
    seconds = (time.perf_counter() - start) / copies
    print(json.dumps({"seconds_per_doc": seconds, "tokens_per_s": n / seconds}))


def run_st(n, threads):
    proc = subprocess.Popen([sys.executable, __file__, "--st_child", str(n),
                             "--threads", str(threads)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise RuntimeError("sentence-transformers child failed")
    row = json.loads(out.strip().splitlines()[-1])
    row["peak_rss_mb"] = usage.ru_maxrss / 1024
    row["cpu_seconds"] = usage.ru_utime + usage.ru_stime
    return row


def slope(points):
    xs = [math.log(n) for n, _ in points]
    ys = [math.log(s) for _, s in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return (sum((x - mx) * (y - my) for x, y in zip(xs, ys)) /
            sum((x - mx) ** 2 for x in xs))


def load(paths):
    """The first raw file, plus the rows of methods it lacks from each later one (e.g. the
    chunked baselines of an earlier run whose code path did not change)."""
    data = json.load(open(paths[0]))
    for path in paths[1:]:
        have = {r["label"] for r in data["rows"]}
        data["rows"] += [r for r in json.load(open(path))["rows"] if r["label"] not in have]
    return data


def report(data):
    rows = data["rows"]
    if data.get("env"):
        print("longenc-encode environment: " +
              " ".join(f"{k}={v}" for k, v in data["env"].items()) + "\n")
    # The ceiling is the best GEMM rate seen in the run: on a shared machine a single
    # measurement catches whatever share of the core it was given at that moment.
    rate = max([data["gemm_flops"]] + data.get("gemm_flops_more", []))
    print(f"GEMM rate in this run (best of {1 + len(data.get('gemm_flops_more', []))}): "
          f"{rate / 1e9:.1f} GFLOP/s ({data['threads']} threads)\n")
    labels = [m[0] for m in METHODS if any(r["label"] == m[0] for r in rows)]
    if any(r["label"] == "sentence-transformers" for r in rows):
        labels.append("sentence-transformers")
    print("| method | N | tokens/s | s / document | × exact speed | peak RSS MB | "
          "GFLOP / doc | fraction of GEMM ceiling |")
    print("|---|---|---|---|---|---|---|---|")
    exact = {r["n"]: r for r in rows if r["label"] == "full"}
    for n in sorted({r["n"] for r in rows}):
        for label in labels:
            for r in rows:
                if r["n"] != n or r["label"] != label:
                    continue
                flops = r.get("flops_per_token")
                frac = r["tokens_per_s"] * flops / rate if flops else float("nan")
                ratio = (exact[n]["seconds_per_doc"] / r["seconds_per_doc"]
                         if n in exact else float("nan"))
                gflop = f"{flops * n / 1e9:.1f}" if flops else "—"
                ratio_text = "—" if math.isnan(ratio) else f"{ratio:.2f}"
                print(f"| {label} | {n} | {r['tokens_per_s']:.0f} | {r['seconds_per_doc']:.2f} | "
                      f"{ratio_text} | {r['peak_rss_mb']:.0f} | {gflop} | "
                      f"{'—' if math.isnan(frac) else f'{frac:.2f}'} |")
    # From 8k as well: below 8,192 tokens i-clustered's default runs exact attention.
    for low in (4096, 8192):
        print(f"\nScaling exponent (slope of log s/doc vs log N, {low // 1024}k ≤ N ≤ 64k):")
        for label in labels:
            pts = sorted((r["n"], r["seconds_per_doc"]) for r in rows
                         if r["label"] == label and low <= r["n"] <= 65536)
            if len(pts) >= 2:
                print(f"- {label}: {slope(pts):.3f} over N = {pts[0][0]} … {pts[-1][0]}")


def plot(data, png):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = data["rows"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for label in dict.fromkeys(r["label"] for r in rows):
        pts = sorted((r["n"], r["tokens_per_s"], r["peak_rss_mb"]) for r in rows
                     if r["label"] == label)
        ax1.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
        ax2.plot([p[0] for p in pts], [p[2] for p in pts], marker="o", label=label)
    for ax, title in ((ax1, "encoder throughput (tokens/s)"), (ax2, "peak RSS (MB)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("tokens per document (N)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    ax2.axhline(3072, color="red", linestyle="--", linewidth=1, label="3 GB goal")
    ax1.legend(fontsize=8)
    fig.suptitle(f"longenc-encode, {data['threads']} intra-op thread(s) per process, "
                 f"shared 2-core machine ({data['date']})")
    fig.tight_layout()
    fig.savefig(png, dpi=110)


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--binary", default=str(ROOT / "build" / "bin" / "longenc-encode"))
    p.add_argument("--lengths", default="512,1024,2048,4096,8192,16384,32768,65536")
    p.add_argument("--exact_max", type=int, default=16384,
                   help="largest N for exact attention (quadratic: 64k takes hours here)")
    p.add_argument("--methods", default=",".join(m[0] for m in METHODS) + ",sentence-transformers")
    p.add_argument("--threads", type=int, default=1,
                   help="intra-op threads of every method (1: on a shared, oversubscribed "
                        "machine OpenMP barriers of 2 threads cost more than they bring)")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "speed.raw"))
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                   help="environment of every longenc-encode process (repeatable), e.g. "
                        "MALLOC_MMAP_THRESHOLD_=268435456")
    p.add_argument("--plot", nargs="+", metavar="RAW",
                   help="only plot these JSON files (later ones add only methods the first "
                        "lacks)")
    p.add_argument("--report", nargs="+", metavar="RAW",
                   help="only print the tables of these JSON files (merged as --plot)")
    p.add_argument("--png", default=str(ROOT / "docs" / "benchmarks_speed.png"))
    p.add_argument("--st_child", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.st_child:
        return st_child(args.st_child, args.threads)
    if args.plot:
        return plot(load(args.plot), args.png)
    if args.report:
        return report(load(args.report))

    import corpus
    wanted = args.methods.split(",")
    data = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "threads": args.threads,
            "binary": args.binary, "gemm_flops": gemm_rate(args.threads), "rows": [],
            "loadavg_start": os.getloadavg(),
            "env": dict(e.split("=", 1) for e in args.env)}
    print(f"GEMM rate {data['gemm_flops'] / 1e9:.1f} GFLOP/s", file=sys.stderr, flush=True)
    data["gemm_flops_more"] = []
    for n in [int(x) for x in args.lengths.split(",")]:
        data["gemm_flops_more"].append(gemm_rate(args.threads))
        ids = corpus.concatenated_ids(n, seed=0)
        for label, attention, options, position in METHODS:
            if label not in wanted or (attention == "full" and not position and n > args.exact_max):
                continue
            row = run_longenc(args.binary, attention, options, position, ids, args.threads,
                              data["env"])
            row.update(label=label, n=n, attention=attention, options=options, position=position,
                       flops_per_token=LINEAR_FLOPS_PER_TOKEN +
                       attention_flops(attention, options, n, position),
                       loadavg=os.getloadavg()[0])
            data["rows"].append(row)
            print(f"{label} N={n}: {row['tokens_per_s']:.0f} tokens/s, "
                  f"{row['peak_rss_mb']:.0f} MB, load {row['loadavg']:.1f}",
                  file=sys.stderr, flush=True)
            pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            json.dump(data, open(args.out, "w"), indent=1)
        if "sentence-transformers" in wanted:
            row = run_st(n, args.threads)
            row.update(label="sentence-transformers", n=n, flops_per_token=LINEAR_FLOPS_PER_TOKEN +
                       attention_flops("full", "", n, "chunk"), loadavg=os.getloadavg()[0])
            data["rows"].append(row)
            print(f"sentence-transformers N={n}: {row['tokens_per_s']:.0f} tokens/s",
                  file=sys.stderr, flush=True)
            json.dump(data, open(args.out, "w"), indent=1)
    data["loadavg_end"] = os.getloadavg()
    json.dump(data, open(args.out, "w"), indent=1)
    report(data)


if __name__ == "__main__":
    main()
