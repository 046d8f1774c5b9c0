#!/usr/bin/env python3
"""Served speed on short documents: longenc-server against Infinity, same machine, same documents.

What it runs, in one process and one run:
  * longenc-server (gRPC, build/bin/longenc-server, `--threads=T`, the default model
    models/all-MiniLM-L6-v2 on CPU, plus `--server_flags`);
  * Infinity (PyPI infinity-emb 0.0.78, HTTP, torch engine, `--device cpu`, `--batch-size 32`,
    its default dtype, no vector cache) on the same model files, its torch limited to the same
    T threads (OMP_NUM_THREADS=MKL_NUM_THREADS=T, which torch reads at start-up).
Both stay up for the whole run. Documents are real text: linux-doc files of 64..512 tokens
(bench/corpus.py, [CLS]/[SEP] counted), `--documents` of them in the corpus' stable order. Every
point (documents per request x concurrency) runs on both servers back to back, closed loop
(`C` client threads, each sending its next request when the previous one is answered): a
warm-up (`--warmup` seconds and one answer per client), then a window of `--duration` seconds
that lasts until `--rounds` x C requests were answered in it; the order alternates from point
to point (ABBA) and the whole sweep repeats `--repeat` times; the table shows medians over the
repeats. Tokens/s counts
the documents' tokens (the same tokenizer on both sides); latency is per request, client side.

Infinity truncates at the model's sentence-transformers max_seq_length (256 for
all-MiniLM-L6-v2) and has no flag to change it, while longenc encodes the whole document. So
that both encode every token, Infinity reads a directory of links to the same model files in
which only sentence_bert_config.json says max_seq_length 512 (the model's position table). The
run checks that both servers return the same embeddings (cosine) before measuring.

Infinity is not in the project's .venv (its pins conflict with the test references): it lives
in a scratch virtualenv, by default /work/scratch/infinity-venv (`--infinity_venv`). Create it
once with `--install`, which runs
    python3 -m venv VENV && VENV/bin/pip install "infinity-emb[server,torch]==0.0.78" "torch==2.11.0"
(torch pinned to the LibTorch longenc links, so both run the same kernels; PyPI's wheel for
Linux x86-64 brings the CUDA libraries, about 5 GB in all). Nothing of it goes into git.

The machine's load average is printed at the start and the end, and each server's CPU time per
point gives tokens per CPU-second (less sensitive to other processes than wall-clock rates).

    .venv/bin/python bench/vs_infinity.py --install          # once
    nice -n 10 .venv/bin/python bench/vs_infinity.py --repeat=3 --output=bench/results/vs_infinity.json
    .venv/bin/python bench/vs_infinity.py --docs_per_request=1 --concurrency=8 --duration=10
"""
from __future__ import annotations

import argparse
import faulthandler
import http.client
import json
import math
import os
import pathlib
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import corpus  # noqa: E402
from encoder_stubs import load_stubs  # noqa: E402
from scaleout_cluster import MODEL_DIR, SERVER, Replica, free_port  # noqa: E402

INFINITY_VERSION = "0.0.78"
TORCH_VERSION = "2.11.0"  # scripts/requirements.txt: the LibTorch longenc builds against
DEFAULT_VENV = pathlib.Path(os.environ.get("INFINITY_VENV", "/work/scratch/infinity-venv"))


def install(venv: pathlib.Path) -> None:
    """Creates the scratch virtualenv with Infinity (PyPI only)."""
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable if sys.prefix == sys.base_prefix else "python3",
                        "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install",
                    f"infinity-emb[server,torch]=={INFINITY_VERSION}", f"torch=={TORCH_VERSION}"],
                   check=True)


def percentile(values, q):
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(math.ceil(q * len(ordered))) - 1)]


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` and its children still alive (seconds)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pids = [pid]
    try:
        children = pathlib.Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for p in pids:
        try:
            fields = pathlib.Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            pass
    return total


def load_average() -> str:
    return " ".join(pathlib.Path("/proc/loadavg").read_text().split()[:3])


class Longenc:
    name = "longenc"

    def __init__(self, threads, flags, workdir):
        import grpc
        self.pb2, pb2_grpc = load_stubs()
        self.replica = Replica(workdir, 0, threads, flags)
        self.replica.wait_serving()
        self.channel = grpc.insecure_channel(self.replica.address)
        self.stub = pb2_grpc.EncoderStub(self.channel)

    @property
    def pid(self):
        return self.replica.pid

    def client(self):
        pb2, stub = self.pb2, self.stub

        def embed(texts):
            response = stub.Embed(pb2.EmbedRequest(documents=[pb2.Document(text=t) for t in texts]),
                                  timeout=300)
            return [list(e.values) for e in response.embeddings]
        return embed

    def stop(self):
        self.channel.close()
        self.replica.stop()


class Infinity:
    name = "infinity"
    served_name = "minilm"

    def __init__(self, venv, threads, batch_size, workdir):
        exe = venv / "bin" / "infinity_emb"
        if not exe.exists():
            sys.exit(f"{exe} not found: create the scratch venv with --install "
                     f"(or point --infinity_venv at one)")
        model = pathlib.Path(workdir) / "infinity-model"
        model.mkdir()
        for entry in MODEL_DIR.iterdir():  # the same files, max_seq_length raised to 512
            if entry.name != "sentence_bert_config.json":
                (model / entry.name).symlink_to(entry.resolve())
        st = json.loads((MODEL_DIR / "sentence_bert_config.json").read_text())
        positions = json.loads((MODEL_DIR / "config.json").read_text())["max_position_embeddings"]
        st["max_seq_length"] = positions
        (model / "sentence_bert_config.json").write_text(json.dumps(st))
        self.port = free_port()
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
               "HF_HUB_OFFLINE": "1", "INFINITY_ANONYMOUS_USAGE_STATS": "0", "DO_NOT_TRACK": "1"}
        self.log_path = pathlib.Path(workdir) / "infinity.log"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [str(exe), "v2", f"--model-id={model}", f"--served-model-name={self.served_name}",
             "--engine=torch", "--device=cpu", f"--batch-size={batch_size}",
             "--no-vector-disk-cache", "--host=127.0.0.1", f"--port={self.port}"],
            stdout=self._log, stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + 300
        while True:
            if self.proc.poll() is not None:
                sys.exit(f"infinity exited:\n{self.log_path.read_text()[-3000:]}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/health")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                sys.exit(f"infinity not ready:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.5)

    @property
    def pid(self):
        return self.proc.pid

    def client(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)

        def embed(texts):
            body = json.dumps({"model": self.served_name, "input": texts})
            conn.request("POST", "/embeddings", body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            data = response.read()
            if response.status != 200:
                raise RuntimeError(f"infinity: HTTP {response.status}: {data[:300]!r}")
            return [d["embedding"] for d in json.loads(data)["data"]]
        return embed

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._log.close()


def run_point(server, texts, lengths, per_request, concurrency, warmup, duration, rounds):
    """Closed loop with `concurrency` threads. Warm-up: `warmup` seconds and until every client
    has been answered once. Measured window: `duration` seconds and until `rounds` x
    `concurrency` requests were answered in it (heavy points on a busy machine take longer).
    Tokens/s counts the requests answered inside the window; latencies are theirs."""
    stop = threading.Event()
    lock = threading.Lock()
    window = {"begin": None, "end": None}
    answered = [0] * concurrency
    records = []  # (latency, tokens) of requests answered inside the window
    errors = []

    def worker(index):
        embed = server.client()
        i = index * per_request
        while not stop.is_set():
            picks = [(i + j) % len(texts) for j in range(per_request)]
            i += concurrency * per_request
            t0 = time.perf_counter()
            try:
                embed([texts[p] for p in picks])
            except Exception as e:  # noqa: BLE001  (counted and reported)
                with lock:
                    errors.append(repr(e)[:300])
                stop.set()
                return
            t1 = time.perf_counter()
            with lock:
                answered[index] += 1
                if window["begin"] is not None and window["end"] is None and t1 >= window["begin"]:
                    records.append((t1 - t0, sum(lengths[p] for p in picks)))

    threads = [threading.Thread(target=worker, args=(c,), daemon=True) for c in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    while not errors and (time.perf_counter() - start < warmup or min(answered) == 0):
        time.sleep(0.05)
    with lock:
        window["begin"] = time.perf_counter()
    cpu0 = cpu_seconds(server.pid)
    while not errors:
        with lock:
            elapsed = time.perf_counter() - window["begin"]
            if elapsed >= duration and len(records) >= rounds * concurrency:
                window["end"] = time.perf_counter()
                break
        time.sleep(0.05)
    cpu1 = cpu_seconds(server.pid)
    stop.set()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"{server.name}: {errors[0]}")
    seconds = window["end"] - window["begin"]
    tokens = sum(n for _, n in records)
    latencies = [s for s, _ in records]
    return {"requests": len(records), "seconds": seconds, "tokens": tokens,
            "tokens_per_s": tokens / seconds,
            "tokens_per_cpu_s": tokens / max(1e-9, cpu1 - cpu0),
            "p50_ms": 1000 * percentile(latencies, 0.50),
            "p99_ms": 1000 * percentile(latencies, 0.99)}


def check_same_embeddings(a, b, texts):
    ea, eb = a.client()(texts), b.client()(texts)
    worst = 1.0
    for x, y in zip(ea, eb):
        dot = sum(p * q for p, q in zip(x, y))
        norm = math.sqrt(sum(p * p for p in x) * sum(q * q for q in y))
        worst = min(worst, dot / norm)
    return worst


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--install", action="store_true",
                        help="create the scratch venv with Infinity (PyPI) and exit")
    parser.add_argument("--infinity_venv", type=pathlib.Path, default=DEFAULT_VENV,
                        help="scratch virtualenv holding infinity-emb (default %(default)s, "
                             "or $INFINITY_VENV)")
    parser.add_argument("--threads", type=int, default=2,
                        help="compute threads of each server (longenc --threads, Infinity's "
                             "OMP/MKL threads)")
    parser.add_argument("--batch_size", type=int, default=32, help="Infinity --batch-size")
    parser.add_argument("--server_flags", default="",
                        help="extra longenc-server flags, space-separated (e.g. "
                             "'--dtype=bfloat16')")
    parser.add_argument("--docs_per_request", default="1,8", help="comma-separated")
    parser.add_argument("--concurrency", default="1,2,4,8,16", help="comma-separated")
    parser.add_argument("--min_tokens", type=int, default=64)
    parser.add_argument("--max_tokens", type=int, default=512)
    parser.add_argument("--documents", type=int, default=256,
                        help="distinct documents, cycled through")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds per point, unmeasured")
    parser.add_argument("--duration", type=float, default=15.0,
                        help="measured seconds per point (at least)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="the window also lasts until rounds x concurrency requests were "
                             "answered in it")
    parser.add_argument("--repeat", type=int, default=1, help="sweeps; the table shows medians")
    parser.add_argument("--only", choices=["longenc", "infinity"],
                        help="run one server only (no ratios)")
    parser.add_argument("--output", type=pathlib.Path, help="JSON with every measurement")
    args = parser.parse_args()

    if args.install:
        install(args.infinity_venv)
        return
    faulthandler.register(signal.SIGUSR1)  # kill -USR1 <pid>: every thread's stack, if stuck
    if not SERVER.exists():
        sys.exit(f"{SERVER} not found: build longenc-server first")

    docs = corpus.select(corpus.documents(), min_tokens=args.min_tokens,
                         max_tokens=args.max_tokens, count=args.documents, seed=0)
    texts = [d.text for d in docs]
    lengths = corpus.token_lengths(docs)
    print(f"{len(texts)} linux-doc documents of {args.min_tokens}..{args.max_tokens} tokens "
          f"(mean {statistics.mean(lengths):.0f}, median {statistics.median(lengths):.0f})")
    load_start = load_average()
    print(f"load average at start: {load_start}", flush=True)

    workdir = tempfile.mkdtemp(prefix="vs-infinity-")
    servers = []
    try:
        # Infinity first: no process is forked once this one holds a gRPC channel.
        if args.only != "longenc":
            servers.append(Infinity(args.infinity_venv, args.threads, args.batch_size, workdir))
        if args.only != "infinity":
            servers.insert(0, Longenc(args.threads, args.server_flags.split(), workdir))
        if len(servers) == 2:
            cos = check_same_embeddings(servers[0], servers[1], texts[:16])
            print(f"same embeddings: min cosine {cos:.6f} over 16 documents", flush=True)
            if cos < 0.999:
                sys.exit("the two servers disagree: not the same model or not the same tokens")
        points = [(d, c) for d in map(int, args.docs_per_request.split(","))
                  for c in map(int, args.concurrency.split(","))]
        results = {}  # (server, docs, concurrency) -> [measurement]
        flip = False
        for rep in range(args.repeat):
            for d, c in points:
                order = servers[::-1] if flip else servers
                flip = not flip
                for server in order:
                    m = run_point(server, texts, lengths, d, c, args.warmup, args.duration,
                                  args.rounds)
                    results.setdefault((server.name, d, c), []).append(m)
                    print(f"[{rep + 1}/{args.repeat}] {server.name:8s} docs/req {d} C {c:2d}: "
                          f"{m['tokens_per_s']:7.0f} tok/s  {m['tokens_per_cpu_s']:6.0f} "
                          f"tok/CPU-s  p50 {m['p50_ms']:7.1f} ms  p99 {m['p99_ms']:7.1f} ms  "
                          f"({m['requests']} requests in {m['seconds']:.0f} s; "
                          f"load {load_average()})", flush=True)
    finally:
        for server in servers:
            server.stop()
    load_end = load_average()
    print(f"load average at end: {load_end}\n")

    def med(name, d, c, key):
        return statistics.median(m[key] for m in results[(name, d, c)])

    names = [s.name for s in servers]
    if len(names) == 2:
        print("| docs/request | concurrency | longenc tok/s | Infinity tok/s | ratio | "
              "ratio tok/CPU-s | longenc p50 / p99 ms | Infinity p50 / p99 ms |")
        print("|---|---|---|---|---|---|---|---|")
    else:
        print(f"| docs/request | concurrency | {names[0]} tok/s | tok/CPU-s | p50 / p99 ms |")
        print("|---|---|---|---|---|")
    rows = []
    for d, c in points:
        if len(names) == 2:
            a = {k: med("longenc", d, c, k) for k in results[("longenc", d, c)][0]}
            b = {k: med("infinity", d, c, k) for k in results[("infinity", d, c)][0]}
            ratio = a["tokens_per_s"] / b["tokens_per_s"]
            cpu_ratio = a["tokens_per_cpu_s"] / b["tokens_per_cpu_s"]
            rows.append({"docs_per_request": d, "concurrency": c, "longenc": a, "infinity": b,
                         "ratio": ratio, "cpu_ratio": cpu_ratio})
            print(f"| {d} | {c} | {a['tokens_per_s']:.0f} | {b['tokens_per_s']:.0f} | "
                  f"{ratio:.2f}x | {cpu_ratio:.2f}x | {a['p50_ms']:.0f} / {a['p99_ms']:.0f} | "
                  f"{b['p50_ms']:.0f} / {b['p99_ms']:.0f} |")
        else:
            a = {k: med(names[0], d, c, k) for k in results[(names[0], d, c)][0]}
            rows.append({"docs_per_request": d, "concurrency": c, names[0]: a})
            print(f"| {d} | {c} | {a['tokens_per_s']:.0f} | {a['tokens_per_cpu_s']:.0f} | "
                  f"{a['p50_ms']:.0f} / {a['p99_ms']:.0f} |")
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps({
            "argv": sys.argv[1:], "load_start": load_start, "load_end": load_end,
            "rows": rows,
            "raw": [{"server": s, "docs_per_request": d, "concurrency": c, "runs": v}
                    for (s, d, c), v in results.items()]}, indent=1))


if __name__ == "__main__":
    main()
