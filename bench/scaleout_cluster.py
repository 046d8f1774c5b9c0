"""Helpers shared by bench/scaleout.py and tests/python/test_scaleout.py: N real longenc-server
replicas on 127.0.0.1 (gRPC on port 0, each its own /metrics port), their health, and their
Prometheus counters.
"""
import os
import pathlib
import re
import signal
import socket
import subprocess
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[1]
BUILD = pathlib.Path(os.environ.get("LONGENC_BUILD_DIR", ROOT / "build"))
if not BUILD.is_absolute():
    BUILD = ROOT / BUILD
MODEL_DIR = pathlib.Path(os.environ.get("LONGENC_MODEL_DIR",
                                        ROOT / "models" / "all-MiniLM-L6-v2"))
SERVER = BUILD / "bin" / "longenc-server"
CLI = BUILD / "bin" / "longenc"

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse_metrics(text):
    """[(name, {label: value}, float)] of a Prometheus text exposition."""
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match:
            labels = dict(_LABEL.findall(match.group(2) or ""))
            samples.append((match.group(1), labels, float(match.group(3))))
    return samples


class Replica:
    """One longenc-server process on loopback; `env` is added to this process' environment."""

    def __init__(self, workdir, index, threads=1, extra_flags=(), env=None):
        self.workdir = pathlib.Path(workdir)
        self.index = index
        self.metrics_port = free_port()
        port_file = self.workdir / f"replica{index}.port"
        self.log_path = self.workdir / f"replica{index}.log"
        command = [str(SERVER), "--host=127.0.0.1", "--port=0", f"--port_file={port_file}",
                   f"--metrics_address=127.0.0.1:{self.metrics_port}", "--device=cpu",
                   f"--threads={threads}", f"--model_dir={MODEL_DIR}", "--shutdown_timeout=30s",
                   *extra_flags]
        port_file.unlink(missing_ok=True)  # a stale one from an earlier run names a dead port
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **(env or {})})
        deadline = time.time() + 120
        while not port_file.exists() or not port_file.read_text().strip():
            if self.proc.poll() is not None:
                self._log.close()
                raise RuntimeError(f"replica {index} exited: {self.log()}")
            if time.time() > deadline:
                raise RuntimeError(f"replica {index} did not listen: {self.log()}")
            time.sleep(0.05)
        self.port = int(port_file.read_text())
        self.address = f"127.0.0.1:{self.port}"

    @property
    def pid(self):
        return self.proc.pid

    def log(self):
        return self.log_path.read_text()

    def wait_serving(self, timeout=180):
        deadline = time.time() + timeout
        while True:
            result = subprocess.run([str(CLI), "health", f"--server={self.address}",
                                     "--timeout=5s"], capture_output=True, text=True)
            if result.returncode == 0:
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"replica {self.index} exited: {self.log()}")
            if time.time() > deadline:
                raise RuntimeError(f"replica {self.index} never SERVING: {result.stderr}")
            time.sleep(0.2)

    def metrics(self):
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            return parse_metrics(response.read().decode())

    def value(self, name, **labels):
        return sum(v for n, l, v in self.metrics()
                   if n == name and all(l.get(k) == want for k, want in labels.items()))

    def served_ok(self, method="Embed"):
        """Calls of `method` this replica finished with OK (its /metrics)."""
        return self.value("longenc_request_duration_seconds_count", method=method, code="OK")

    def rss_bytes(self):
        return self.value("longenc_process_resident_memory_bytes")

    def peak_rss_bytes(self):
        return self.value("longenc_process_peak_resident_memory_bytes")

    def terminate(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout=90):
        self.terminate()
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()
        finally:
            self._log.close()


def start_replicas(workdir, count, threads=1, extra_flags=()):
    replicas = []
    try:
        for i in range(count):
            replicas.append(Replica(workdir, i, threads, extra_flags))
        for r in replicas:
            r.wait_serving()
    except BaseException:
        for r in replicas:
            r.stop()
        raise
    return replicas
