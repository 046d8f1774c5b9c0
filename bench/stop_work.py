#!/usr/bin/env python3
"""Work stops when nobody waits: the server's CPU after a long document's caller is gone, and how
long a drain takes with a long document running.

A 16,384-token span of linux-doc text is encoded with i-clustered attention (about 9 s alone on
2 cores). 1) With a 1.5 s deadline: the server's CPU seconds in each 0.25 s after the call ended.
2) Cancelled by the client after 1.5 s: the same. 3) SIGTERM 1.5 s into it, with the default
--shutdown_timeout (30 s: the document finishes) and with --shutdown_timeout=1s (it stops at its
next checkpoint): the time to exit, the exit code and the call's status. Figures in
docs/RELIABILITY.md ("Mixed traffic").

    .venv/bin/python bench/stop_work.py
"""
import os
import pathlib
import signal
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import corpus  # noqa: E402
import soak  # noqa: E402


def cpu_seconds(pid):
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_after(pid, periods=8, period=0.25):
    before, used = cpu_seconds(pid), []
    for _ in range(periods):
        time.sleep(period)
        now = cpu_seconds(pid)
        used.append(now - before)
        before = now
    return used


def main():
    pb2, pb2_grpc = soak.load_stubs()
    ids = corpus.concatenated_ids(16384, seed=11)
    request = pb2.EmbedRequest(documents=[pb2.Document(tokens=pb2.TokenIds(ids=ids))],
                               attention="iclustered")
    server = soak.start_server([], threads=2)
    stub = pb2_grpc.EncoderStub(server.channel)
    try:
        stub.Embed(request, timeout=1.5)
    except Exception:  # noqa: BLE001  (DEADLINE_EXCEEDED is the point)
        pass
    print("deadline passed: server CPU s per 0.25 s:",
          " ".join(f"{x:.2f}" for x in cpu_after(server.pid)), flush=True)
    future = stub.Embed.future(request, timeout=300)
    time.sleep(1.5)
    future.cancel()
    print("client cancelled: server CPU s per 0.25 s:",
          " ".join(f"{x:.2f}" for x in cpu_after(server.pid)), flush=True)
    for flags in ([], ["--shutdown_timeout=1s"]):
        if flags:
            server = soak.start_server(flags, threads=2)
            stub = pb2_grpc.EncoderStub(server.channel)
        future = stub.Embed.future(request, timeout=300)
        time.sleep(1.5)
        t0 = time.monotonic()
        os.kill(server.pid, signal.SIGTERM)
        code = server.proc.wait(timeout=120)
        print(f"SIGTERM 1.5 s into it, {flags or 'default --shutdown_timeout (30s)'}: exited "
              f"{code} after {time.monotonic() - t0:.1f} s; the call: {future.code().name}",
              flush=True)


if __name__ == "__main__":
    main()
