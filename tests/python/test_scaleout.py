"""Scale-out on loopback: three real longenc-server replicas (real model, CPU) behind one client
that balances with gRPC round_robin.

- The `longenc` CLI given three addresses spreads its calls over all replicas (their /metrics).
- A grpcio client with round_robin over the three addresses: every replica serves, and the
  replicas' /metrics count exactly the calls the client made.
- One replica gets SIGTERM mid-run. No call is lost: the draining replica finishes what it
  accepted, and the client retries only UNAVAILABLE that provably came before any server
  accepted the call (the server's "draining"/"loading" rejection, or no connection at all).
  Every response equals the single-replica embedding of its text, the victim exits 0, and the
  two survivors keep serving after it is gone.

Bounded: a few hundred short documents, every call with a deadline. Needs
$LONGENC_BUILD_DIR/bin/longenc-server and longenc (fails without them).
"""
import concurrent.futures
import json
import pathlib
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from encoder_stubs import load_stubs  # noqa: E402
from scaleout_cluster import CLI, SERVER, start_replicas  # noqa: E402

pytestmark = pytest.mark.needs_programs("longenc-server", "longenc")

CONCURRENCY = 6
CALL_TIMEOUT_S = 60
# UNAVAILABLE with one of these details never reached the service's work: the server refused it
# at admission, or no connection to any server was made. Anything else is not retried.
NOT_ACCEPTED = ("server is draining", "model is loading", "failed to connect",
                "Connection refused", "connections to all backends failing")
MAX_ATTEMPTS = 5

WORDS = ("long documents need embeddings that keep the meaning of every section while the "
         "service spreads the load across replicas behind one client").split()


def texts(n):
    rng = np.random.default_rng(7)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(8, 60)))) for _ in range(n)]


@pytest.fixture(scope="module")
def stubs():
    return load_stubs()


@pytest.fixture(scope="module")
def replicas(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("replicas")
    reps = start_replicas(workdir, 3, threads=1)
    yield reps
    for r in reps:
        r.stop()


def round_robin_channel(replicas):
    import grpc

    target = "ipv4:" + ",".join(r.address for r in replicas)
    # As the longenc CLI does: a replica whose health turns NOT_SERVING (draining) gets no more
    # calls. gRPC's own retries are off: the only retries are the conservative ones below.
    config = {"loadBalancingConfig": [{"round_robin": {}}],
              "healthCheckConfig": {"serviceName": "longenc.v1.Encoder"}}
    return grpc.insecure_channel(target, options=[("grpc.service_config", json.dumps(config)),
                                                  ("grpc.enable_retries", 0)])


class Client:
    """Embeds one text per call; retries only calls no server accepted."""

    def __init__(self, channel, stubs):
        self.pb, pb_grpc = stubs
        self.stub = pb_grpc.EncoderStub(channel)
        self.retries = []   # details of each retried attempt
        self.failures = []  # (text index, code, details) of calls given up
        self.lock = threading.Lock()

    def embed(self, index, text):
        import grpc

        request = self.pb.EmbedRequest(documents=[self.pb.Document(text=text, id=str(index))])
        for attempt in range(MAX_ATTEMPTS):
            started = time.monotonic()
            try:
                response = self.stub.Embed(request, timeout=CALL_TIMEOUT_S, wait_for_ready=True)
                return index, started, time.monotonic(), np.array(
                    response.embeddings[0].values, dtype=np.float32)
            except grpc.RpcError as e:
                details = e.details() or ""
                safe = (e.code() == grpc.StatusCode.UNAVAILABLE and
                        any(s in details for s in NOT_ACCEPTED))
                with self.lock:
                    (self.retries if safe and attempt + 1 < MAX_ATTEMPTS else self.failures
                     ).append((index, e.code().name, details))
                if not safe:
                    return None
                time.sleep(0.05 * (attempt + 1))
        return None


def run_load(client, docs, on_done=None):
    """Embeds every document with CONCURRENCY calls in flight; returns the results by index."""
    results = {}
    with concurrent.futures.ThreadPoolExecutor(CONCURRENCY) as pool:
        futures = [pool.submit(client.embed, i, t) for i, t in enumerate(docs)]
        for future in concurrent.futures.as_completed(futures, timeout=600):
            result = future.result()
            if result is not None:
                results[result[0]] = result
                if on_done is not None:
                    on_done(len(results))
    return results


def served(replicas):
    return [r.served_ok() for r in replicas]


def test_cli_spreads_calls_over_all_replicas(replicas):
    before = served(replicas)
    servers = ",".join(r.address for r in replicas)
    result = subprocess.run([str(CLI), "bench", f"--server={servers}", "--requests=30",
                             "--concurrency=3", "--length=32", "--warmup=0", "--format=json"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["ok"] == 30, report
    delta = [a - b for a, b in zip(served(replicas), before)]
    assert all(d > 0 for d in delta), f"calls per replica: {delta}"
    assert sum(delta) == 30, delta


def test_round_robin_load_is_served_by_every_replica(replicas, stubs):
    docs = texts(60)
    before = served(replicas)
    client = Client(round_robin_channel(replicas), stubs)
    results = run_load(client, docs)
    assert not client.failures and not client.retries
    assert len(results) == len(docs)
    delta = [a - b for a, b in zip(served(replicas), before)]
    # Every replica served, and together exactly the calls made: each counted once.
    assert all(d > 0 for d in delta), f"calls per replica: {delta}"
    assert sum(delta) == len(docs), delta


def test_losing_a_replica_mid_run_loses_no_request(replicas, stubs):
    docs = texts(180)
    # Reference embeddings from one replica alone.
    import grpc

    pb, pb_grpc = stubs
    single = pb_grpc.EncoderStub(grpc.insecure_channel(replicas[2].address))
    reference = {}
    for start in range(0, len(docs), 32):
        request = pb.EmbedRequest(documents=[pb.Document(text=t) for t in docs[start:start + 32]])
        for k, e in enumerate(single.Embed(request, timeout=CALL_TIMEOUT_S).embeddings):
            reference[start + k] = np.array(e.values, dtype=np.float32)

    victim, survivors = replicas[0], replicas[1:]
    before = served(survivors)
    kill_after = 40
    exit_info = {}

    def victim_exit_watch():
        exit_info["code"] = victim.proc.wait(timeout=120)
        exit_info["time"] = time.monotonic()
        exit_info["survivors"] = served(survivors)

    def on_done(count):
        if count == kill_after and "sent" not in exit_info:
            exit_info["sent"] = time.monotonic()
            victim.terminate()
            threading.Thread(target=victim_exit_watch, daemon=True).start()

    client = Client(round_robin_channel(replicas), stubs)
    results = run_load(client, docs, on_done)
    deadline = time.time() + 120
    while "code" not in exit_info and time.time() < deadline:
        time.sleep(0.1)

    # No call lost, and no retry of a call a server had accepted.
    assert not client.failures, client.failures[:5]
    assert len(results) == len(docs)
    for _, code, details in client.retries:
        assert code == "UNAVAILABLE" and any(s in details for s in NOT_ACCEPTED), details
    # Each response is the embedding of its own text.
    for i, (_, _, _, embedding) in results.items():
        np.testing.assert_allclose(embedding, reference[i], atol=1e-4)

    # The victim drained and exited cleanly.
    assert exit_info.get("code") == 0, victim.log()[-2000:]
    after_exit = [i for i, (_, started, _, _) in results.items() if started > exit_info["time"]]
    survivors_total = sum(a - b for a, b in zip(served(survivors), before))
    assert survivors_total <= len(docs)

    # With the victim gone, the same client keeps going on the two survivors: a second run (so
    # the check does not depend on how long the victim took to exit) is served in full by both.
    more = texts(40)
    before_more = served(survivors)
    more_results = run_load(client, more)
    assert not client.failures, client.failures[:5]
    assert len(more_results) == len(more)
    delta = [a - b for a, b in zip(served(survivors), before_more)]
    assert all(d > 0 for d in delta) and sum(delta) == len(more), delta
    print(f"\nscale-out: {len(docs)} calls, victim SIGTERM after {kill_after}, "
          f"{len(client.retries)} safe retries, {len(after_exit)} calls after the victim exited, "
          f"survivors served {survivors_total}, then {delta} of {len(more)} more")
