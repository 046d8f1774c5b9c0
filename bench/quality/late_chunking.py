#!/usr/bin/env python3
"""Late vs naive chunking on linux-doc passage retrieval, through the real longenc-server.

Documents: --count linux-doc documents of --min_tokens to --max_tokens tokens (seeded stable
order, bench/corpus.py), cut into chunks of C content tokens (EmbedRequest.chunking.max_tokens,
no overlap). Queries: each reStructuredText section heading (title line over a ===/---/~~~
underline, at least two words); relevant: the chunks that lie inside that section's body. The
chunks that overlap the heading itself are removed from that query's candidates, so a passage
can only be found through what it says and the context it carries, never through the heading's
own words. Candidates: every chunk of every document.

- late: one request per document with chunking (the chunk vectors of docs/API.md "Late
  chunking"), under each --attention variant, with --position_mode (default: the server's;
  `chunk` is the windowed "long late chunking").
- naive: the same token ranges each encoded alone as a document ([CLS] chunk [SEP]); chunks
  fit the position table, so this is the same for every attention variant (exact attention).

Metrics: recall@1 (the top chunk is relevant) and nDCG@10 (binary gains, the ideal ranking
puts all relevant chunks first). Prints a markdown table and writes
bench/results/quality.raw/late_chunking.json (--out).

Usage:
  nice .venv/bin/python bench/quality/late_chunking.py --count 20 --max_tokens 4096
  nice .venv/bin/python bench/quality/late_chunking.py --count 10 --min_tokens 4096 \
      --max_tokens 16384 --out late_chunking_long.json
"""
import argparse
import math
import re
import sys

import numpy as np

import common

sys.path.insert(0, str(common.ROOT / "bench"))
import soak  # noqa: E402

HEADING = re.compile(r"^([^\n]*\w[^\n]*)\n([=\-~^\"'`#*+])\2{2,}[ \t]*$", re.M)


def sections(text: str):
    """[(title, heading (start, end), body (start, end))] in UTF-8 byte offsets."""
    data = text.encode()
    marks = [(m.start(), m.end(), m.group(1).strip()) for m in HEADING.finditer(text)]
    out = []
    for k, (start, end, title) in enumerate(marks):
        body_end = marks[k + 1][0] if k + 1 < len(marks) else len(text)
        if len(title.split()) < 2 or set(title) <= set("=-~^\"'`#*+ "):
            continue
        b = lambda i: len(text[:i].encode())  # noqa: E731  character to byte offset
        out.append((title, (b(start), b(end)), (b(end), b(body_end))))
    assert all(s[2][1] <= len(data) for s in out)
    return out


def embed(stub, pb2, docs, **kw):
    """Embeddings of `docs` (pb2.Document), in requests of at most 128 documents."""
    out = []
    for i in range(0, len(docs), 128):
        r = stub.Embed(pb2.EmbedRequest(documents=docs[i:i + 128], **kw), timeout=3600)
        out.extend(r.embeddings)
    return out


def evaluate(queries, chunk_vectors, relevant, excluded):
    """(recall@1, nDCG@10) over queries; relevant/excluded: per query, sets of chunk rows."""
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    c = chunk_vectors / np.linalg.norm(chunk_vectors, axis=1, keepdims=True)
    scores = q @ c.T
    hits, ndcg = [], []
    for i in range(len(q)):
        s = scores[i].copy()
        s[list(excluded[i])] = -np.inf
        order = np.argsort(-s, kind="stable")[:10]
        hits.append(order[0] in relevant[i])
        dcg = sum(1 / math.log2(r + 2) for r, j in enumerate(order) if j in relevant[i])
        ideal = sum(1 / math.log2(r + 2) for r in range(min(10, len(relevant[i]))))
        ndcg.append(dcg / ideal)
    return float(np.mean(hits)), float(np.mean(ndcg))


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=24)
    parser.add_argument("--min_tokens", type=int, default=512)
    parser.add_argument("--max_tokens", type=int, default=8192)
    parser.add_argument("--chunks", default="128,256", help="chunk sizes in tokens")
    parser.add_argument("--attention", default="full,iclustered",
                        help="variants of the late rows, each VARIANT or VARIANT:key=value;...")
    parser.add_argument("--position_mode", default="",
                        help="position mode of the late rows (default: the server's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="late_chunking.json",
                        help=f"results file under {common.RESULTS}")
    args = parser.parse_args()

    pb2, pb2_grpc = soak.load_stubs()
    docs = common.corpus.select(common.corpus.documents(), args.min_tokens, args.max_tokens,
                                args.count, args.seed)
    server = soak.start_server(threads=args.threads)
    try:
        stub = pb2_grpc.EncoderStub(server.channel)
        tokenized = stub.Tokenize(pb2.TokenizeRequest(texts=[d.text for d in docs]),
                                  timeout=600).results
        titles, heads, bodies, owner = [], [], [], []
        for d, doc in enumerate(docs):
            for title, head, body in sections(doc.text):
                titles.append(title)
                heads.append(head)
                bodies.append(body)
                owner.append(d)
        queries = np.array([e.values for e in embed(
            stub, pb2, [pb2.Document(text=t) for t in titles], attention="full")])
        lengths = [len(t.ids) for t in tokenized]
        print(f"{len(docs)} documents of {min(lengths)}..{max(lengths)} tokens "
              f"(median {int(np.median(lengths))}), {len(titles)} heading queries", flush=True)
        rows = []
        for size in [int(x) for x in args.chunks.split(",")]:
            late, spans = {a: [] for a in args.attention.split(",")}, []
            for d, doc in enumerate(docs):
                for a in late:
                    variant, _, options = a.partition(":")
                    e = embed(stub, pb2, [pb2.Document(text=doc.text)], attention=variant,
                              attention_options=options.replace(";", ","),
                              position_mode=args.position_mode,
                              chunking=pb2.Chunking(max_tokens=size))[0]
                    late[a].extend(np.array(c.values) for c in e.chunks)
                    if a == next(iter(late)):
                        spans.extend((d, c.token_start, c.token_end, c.char_start, c.char_end)
                                     for c in e.chunks)
            ids = [list(t.ids) for t in tokenized]
            naive = np.array([e.values for e in embed(stub, pb2, [
                pb2.Document(tokens=pb2.TokenIds(ids=[ids[d][0]] + ids[d][s:e] + [ids[d][-1]]))
                for d, s, e, _, _ in spans], attention="full")])
            relevant, excluded, keep = [], [], []
            for q, (d, head, body) in enumerate(zip(owner, heads, bodies)):
                exc = {j for j, (dd, _, _, a, b) in enumerate(spans)
                       if dd == d and a < head[1] and b > head[0]}
                rel = {j for j, (dd, _, _, a, b) in enumerate(spans)
                       if dd == d and j not in exc
                       and 2 * (min(b, body[1]) - max(a, body[0])) > b - a}
                if rel:
                    relevant.append(rel)
                    excluded.append(exc)
                    keep.append(q)
            qv = queries[keep]
            r1, nd = evaluate(qv, naive, relevant, excluded)
            rows.append([size, "naive (each chunk alone)", "full", len(keep), len(spans), r1, nd])
            for a, vectors in late.items():
                r1, nd = evaluate(qv, np.array(vectors), relevant, excluded)
                label = f"late ({args.position_mode})" if args.position_mode else "late"
                rows.append([size, label, a, len(keep), len(spans), r1, nd])
            print(common.markdown_table(["chunk", "method", "attention", "queries", "chunks",
                                         "recall@1", "nDCG@10"], rows[-1 - len(late):]),
                  flush=True)
    finally:
        server.stop()
    table = common.markdown_table(["chunk", "method", "attention", "queries", "chunks",
                                   "recall@1", "nDCG@10"], rows)
    print(table)
    print(common.machine_note())
    common.save_json(args.out, {"args": vars(args), "rows": rows})


if __name__ == "__main__":
    main()
