#!/usr/bin/env python3
"""longenc's clustered attention side by side with idiap/fast-transformers'.

On the real MiniLM queries/keys/values written by bench/attention_dump_qkv.py, truncated to each
N, one process runs fast-transformers' ClusteredAttention and ImprovedClusteredAttention and,
right after them for the same N, longenc's `attention_bench` with the same settings, so both
sides are measured minutes apart under the same load. Exact attention (torch SDPA) is the
reference for both sides' fidelity.

fast-transformers is not a dependency: --ft_path names a directory holding its package with the
CPU extensions built in place against this torch (docs/BENCHMARKS.md §4 says how it was built);
it is only added to sys.path.

Settings: each pair uses longenc's defaults (model/attention/clustered_attention.cc,
iclustered_attention.cc), passed explicitly to both sides:
  - clustered: 100 clusters, 63 bits, 10 Hamming Lloyd rounds (= fast-transformers' own
    registry defaults);
  - iclustered: 128 clusters, top-256, 32 bits, no Hamming Lloyd round, refine=2.
    fast-transformers has no L2 refinement, so a second longenc row with refine=0 is the same
    algorithm as fast-transformers', and a third pair adds 10 Hamming Lloyd rounds on both
    sides (the paper's clustering, which times both sides' k-means kernels).
Rounds: fast-transformers' CPU `cluster(iterations=I)` runs I - 1 assign/update rounds and a
final assignment; longenc's `iterations=I` runs I rounds and a final assignment, so
fast-transformers gets iterations = longenc's + 1 (the same number of centroid updates).

Timing: wall clock of one forward of B = 1, 12 heads, head dim 32; best of --reps for
N <= 4096 and one run above (as attention_bench does); no warm-up on either side. Threads:
--threads for torch, OpenMP (fast-transformers' kernels) and attention_bench. Fidelity: mean
cosine of the output rows (head, token) to exact attention and the relative Frobenius error,
as attention_bench computes them. Peak RSS growth: the kernel's high-water mark, reset through
/proc/self/clear_refs before each run, minus the RSS before it (as attention_bench).

  .venv/bin/python bench/attention_dump_qkv.py --tokens 32768 --layer 2 --out /tmp/qkv_l2
  .venv/bin/python bench/fast_transformers_compare.py --qkv /tmp/qkv_l2 \\
      --ft_path /tmp/ftbench-src --binary build/bin/attention_bench \\
      --n 1024,4096,16384,32768 --threads 1 --repeat 3

Prints one markdown table of every measurement (the last column is fast-transformers' seconds
over longenc's on the paired row: > 1 means longenc is faster), then, per N and pair, the
median and range of that ratio over the --repeat sweeps.
"""
import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time

# longenc variant -> (options given to attention_bench, fast-transformers class, its kwargs).
PAIRS = [
    ("clustered", {"clusters": 100, "bits": 63, "iterations": 10, "refine": 0},
     "ClusteredAttention", {"clusters": 100, "bits": 63, "iterations": 11}),
    ("iclustered", {"clusters": 128, "topk": 256, "bits": 32, "iterations": 0, "refine": 2},
     "ImprovedClusteredAttention", {"clusters": 128, "topk": 256, "bits": 32, "iterations": 1}),
    ("iclustered", {"clusters": 128, "topk": 256, "bits": 32, "iterations": 0, "refine": 0},
     "ImprovedClusteredAttention", {"clusters": 128, "topk": 256, "bits": 32, "iterations": 1}),
    ("iclustered", {"clusters": 128, "topk": 256, "bits": 32, "iterations": 10, "refine": 0},
     "ImprovedClusteredAttention", {"clusters": 128, "topk": 256, "bits": 32, "iterations": 11}),
]
HEADS, DIM = 12, 32


def status_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def timed(fn, reps):
    """Best wall time of `reps` calls, peak RSS growth (MB) and the last output."""
    best, peak_mb, out = float("inf"), 0.0, None
    for _ in range(reps):
        out = None
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before = status_kb("VmRSS")
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
        peak_mb = max(peak_mb, (status_kb("VmHWM") - before) / 1024)
    return best, peak_mb, out


def fidelity(torch, out, exact):
    rel = ((out - exact).norm() / exact.norm()).item()
    return rel, torch.nn.functional.cosine_similarity(out, exact, dim=-1).mean().item()


def options_text(options):
    return ";".join(f"{k}={v}" for k, v in options.items())


def longenc_runs():
    """PAIRS indices grouped into attention_bench runs (one option set per variant per run)."""
    runs = []
    for i, (variant, _, _, _) in enumerate(PAIRS):
        run = next((r for r in runs if all(PAIRS[j][0] != variant for j in r)), None)
        if run is None:
            runs.append(run := [])
        run.append(i)
    return runs


def run_longenc(binary, qkv, n, reps, threads, pair_indices):
    """attention_bench rows {variant: (seconds, peak MB, rel. error, cosine)} for one N."""
    variants = [PAIRS[i][0] for i in pair_indices]
    cmd = [binary, f"--qkv={qkv}", f"--n={n}", f"--reps={reps}", f"--threads={threads}",
           "--variants=" + ",".join(["full"] + variants)]
    cmd += [f"--options={PAIRS[i][0]}:{options_text(PAIRS[i][1])}" for i in pair_indices]
    text = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 7 and cells[1] == str(n):
            rows[cells[0]] = tuple(float(c) for c in (cells[2], cells[4], cells[5], cells[6]))
    return shlex.join(cmd), rows


def measure(n, reps, args, torch, np, ft_attention, ft_masks, real, row):
    """One N: exact, every fast-transformers configuration, then longenc; returns the ratios."""
    FullMask, LengthMask = ft_masks
    q, k, v = (real[i, :, :n].unsqueeze(0).contiguous() for i in range(3))  # [1, H, N, D]
    with torch.no_grad():
        seconds, peak_mb, exact = timed(
            lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v), reps)
        row(n, "torch", "full (SDPA)", "—", "—", seconds, peak_mb, 0.0, 1.0)
        # fast-transformers takes [B, N, H, D]. Its clustered modules only read
        # attn_mask.all_ones, so a 1×1 full mask stands in for the N×N one.
        ft_q, ft_k, ft_v = (x.transpose(1, 2).contiguous() for x in (q, k, v))
        attn_mask = FullMask(N=1)
        lengths = LengthMask(torch.tensor([n]), max_len=n)
        ft_seconds = {}  # (class, kwargs) -> seconds; each configuration runs once per N
        for _, _, ft_class, ft_kwargs in PAIRS:
            key = (ft_class, options_text(ft_kwargs))
            if key in ft_seconds:
                continue
            module = getattr(ft_attention, ft_class)(attention_dropout=0.0, **ft_kwargs).eval()
            torch.manual_seed(0)
            np.random.seed(0)
            seconds, peak_mb, out = timed(
                lambda: module(ft_q, ft_k, ft_v, attn_mask, lengths, lengths), reps)
            rel, cos = fidelity(torch, out.transpose(1, 2), exact)
            row(n, "fast-transformers", f"{ft_class} {key[1]}", ft_kwargs["clusters"],
                ft_kwargs.get("topk", "—"), seconds, peak_mb, rel, cos)
            ft_seconds[key] = seconds
    ratios, commands = {}, []
    for pair_indices in longenc_runs():
        cmd, rows = run_longenc(args.binary, args.qkv, n, reps, args.threads, pair_indices)
        commands.append(cmd)
        for i in pair_indices:
            variant, ours, ft_class, ft_kwargs = PAIRS[i]
            seconds, peak_mb, rel, cos = rows[variant]
            ratios[i] = ft_seconds[(ft_class, options_text(ft_kwargs))] / seconds
            row(n, "longenc", f"{variant} {options_text(ours)}", ours["clusters"],
                ours.get("topk", "—"), seconds, peak_mb, rel, cos, f"{ratios[i]:.2f}")
        row(n, "longenc", "full (attention_bench)", "—", "—", *rows["full"])
    return ratios, commands


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--qkv", required=True, help="prefix of the .bin/.json dump")
    ap.add_argument("--ft_path", required=True, help="directory holding fast_transformers/")
    ap.add_argument("--binary", default="build/bin/attention_bench")
    ap.add_argument("--n", default="1024,4096,16384,32768")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=2, help="best of, for N <= 4096")
    ap.add_argument("--repeat", type=int, default=1, help="sweeps over all N")
    args = ap.parse_args()

    # fast-transformers' kernels use OpenMP, which torch.set_num_threads may not reach.
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import numpy as np
    import torch
    sys.path.insert(0, args.ft_path)
    import fast_transformers.attention as ft_attention
    from fast_transformers.masking import FullMask, LengthMask

    torch.set_num_threads(args.threads)
    with open(args.qkv + ".json") as f:
        tokens = json.load(f)["tokens"]
    real = torch.from_file(args.qkv + ".bin", size=3 * HEADS * tokens * DIM,
                           dtype=torch.float32).view(3, HEADS, tokens, DIM)
    load = lambda: " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.qkv} ({tokens} tokens), "
          f"load average before: {load()}")
    print("| sweep | N | implementation | variant | clusters | topk | seconds | tokens/s | "
          "peak RSS growth MB | rel. error | mean cosine | longenc / ft speed |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    lengths = [n for n in (int(x) for x in args.n.split(",")) if n <= tokens]
    ratios = {}  # (n, pair index) -> [ratio per sweep]
    commands = []
    for sweep in range(1, args.repeat + 1):
        def row(n, impl, variant, clusters, topk, seconds, peak_mb, rel, cos, ratio="—"):
            print(f"| {sweep} | {n} | {impl} | {variant} | {clusters} | {topk} | {seconds:.3f} | "
                  f"{n / seconds:.0f} | {peak_mb:.0f} | {rel:.4f} | {cos:.4f} | {ratio} |",
                  flush=True)

        for n in lengths:
            reps = args.reps if n <= 4096 else 1
            sweep_ratios, sweep_commands = measure(n, reps, args, torch, np, ft_attention,
                                                   (FullMask, LengthMask), real, row)
            for i, ratio in sweep_ratios.items():
                ratios.setdefault((n, i), []).append(ratio)
            if sweep == 1:
                commands += sweep_commands
    print(f"\nload average after: {load()}")
    print(f"\nlongenc / fast-transformers speed over {args.repeat} sweep(s): median (min–max)\n")
    print("| N | longenc | fast-transformers | median | min–max |")
    print("|---|---|---|---|---|")
    for (n, i), values in ratios.items():
        _, ours, ft_class, ft_kwargs = PAIRS[i]
        print(f"| {n} | {PAIRS[i][0]} {options_text(ours)} | {ft_class} {options_text(ft_kwargs)} "
              f"| {statistics.median(values):.2f} | {min(values):.2f}–{max(values):.2f} |")
    print("\nlongenc commands (first sweep):\n" + "\n".join("  " + c for c in commands))


if __name__ == "__main__":
    main()
