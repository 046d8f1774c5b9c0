"""Drains one longenc-server under load, again and again, and counts how each call ended.

Eight threads send short Embed calls without gRPC retries; after 20 successes the server gets
SIGTERM. A safe ending is OK or UNAVAILABLE before any work ("server is draining", no
connection, backend unhealthy); anything else (CANCELLED, "GOAWAY received") is a call a client
cannot safely retry. Run it with and without --watch_health (the client-side health checking the
longenc CLI uses) to see what watching health buys:

    .venv/bin/python bench/drain_race.py --drains 8 --watch_health
"""
import argparse
import collections
import json
import pathlib
import sys
import tempfile
import threading
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from encoder_stubs import load_stubs  # noqa: E402
from scaleout_cluster import start_replicas  # noqa: E402

SAFE = ("server is draining", "model is loading", "failed to connect",
        "connections to all backends failing")


def one_drain(workdir, index, pb, pb_grpc, watch_health, endings):
    import grpc

    replica = start_replicas(workdir / str(index), 1, threads=1)[0]
    config = {"loadBalancingConfig": [{"round_robin": {}}]}
    if watch_health:
        config["healthCheckConfig"] = {"serviceName": "longenc.v1.Encoder"}
    channel = grpc.insecure_channel(replica.address, options=[
        ("grpc.enable_retries", 0), ("grpc.service_config", json.dumps(config))])
    stub = pb_grpc.EncoderStub(channel)
    request = pb.EmbedRequest(documents=[pb.Document(text="hello world " * 30)])
    stop, ok = threading.Event(), [0]

    def worker():
        while not stop.is_set():
            try:
                stub.Embed(request, timeout=30)
                endings["OK"] += 1
                ok[0] += 1
            except grpc.RpcError as e:
                details = e.details() or ""
                safe = e.code() == grpc.StatusCode.UNAVAILABLE and any(s in details for s in SAFE)
                endings["UNAVAILABLE (safe)" if safe else f"{e.code().name}: {details[:60]}"] += 1
                time.sleep(0.01)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    while ok[0] < 20:
        time.sleep(0.01)
    code = replica.stop()
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join()
    channel.close()
    return code


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drains", type=int, default=6)
    parser.add_argument("--watch_health", action="store_true",
                        help="client-side health checking (healthCheckConfig), as the CLI does")
    args = parser.parse_args()
    endings = collections.Counter()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = pathlib.Path(tmp)
        pb, pb_grpc = load_stubs()
        for i in range(args.drains):
            (workdir / str(i)).mkdir()
            code = one_drain(workdir, i, pb, pb_grpc, args.watch_health, endings)
            print(f"drain {i + 1}/{args.drains}: exit {code}", file=sys.stderr, flush=True)
    unsafe = sum(n for k, n in endings.items() if k not in ("OK", "UNAVAILABLE (safe)"))
    print(json.dumps({"drains": args.drains, "watch_health": args.watch_health,
                      "unsafe": unsafe, "endings": dict(endings)}))


if __name__ == "__main__":
    main()
