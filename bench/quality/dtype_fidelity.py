#!/usr/bin/env python3
"""Fidelity of --dtype=bfloat16 to float32: cosine of the two embeddings of each document.

Short texts: --short documents of real linux-doc text (bench/corpus.py, one document each, in a
seeded order), cut at token boundaries to lengths spread over 3..512 tokens ([CLS] and [SEP]
included), encoded with exact attention; with --short_variants also with each efficient variant
forced onto its efficient path (min_len_efficient=0; by default they run exact attention below
512 tokens), which is slow on a shared 2-core machine.
Long documents: --long_docs documents of exactly N tokens per N in --long_lengths (linux-doc
text concatenated, corpus.concatenated_ids) with exact attention (N <= 16384) and each variant
at its defaults, position mode as the server's default (grouped,logscale).
Both sides use the same variant and options: the table isolates what the dtype changes.

  nice -n 10 .venv/bin/python bench/quality/dtype_fidelity.py --threads 1

Prints a markdown table (min and mean cosine per row) and writes
bench/results/dtype_fidelity.raw (git-ignored).
"""
import argparse
import json
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

VARIANTS = ["clustered", "iclustered", "yoso", "cast"]


def encode(binary, dtype, attention, options, docs, threads):
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
        for i, ids in enumerate(docs):
            f.write(json.dumps({"id": str(i), "token_ids": ids}) + "\n")
    longest = max(len(d) for d in docs)
    cmd = [str(binary), f"--dtype={dtype}", f"--attention={attention}",
           f"--attention_options={options}", f"--threads={threads}",
           f"--max_length={max(longest, 512)}", f"--batch_tokens={max(longest, 8192)}",
           "--progress=false", f"--input={f.name}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    pathlib.Path(f.name).unlink()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {proc.stderr[-1000:]}")
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    return np.array([r["embedding"] for r in sorted(rows, key=lambda r: int(r["id"]))])


def cosines(binary, attention, options, docs, threads):
    a = encode(binary, "float32", attention, options, docs, threads)
    b = encode(binary, "bfloat16", attention, options, docs, threads)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(1)


def short_documents(count):
    import corpus
    docs = corpus.documents()
    order = corpus.stable_order([d.name for d in docs], seed=7)
    out = []
    for k, i in enumerate(order):
        if len(out) == count:
            break
        body = corpus.encode(docs[i].text[:20000])
        # Lengths 3..512 spread over the set (a stride prime to 510 visits them evenly).
        n = 3 + (len(out) * 97) % 510
        if len(body) < n - 2:
            continue
        out.append([corpus.CLS_ID] + body[:n - 2] + [corpus.SEP_ID])
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--binary", default=str(ROOT / "build" / "bin" / "longenc-encode"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--short", type=int, default=120, help="short texts (3..512 tokens)")
    p.add_argument("--short_variants", action="store_true")
    p.add_argument("--long_lengths", default="4096,16384")
    p.add_argument("--long_docs", type=int, default=2, help="documents per long length")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "dtype_fidelity.raw"))
    args = p.parse_args()
    import corpus

    rows = []

    def add(label, n_text, attention, options, docs):
        c = cosines(args.binary, attention, options, docs, args.threads)
        rows.append({"label": label, "n": n_text, "attention": attention, "options": options,
                     "docs": len(docs), "min": float(c.min()), "mean": float(c.mean()),
                     "cosines": c.tolist()})
        print(f"{label} {n_text}: min {c.min():.6f} mean {c.mean():.6f} ({len(docs)} docs)",
              file=sys.stderr, flush=True)

    short = short_documents(args.short)
    span = f"{min(map(len, short))}–{max(map(len, short))}"
    add("full", span, "full", "", short)
    for v in VARIANTS if args.short_variants else []:
        add(f"{v} (min_len_efficient=0)", span, v, "min_len_efficient=0", short)
    for n in [int(x) for x in filter(None, args.long_lengths.split(","))]:
        docs = [corpus.concatenated_ids(n, seed=s) for s in range(args.long_docs)]
        for v in (["full"] if n <= 16384 else []) + VARIANTS:
            add(v, str(n), v, "", docs)

    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    json.dump({"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "rows": rows},
              open(out, "w"), indent=1)
    print("| attention | tokens | documents | min cosine bf16 vs fp32 | mean cosine |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['label']} | {r['n']} | {r['docs']} | {r['min']:.6f} | {r['mean']:.6f} |")


if __name__ == "__main__":
    main()
