"""A real Prometheus server scrapes a longenc /metrics endpoint and answers PromQL.

The helpers here (MetricsFixture, PrometheusServer, parse_exposition, ...) are imported by the
other test_metrics_*.py files and are meant for the service's integration test too: point
PrometheusServer at any host:port that serves /metrics (the real longenc-server's
--metrics_address) and call wait_for_value() with the count the test sent.

Until then the target is longenc_metrics_fixture (tests/unit/metrics/): the real
longenc::metrics::Metrics and MetricsExposer with a known set of observations.
promtool and prometheus come from the Debian `prometheus` package (scripts/apt-packages.txt);
if they are missing the tests fail rather than skip.
"""

import json
import math
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def build_dir() -> Path:
    return Path(os.environ.get("LONGENC_BUILD_DIR", ROOT / "build"))


def require_tool(name: str) -> str:
    path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    if path is None:
        pytest.fail(f"{name} not found: install the Debian package `prometheus` (make bootstrap)")
    return path


def fixture_binary() -> Path:
    path = build_dir() / "tests" / "longenc_metrics_fixture"
    if not path.exists():
        pytest.fail(f"{path} not built: build target longenc_metrics_fixture "
                    "(set LONGENC_BUILD_DIR to the build directory)")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode()


class MetricsFixture:
    """Runs longenc_metrics_fixture serving /metrics on 127.0.0.1:<free port>."""

    def __init__(self, *args: str):
        self.args = list(args)
        self.port = free_port()
        self.proc = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.target}/metrics"

    def __enter__(self):
        self.proc = subprocess.Popen(
            [str(fixture_binary()), f"--metrics_address={self.target}", *self.args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()  # printed once the exposer listens
        if "metrics on" not in line:
            self.proc.kill()
            pytest.fail(f"fixture did not start: {line!r} {self.proc.stderr.read()}")
        return self

    def __exit__(self, *exc):
        self.proc.stdin.close()  # the fixture stops when stdin closes
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()
        self.proc.stderr.close()


class PrometheusServer:
    """/usr/bin/prometheus on 127.0.0.1:<free port>, scraping `targets` every second, with a
    generated config and a temporary TSDB directory; killed on exit."""

    def __init__(self, targets, scrape_interval="1s", job="longenc"):
        self.targets = list(targets)
        self.scrape_interval = scrape_interval
        self.job = job
        self.port = free_port()
        self.proc = None
        self.tmp = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self):
        binary = require_tool("prometheus")
        self.tmp = tempfile.TemporaryDirectory(prefix="longenc-prom-")
        config = Path(self.tmp.name) / "prometheus.yml"
        config.write_text(json.dumps({  # JSON is YAML
            "global": {"scrape_interval": self.scrape_interval,
                       "evaluation_interval": self.scrape_interval},
            "scrape_configs": [{"job_name": self.job, "metrics_path": "/metrics",
                                "static_configs": [{"targets": self.targets}]}],
        }))
        self.log = open(Path(self.tmp.name) / "prometheus.log", "w+")
        self.proc = subprocess.Popen(
            [binary, f"--config.file={config}",
             f"--storage.tsdb.path={Path(self.tmp.name) / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._fail("prometheus exited")
            try:
                if "Ready" in http_get(f"{self.url}/-/ready", timeout=1):
                    return self
            except OSError:
                pass
            time.sleep(0.2)
        self._fail("prometheus not ready within 30 s")

    def __exit__(self, *exc):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        self.tmp.cleanup()

    def _fail(self, why):
        self.log.flush()
        self.log.seek(0)
        log = self.log.read()[-3000:]
        if self.proc.poll() is None:
            self.proc.kill()
        pytest.fail(f"{why}; log:\n{log}")

    def query(self, expr: str) -> dict:
        """The /api/v1/query answer (status, data) for an instant query."""
        body = urllib.parse.urlencode({"query": expr}).encode()
        request = urllib.request.Request(f"{self.url}/api/v1/query", data=body)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as e:  # 400 for a bad expression: return its error
            return json.loads(e.read())

    def value(self, expr: str):
        """The single value of a scalar-like vector query, or None when it is empty."""
        answer = self.query(expr)
        assert answer["status"] == "success", (expr, answer)
        result = answer["data"]["result"]
        if not result:
            return None
        assert len(result) == 1, (expr, result)
        return float(result[0]["value"][1])

    def wait_for_value(self, expr: str, expected: float, timeout: float = 60.0) -> float:
        """Polls `expr` until it equals `expected` (bounded wait); returns the last value."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = self.value(expr)
            if last is not None and math.isclose(last, expected):
                return last
            time.sleep(0.5)
        return last


def parse_exposition(text: str):
    """(samples, types): samples are (name, {label: value}, float); types map family -> type."""
    samples, types = [], {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            types[name] = kind
            continue
        if not line or line.startswith("#"):
            continue
        head, value = line.rsplit(" ", 1)
        labels = {}
        name = head
        if "{" in head:
            name, body = head.split("{", 1)
            body = body.rstrip("}")
            for item in filter(None, _split_labels(body)):
                key, val = item.split("=", 1)
                labels[key] = val.strip('"')
        samples.append((name, labels, float(value)))
    return samples, types


def _split_labels(body: str):
    out, current, quoted = [], "", False
    for ch in body:
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            out.append(current)
            current = ""
        else:
            current += ch
    out.append(current)
    return out


def sample_value(samples, name, **labels):
    matches = [v for n, l, v in samples if n == name and l == labels]
    assert len(matches) <= 1
    return matches[0] if matches else None


def test_prometheus_scrapes_the_recorded_request_count():
    requests, rejected = 7, 3
    with MetricsFixture(f"--requests={requests}", f"--rejected={rejected}") as fixture, \
            PrometheusServer([fixture.target]) as prom:
        got = prom.wait_for_value(
            'sum(longenc_request_duration_seconds_count{job="longenc", method="Embed", code="OK"})',
            requests)
        assert got == requests
        assert prom.value('sum(longenc_request_duration_seconds_count{method="Embed", '
                          'code="RESOURCE_EXHAUSTED"})') == rejected
        assert prom.value('longenc_rejected_requests_total{reason="queue_full"}') == rejected
        assert prom.value('sum(longenc_documents_total)') == requests
        assert prom.value(f'up{{instance="{fixture.target}"}}') == 1
        # A name the service does not export is empty, not an error: the check above is real.
        assert prom.value('longenc_request_duration_seconds_count{method="NoSuchMethod"}') is None


def test_prometheus_reports_a_bad_query_as_an_error():
    with PrometheusServer([]) as prom:
        answer = prom.query("sum(rate(longenc_tokens_total[1m])")
        assert answer["status"] == "error"
