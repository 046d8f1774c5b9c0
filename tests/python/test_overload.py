"""Overload: the real longenc-server offered 5x its measured capacity (docs/RELIABILITY.md).

1. Capacity: closed loop (CONCURRENCY callers, each sending its next Embed when the previous
   one ends) for CAPACITY_SECONDS; capacity = OK responses per second.
2. Open loop at OVERLOAD x capacity for LONGENC_OVERLOAD_SECONDS (default 60), each call with
   a DEADLINE_S deadline, bounded by MAX_REQUESTS. Calls leave on a fixed schedule whatever the
   server does (grpc.aio), so the server must refuse. It runs with its default --max_queue
   (1024 documents, far more than capacity x deadline): the batcher's deadline-aware admission
   must refuse what cannot finish in time, not the queue limit.

Asserted: every request gets exactly one response; each is OK, DEADLINE_EXCEEDED (admitted,
not finished in time) or RESOURCE_EXHAUSTED "server overloaded"/"queue full" (refused at once); refusals are fast;
the server keeps serving (goodput stays near capacity, health SERVING after, graceful exit 0);
its RSS (VmRSS, sampled every 0.25 s) stays within LONGENC_OVERLOAD_RSS_MIB (default 2048).
A summary is printed (pytest -s shows it).

Needs $LONGENC_BUILD_DIR/bin/longenc-server (LONGENC_BUILD_MODEL=ON); fails without it.
About 80-90 s of wall time.
"""
import asyncio
import os
import pathlib
import random
import sys
import threading
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
import soak  # noqa: E402  (bench/soak.py: server start-up, stubs, RSS sampling)

pytestmark = pytest.mark.needs_programs("longenc-server")

DOC_TOKENS = 256
CONCURRENCY = 4
CAPACITY_SECONDS = 6
OVERLOAD = 5
DURATION_S = float(os.environ.get("LONGENC_OVERLOAD_SECONDS", "60"))
MAX_REQUESTS = 20000
DEADLINE_S = 2.0
RSS_BUDGET_MIB = float(os.environ.get("LONGENC_OVERLOAD_RSS_MIB", "2048"))
SERVER_FLAGS = []  # the default --max_queue (1024)


def documents(pb2, count, seed):
    rng = random.Random(seed)
    return [pb2.EmbedRequest(documents=[pb2.Document(tokens=pb2.TokenIds(
        ids=[101] + [rng.randrange(1000, 30000) for _ in range(DOC_TOKENS - 2)] + [102]))])
        for _ in range(count)]


def measure_capacity(stub, requests):
    """OK responses per second of a closed loop of CONCURRENCY callers."""
    stop_at = time.time() + CAPACITY_SECONDS
    done = []

    def caller(i):
        k = i
        while time.time() < stop_at:
            stub.Embed(requests[k % len(requests)], timeout=60)
            done.append(time.time())
            k += CONCURRENCY

    t0 = time.time()
    threads = [threading.Thread(target=caller, args=(i,)) for i in range(CONCURRENCY)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(done) / (time.time() - t0)


async def open_loop(address, pb2_grpc, requests, rate, deadline):
    """Sends at `rate` per second for DURATION_S (at most MAX_REQUESTS), each call with
    `deadline` seconds; per call index the list of its answers (code name, seconds, details)."""
    import grpc
    results = {}
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb2_grpc.EncoderStub(channel)

        async def one(i):
            t0 = time.perf_counter()
            answers = results.setdefault(i, [])
            try:
                await stub.Embed(requests[i % len(requests)], timeout=deadline)
                answers.append(("OK", time.perf_counter() - t0))
            except grpc.aio.AioRpcError as e:
                answers.append((e.code().name, time.perf_counter() - t0, e.details()))

        tasks = []
        start = time.perf_counter()
        count = min(MAX_REQUESTS, int(DURATION_S * rate))
        for i in range(count):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
    return count, results


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def test_overload_five_times_capacity(tmp_path):
    pb2, pb2_grpc = soak.load_stubs()
    server = soak.start_server(SERVER_FLAGS, threads=2, workdir=tmp_path)
    sampler = soak.RssSampler(server.pid, 0.25)
    sampler.start()
    try:
        stub = pb2_grpc.EncoderStub(server.channel)
        requests = documents(pb2, 64, seed=1)
        reference = stub.Embed(requests[0], timeout=60)
        capacity = measure_capacity(stub, requests)
        rate = OVERLOAD * capacity
        deadline = DEADLINE_S
        t0 = time.time()
        count, results = asyncio.run(open_loop(server.address, pb2_grpc, requests, rate,
                                               deadline))
        wall = time.time() - t0
        alive = server.proc.poll() is None
        serving = server.serving()
        # Still computes the right numbers after the storm.
        after = stub.Embed(requests[0], timeout=60)
    finally:
        sampler.stop()
        exit_code = server.stop()

    answers = [results.get(i, []) for i in range(count)]
    codes = {}
    for a in answers:
        if len(a) == 1:
            codes[a[0][0]] = codes.get(a[0][0], 0) + 1
    ok_latency = [a[0][1] for a in answers if len(a) == 1 and a[0][0] == "OK"]
    exhausted = [a[0] for a in answers if len(a) == 1 and a[0][0] == "RESOURCE_EXHAUSTED"]
    peak_mib = sampler.peak() / 1024
    print(f"\noverload: capacity {capacity:.1f} req/s ({DOC_TOKENS}-token documents, closed loop "
          f"x{CONCURRENCY}); offered {count} at {rate:.1f} req/s ({OVERLOAD}x) in {wall:.1f} s, "
          f"deadline {deadline:.1f} s, default --max_queue; "
          f"OK {codes.get('OK', 0)}, RESOURCE_EXHAUSTED {len(exhausted)}, DEADLINE_EXCEEDED "
          f"{codes.get('DEADLINE_EXCEEDED', 0)}, other "
          f"{sum(v for k, v in codes.items() if k not in ('OK', 'RESOURCE_EXHAUSTED', 'DEADLINE_EXCEEDED'))}; "
          f"OK latency p50 {percentile(ok_latency, 0.5) * 1e3:.0f} ms, p99 "
          f"{percentile(ok_latency, 0.99) * 1e3:.0f} ms; refusal p99 "
          f"{percentile([e[1] for e in exhausted], 0.99) * 1e3:.0f} ms; peak RSS {peak_mib:.0f} MiB "
          f"(budget {RSS_BUDGET_MIB:.0f}); exit code {exit_code}")

    assert alive and serving, server.log()
    assert exit_code == 0, server.log()
    # Exactly one answer per request.
    assert [i for i, a in enumerate(answers) if len(a) != 1] == []
    assert set(codes) <= {"OK", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED"}, codes
    assert all("server overloaded" in e[2] or "queue full" in e[2] for e in exhausted), \
        exhausted[:3]
    # Overload was real, refused at once, and the server kept working at about its capacity.
    assert len(exhausted) > 0.3 * count, codes
    assert percentile([e[1] for e in exhausted], 0.99) < 0.5
    assert codes.get("OK", 0) >= 0.5 * capacity * DURATION_S, (codes, capacity)
    assert peak_mib <= RSS_BUDGET_MIB
    assert list(after.embeddings[0].values) == pytest.approx(
        list(reference.embeddings[0].values), abs=1e-4)
