#!/usr/bin/env python3
"""Throughput of 1 vs N longenc-server replicas on loopback behind one round-robin client, and
the servers' resident memory under load (for Kubernetes requests/limits).

  .venv/bin/python bench/scaleout.py                     # 1 and 3 replicas, 1 thread each
  .venv/bin/python bench/scaleout.py --memory            # peak RSS under full batches too

Each configuration starts fresh replicas (real model, CPU, --threads=T), waits for SERVING,
then runs `longenc bench` (closed loop) with --server listing every replica, so the CLI's
round_robin spreads the calls. Reports docs/s, tokens/s and latency percentiles per
configuration, the ratio to one replica, the calls each replica served (its /metrics), and each
replica's peak RSS gauge; --memory samples the server's VmRSS from /proc every 10 ms. The machine's core count and
load average are printed with the results: replicas share the cores, so the ratio is bounded by
the cores that are free, not by the service.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from scaleout_cluster import CLI, SERVER, start_replicas  # noqa: E402


def bench(replicas, args, length, requests, concurrency):
    servers = ",".join(r.address for r in replicas)
    command = [str(CLI), "bench", f"--server={servers}", f"--requests={requests}",
               f"--concurrency={concurrency}", f"--length={length}",
               f"--warmup={2 * len(replicas)}", "--format=json", "--timeout=600s"]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1]), " ".join(command[1:])


def run_config(count, args):
    with tempfile.TemporaryDirectory() as workdir:
        replicas = start_replicas(workdir, count, threads=args.threads)
        try:
            before = [r.served_ok() for r in replicas]
            report, command = bench(replicas, args, args.length, args.requests, args.concurrency)
            served = [int(r.served_ok() - b) for r, b in zip(replicas, before)]
            peaks = [r.peak_rss_bytes() / 2**20 for r in replicas]
        finally:
            for r in replicas:
                r.stop()
    return {"replicas": count, "threads_per_replica": args.threads, "command": command,
            "docs_per_s": report["docs_per_s"], "tokens_per_s": report["tokens_per_s"],
            "ok": report["ok"], "requests": report["requests"], "errors": report["errors"],
            "latency_ms": report["latency_ms"], "served_per_replica": served,
            "peak_rss_mib": peaks}


class RssSampler:
    """Largest VmRSS of a process, read from /proc/PID/status every 10 ms by a thread. The
    server's own peak gauge cannot serve here: the backend resets VmHWM at each batch."""

    def __init__(self, pid):
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.wait(0.01):
            try:
                with open(f"/proc/{self.pid}/status") as status:
                    for line in status:
                        if line.startswith("VmRSS:"):
                            self.peak = max(self.peak, int(line.split()[1]) * 1024)
            except OSError:
                return

    def take(self):
        """Peak since the last take(), in bytes."""
        peak, self.peak = self.peak, 0
        return peak

    def stop(self):
        self._stop.set()
        self._thread.join()


def run_memory(args):
    """One replica with the container's defaults (--max_batch_tokens=16384, all cores): full
    batches of 512-token documents, then long documents. Peak RSS of each phase."""
    phases = []
    with tempfile.TemporaryDirectory() as workdir:
        [replica] = start_replicas(workdir, 1, threads=0)
        sampler = RssSampler(replica.proc.pid)
        try:
            time.sleep(0.5)
            phases.append(("idle (model loaded, warmed up)", sampler.take()))
            bench([replica], args, 512, 128, 64)
            phases.append(("full batches: 512-token docs, concurrency 64", sampler.take()))
            bench([replica], args, 4096, 8, 2)
            phases.append(("long docs: 4096 tokens, concurrency 2", sampler.take()))
        finally:
            sampler.stop()
            replica.stop()
    return [{"phase": p, "peak_rss_mib": v / 2**20} for p, v in phases]


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replicas", default="1,3",
                        help="comma-separated replica counts ('' = only --memory)")
    parser.add_argument("--threads", type=int, default=1, help="--threads of each replica")
    parser.add_argument("--requests", type=int, default=240)
    parser.add_argument("--concurrency", type=int, default=12)
    parser.add_argument("--length", type=int, default=128, help="tokens per document")
    parser.add_argument("--memory", action="store_true", help="also measure peak RSS")
    args = parser.parse_args()
    if not (SERVER.exists() and CLI.exists()):
        sys.exit(f"build {SERVER} and {CLI} first (LONGENC_BUILD_DIR selects the build)")

    started = time.time()
    results = [run_config(int(n), args) for n in args.replicas.split(",") if n]
    base = results[0]["docs_per_s"] if results else 1.0
    print(f"machine: {os.cpu_count()} cores, load average before the run "
          f"{os.getloadavg()[0]:.2f} (1 min)")
    print(f"{'replicas':>8} {'docs/s':>9} {'tokens/s':>10} {'p50 ms':>8} {'p95 ms':>8} "
          f"{'ratio':>6}  served per replica   peak RSS MiB per replica")
    for r in results:
        print(f"{r['replicas']:>8} {r['docs_per_s']:>9.1f} {r['tokens_per_s']:>10.0f} "
              f"{r['latency_ms']['p50']:>8.1f} {r['latency_ms']['p95']:>8.1f} "
              f"{r['docs_per_s'] / base:>6.2f}  {str(r['served_per_replica']):<20} "
              f"{[round(m) for m in r['peak_rss_mib']]}")
        r["ratio_to_first"] = r["docs_per_s"] / base
    output = {"results": results, "seconds": time.time() - started}
    if args.memory:
        output["memory"] = run_memory(args)
        for m in output["memory"]:
            print(f"memory: {m['phase']}: peak RSS {m['peak_rss_mib']:.0f} MiB")
    print(json.dumps(output))


if __name__ == "__main__":
    main()
