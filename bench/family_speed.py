#!/usr/bin/env python3
"""Tokens/s and peak RSS of exact attention and every efficient variant on full-size models of
the long-document families (issue 13 item 7; results in docs/BENCHMARKS.md).

Models (random weights: the speed of a forward pass does not depend on their values), written
once with transformers' save_pretrained into --cache_dir, outside the repository:
  nomic_bert  nomic-embed-text-v1.5's shape: 12 layers x 768, 12 heads, SwiGLU 3072,
              RoPE theta 1000, trained length 2048 (longer documents run at native positions)
  gte         gte-base-en-v1.5's shape: 12 x 768, 12 heads, GeGLU 3072, RoPE with NTK x2
  modernbert  ModernBERT-base's shape: 22 x 768, 12 heads, GeGLU 1152, local_attention 128,
              a global layer every 3 (8 of 22); the variants replace the global layers, the
              local ones run banded attention whatever --attention says
Each gets a vocab.txt with its special tokens at the published ids, since longenc-encode loads
a tokenizer even for token-id input.

For each (model, N, repeat) one `longenc-encode` process per method encodes max(1,
--min_tokens // N) copies of one document of exactly N random token ids ([CLS] ... [SEP]), one
document per forward pass (--batch_tokens=N), with --threads intra-op threads under `nice`, and
this script records:
  - tokens/s from longenc-encode's own clock (it starts after the model is loaded);
  - peak RSS of the whole process (ru_maxrss from wait4: model and LibTorch included);
  - the 1-minute load average when the process ended.
Methods alternate within each (model, N, repeat), exact first on even repeats and last on odd
ones, so every "x exact" ratio compares runs minutes apart under the same load; the table gives
the median over repeats of tokens/s and of the per-repeat ratio. Exact attention runs only up to
--max_exact_tokens (also passed to longenc-encode, whose default refuses `full` past 16,384).

Arithmetic ceiling at N tokens (12 x 768, gated MLP): linear layers 18.9 MFLOP per token and
layer (4*768^2 + 3*768*3072 multiply-adds), exact attention 3,072*N, so free attention would be
(18.9M + 3,072*N) / 18.9M faster than exact: 6.3x at 32k. The bound is printed per row.

  .venv/bin/python bench/family_speed.py --lengths 512,2048 --repeats 1     # a quick check
  .venv/bin/python bench/family_speed.py --out /tmp/family_speed.jsonl     # the full table
  .venv/bin/python bench/family_speed.py --report /tmp/family_speed.jsonl  # table only

Raw rows are appended to --out as JSON lines as they are measured, so an interrupted run keeps
what it measured; --report prints the table of one or more such files.
"""
import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_CACHE = pathlib.Path(os.environ.get("XDG_CACHE_HOME", pathlib.Path.home() / ".cache")) \
    / "longenc" / "family_speed"
VARIANTS = ["full", "clustered", "iclustered", "cast", "yoso"]

# Shapes of the published models (hub config.json; see each family's test in
# tests/python/test_family_parity.py for the dialect), plus the special ids the documents use.
MODELS = {
    "nomic_bert": dict(
        config=dict(vocab_size=30528, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                    intermediate_size=3072, max_position_embeddings=2048, type_vocab_size=2,
                    pad_token_id=0, layer_norm_eps=1e-12),
        specials={0: "[PAD]", 100: "[UNK]", 101: "[CLS]", 102: "[SEP]", 103: "[MASK]"},
        cls=101, sep=102, ids=(1000, 30522),
        # linear multiply-adds per token and layer: q,k,v,o + fc11, fc12, fc2
        linear_macs=4 * 768 ** 2 + 3 * 768 * 3072, layers=12, global_layers=12),
    "gte": dict(
        config=dict(vocab_size=30528, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                    intermediate_size=3072, max_position_embeddings=8192, type_vocab_size=0,
                    pad_token_id=0, layer_norm_eps=1e-12,
                    rope_parameters={"rope_type": "linear", "factor": 2.0 ** (2 / 64),
                                     "rope_theta": 1.0e6}),
        specials={0: "[PAD]", 100: "[UNK]", 101: "[CLS]", 102: "[SEP]", 103: "[MASK]"},
        cls=101, sep=102, ids=(1000, 30522),
        linear_macs=4 * 768 ** 2 + 3 * 768 * 3072, layers=12, global_layers=12),
    "modernbert": dict(
        config=dict(vocab_size=50368, hidden_size=768, num_hidden_layers=22, num_attention_heads=12,
                    intermediate_size=1152, hidden_activation="gelu", max_position_embeddings=8192,
                    local_attention=128, global_attn_every_n_layers=3, norm_eps=1e-5,
                    pad_token_id=50283, bos_token_id=50281, eos_token_id=50282,
                    cls_token_id=50281, sep_token_id=50282),
        specials={50280: "[UNK]", 50281: "[CLS]", 50282: "[SEP]", 50283: "[PAD]", 50284: "[MASK]"},
        cls=50281, sep=50282, ids=(100, 50280),
        # Wqkv, Wo + Wi (2 x 1152 rows) and Wo of the MLP
        linear_macs=4 * 768 ** 2 + 3 * 768 * 1152, layers=22, global_layers=8),
}
MODEL_CLASSES = {"nomic_bert": "NomicBertConfig", "gte": "GteConfig",
                 "modernbert": "ModernBertConfig"}


def model_dir(name, cache_dir):
    """The model directory of `name` under cache_dir, written on first use by a child process:
    ru_maxrss survives fork and exec, so this process must never hold a model itself, or every
    longenc-encode it starts would report at least its peak RSS."""
    spec = MODELS[name]
    path = pathlib.Path(cache_dir) / name
    stamp = json.dumps(spec["config"], sort_keys=True)
    if not ((path / "stamp.json").exists() and (path / "stamp.json").read_text() == stamp):
        subprocess.run([sys.executable, __file__, "--write_model", name, "--cache_dir",
                        str(cache_dir)], check=True)
    return path


def write_model(name, cache_dir):
    spec = MODELS[name]
    path = pathlib.Path(cache_dir) / name
    stamp = json.dumps(spec["config"], sort_keys=True)
    import torch
    import transformers
    print(f"writing a random {name} model into {path} ...", file=sys.stderr, flush=True)
    config = getattr(transformers, MODEL_CLASSES[name])(**spec["config"])
    torch.manual_seed(0)
    model = transformers.AutoModel.from_config(config)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    vocab = [spec["specials"].get(i, f"[unused{i}]") for i in range(spec["config"]["vocab_size"])]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    (path / "stamp.json").write_text(stamp)


def document(name, n):
    """N token ids: [CLS], N-2 seeded random ids of ordinary tokens, [SEP]."""
    import random
    spec = MODELS[name]
    rng = random.Random(n)
    low, high = spec["ids"]
    return [spec["cls"]] + [rng.randrange(low, high) for _ in range(n - 2)] + [spec["sep"]]


def parse_method(text):
    """'iclustered' or 'iclustered:min_len_efficient=0,topk=128' -> (label, attention, options)."""
    attention, _, options = text.partition(":")
    return text, attention, options


def run_encode(args, directory, attention, options, ids, copies=None):
    """One longenc-encode process over `copies` copies of `ids` (0: load the model only)."""
    if copies is None:
        copies = max(1, args.min_tokens // len(ids))
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
        f.write((json.dumps({"token_ids": ids}) + "\n") * copies)
    cmd = ["nice", "-n", str(args.nice), args.binary, f"--model_dir={directory}",
           f"--attention={attention}", f"--attention_options={options}",
           f"--threads={args.threads}", f"--max_length={max(len(ids), 512)}",
           f"--max_exact_tokens={max(args.max_exact_tokens, 512)}",
           f"--batch_tokens={len(ids)}", "--progress=true", f"--input={f.name}"]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=env)
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - start
    os.unlink(f.name)
    if status != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {stderr[-1000:]}")
    row = {"copies": copies, "peak_rss_mb": usage.ru_maxrss / 1024,
           "binary_mtime": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(
               os.path.getmtime(args.binary))),
           "cpu_seconds": usage.ru_utime + usage.ru_stime, "wall_seconds": wall,
           "loadavg": os.getloadavg()[0]}
    if copies:
        last = [l for l in stderr.replace("\r", "\n").splitlines() if "tokens/s" in l][-1]
        row["tokens_per_s"] = float(last.split(",")[-1].split()[0])
    return row


def free_attention_bound(name, n):
    """How much faster than exact the encoder would be if attention cost nothing."""
    spec = MODELS[name]
    linear = 2 * spec["linear_macs"] * spec["layers"]
    attention = 4 * n * spec["config"]["hidden_size"] * spec["global_layers"]
    if name == "modernbert":  # local layers: a 129-wide band in both cases
        linear += 4 * min(n, 129) * 768 * (spec["layers"] - spec["global_layers"])
    return (linear + attention) / linear


def cpu_tokens_per_s(row, rows):
    """Tokens per CPU second of the encoding alone: the process's CPU time minus that of a
    load-only process of the same run, model and method. With one thread this hardly depends
    on how many other processes share the cores, unlike the wall clock."""
    base = [r["cpu_seconds"] for r in rows if r["run"] == row["run"] and r["copies"] == 0
            and r["model"] == row["model"] and r["label"] == row["label"]]
    if not base or row["cpu_seconds"] <= min(base):
        return float("nan")
    return row["n"] * row["copies"] / (row["cpu_seconds"] - min(base))


def median_ratio(mine, exact, key):
    ratios = [key(r) / key(exact[(r["run"], r["repeat"])]) for r in mine
              if (r["run"], r["repeat"]) in exact]
    ratios = [x for x in ratios if x == x]
    if not ratios:
        return "—"
    text = f"{statistics.median(ratios):.2f}"
    if len(ratios) > 1:
        text += f" ({min(ratios):.2f}–{max(ratios):.2f})"
    return text


def report(rows):
    timed = [r for r in rows if r["copies"] > 0]
    labels = list(dict.fromkeys(r["label"] for r in timed))
    print("| model | N | method | tokens/s (wall) | × exact (wall) | tokens/s (CPU) | "
          "× exact (CPU) | free-attention bound | peak RSS MB | runs | load |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name in dict.fromkeys(r["model"] for r in timed):
        for n in sorted({r["n"] for r in timed if r["model"] == name}):
            group = [r for r in timed if r["model"] == name and r["n"] == n]
            exact = {(r["run"], r["repeat"]): r for r in group if r["label"] == "full"}
            for label in labels:
                mine = [r for r in group if r["label"] == label]
                if not mine:
                    continue
                wall = statistics.median(r["tokens_per_s"] for r in mine)
                cpus = [x for x in (cpu_tokens_per_s(r, rows) for r in mine) if x == x]
                cpu = f"{statistics.median(cpus):.0f}" if cpus else "—"
                ratio_wall = median_ratio(mine, exact, lambda r: r["tokens_per_s"])
                ratio_cpu = median_ratio(mine, exact, lambda r: cpu_tokens_per_s(r, rows))
                bound = "" if label == "full" else f"{free_attention_bound(name, n):.1f}"
                rss = max(r["peak_rss_mb"] for r in mine)
                load = statistics.median(r["loadavg"] for r in mine)
                print(f"| {name} | {n} | {label} | {wall:.0f} | {ratio_wall} | {cpu} | "
                      f"{ratio_cpu} | {bound} | {rss:.0f} | {len(mine)} | {load:.1f} |")
    loads = [r for r in rows if r["copies"] == 0]
    for name in dict.fromkeys(r["model"] for r in loads):
        mine = [r for r in loads if r["model"] == name]
        print(f"\n{name}, model loaded and nothing encoded: peak RSS "
              f"{min(r['peak_rss_mb'] for r in mine):.0f}–{max(r['peak_rss_mb'] for r in mine):.0f} MB, "
              f"CPU {min(r['cpu_seconds'] for r in mine):.1f}–{max(r['cpu_seconds'] for r in mine):.1f} s")


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--binary", default=str(ROOT / "build" / "bin" / "longenc-encode"))
    p.add_argument("--models", default="nomic_bert,modernbert",
                   help=f"comma-separated, of {', '.join(MODELS)}")
    p.add_argument("--lengths", default="512,1024,2048,4096,8192,16384,32768",
                   help="tokens per document, [CLS] and [SEP] included")
    p.add_argument("--variants", default=",".join(VARIANTS),
                   help="methods, each --attention[:options] (e.g. "
                        "'iclustered:min_len_efficient=0'); 'full' is exact attention and "
                        "the reference of the ratios")
    p.add_argument("--threads", type=int, default=1,
                   help="intra-op threads of longenc-encode (also OMP_NUM_THREADS); on a "
                        "shared 2-core machine 1 is fastest and steadiest")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--max_exact_tokens", type=int, default=32768,
                   help="longest N at which 'full' runs (quadratic: ~40 TFLOP at 32k)")
    p.add_argument("--min_tokens", type=int, default=4096,
                   help="each run encodes max(1, min_tokens // N) copies of its document")
    p.add_argument("--nice", type=int, default=10, help="niceness of every longenc-encode")
    p.add_argument("--cache_dir", default=str(DEFAULT_CACHE),
                   help="where the random models are written (kept between runs)")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "family_speed.jsonl"),
                   help="JSON lines of raw rows, appended (bench/results is ignored by git)")
    p.add_argument("--report", nargs="+", metavar="JSONL",
                   help="only print the table of these raw files")
    p.add_argument("--write_model", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.write_model:
        return write_model(args.write_model, args.cache_dir)
    if args.report:
        rows = [json.loads(l) for path in args.report for l in open(path) if l.strip()]
        return report(rows)

    models = args.models.split(",")
    for name in models:
        if name not in MODELS:
            p.error(f"--models: unknown model {name!r}")
    methods = [parse_method(m) for m in args.variants.split(",")]
    lengths = [int(x) for x in args.lengths.split(",")]
    dirs = {name: model_dir(name, args.cache_dir) for name in models}
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    run_id = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    print(f"run {run_id}: load {os.getloadavg()}, threads {args.threads}, "
          f"raw rows -> {out}", file=sys.stderr, flush=True)
    rows = []

    def record(row):
        rows.append(row)
        with open(out, "a") as f:
            f.write(json.dumps(row) + "\n")

    for name in models:
        for label, attention, options in methods:  # load-only runs: the CPU time to subtract
            row = run_encode(args, dirs[name], attention, options, document(name, 512), copies=0)
            row.update(run=run_id, model=name, n=0, label=label, attention=attention,
                       options=options, repeat=0, threads=args.threads)
            record(row)
            print(f"{name} {label} load only: {row['cpu_seconds']:.1f} s CPU, "
                  f"{row['peak_rss_mb']:.0f} MB", file=sys.stderr, flush=True)
        for n in lengths:
            ids = document(name, n)
            for repeat in range(args.repeats):
                order = methods if repeat % 2 == 0 else methods[::-1]
                for label, attention, options in order:
                    if attention == "full" and n > args.max_exact_tokens:
                        continue
                    row = run_encode(args, dirs[name], attention, options, ids)
                    row.update(run=run_id, model=name, n=n, label=label, attention=attention,
                               options=options, repeat=repeat, threads=args.threads)
                    record(row)
                    print(f"{name} N={n} {label}: {row['tokens_per_s']:.0f} tokens/s (wall), "
                          f"{cpu_tokens_per_s(row, rows):.0f} (CPU), "
                          f"{row['peak_rss_mb']:.0f} MB, {row['wall_seconds']:.0f} s wall, "
                          f"load {row['loadavg']:.1f}", file=sys.stderr, flush=True)
    report(rows)


if __name__ == "__main__":
    main()
