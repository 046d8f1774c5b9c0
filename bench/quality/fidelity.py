#!/usr/bin/env python3
"""Fidelity of each approximate attention variant to exact attention.

For every N, documents of exactly N tokens are cut from real linux-doc text (documents
concatenated in a seeded order, bench/corpus.py); each is embedded with exact attention
("full") and with each variant under the same position mode, and the cosine of the two
embeddings is reported (mean and minimum over the documents). A sweep of i-clustered
settings (clusters × topk) runs at the lengths given by --sweep.

Usage:
  .venv/bin/python bench/quality/fidelity.py --lengths 512,2048 --docs 3,2 \\
      --sweep 2048:16,25,64:16,32,64
  .venv/bin/python bench/quality/fidelity.py --variants iclustered,cast:surrogates=cast.safetensors

Variants not registered in the binary are skipped and listed. Prints a markdown table and
writes bench/results/quality.raw/fidelity.json.
"""
import argparse
import sys

import numpy as np

import common


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lengths", default="512,2048,8192,32768", help="N in tokens, comma-separated")
    p.add_argument("--docs", default="3,2,1,1",
                   help="documents per length (one number, or one per length)")
    p.add_argument("--variants", default="",
                   help="comma-separated name[:key=value;key=value] (';' separates options); "
                        "default: every registered variant but full, default options")
    p.add_argument("--position", default="interpolate", help="position mode for both sides")
    p.add_argument("--sweep", action="append", default=[],
                   help="LEN:C1,C2,..:K1,K2,.. — i-clustered clusters × topk grid at LEN")
    common.add_run_args(p, "fidelity.json", accumulates=False)
    args = p.parse_args()

    enc = common.Encoder(args.binary, args.threads, args.jobs)
    registered = enc.variants()
    lengths = [int(x) for x in args.lengths.split(",")]
    counts = [int(x) for x in args.docs.split(",")]
    counts = counts * len(lengths) if len(counts) == 1 else counts
    if args.variants:
        wanted = [(v.partition(":")[0], v.partition(":")[2].replace(";", ","))
                  for v in args.variants.split(",")]
    else:
        wanted = [(v, "") for v in registered if v != "full"]
    skipped = sorted({n for n, _ in wanted if n not in registered})
    wanted = [(n, o) for n, o in wanted if n in registered]

    # (variant, options, N) to run; the sweep adds i-clustered settings at its lengths.
    jobs = [(n, o, length) for length in lengths for n, o in wanted]
    for spec in args.sweep:
        length, cs, ks = spec.split(":")
        if "iclustered" not in registered:
            skipped.append("iclustered sweep")
            break
        for c in cs.split(","):
            for k in ks.split(","):
                jobs.append(("iclustered", f"clusters={c},topk={k}", int(length)))
    all_lengths = sorted({j[2] for j in jobs} | set(lengths))
    docs = {}
    for length in all_lengths:
        count = counts[lengths.index(length)] if length in lengths else 1
        docs[length] = [common.corpus.concatenated_ids(length, seed=s) for s in range(count)]

    rows, results = [], []
    for length in all_lengths:
        exact = enc.encode(common.Method("full", "", args.position), docs[length])
        seen = set()
        for name, options, n in jobs:
            if n != length or (name, options) in seen:
                continue
            seen.add((name, options))
            approx = enc.encode(common.Method(name, options, args.position), docs[length])
            cos = common.cosine(approx, exact)
            results.append({"variant": name, "options": options, "n": length,
                            "docs": len(docs[length]), "cosine": cos.tolist()})
            rows.append([name, options or "(defaults)", length, len(docs[length]),
                         f"{cos.mean():.4f}", f"{cos.min():.4f}",
                         "yes" if cos.min() >= 0.995 else "**no**"])
            print(f"{name} {options or '(defaults)'} N={length}: cosine mean {cos.mean():.5f} "
                  f"min {cos.min():.5f}", file=sys.stderr, flush=True)
    common.save_json(args.out, {"position": args.position, "results": results,
                                "skipped": skipped, "seconds": enc.seconds})
    print(f"Position mode: {args.position} on both sides. Machine: {common.machine_note()}.\n")
    print(common.markdown_table(
        ["variant", "options", "N", "docs", "cosine mean", "cosine min", "min ≥ 0.995"], rows))
    if skipped:
        print(f"\nNot registered in {enc.binary}, skipped: {', '.join(skipped)}")


if __name__ == "__main__":
    main()
