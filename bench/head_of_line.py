#!/usr/bin/env python3
"""Head-of-line blocking: how long short requests wait while a long document is encoded, and
how much they slow the long one down.

One longenc-server (2 threads, the default model). First the long document alone (a ~26k-token
span of real linux-doc text, attention `--long_attention`); then the same document again while
`--short_clients` clients each send a ~100-token request every `--short_interval` seconds. It
prints the long document's time alone and under the mix (and their ratio), and the latency of
every short request that overlapped the long one: median, p99 and worst; a short request's time
alone and the share of the CPU the short clients ask for; the longest step between two
checkpoints (from longenc_batch_longest_step_seconds, as the smallest bucket bound holding all).
The short load should stay below --preempt_share (0.2), or short requests queue. With
`--compare_no_preemption` the mix runs again against a server started with --preempt_share=0.

Goals (docs/BENCHMARKS.md, "Mixed traffic"): worst short latency <= 1 s, ratio <= 1.25.

    .venv/bin/python bench/head_of_line.py --output=bench/results/head_of_line.json
"""
from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import corpus  # noqa: E402
from soak import start_server, load_stubs  # noqa: E402


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def run_mix(stub, pb2, long_ids, short_texts, args):
    """The long document under short traffic: (long seconds, [short latencies during it])."""
    latencies = []  # (start, seconds)
    errors = []
    stop = threading.Event()

    def short_client(index):
        i = index
        while not stop.is_set():
            text = short_texts[i % len(short_texts)]
            i += args.short_clients
            t0 = time.perf_counter()
            try:
                stub.Embed(pb2.EmbedRequest(documents=[pb2.Document(text=text)]), timeout=60)
                latencies.append((t0, time.perf_counter() - t0))
            except Exception as e:  # noqa: BLE001  (reported, not hidden)
                errors.append(repr(e))
            stop.wait(args.short_interval)

    threads = [threading.Thread(target=short_client, args=(c,), daemon=True)
               for c in range(args.short_clients)]
    for t in threads:
        t.start()
    time.sleep(1.0)  # the short clients reach their steady state first
    t0 = time.perf_counter()
    stub.Embed(long_request(pb2, long_ids, args.long_attention), timeout=600)
    t1 = time.perf_counter()
    stop.set()
    for t in threads:
        t.join()
    during = [s for start, s in latencies if t0 <= start <= t1]
    return t1 - t0, during, errors


def longest_step_bound(server):
    """The smallest histogram bound that holds every batch's longest step (seconds)."""
    buckets = sorted((float(labels["le"]), v) for name, labels, v in server.metrics()
                     if name == "longenc_batch_longest_step_seconds_bucket")
    total = buckets[-1][1] if buckets else 0
    return next((le for le, count in buckets if count >= total), float("nan"))


def long_request(pb2, ids, attention):
    return pb2.EmbedRequest(documents=[pb2.Document(tokens=pb2.TokenIds(ids=ids))],
                            attention=attention)


def measure(flags, long_ids, short_texts, args, alone=True):
    pb2, pb2_grpc = load_stubs()
    server = start_server(flags, threads=args.threads)
    try:
        stub = pb2_grpc.EncoderStub(server.channel)
        out = {}
        alone = []
        for text in short_texts[:10]:
            t0 = time.perf_counter()
            stub.Embed(pb2.EmbedRequest(documents=[pb2.Document(text=text)]), timeout=60)
            alone.append(time.perf_counter() - t0)
        out["short_alone_p50_s"] = percentile(alone[1:], 0.5)
        out["short_load_share"] = (out["short_alone_p50_s"] * args.short_clients /
                                   args.short_interval)
        if alone:
            t0 = time.perf_counter()
            stub.Embed(long_request(pb2, long_ids, args.long_attention), timeout=600)
            out["long_alone_s"] = time.perf_counter() - t0
        long_s, during, errors = run_mix(stub, pb2, long_ids, short_texts, args)
        out.update(long_mixed_s=long_s, short_requests=len(during), short_errors=len(errors),
                   short_p50_s=percentile(during, 0.5), short_p99_s=percentile(during, 0.99),
                   short_max_s=max(during, default=float("nan")))
        out["longest_step_le_s"] = longest_step_bound(server)
        out["preempted_batches"] = server.value("longenc_preempted_batches_total")
        if errors:
            out["first_error"] = errors[0]
        return out
    finally:
        server.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--long_tokens", type=int, default=26000)
    parser.add_argument("--long_attention", default="iclustered")
    parser.add_argument("--short_clients", type=int, default=2)
    parser.add_argument("--short_chars", type=int, default=300,
                        help="characters of each short text (300: about 100 tokens)")
    parser.add_argument("--short_interval", type=float, default=1.0,
                        help="seconds each short client waits between its requests")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compare_no_preemption", action="store_true")
    parser.add_argument("--output", type=pathlib.Path)
    args = parser.parse_args()

    long_ids = corpus.concatenated_ids(args.long_tokens, seed=7)
    short_texts = [d.text[:args.short_chars] for d in
                   corpus.select(corpus.documents(), min_tokens=150, count=64, seed=3)]
    print(f"long document: {len(long_ids)} tokens, attention {args.long_attention}; "
          f"{args.short_clients} short clients every {args.short_interval} s", flush=True)
    result = {"args": {k: str(v) for k, v in vars(args).items()}}
    result["preemption"] = measure([], long_ids, short_texts, args)
    p = result["preemption"]
    p["ratio"] = p["long_mixed_s"] / p["long_alone_s"]
    if args.compare_no_preemption:
        result["no_preemption"] = measure(["--preempt_share=0"], long_ids, short_texts, args,
                                          alone=False)
    for name, r in result.items():
        if name == "args":
            continue
        print(f"{name}: " + ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                                      for k, v in r.items()), flush=True)
    ok = p["short_max_s"] <= 1.0 and p["ratio"] <= 1.25 and p["short_errors"] == 0
    print(f"goals (worst short wait <= 1 s, long <= 1.25x alone): {'MET' if ok else 'MISSED'}")
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(result, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
