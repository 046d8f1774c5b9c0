"""The /metrics exposition: promtool-clean, histograms consistent, counts exact.

By default it scrapes longenc_metrics_fixture (the real Metrics + MetricsExposer with a known
script of observations). Set LONGENC_METRICS_URL=http://host:port/metrics to run the format
checks (promtool, histograms, metric set) against any running server instead; the exact-count
test needs the fixture's known script and always uses it.
"""

import math
import os
import subprocess

import pytest

from test_metrics_prometheus import (MetricsFixture, http_get, parse_exposition, require_tool,
                                     sample_value)

# The documented metric set (docs/METRICS.md): names, types and label sets are fixed
# (dashboards and alerts rely on them).
FIXED_FAMILIES = {
    "longenc_request_duration_seconds": ("histogram", {"method", "code"}),
    "longenc_queue_duration_seconds": ("histogram", set()),
    "longenc_tokenization_duration_seconds": ("histogram", set()),
    "longenc_inference_duration_seconds": ("histogram", {"attention"}),
    "longenc_batch_tokens": ("histogram", set()),
    "longenc_batch_documents": ("histogram", set()),
    "longenc_document_tokens": ("histogram", set()),
    "longenc_batch_peak_memory_bytes": ("histogram", set()),
    "longenc_batch_longest_step_seconds": ("histogram", set()),
    "longenc_preempted_batches_total": ("counter", set()),
    "longenc_documents_total": ("counter", {"attention", "position_mode"}),
    "longenc_tokens_total": ("counter", set()),
    "longenc_truncated_documents_total": ("counter", set()),
    "longenc_chunks_total": ("counter", set()),
    "longenc_rejected_requests_total": ("counter", {"reason"}),
    "longenc_queue_documents": ("gauge", set()),
    "longenc_inflight_requests": ("gauge", set()),
    "longenc_process_resident_memory_bytes": ("gauge", set()),
    "longenc_process_peak_resident_memory_bytes": ("gauge", set()),
    "longenc_device_memory_allocated_bytes": ("gauge", {"device"}),
    "longenc_device_memory_reserved_bytes": ("gauge", {"device"}),
    "longenc_device_memory_peak_bytes": ("gauge", {"device"}),
    "longenc_device_memory_total_bytes": ("gauge", {"device"}),
    "longenc_model_info": ("gauge", {"model", "attention", "position_mode", "device", "dtype",
                                     "version"}),
}


@pytest.fixture(scope="module")
def exposition():
    url = os.environ.get("LONGENC_METRICS_URL")
    if url:
        return http_get(url)
    with MetricsFixture("--requests=9", "--rejected=2", "--traffic_seconds=0.5") as fixture:
        return http_get(fixture.url)


def test_promtool_check_metrics_reports_nothing(exposition):
    promtool = require_tool("promtool")
    result = subprocess.run([promtool, "check", "metrics"], input=exposition,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == "", \
        result.stdout + result.stderr


def test_promtool_catches_a_broken_exposition(exposition):
    # Proof that the check above can fail: a counter without _total is a lint finding.
    promtool = require_tool("promtool")
    broken = exposition + "# HELP longenc_oops Broken.\n# TYPE longenc_oops counter\nlongenc_oops 1\n"
    result = subprocess.run([promtool, "check", "metrics"], input=broken,
                            capture_output=True, text=True)
    assert result.returncode != 0 and "longenc_oops" in result.stdout + result.stderr


def test_every_documented_family_is_exported_with_its_type_and_labels(exposition):
    samples, types = parse_exposition(exposition)
    assert {name: kind for name, kind in types.items() if name.startswith("longenc_")} == \
        {name: kind for name, (kind, _) in FIXED_FAMILIES.items()}
    for family, (kind, labels) in FIXED_FAMILIES.items():
        names = {family + s for s in ("_bucket", "_sum", "_count")} if kind == "histogram" \
            else {family}
        found = [(n, l) for n, l, _ in samples if n in names]
        assert found, f"{family} has no series"
        for name, got in found:
            expected = labels | ({"le"} if name.endswith("_bucket") else set())
            assert set(got) == expected, (name, got)
    info = [v for n, _, v in samples if n == "longenc_model_info"]
    assert info == [1.0]


def test_histogram_buckets_are_cumulative_and_inf_equals_count(exposition):
    samples, types = parse_exposition(exposition)
    checked = 0
    for family, kind in types.items():
        if kind != "histogram":
            continue
        series = {}
        for name, labels, value in samples:
            if name == family + "_bucket":
                key = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
                series.setdefault(key, []).append((float(labels["le"]), value))
        assert series, family
        for key, buckets in series.items():
            bounds = [b for b, _ in buckets]
            assert bounds == sorted(bounds) and len(set(bounds)) == len(bounds), family
            assert math.isinf(bounds[-1]), f"{family}{key}: no +Inf bucket"
            counts = [c for _, c in buckets]
            assert all(a <= b for a, b in zip(counts, counts[1:])), f"{family}{key} not cumulative"
            count = sample_value(samples, family + "_count", **dict(key))
            assert counts[-1] == count, f"{family}{key}: +Inf {counts[-1]} != _count {count}"
            checked += 1
    assert checked >= 8


def test_bucket_ranges_fit_a_long_document_service(exposition):
    samples, _ = parse_exposition(exposition)

    def bounds(family):
        return sorted({float(l["le"]) for n, l, _ in samples if n == family + "_bucket"})

    seconds = bounds("longenc_queue_duration_seconds")
    assert seconds[0] == 0.001 and seconds[-2] == 120
    tokens = bounds("longenc_document_tokens")
    assert tokens[0] == 1 and tokens[-2] == 131072
    assert bounds("longenc_batch_peak_memory_bytes")[-2] >= 32e9


def test_counts_move_by_exactly_the_recorded_observations():
    requests, rejected = 9, 2
    with MetricsFixture(f"--requests={requests}", f"--rejected={rejected}") as fixture:
        samples, _ = parse_exposition(http_get(fixture.url))
    tokens = [64 << (i % 6) for i in range(requests)]
    v = lambda name, **labels: sample_value(samples, name, **labels)  # noqa: E731
    assert v("longenc_request_duration_seconds_count", method="Embed", code="OK") == requests
    assert v("longenc_request_duration_seconds_count", method="Embed",
             code="RESOURCE_EXHAUSTED") == rejected
    assert v("longenc_request_duration_seconds_count", method="GetInfo", code="OK") == 1
    # Series created at start-up for every RPC exist at zero until used.
    assert v("longenc_request_duration_seconds_count", method="Tokenize", code="OK") == 0
    assert v("longenc_rejected_requests_total", reason="queue_full") == rejected
    assert v("longenc_rejected_requests_total", reason="cancelled") == 0
    assert v("longenc_documents_total", attention="full", position_mode="chunk") == requests
    assert v("longenc_tokens_total") == sum(tokens)
    assert v("longenc_document_tokens_count") == requests
    assert v("longenc_document_tokens_sum") == sum(tokens)
    assert v("longenc_document_tokens_bucket", le="128") == sum(t <= 128 for t in tokens)
    assert v("longenc_truncated_documents_total") == sum(i % 5 == 4 for i in range(requests))
    assert v("longenc_chunks_total") == sum(t // 256 + 1 for i, t in enumerate(tokens) if i % 3 == 0)
    assert v("longenc_batch_documents_count") == requests
    assert v("longenc_inference_duration_seconds_count", attention="full") == requests
    assert v("longenc_queue_duration_seconds_count") == requests
    assert v("longenc_tokenization_duration_seconds_count") == requests
    assert v("longenc_batch_peak_memory_bytes_sum") == sum(t * 4096 for t in tokens)
    assert v("longenc_inflight_requests") == 0
    assert v("longenc_process_resident_memory_bytes") > 1 << 20
    assert v("longenc_process_peak_resident_memory_bytes") >= \
        v("longenc_process_resident_memory_bytes")
    assert v("longenc_device_memory_allocated_bytes", device="cpu") > 0
    assert v("longenc_device_memory_total_bytes", device="cuda:0") == 24 << 30
