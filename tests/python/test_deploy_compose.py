"""deploy/docker-compose.yml, checked without a Docker engine.

The file must parse as a Compose specification document (PyPI compose-spec: a strict parser
that rejects unknown keys and malformed values, after ${VAR:-default} interpolation as
`docker compose` does it), and its parts must fit the repo: the build context holds the
Dockerfile, mounted files exist, ports and health check agree with deploy/server.flags and the
Dockerfile, the inline Prometheus config is deploy/prometheus.yml with the service name as
target (and passes `promtool check config` with the real alert rules), the Grafana data source
is the provisioned one pointing at the prometheus service, and the dashboard provider's path is
where the dashboards are mounted. (No `docker compose config` step: neither Debian 12 nor PyPI
ships a Compose v2 client, and a test that ran only where one happens to exist would skip.)
"""
import pathlib
import re
import shutil
import subprocess

import pytest
import yaml

from test_deploy_dockerfile import flag_file, healthcheck_command, parse_dockerfile

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"


def interpolate(text, env=None):
    """${VAR}, ${VAR:-default} and ${VAR-default} as Compose substitutes them."""
    env = {} if env is None else env

    def substitute(match):
        name, op, default = match.group(1), match.group(2), match.group(3) or ""
        value = env.get(name)
        if op == ":-":
            return value if value else default
        if op == "-":
            return default if value is None else value
        return value or ""

    return re.sub(r"\$\{(\w+)(:?-)?([^}]*)\}", substitute, text)


@pytest.fixture(scope="module")
def compose():
    from compose_spec import PyCompose

    text = interpolate(COMPOSE.read_text())
    PyCompose.from_yaml(text)  # raises ValueError on any deviation from the spec
    return yaml.safe_load(text)


def test_strict_parser_rejects_a_wrong_field():
    """The validator can fail: a misspelt key and a bad port are errors."""
    from compose_spec import PyCompose

    good = interpolate(COMPOSE.read_text())
    for bad in [good.replace("healthcheck:", "healthchek:", 1),
                good.replace('"50051:50051"', '"50051:grpc"', 1),
                good.replace("stop_grace_period: 40s", "stop_grace_period: forty", 1)]:
        assert bad != good
        with pytest.raises(ValueError):
            PyCompose.from_yaml(bad)


def test_services(compose):
    assert set(compose["services"]) == {"longenc", "prometheus", "grafana"}
    longenc = compose["services"]["longenc"]
    context = (DEPLOY / longenc["build"]["context"]).resolve()
    assert context == ROOT and (context / longenc["build"]["dockerfile"]).is_file()
    assert longenc["build"]["args"]["VARIANT"] == "cpu"
    assert longenc["image"] == "longenc:cpu"
    for variant in ["cpu", "gpu"]:
        text = interpolate(COMPOSE.read_text(), {"LONGENC_VARIANT": variant})
        assert yaml.safe_load(text)["services"]["longenc"]["build"]["args"]["VARIANT"] == variant

    flags = flag_file()
    grpc_port = flags["port"]
    metrics_port = flags["metrics_address"].rsplit(":", 1)[1]
    assert set(longenc["ports"]) == {f"{grpc_port}:{grpc_port}", f"{metrics_port}:{metrics_port}"}
    # The same health check as the image's HEALTHCHECK.
    assert longenc["healthcheck"]["test"] == ["CMD"] + healthcheck_command(parse_dockerfile())
    # Docker waits stop_grace_period after SIGTERM before SIGKILL: longer than the drain.
    assert longenc["stop_signal"] == "SIGTERM"
    grace = int(longenc["stop_grace_period"].rstrip("s"))
    assert grace > int(flags["shutdown_timeout"].rstrip("s"))
    # server.flags mounted where the image's ENTRYPOINT reads it; env names flags it may set.
    assert "./server.flags:/etc/longenc/server.flags:ro" in longenc["volumes"]
    tryfromenv = flags["tryfromenv"].split(",")
    for name in longenc["environment"]:
        assert name.startswith("FLAGS_") and name[len("FLAGS_"):] in tryfromenv, name


def test_mounted_files_exist(compose):
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source} does not exist"
            else:
                assert source in compose["volumes"], f"{name}: undeclared volume {source}"


def test_grafana_is_provisioned_with_the_dashboard(compose):
    grafana = compose["services"]["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"])
    provider = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "dashboards" / "longenc.yml").read_text())
    dashboards_path = provider["providers"][0]["options"]["path"]
    assert mounts["./grafana/dashboards"] == dashboards_path
    assert (DEPLOY / "grafana" / "dashboards" / "longenc.json").is_file()
    assert mounts["./grafana/provisioning/dashboards"] == "/etc/grafana/provisioning/dashboards"
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{dashboards_path}/longenc.json"

    [datasource_config] = grafana["configs"]
    assert datasource_config["target"] == "/etc/grafana/provisioning/datasources/prometheus.yml"
    inline = yaml.safe_load(compose["configs"][datasource_config["source"]]["content"])
    repo = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    prometheus_port = compose["services"]["prometheus"]["ports"][0].split(":")[-1]
    assert inline["datasources"][0]["url"] == f"http://prometheus:{prometheus_port}"
    # Only the URL differs from the provisioned data source (uid "prometheus" is what the
    # dashboard's panels reference).
    for source in (inline, repo):
        source["datasources"][0].pop("url")
    assert inline == repo


def test_prometheus_config_is_the_repo_config_with_the_service_target(compose, tmp_path):
    prometheus = compose["services"]["prometheus"]
    [config] = prometheus["configs"]
    assert f"--config.file={config['target']}" in prometheus["command"]
    inline = yaml.safe_load(compose["configs"][config["source"]]["content"])
    repo = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    metrics_port = flag_file()["metrics_address"].rsplit(":", 1)[1]
    assert inline["scrape_configs"][0]["static_configs"] == [
        {"targets": [f"longenc:{metrics_port}"]}]
    for c in (inline, repo):
        c["scrape_configs"][0].pop("static_configs")
    assert inline == repo
    # Rule files resolve relative to the config file: alerts/ is mounted next to it.
    config_dir = pathlib.PurePosixPath(config["target"]).parent
    mounts = dict(v.split(":")[:2] for v in prometheus["volumes"])
    assert mounts["./alerts"] == str(config_dir / "alerts")

    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian package prometheus) is missing"
    (tmp_path / "alerts").mkdir()
    shutil.copy(DEPLOY / "alerts" / "longenc.rules.yml", tmp_path / "alerts")
    (tmp_path / "prometheus.yml").write_text(compose["configs"][config["source"]]["content"])
    result = subprocess.run([promtool, "check", "config", str(tmp_path / "prometheus.yml")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
