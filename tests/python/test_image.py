"""The container image, built and run for real (podman here; docker where a daemon answers).

The image is built by `scripts/image.sh --from-build build-cpu` (`make image-local`): the
Dockerfile's staging step runs on the LONGENC_CUDA=OFF programs that `make test` built
(`make build-cpu`), and the Dockerfile's runtime stage, verbatim, is built on top. The full
from-source build (`make image`) is the same runtime stage after a compile of about 11 minutes,
measured in docs/DEPLOY.md; it is not repeated here, but LONGENC_IMAGE=longenc:cpu runs these
checks on that image instead of building one.

Checked on the running image, started the way docs/DEPLOY.md starts it (locked down as the
Kubernetes Deployments run it: read-only root, /tmp writable, no capabilities), with the flags moved
off their defaults so that each configuration path shows (FLAGS_port and FLAGS_max_batch_tokens
from the environment, --metrics_address as an argument, the rest from the baked-in
/etc/longenc/server.flags):
- size at most 1 GiB and no CUDA library in it;
- SERVING within the HEALTHCHECK's start period, and the image's own HEALTHCHECK (kept by the
  engine) healthy on the port FLAGS_port chose;
- embeddings equal to the local build's server's for the same texts, short and long;
- a /metrics scrape that counts those requests;
- the server runs as uid 10001, not root, and logs to stderr (the engine's log);
- `stop` drains: an embedding in flight when SIGTERM arrives completes, and the container
  exits 0 well within the grace period.
"""
import concurrent.futures
import json
import os
import pathlib
import re
import shutil
import socket
import subprocess
import time
import urllib.request

import pytest

pytestmark = pytest.mark.needs_programs("longenc-server", "longenc")

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("LONGENC_BUILD_DIR", ROOT / "build"))
CPU_BUILD = pathlib.Path(os.environ.get("LONGENC_CPU_BUILD_DIR", ROOT / "build-cpu"))
TAG = "longenc:cpu-local"
GIB = 1 << 30
STOP_TIMEOUT = 40  # docs/DEPLOY.md: `stop -t 40` (compose stop_grace_period 40s)
# What the Kubernetes Deployments ask of the pod: read-only root with a writable /tmp, no
# capabilities, no privilege escalation.
LOCKED_DOWN = ["--read-only", "--tmpfs", "/tmp", "--cap-drop=ALL",
               "--security-opt", "no-new-privileges"]


def engine():
    """The engine scripts/image.sh uses, with the run flags that work on this host."""
    if shutil.which("docker") and subprocess.run(["docker", "info"], capture_output=True).returncode == 0:
        return ["docker"], ["--network=host"]
    assert shutil.which("podman"), "podman missing (scripts/bootstrap.sh installs it)"
    runtime = ["--runtime", "runc"] if shutil.which("runc") else []
    return ["podman", *runtime], ["--network=host", "--ulimit", "nofile=1024:1024",
                                  "--ulimit", "nproc=1000:1000"]


ENGINE, RUN_FLAGS = engine()


def run(*args, check=True, timeout=600):
    return subprocess.run([*ENGINE, *args], capture_output=True, text=True, check=check,
                          timeout=timeout)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(*args, server, check=True):
    result = subprocess.run([str(BUILD / "bin" / "longenc"), *args, f"--server={server}"],
                            capture_output=True, text=True, timeout=300)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def wait_serving(server, deadline, alive):
    while True:
        health = cli("health", "--timeout=1s", server=server, check=False)
        if health.returncode == 0 and health.stdout.strip() == "SERVING":
            return
        assert alive(), "the server exited before SERVING"
        assert time.monotonic() < deadline, health.stdout + health.stderr
        time.sleep(0.1)


def embed(texts, server):
    out = cli("embed", *texts, server=server).stdout
    return [json.loads(line)["embedding"] for line in out.splitlines() if line.strip()]


TEXTS = [
    "A container image that has really been built and run.",
    " ".join(f"Sentence {i} of a document longer than the model's 512 positions, so that the "
             "long-document path runs inside the image as well." for i in range(60)),
]


@pytest.fixture(scope="module")
def image():
    if os.environ.get("LONGENC_IMAGE"):  # an image built before, e.g. longenc:cpu by `make image`
        return os.environ["LONGENC_IMAGE"]
    for program in ["longenc-server", "longenc"]:
        assert (CPU_BUILD / "bin" / program).exists(), \
            f"{CPU_BUILD}/bin/{program} missing (make build-cpu)"
    before = run("image", "inspect", "--format", "{{.Id}}", TAG, check=False).stdout.strip()
    start = time.monotonic()
    result = subprocess.run([str(ROOT / "scripts" / "image.sh"), "--from-build", str(CPU_BUILD)],
                            cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    after = run("image", "inspect", "--format", "{{.Id}}", TAG).stdout.strip()
    if before and before != after:  # the previous build of this tag: do not let them pile up
        run("rmi", before, check=False)
    print(f"\nimage: {TAG} built in {time.monotonic() - start:.1f} s")
    return TAG


@pytest.fixture(scope="module")
def container(image):
    name = f"longenc-image-test-{os.getpid()}"
    port, metrics_port = free_port(), free_port()
    command = [*ENGINE, "run", "-d", "--name", name, *RUN_FLAGS, *LOCKED_DOWN,
               "-e", f"FLAGS_port={port}", "-e", "FLAGS_max_batch_tokens=8192",
               "-e", "FLAGS_threads=1", image, f"--metrics_address=127.0.0.1:{metrics_port}"]
    start = time.monotonic()
    subprocess.run(command, capture_output=True, text=True, check=True, timeout=120)
    server = f"127.0.0.1:{port}"
    try:
        def alive():
            return run("inspect", "--format", "{{.State.Running}}", name).stdout.strip() == "true"
        wait_serving(server, start + 60, alive)
        startup = time.monotonic() - start
        print(f"\nimage: SERVING {startup:.2f} s after `{ENGINE[0]} run`")
        yield {"name": name, "server": server, "metrics_port": metrics_port, "startup": startup}
    finally:
        logs = run("logs", name, check=False)
        print(logs.stdout[-2000:] + logs.stderr[-2000:])
        run("rm", "-f", *(["-t", "0"] if ENGINE[0] == "podman" else []), name, check=False)


@pytest.fixture(scope="module")
def local_server(tmp_path_factory):
    """The local build's server, the reference the image must equal."""
    port_file = tmp_path_factory.mktemp("local") / "port"
    server = subprocess.Popen(
        [str(BUILD / "bin" / "longenc-server"), "--host=127.0.0.1", "--port=0",
         f"--port_file={port_file}", "--metrics_address=127.0.0.1:0", "--threads=1"],
        stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not port_file.exists() or not port_file.read_text().strip():
            assert server.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        address = f"127.0.0.1:{int(port_file.read_text())}"
        wait_serving(address, deadline, lambda: server.poll() is None)
        yield address
    finally:
        server.terminate()
        server.wait(timeout=60)


def test_size_and_no_cuda_library(image):
    size = int(run("image", "inspect", "--format", "{{.Size}}", image).stdout)
    print(f"\nimage: {size / 1e6:.0f} MB")
    assert size <= GIB, f"{size} bytes > 1 GiB"
    libs = run("run", "--rm", *RUN_FLAGS, "--entrypoint", "ls", image, "/opt/longenc/lib").stdout.split()
    assert "libtorch_cpu.so" in libs, libs
    # The PyPI wheel's libtorch_cpu itself links the CUDA runtime and CUPTI (Kineto's profiler):
    # 5 MB, loaded and never called. No CUDA compute library (cuBLAS, cuDNN, libtorch_cuda, ...).
    cuda = [lib for lib in libs if re.search(r"cuda|cublas|cudnn|cufft|cusparse|curand|nccl|nvrtc|"
                                             r"nvjitlink|nvshmem|cupti", lib)]
    assert all(re.fullmatch(r"lib(cudart|cupti)\.so\.\d+", lib) for lib in cuda), cuda


def test_image_metadata(image):
    inspect = json.loads(run("image", "inspect", image).stdout)[0]
    config = inspect["Config"]
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["longenc-server", "--flagfile=/etc/longenc/server.flags"]
    # podman keeps HEALTHCHECK only in the docker format: scripts/image.sh asks for it. (docker
    # reports it in Config, podman beside it.)
    health = config.get("Healthcheck") or inspect.get("Healthcheck") or {}
    assert health.get("Test") == ["CMD", "longenc-healthcheck"], config
    assert config["Labels"]["io.longenc.variant"] == "cpu"


def test_serving_and_healthcheck_on_the_configured_port(container):
    assert container["startup"] < 60  # the HEALTHCHECK's start period; measured in docs/DEPLOY.md
    # The image's own HEALTHCHECK, run by the engine inside the container: it must find the
    # port FLAGS_port set, not the 50051 of server.flags.
    assert not container["server"].endswith(":50051")
    if ENGINE[0] == "podman":
        check = run("healthcheck", "run", container["name"], check=False)
        assert check.returncode == 0, check.stdout + check.stderr
    inside = run("exec", container["name"], "longenc-healthcheck")
    assert inside.stdout.strip() == "SERVING"
    # A client the project did not write: grpcio with no longenc code, raw bytes on the standard
    # health service (an empty HealthCheckRequest; status SERVING = field 1, value 1).
    import grpc
    with grpc.insecure_channel(container["server"]) as channel:
        check = channel.unary_unary("/grpc.health.v1.Health/Check")
        assert check(b"", timeout=10) == b"\x08\x01"


def test_flags_from_file_environment_and_arguments(container):
    info = json.loads(cli("info", server=container["server"]).stdout)
    assert int(info["limits"]["max_batch_tokens"]) == 8192, info  # FLAGS_max_batch_tokens
    # server.flags (baked in): the per-document limit.
    assert int(info["limits"]["max_tokens_per_document"]) == 131072, info


def test_embeddings_equal_the_local_build(container, local_server):
    got = embed(TEXTS, container["server"])
    want = embed(TEXTS, local_server)
    assert len(got) == len(want) == len(TEXTS)
    for g, w in zip(got, want):
        assert len(g) == len(w) == 384
        assert max(abs(a - b) for a, b in zip(g, w)) < 1e-5
        cosine = sum(a * b for a, b in zip(g, w))  # both L2-normalised
        assert cosine > 0.999999, cosine


def test_metrics_scrape(container):
    embed(["counted by /metrics"], container["server"])
    url = f"http://127.0.0.1:{container['metrics_port']}/metrics"
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    lines = [line for line in text.splitlines() if line.startswith("longenc_")]
    assert len(lines) > 50, text[:2000]
    # The CLI's embed calls (Embed or EmbedStream) and the documents they carried.
    served = sum(float(line.rsplit(" ", 1)[1]) for line in lines
                 if line.startswith("longenc_request_duration_seconds_count")
                 and re.search(r'method="Embed(Stream)?"', line) and 'code="OK"' in line)
    documents = sum(float(line.rsplit(" ", 1)[1]) for line in lines
                    if line.startswith("longenc_documents_total"))
    assert served >= 1 and documents >= 1, lines


def test_runs_as_non_root_and_logs_to_stderr(container):
    assert run("exec", container["name"], "id", "-u").stdout.strip() == "10001"
    status = run("exec", container["name"], "cat", "/proc/1/status").stdout
    assert re.search(r"^Uid:\s+10001\s", status, re.M), status
    assert "longenc-server" in run("exec", container["name"], "cat", "/proc/1/comm").stdout
    logs = run("logs", container["name"])
    assert "SERVING" in logs.stdout + logs.stderr


def test_stop_drains_and_exits_0(container):
    """Last: stops the container. A long embedding is in flight when SIGTERM arrives."""
    # About 2.4k tokens: a few seconds on one thread, so it is still computing at SIGTERM.
    long_text = " ".join(f"word{i} and some more text" for i in range(300))
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        inflight = pool.submit(embed, [long_text], container["server"])
        url = f"http://127.0.0.1:{container['metrics_port']}/metrics"
        deadline = time.monotonic() + 30
        while not re.search(r"^longenc_inflight_requests(\{[^}]*\})? [1-9]",
                            urllib.request.urlopen(url, timeout=10).read().decode(), re.M):
            assert time.monotonic() < deadline and not inflight.done()
            time.sleep(0.02)
        start = time.monotonic()
        run("stop", "-t", str(STOP_TIMEOUT), container["name"], timeout=STOP_TIMEOUT + 30)
        stopped = time.monotonic() - start
        [embedding] = inflight.result(timeout=60)  # finished, not cancelled
    assert len(embedding) == 384
    state = json.loads(run("inspect", container["name"]).stdout)[0]["State"]
    assert state["ExitCode"] == 0, state
    assert stopped < STOP_TIMEOUT - 5, f"stop took {stopped:.1f} s: killed, not drained?"
    logs = run("logs", container["name"])
    assert "draining" in logs.stdout + logs.stderr
    print(f"\nimage: `{ENGINE[0]} stop` drained and exited 0 in {stopped:.2f} s")


def test_compose_and_kubernetes_name_the_image_make_image_builds():
    """make image tags longenc:<variant>; compose and the Deployments run exactly that."""
    import yaml
    script = (ROOT / "scripts" / "image.sh").read_text()
    assert 'tag="${tag:-longenc:$variant}"' in script
    compose = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text())
    assert compose["services"]["longenc"]["image"] == "longenc:${LONGENC_VARIANT:-cpu}"
    for variant in ["cpu", "gpu"]:
        deployment = yaml.safe_load((ROOT / "deploy" / "k8s" / f"deployment-{variant}.yaml").read_text())
        [c] = deployment["spec"]["template"]["spec"]["containers"]
        assert c["image"] == f"longenc:{variant}"
