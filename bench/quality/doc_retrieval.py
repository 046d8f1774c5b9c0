#!/usr/bin/env python3
"""linux-doc document retrieval: recall@1 and nDCG@10 per method.

Documents: --count linux-doc documents with --min_tokens ≤ tokens ≤ --max_tokens, in a seeded
stable order (bench/corpus.py). Query: by default one paragraph of the document (the prose
paragraph of 24–200 tokens nearest the document's middle, so it is usually beyond the first
512 tokens); the target is the document with that paragraph removed. With --query half the
query is the first half of the document's tokens and the target the second half. Each query
ranks all targets by cosine; its own target is the one relevant document. --distractors K adds K
short whole documents (128–510 tokens, the same embeddings for every method) to the candidates,
which makes a small target pool discriminate between methods at little cost.

Paragraph queries are short, so every method shares their embeddings (exact attention) and
only targets are encoded per method. Methods are written as in passkey.py (truncate256,
truncate512, chunk, full/grouped:logscale, iclustered+clusters=64;topk=64/interpolate).

Usage:
  .venv/bin/python bench/quality/doc_retrieval.py --methods truncate512,chunk,full/interpolate
  .venv/bin/python bench/quality/doc_retrieval.py --report

Results accumulate in bench/results/quality.raw/doc_retrieval.json (keyed by method and the
document selection); --report prints the merged markdown table.
"""
import argparse
import re
import sys

import numpy as np

import common
from passkey import method_from_arg


def pick_paragraph(text: str) -> tuple[int, int] | None:
    """(start, end) character span of the query paragraph, or None."""
    spans = [(m.start(), m.end()) for m in re.finditer(r"\S(?:.|\n(?!\s*\n))*", text)]
    middle = len(text) / 2
    best = None
    for start, end in spans:
        para = text[start:end]
        visible = [c for c in para if not c.isspace()]
        if not visible or para.lstrip().startswith(("..", "::", "|", "+", "=", "-", "*")):
            continue
        if sum(c.isalpha() for c in visible) < 0.75 * len(visible):
            continue  # tables, code, ASCII art
        n = len(common.corpus.encode(para))
        if not 24 <= n <= 200:
            continue
        distance = abs((start + end) / 2 - middle)
        if best is None or distance < best[0]:
            best = (distance, start, end)
    return None if best is None else (best[1], best[2])


def build(count: int, min_tokens: int, max_tokens: int, query_mode: str, seed: int):
    """(query ids, target ids, names); documents without a usable paragraph are skipped."""
    docs = common.corpus.documents()
    chosen = common.corpus.select(docs, min_tokens, max_tokens, None, seed)
    cls, sep = common.corpus.CLS_ID, common.corpus.SEP_ID
    queries, targets, names = [], [], []
    for doc in chosen:
        if len(names) == count:
            break
        if query_mode == "half":
            ids = common.corpus.encode(doc.text)
            half = len(ids) // 2
            queries.append([cls] + ids[:half] + [sep])
            targets.append([cls] + ids[half:] + [sep])
        else:
            span = pick_paragraph(doc.text)
            if span is None:
                continue
            para = doc.text[span[0]:span[1]]
            rest = doc.text[:span[0]] + doc.text[span[1]:]
            queries.append([cls] + common.corpus.encode(para)[:510] + [sep])
            targets.append([cls] + common.corpus.encode(rest) + [sep])
        names.append(doc.name)
    return queries, targets, names


def distractor_ids(count: int, seed: int) -> list[list[int]]:
    """`count` whole linux-doc documents of 128–510 tokens: short enough that every method
    encodes them identically (exact attention, no truncation beyond 256), so they make the
    ranking harder at the cost of one encode shared by all methods."""
    docs = common.corpus.documents()
    chosen = common.corpus.select(docs, 128, 510, count, seed + 1)
    cls, sep = common.corpus.CLS_ID, common.corpus.SEP_ID
    return [[cls] + ids + [sep] for ids in common.corpus.encode_many([d.text for d in chosen])]


def report(data: dict) -> str:
    rows = []
    for r in data["results"]:
        rows.append([r["method"], r["selection"], r["documents"], r["recall@1"], r["ndcg@10"]])
    return common.markdown_table(["method", "selection", "docs", "recall@1", "nDCG@10"], rows)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, default=24)
    p.add_argument("--min_tokens", type=int, default=2048)
    p.add_argument("--max_tokens", type=int, default=4096)
    p.add_argument("--query", choices=["paragraph", "half"], default="paragraph")
    p.add_argument("--distractors", type=int, default=0,
                   help="short (128–510-token) documents added to the candidates")
    p.add_argument("--methods", default="truncate256,truncate512,chunk,full/interpolate")
    common.add_run_args(p, "doc_retrieval.json")
    args = p.parse_args()

    data = common.load_json(args.out, {"results": []})
    if args.report:
        print(report(data))
        return
    enc = common.Encoder(args.binary, args.threads, args.jobs)
    queries, targets, names = build(args.count, args.min_tokens, args.max_tokens, args.query,
                                    args.seed)
    lengths = [len(t) for t in targets]
    selection = (f"{args.query} queries, {args.min_tokens}–{args.max_tokens} tokens, "
                 f"seed {args.seed}" +
                 (f", +{args.distractors} short distractors" if args.distractors else ""))
    distractors = distractor_ids(args.distractors, args.seed) if args.distractors else []
    print(f"{len(names)} documents, target tokens median {int(np.median(lengths))} "
          f"max {max(lengths)}", file=sys.stderr)
    for text in args.methods.split(","):
        m = method_from_arg(text)
        # Paragraph queries fit the table: one shared exact embedding. Half-document queries
        # are long, so they are encoded with the method itself.
        q = enc.encode(m if args.query == "half" else common.Method(), queries)
        t = enc.encode(m, targets + distractors)
        r = common.ranks(q, t, list(range(len(targets))))
        row = {"method": m.label, "selection": selection, "documents": len(names),
               "recall@1": float((r == 1).mean()), "ndcg@10": common.ndcg_at(r, 10),
               "ranks": r.tolist()}
        print(f"{m.label}: recall@1 {row['recall@1']:.3f} nDCG@10 {row['ndcg@10']:.3f}",
              file=sys.stderr, flush=True)
        data["results"] = [x for x in data["results"]
                           if not (x["method"] == m.label and x["selection"] == selection)]
        data["results"].append(row)
        common.save_json(args.out, data)
    print(f"Machine: {common.machine_note()}.\n")
    print(report(data))


if __name__ == "__main__":
    main()
