#!/usr/bin/env python3
"""Speed of --dtype=bfloat16 against float32, and the exact path beside sentence-transformers.

Two tables, one run (docs/BENCHMARKS.md "Reduced precision"):

1. Whole-encoder tokens/s of `longenc-encode` at --lengths (default 512, 4096, 16384 tokens)
   for exact attention and each efficient variant, in float32 and bfloat16. One process per
   measurement encodes max(1, 4096 // N) copies of one linux-doc document of exactly N tokens
   (bench/corpus.py), one document per forward; tokens/s comes from longenc-encode's own
   clock (it starts after the model is loaded). For each (N, method) the dtypes run back to
   back, alternating which goes first, --rounds times; the median of each is reported, so a
   ratio compares measurements taken seconds apart on the same load.
2. The exact path on short documents: N = 128/256/512 tokens × batch 1/8/32 (B documents per
   forward, --batch_tokens=B·N), longenc in float32 and bfloat16 beside sentence-transformers
   (same torch, same threads, model.encode(batch_size=B) on the same documents decoded to
   text: re-tokenised to N ± 1 tokens) in float32 and in bfloat16 (model.to(bfloat16)).
   About --short_tokens tokens per point, the systems alternating.

  nice -n 10 .venv/bin/python bench/dtype_speed.py --threads 1
  nice -n 10 .venv/bin/python bench/dtype_speed.py --threads 2 --lengths 512 --methods full
  .venv/bin/python bench/dtype_speed.py --report bench/results/dtype_speed.raw

Raw results (JSON) go to bench/results/dtype_speed.raw (git-ignored).
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
sys.path.insert(0, str(ROOT / "bench"))

DTYPES = ["float32", "bfloat16"]
# (label, --attention, --attention_options); the variants' defaults, as bench/speed.py runs them.
METHODS = [
    ("full", "full", ""),
    ("clustered", "clustered", ""),
    ("iclustered", "iclustered", "topk=256"),
    ("yoso", "yoso", ""),
    ("cast", "cast", ""),
]


def run_encode(binary, dtype, attention, options, docs, batch, threads):
    """tokens/s of one longenc-encode process over `docs` (lists of ids), `batch` per forward."""
    longest = max(len(d) for d in docs)
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
        for i, ids in enumerate(docs):
            f.write(json.dumps({"id": str(i), "token_ids": ids}) + "\n")
    cmd = [str(binary), f"--dtype={dtype}", f"--attention={attention}",
           f"--attention_options={options}", f"--threads={threads}",
           f"--max_length={max(longest, 512)}", f"--batch_tokens={batch * longest}",
           "--progress=true", f"--input={f.name}"]
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    os.unlink(f.name)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {proc.stderr[-1000:]}")
    last = [line for line in proc.stderr.replace("\r", "\n").splitlines() if "tokens/s" in line][-1]
    return float(last.split(",")[-1].split()[0])


def st_child(spec):
    """In a child process: sentence-transformers over the documents of `spec`; prints tokens/s."""
    import torch
    from sentence_transformers import SentenceTransformer
    import corpus
    spec = json.loads(spec)
    torch.set_num_threads(spec["threads"])
    model = SentenceTransformer(str(corpus.MODEL_DIR), device="cpu")
    if spec["dtype"] == "bfloat16":
        model = model.to(torch.bfloat16)
    model.max_seq_length = 512
    texts = spec["texts"]
    model.encode(texts[:spec["batch"]], batch_size=spec["batch"])  # warm-up
    start = time.perf_counter()
    model.encode(texts, batch_size=spec["batch"], convert_to_numpy=True)
    seconds = time.perf_counter() - start
    print(json.dumps({"tokens_per_s": spec["tokens"] / seconds}))


def run_st(dtype, texts, tokens, batch, threads):
    spec = json.dumps({"dtype": dtype, "texts": texts, "tokens": tokens, "batch": batch,
                       "threads": threads})
    proc = subprocess.run([sys.executable, __file__, "--st_child", spec], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"sentence-transformers child failed: {proc.stderr[-1000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])["tokens_per_s"]


def report(data):
    print(f"{data['date']}, {data['threads']} thread(s), load average at start "
          f"{data['loadavg_start'][0]:.1f}, at end {data.get('loadavg_end', [0])[0]:.1f}\n")
    if data["long"]:
        print("| method | N | float32 tokens/s | bfloat16 tokens/s | bf16 / fp32 |")
        print("|---|---|---|---|---|")
        for r in data["long"]:
            f32, bf16 = r["float32"], r["bfloat16"]
            print(f"| {r['label']} | {r['n']} | {f32:.0f} | {bf16:.0f} | {bf16 / f32:.2f} |")
        print()
    if data["short"]:
        print("| N | batch | longenc fp32 | longenc bf16 | ST fp32 | ST bf16 | "
              "longenc fp32 / ST fp32 | longenc bf16 / ST fp32 | longenc bf16 / ST bf16 | "
              "longenc bf16 / fp32 |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for r in data["short"]:
            lf, lb, sf, sb = r["longenc float32"], r["longenc bfloat16"], r["st float32"], r["st bfloat16"]
            print(f"| {r['n']} | {r['batch']} | {lf:.0f} | {lb:.0f} | {sf:.0f} | {sb:.0f} | "
                  f"{lf / sf:.2f} | {lb / sf:.2f} | {lb / sb:.2f} | {lb / lf:.2f} |")


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--binary", default=str(ROOT / "build" / "bin" / "longenc-encode"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--lengths", default="512,4096,16384", help="table 1; empty: skip it")
    p.add_argument("--methods", default=",".join(m[0] for m in METHODS))
    p.add_argument("--rounds", type=int, default=3, help="measurements per (N, method, dtype)")
    p.add_argument("--short_lengths", default="128,256,512", help="table 2; empty: skip it")
    p.add_argument("--batches", default="1,8,32")
    p.add_argument("--short_tokens", type=int, default=8192,
                   help="tokens per measurement of table 2 (rounded up to whole batches)")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "dtype_speed.raw"))
    p.add_argument("--report", metavar="RAW", help="only print the tables of this file")
    p.add_argument("--st_child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.st_child:
        return st_child(args.st_child)
    if args.report:
        return report(json.load(open(args.report)))

    import corpus
    data = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "threads": args.threads,
            "binary": args.binary, "loadavg_start": os.getloadavg(), "long": [], "short": []}
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    wanted = args.methods.split(",")
    flip = 0
    for n in [int(x) for x in filter(None, args.lengths.split(","))]:
        ids = corpus.concatenated_ids(n, seed=0)
        docs = [ids] * max(1, 4096 // n)
        for label, attention, options in METHODS:
            if label not in wanted:
                continue
            seen = {d: [] for d in DTYPES}
            for _ in range(args.rounds):
                order = DTYPES if flip % 2 == 0 else DTYPES[::-1]
                flip += 1
                for dtype in order:
                    seen[dtype].append(run_encode(args.binary, dtype, attention, options, docs, 1,
                                                  args.threads))
            row = {"label": label, "n": n, "runs": seen, "loadavg": os.getloadavg()[0]}
            row.update({d: statistics.median(v) for d, v in seen.items()})
            data["long"].append(row)
            print(f"{label} N={n}: " + ", ".join(f"{d} {row[d]:.0f}" for d in DTYPES) +
                  f" tokens/s ({row['bfloat16'] / row['float32']:.2f}x)", file=sys.stderr, flush=True)
            json.dump(data, open(out, "w"), indent=1)

    tok = corpus.tokenizer()
    for n in [int(x) for x in filter(None, args.short_lengths.split(","))]:
        for batch in [int(x) for x in args.batches.split(",")]:
            count = batch * max(1, -(-args.short_tokens // (batch * n)))
            docs = [corpus.concatenated_ids(n, seed=100 + i) for i in range(count)]
            texts = [tok.decode(d[1:-1]) for d in docs]
            st_tokens = sum(len(tok(t)["input_ids"]) for t in texts)  # re-tokenised: N ± 1
            row = {"n": n, "batch": batch, "documents": count}
            systems = [("longenc float32", lambda: run_encode(args.binary, "float32", "full", "", docs, batch, args.threads)),
                       ("longenc bfloat16", lambda: run_encode(args.binary, "bfloat16", "full", "", docs, batch, args.threads)),
                       ("st float32", lambda: run_st("float32", texts, st_tokens, batch, args.threads)),
                       ("st bfloat16", lambda: run_st("bfloat16", texts, st_tokens, batch, args.threads))]
            if flip % 2:
                systems.reverse()
            flip += 1
            for name, run in systems:
                row[name] = run()
            data["short"].append(row)
            print(f"N={n} batch={batch}: " + ", ".join(f"{k} {row[k]:.0f}" for k, _ in systems),
                  file=sys.stderr, flush=True)
            json.dump(data, open(out, "w"), indent=1)
    data["loadavg_end"] = os.getloadavg()
    json.dump(data, open(out, "w"), indent=1)
    report(data)


if __name__ == "__main__":
    main()
