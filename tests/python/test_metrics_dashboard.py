"""Every PromQL expression of the Grafana dashboard and the alert rules uses only metric names
the service exports, runs on a real Prometheus, and the rules pass promtool.

The exported names come from the real rendered output of longenc::metrics::Metrics
(longenc_metrics_fixture --render), never from a copy kept here.
"""

import json
import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from test_metrics_prometheus import (ROOT, MetricsFixture, PrometheusServer, fixture_binary,
                                     parse_exposition, require_tool)

DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "longenc.json"
ALERTS = ROOT / "deploy" / "alerts"
RULES = sorted(ALERTS.glob("*.rules.yml"))
RULE_TESTS = sorted(ALERTS.glob("*_test.yml"))
PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus.yml"

# Series Prometheus itself adds to every target; a rule may use them without the service
# exporting them.
SYNTHETIC = {"up"}

# Grafana's variables, replaced by values any Prometheus accepts.
GRAFANA_VARIABLES = {"$__rate_interval": "30s", "$__interval": "5s", "$__range": "5m",
                     "$job": ".*", "$instance": ".*"}

KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
            "group_left", "group_right", "inf", "nan", "atan2"}


def metric_names(expr: str) -> set:
    """Metric names a PromQL expression selects (functions, labels, keywords excluded)."""
    text = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`', '""', expr)  # strings
    text = re.sub(r"\{[^}]*\}", " ", text)        # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)       # ranges and subqueries
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for m in re.finditer(r"(?<![\w.$])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", text):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in KEYWORDS:
            continue
        names.add(word)
    return names


def grafana_expressions(dashboard: dict):
    """(where, expression) for every panel target and every templating query."""
    out = []

    def walk(panels, path):
        for panel in panels:
            for target in panel.get("targets", []):
                if "expr" in target:
                    out.append((f"{path}/{panel['title']}/{target['refId']}", target["expr"]))
            walk(panel.get("panels", []), f"{path}/{panel.get('title', '')}")

    walk(dashboard["panels"], "panel")
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") != "query":
            continue
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        # label_values(<selector>, <label>): the selector is PromQL.
        m = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", query)
        out.append((f"variable/{var['name']}", m.group(1) if m else query))
    return out


def rule_expressions():
    out = []
    for path in RULES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                out.append((f"{path.name}/{rule.get('alert') or rule.get('record')}", rule["expr"]))
    return out


def substitute(expr: str) -> str:
    for var, value in sorted(GRAFANA_VARIABLES.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace("${" + var[1:] + "}", value).replace(var, value)
    assert "$" not in expr, f"unknown Grafana variable in {expr}"
    return expr


@pytest.fixture(scope="module")
def exported():
    """family -> type, from the real rendered exposition of Metrics."""
    text = subprocess.run([str(fixture_binary()), "--render"], capture_output=True, text=True,
                          check=True).stdout
    _, types = parse_exposition(text)
    assert len(types) >= 20
    return types


def allowed_names(types: dict) -> set:
    names = set(SYNTHETIC)
    for family, kind in types.items():
        names |= {family + s for s in ("_bucket", "_sum", "_count")} if kind == "histogram" \
            else {family}
    return names


@pytest.fixture(scope="module")
def dashboard():
    return json.loads(DASHBOARD.read_text())


def test_metric_name_extraction():
    expr = ('histogram_quantile(0.99, sum by (le, attention) (rate(foo_bucket{a="b", c=~"x|y"}'
            '[5m] offset 1m))) / on(instance) group_left(model) bar_info * 1e9 > bool 2')
    assert metric_names(expr) == {"foo_bucket", "bar_info"}
    assert metric_names('sum(rate(x_total{code!="OK"}[$__rate_interval])) or vector(0)') == \
        {"x_total"}
    assert metric_names('up{job="longenc"} == 0') == {"up"}


def test_every_expression_uses_only_exported_metric_names(exported, dashboard):
    allowed = allowed_names(exported)
    expressions = grafana_expressions(dashboard) + rule_expressions()
    assert len(expressions) > 25
    unknown = {where: sorted(metric_names(expr) - allowed) for where, expr in expressions
               if metric_names(expr) - allowed}
    assert not unknown, f"names the service does not export: {unknown}"
    for where, expr in expressions:
        assert metric_names(expr), f"{where} selects no metric: {expr}"


def test_the_name_check_rejects_a_misspelt_name(exported):
    allowed = allowed_names(exported)
    assert metric_names("rate(longenc_request_duration_second_count[5m])") - allowed


def test_dashboard_shows_every_exported_family(exported, dashboard):
    used = set()
    for _, expr in grafana_expressions(dashboard):
        used |= metric_names(expr)
    missing = [family for family, kind in exported.items()
               if not ({family + "_bucket", family + "_sum", family + "_count"} if kind == "histogram"
                       else {family}) & used]
    assert not missing, f"no panel shows {missing}"


def test_dashboard_has_the_panels_operators_need(dashboard):
    titles = []

    def walk(panels):
        for panel in panels:
            titles.append(panel["title"].lower())
            walk(panel.get("panels", []))

    walk(dashboard["panels"])
    joined = " | ".join(titles)
    for needed in ["p50 / p95 / p99", "tokens/s", "documents/s", "queue depth", "per batch",
                   "process memory", "device memory", "errors/s by code", "by attention",
                   "rejections"]:
        assert needed in joined, f"no panel about {needed!r}: {titles}"
    latency = [p for p in dashboard["panels"] if "latency" in p["title"].lower()][0]
    quantiles = {re.match(r"histogram_quantile\(([\d.]+)", t["expr"]).group(1)
                 for t in latency["targets"]}
    assert quantiles == {"0.5", "0.95", "0.99"}


def test_promtool_check_rules_and_config():
    promtool = require_tool("promtool")
    assert RULES and RULE_TESTS
    result = subprocess.run([promtool, "check", "rules", *map(str, RULES)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    result = subprocess.run([promtool, "check", "config", str(PROMETHEUS_CONFIG)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_test_rules():
    promtool = require_tool("promtool")
    result = subprocess.run([promtool, "test", "rules", *map(str, RULE_TESTS)],
                            capture_output=True, text=True, cwd=ALERTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_expression_runs_and_has_data_on_prometheus(dashboard):
    """Each dashboard and rule expression is valid PromQL and, with traffic flowing, returns
    series (so label values such as code="OK" or reason="queue_full" match the service)."""
    expressions = [(w, substitute(e)) for w, e in grafana_expressions(dashboard)] + \
        [(w, e) for w, e in rule_expressions()]
    with MetricsFixture("--traffic_seconds=600") as fixture, \
            PrometheusServer([fixture.target]) as prom:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if (prom.value('sum(rate(longenc_rejected_requests_total{reason="queue_full"}[30s]))')
                    or 0) > 0:
                break
            time.sleep(0.5)
        errors, empty = {}, []
        for where, expr in expressions:
            answer = prom.query(expr)
            if answer["status"] != "success":
                errors[where] = answer.get("error")
            elif not answer["data"]["result"] and not where.startswith(RULES[0].name):
                empty.append(where)
        assert not errors, errors
        # Alert expressions are meant to be empty on a healthy service; panels must show data.
        assert not empty, f"panels without data: {empty}"
