"""The real longenc-server's /metrics: promtool-clean, exact counts after known requests, and
scraped by a real Prometheus whose PromQL answer is the request count this test sent."""
import os
import pathlib
import signal
import subprocess
import time

import pytest

from test_metrics_prometheus import (PrometheusServer, free_port, http_get, parse_exposition,
                                     require_tool, sample_value)

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("LONGENC_BUILD_DIR", ROOT / "build"))
MODEL_DIR = pathlib.Path(os.environ.get("LONGENC_MODEL_DIR", ROOT / "models" / "all-MiniLM-L6-v2"))
TEXTS = ["a short document", "a second, slightly longer document about kernels",
         "third", "fourth document", "the fifth and last document of this test"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    binary, cli = BUILD / "bin" / "longenc-server", BUILD / "bin" / "longenc"
    for path in (binary, cli):
        assert path.exists(), f"{path} is missing: run `make build`"
    port_file = tmp_path_factory.mktemp("srv") / "port"
    metrics_port = free_port()
    proc = subprocess.Popen(
        [str(binary), "--host=127.0.0.1", "--port=0", f"--port_file={port_file}",
         f"--metrics_address=127.0.0.1:{metrics_port}", "--threads=2", f"--model_dir={MODEL_DIR}"],
        stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not port_file.exists() or not port_file.read_text().strip():
        assert proc.poll() is None, f"server exited: {proc.stderr.read()}"
        assert time.time() < deadline, "server did not listen"
        time.sleep(0.05)
    address = f"127.0.0.1:{port_file.read_text().strip()}"
    while subprocess.run([str(cli), "health", f"--server={address}"], capture_output=True).returncode:
        assert time.time() < deadline + 120, "server never became SERVING"
        time.sleep(0.2)
    yield address, f"127.0.0.1:{metrics_port}"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0


def embed(address, text):
    subprocess.run([str(BUILD / "bin" / "longenc"), "embed", f"--server={address}", text],
                   check=True, capture_output=True, timeout=120)


def scrape(metrics):
    return parse_exposition(http_get(f"http://{metrics}/metrics"))[0]


def ok_embeds(samples):
    """Successful embedding calls (`longenc embed` sends each batch on EmbedStream)."""
    return sum(v for n, l, v in samples if n == "longenc_request_duration_seconds_count"
               and l.get("code") == "OK" and l.get("method") in ("Embed", "EmbedStream"))


def test_counters_move_by_exactly_the_requests_sent(server):
    address, metrics = server
    before = scrape(metrics)
    for text in TEXTS:
        embed(address, text)
    after = scrape(metrics)
    assert ok_embeds(after) - ok_embeds(before) == len(TEXTS)
    docs = lambda s: sum(v for n, _, v in s if n == "longenc_documents_total")
    assert docs(after) - docs(before) == len(TEXTS)
    count = lambda s, name: sum(v for n, _, v in s if n == name)
    assert count(after, "longenc_document_tokens_count") - count(before, "longenc_document_tokens_count") == len(TEXTS)
    assert count(after, "longenc_tokens_total") > count(before, "longenc_tokens_total")
    assert sample_value(after, "longenc_process_resident_memory_bytes") > 0
    info = [l for n, l, v in after if n == "longenc_model_info" and v == 1]
    assert info and info[0]["model"] == "all-MiniLM-L6-v2" and info[0]["device"] == "cpu"


def test_metrics_pass_promtool(server):
    _, metrics = server
    out = subprocess.run([require_tool("promtool"), "check", "metrics"],
                         input=http_get(f"http://{metrics}/metrics"), capture_output=True, text=True)
    assert out.returncode == 0 and not out.stdout.strip() and not out.stderr.strip(), out


def test_prometheus_counts_the_requests_sent(server):
    address, metrics = server
    with PrometheusServer([metrics]) as prom:
        expr = 'sum(longenc_request_duration_seconds_count{method=~"Embed|EmbedStream", code="OK"})'
        assert prom.wait_for_value(f'up{{instance="{metrics}"}}', 1) == 1
        start = ok_embeds(scrape(metrics))
        for text in TEXTS:
            embed(address, text)
        assert prom.wait_for_value(expr, start + len(TEXTS)) == start + len(TEXTS)
