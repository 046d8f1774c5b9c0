#!/usr/bin/env python3
"""Soak test: a real longenc-server under steady mixed load for a long time, its RSS sampled.

Mixed load, closed loop (`--concurrency` client threads, each sending its next call when the
previous one ends): Embed of 1-4 real documents, EmbedStream of 2-5 messages, Tokenize of 1-8
texts. The texts are real kernel documentation (bench/corpus.py: Debian's linux-doc), documents
of 32 to `--max_tokens` tokens in the corpus' stable order, so lengths vary as in real use. RSS
(VmRSS of /proc/<pid>/status) is sampled every `--sample` seconds; after `--warmup` the growth
is (mean RSS of the last minute) / (mean RSS of the first minute after warm-up) - 1. The goal is
< 5 % (docs/RELIABILITY.md, "Soak").

    .venv/bin/python bench/soak.py --duration=600 --output=bench/results/soak.json
    LONGENC_BUILD_DIR=build-rel .venv/bin/python bench/soak.py --duration=60   # a quick look

Also the helpers of tests/python/test_overload.py: start_server(), load_stubs(), rss_kib().
Not a CI test (10 minutes).
"""
from __future__ import annotations

import argparse
import json
import pathlib
import random
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from encoder_stubs import load_stubs  # noqa: E402  (re-exported for test_overload.py)
from scaleout_cluster import SERVER, Replica  # noqa: E402  (SERVER for test_overload.py)

# grpc.health.v1 Check: the empty request; a response of SERVING is `status = 1`.
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
SERVING = b"\x08\x01"


def rss_kib(pid: int) -> int:
    """VmRSS of `pid` in KiB (0 once the process is gone)."""
    try:
        for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class Server(Replica):
    """One longenc-server on 127.0.0.1 (bench/scaleout_cluster.py) with a gRPC channel to it."""

    def __init__(self, flags=(), threads=2, workdir=None, env=None):
        import grpc
        workdir = workdir or tempfile.mkdtemp(prefix="longenc-soak-")
        super().__init__(workdir, 0, threads, flags, env)
        self.wait_serving()
        self.channel = grpc.insecure_channel(self.address)
        self._health = self.channel.unary_unary(HEALTH_CHECK, request_serializer=lambda b: b,
                                                response_deserializer=lambda b: b)

    def serving(self):
        import grpc
        try:
            return self._health(b"", timeout=5) == SERVING
        except grpc.RpcError:
            return False

    def stop(self, timeout=120):
        """SIGTERM (drain); the exit code."""
        self.channel.close()
        return super().stop(timeout)


def start_server(flags=(), threads=2, workdir=None, env=None):
    return Server(flags, threads, workdir, env)


class RssSampler(threading.Thread):
    """Samples VmRSS of `pid` every `period` seconds: [(seconds since start, KiB)]."""

    def __init__(self, pid, period):
        super().__init__(daemon=True)
        self.pid, self.period = pid, period
        self.samples = []
        self._halt = threading.Event()
        self.t0 = time.time()

    def run(self):
        while not self._halt.is_set():
            self.samples.append((time.time() - self.t0, rss_kib(self.pid)))
            self._halt.wait(self.period)

    def stop(self):
        self._halt.set()
        self.join()

    def peak(self):
        return max((kib for _, kib in self.samples), default=0)


def corpus_texts(max_tokens, count, seed=0):
    """Texts of linux-doc documents with 32..max_tokens tokens, in the corpus' stable order."""
    sys.path.insert(0, str(ROOT / "bench"))
    import corpus
    return [d.text for d in corpus.select(corpus.documents(), min_tokens=32,
                                          max_tokens=max_tokens, count=count, seed=seed)]


def soak(args):
    import grpc
    pb2, pb2_grpc = load_stubs()
    texts = corpus_texts(args.max_tokens, args.documents)
    print(f"{len(texts)} linux-doc documents of 32..{args.max_tokens} tokens", flush=True)
    server = start_server(args.server_flags.split() if args.server_flags else (), args.threads,
                          env=dict(e.split("=", 1) for e in args.server_env))
    stub = pb2_grpc.EncoderStub(server.channel)
    sampler = RssSampler(server.pid, args.sample)
    sampler.start()
    counts = {}
    lock = threading.Lock()
    stop_at = time.time() + args.duration

    def count(kind, code):
        with lock:
            counts[(kind, code)] = counts.get((kind, code), 0) + 1

    def request(rng, n):
        return pb2.EmbedRequest(documents=[pb2.Document(text=rng.choice(texts), id=str(i))
                                           for i in range(n)])

    def worker(seed):
        rng = random.Random(seed)
        while time.time() < stop_at:
            kind = rng.choices(["Embed", "EmbedStream", "Tokenize"], weights=[5, 3, 2])[0]
            try:
                if kind == "Embed":
                    n = rng.randint(1, 4)
                    r = stub.Embed(request(rng, n), timeout=args.timeout)
                    assert len(r.embeddings) == n
                elif kind == "EmbedStream":
                    messages = [request(rng, rng.randint(1, 2)) for _ in range(rng.randint(2, 5))]
                    for i, m in enumerate(messages):
                        m.request_id = f"m{i}"
                    got = [r.request_id for r in stub.EmbedStream(iter(messages),
                                                                  timeout=args.timeout)]
                    assert got == [m.request_id for m in messages], got
                else:
                    n = rng.randint(1, 8)
                    r = stub.Tokenize(pb2.TokenizeRequest(texts=[rng.choice(texts)
                                                                 for _ in range(n)]),
                                      timeout=args.timeout)
                    assert len(r.results) == n
                count(kind, "OK")
            except grpc.RpcError as e:
                count(kind, e.code().name)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(args.concurrency)]
    t0 = time.time()
    last_report = t0
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        time.sleep(1)
        if time.time() - last_report >= 60:
            last_report = time.time()
            with lock:
                done = sum(counts.values())
            print(f"  {last_report - t0:5.0f} s  calls {done}  RSS "
                  f"{sampler.samples[-1][1] / 1024:.0f} MiB", flush=True)
    for t in threads:
        t.join()
    sampler.stop()
    alive = server.proc.poll() is None
    exit_code = server.stop()

    samples = sampler.samples
    after = [(t, kib) for t, kib in samples if t >= args.warmup]
    first = [kib for t, kib in after if t < args.warmup + 60]
    last = [kib for t, kib in after if t >= samples[-1][0] - 60]
    base = sum(first) / max(len(first), 1)
    growth = (sum(last) / max(len(last), 1)) / base - 1 if base else float("nan")
    errors = {f"{k}:{c}": v for (k, c), v in counts.items() if c != "OK"}
    result = {
        "duration_s": args.duration, "warmup_s": args.warmup, "concurrency": args.concurrency,
        "threads": args.threads, "max_tokens": args.max_tokens,
        "server_flags": args.server_flags, "server_env": args.server_env,
        "calls": {k: sum(v for (kk, c), v in counts.items() if kk == k and c == "OK")
                  for k in ("Embed", "EmbedStream", "Tokenize")},
        "errors": errors,
        "rss_mib": {"start": samples[0][1] / 1024, "after_warmup": base / 1024,
                    "end": (sum(last) / max(len(last), 1)) / 1024,
                    "peak": sampler.peak() / 1024},
        "rss_growth_after_warmup": growth,
        "server_alive_at_end": alive, "server_exit_code": exit_code,
        "samples": [(round(t, 1), kib) for t, kib in samples],
    }
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=1))
    verdict = "PASS" if growth < 0.05 and not errors and alive and exit_code == 0 else "FAIL"
    print(f"{verdict}: RSS growth after warm-up {growth * 100:+.2f} % (goal < 5 %), "
          f"{sum(result['calls'].values())} calls OK, {sum(errors.values())} errors, "
          f"exit code {exit_code}")
    if args.output:
        pathlib.Path(args.output).write_text(json.dumps(result, indent=1))
    return 0 if verdict == "PASS" else 1


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--duration", type=float, default=600, help="seconds of load")
    p.add_argument("--warmup", type=float, default=120, help="seconds before the RSS baseline")
    p.add_argument("--sample", type=float, default=5, help="seconds between RSS samples")
    p.add_argument("--concurrency", type=int, default=4, help="client threads (closed loop)")
    p.add_argument("--threads", type=int, default=2, help="server --threads")
    p.add_argument("--max_tokens", type=int, default=2048, help="longest document, in tokens")
    p.add_argument("--documents", type=int, default=400, help="distinct documents")
    p.add_argument("--timeout", type=float, default=120, help="deadline of each call, seconds")
    p.add_argument("--server_flags", default="", help="extra longenc-server flags")
    p.add_argument("--server_env", action="append", default=[],
                   help="KEY=VALUE in the server's environment (repeatable), e.g. "
                        "MALLOC_ARENA_MAX=2")
    p.add_argument("--output", default="", help="JSON result file")
    sys.exit(soak(p.parse_args()))


if __name__ == "__main__":
    main()
