#!/usr/bin/env python3
"""Calibration documents for `longenc-calibrate` (CAST surrogates): JSON Lines of token ids,
each exactly --length tokens of real linux-doc text ([CLS] … [SEP]), cut from documents that the
quality harness never evaluates on.

Held out (never used for calibration): every document that fidelity.py's concatenations
(seeds 0–7, up to 32,768 tokens) draw from, every candidate target of doc_retrieval.py
(2k–3k-token documents; 4k–16k too) and its short distractors (seeds 0–3). The rest is
concatenated in the order of --seed (default 1000) and cut into --count pieces.

Usage:
  .venv/bin/python bench/quality/calibration_docs.py --count 5 --length 2048 > calib.jsonl
"""
import argparse
import json
import sys

import common

corpus = common.corpus


def held_out_names(docs) -> set[str]:
    names = [d.name for d in docs]
    lengths = corpus.token_lengths(docs)
    out: set[str] = set()
    for seed in range(8):  # the documents concatenated_ids(32768, seed) consumes
        total = 0
        for i in corpus.stable_order(names, seed):
            if total >= 32768:
                break
            out.add(names[i])
            total += lengths[i]
    # doc_retrieval.py: every document in its length bands is a possible target/distractor.
    for i, n in enumerate(lengths):
        if 2048 <= n <= 16384 or 128 <= n <= 510:
            out.add(names[i])
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, default=5, help="documents to write")
    p.add_argument("--length", type=int, default=2048, help="tokens per document")
    p.add_argument("--seed", type=int, default=1000, help="order of the held-in documents")
    args = p.parse_args()
    docs = corpus.documents()
    excluded = held_out_names(docs)
    pool = [d for d in docs if d.name not in excluded]
    ids = corpus.concatenated_ids(args.count * (args.length - 2) + 2, args.seed, pool)[1:-1]
    for i in range(args.count):
        body = ids[i * (args.length - 2):(i + 1) * (args.length - 2)]
        print(json.dumps({"id": f"calibration-{i}",
                          "token_ids": [corpus.CLS_ID] + body + [corpus.SEP_ID]}))
    print(f"{args.count} documents of {args.length} tokens from {len(pool)} of {len(docs)} "
          f"linux-doc files ({len(excluded)} held out for evaluation)", file=sys.stderr)


if __name__ == "__main__":
    main()
