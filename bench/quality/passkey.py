#!/usr/bin/env python3
"""Passkey retrieval (LongEmbed's template), top-1 accuracy per length.

Each candidate document of L tokens is LongEmbed's filler ("The grass is green. The sky is
blue. The sun is yellow. Here we go. There and back again." repeated) with
"{Name}'s pass key is {n}. Remember it. {n} is the pass key for {Name}." inserted at a seeded
random depth (at a sentence boundary), built in token space so every candidate has exactly L
ids ([CLS] and [SEP] included). Candidate i of a length has its own name and 5-digit key; its
query is "what is the passkey for {Name}?". A query is right when its own candidate has the
highest cosine among the candidates of that length. Queries are short (< 512 tokens), so every
method shares their embeddings (exact attention); only candidates are encoded per method.

Methods (--methods, comma-separated; '+' separates a variant's options):
  truncate256, truncate512   first 255/511 ids + [SEP], exact attention
  chunk                      512-token windows, exact attention, token-mean over windows
  full/MODE                  exact attention, one pass, position mode MODE (e.g. grouped,logscale
                             is written grouped:logscale)
  iclustered+clusters=64;topk=64/MODE   a variant with options

Usage:
  .venv/bin/python bench/quality/passkey.py --lengths 256,512,1024 \\
      --methods truncate256,truncate512,chunk,full/interpolate,full/grouped:logscale
  .venv/bin/python bench/quality/passkey.py --report      # table of everything measured so far

Results accumulate in bench/results/quality.raw/passkey.json (one entry per method × length,
with the candidate count), so runs can add lengths or methods; --report prints the merged
markdown table.
"""
import argparse
import sys

import numpy as np

import common

FILLER = ("The grass is green. The sky is blue. The sun is yellow. Here we go. "
          "There and back again. ")
NAMES = """Aaron Abigail Adam Adrian Alice Amelia Andrew Anna Anthony Arthur Barbara Benjamin
Bernard Beatrice Caleb Camille Carlos Caroline Catherine Charles Chloe Daniel David Diana
Dominic Dorothy Edward Eleanor Elijah Elizabeth Emily Emma Eric Esther Ethan Felix Fiona
Frances George Grace Gregory Hannah Harold Harriet Henry Irene Isaac Isabel Jack Jacob James
Jane Jasmine Jeremy Joanna John Joseph Julia Julian Karen Kevin Laura Leonard Lily Lucas Lucy
Margaret Maria Martin Matthew Megan Michael Miriam Nathan Nicholas Nora Oliver Olivia Oscar
Patrick Paula Peter Philip Rachel Rebecca Richard Robert Rose Samuel Sarah Sophia Stephen
Susan Thomas Victor Victoria Walter William""".split()
PERIOD_ID = 1012  # "." in the bert-base-uncased vocabulary


def passkey_sentence(name: str, key: int) -> str:
    return f"{name}'s pass key is {key}. Remember it. {key} is the pass key for {name}. "


def build_length(length: int, count: int, seed: int = 0):
    """(candidate ids, query ids, names) of `count` passkey documents of exactly `length` ids."""
    if count > len(NAMES):
        raise ValueError(f"at most {len(NAMES)} candidates per length")
    rng = np.random.default_rng([seed, length])
    names = [NAMES[i] for i in rng.permutation(len(NAMES))[:count]]
    unit = common.corpus.encode(FILLER)
    docs, queries = [], []
    for name in names:
        key = int(rng.integers(10000, 100000))
        inserted = common.corpus.encode(passkey_sentence(name, key))
        room = length - 2 - len(inserted)
        if room < 0:
            raise ValueError(f"length {length} cannot hold the passkey sentence")
        filler = (unit * (room // len(unit) + 1))[:room]
        target = int(rng.uniform(0, 1) * room)
        boundaries = [0] + [i + 1 for i, t in enumerate(filler) if t == PERIOD_ID]
        at = min(boundaries, key=lambda b: abs(b - target))
        docs.append([common.corpus.CLS_ID] + filler[:at] + inserted + filler[at:] +
                    [common.corpus.SEP_ID])
        queries.append([common.corpus.CLS_ID] +
                       common.corpus.encode(f"what is the passkey for {name}?") +
                       [common.corpus.SEP_ID])
    return docs, queries, names


def method_from_arg(text: str) -> common.Method:
    return common.parse_method(text.replace(":", ",").replace("+", ":").replace(";", ","))


def report(data: dict) -> str:
    rows_by_label: dict[str, dict[int, dict]] = {}
    for r in data["results"]:
        rows_by_label.setdefault(r["method"], {})[r["length"]] = r
    lengths = sorted({r["length"] for r in data["results"]})
    header = ["method"] + [f"{n}" for n in lengths] + ["mean (all lengths)"]
    counts = {}
    for r in data["results"]:
        counts.setdefault(r["length"], set()).add(r["candidates"])
    rows = []
    for label in data.get("order", sorted(rows_by_label)):
        cells = rows_by_label.get(label, {})
        accs = [cells[n]["top1"] if n in cells else float("nan") for n in lengths]
        mean = float(np.mean(accs)) if not any(np.isnan(accs)) else float("nan")
        rows.append([label] + accs + [mean])
    note = ", ".join(f"{n}: {'/'.join(str(c) for c in sorted(counts[n]))}" for n in lengths)
    return (common.markdown_table(header, rows) +
            f"\n\nCandidates (= queries) per length: {note}. Chance = 1/candidates. "
            "— = not run (see the cost note).")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lengths", default="256,512,1024,2048,4096")
    p.add_argument("--candidates", default="256:20,512:20,1024:20,2048:20,4096:10,8192:10,"
                   "16384:5,32768:5", help="LEN:COUNT,... (LongEmbed uses 100)")
    p.add_argument("--methods", default="truncate256,truncate512,chunk,full/interpolate")
    common.add_run_args(p, "passkey.json")
    args = p.parse_args()

    data = common.load_json(args.out, {"results": [], "order": []})
    if args.report:
        print(report(data))
        return

    enc = common.Encoder(args.binary, args.threads, args.jobs)
    counts = dict((int(a), int(b)) for a, b in (x.split(":") for x in args.candidates.split(",")))
    methods = [method_from_arg(m) for m in args.methods.split(",")]
    for m in methods:
        if m.attention not in enc.variants():
            sys.exit(f"{m.attention} is not registered in {enc.binary} ({enc.variants()})")
    for length in [int(x) for x in args.lengths.split(",")]:
        docs, queries, _ = build_length(length, counts[length], args.seed)
        q = enc.encode(common.Method("full", "", "interpolate"), queries)
        for m in methods:
            c = enc.encode(m, docs)
            acc = common.top1(q, c, list(range(len(docs))))
            print(f"{m.label} L={length}: top-1 {acc:.3f} ({len(docs)} candidates)",
                  file=sys.stderr, flush=True)
            data["results"] = [r for r in data["results"]
                               if not (r["method"] == m.label and r["length"] == length)]
            data["results"].append({"method": m.label, "length": length, "top1": acc,
                                    "candidates": len(docs)})
            if m.label not in data["order"]:
                data["order"].append(m.label)
            common.save_json(args.out, data)
    print(f"Machine: {common.machine_note()}.\n")
    print(report(data))


if __name__ == "__main__":
    main()
