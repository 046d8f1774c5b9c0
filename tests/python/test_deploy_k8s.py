"""deploy/k8s/, checked without a cluster.

Every built-in resource is validated strictly (unknown fields are errors) against the Kubernetes
OpenAPI schemas bundled in PyPI kubernetes-validate, for the oldest version the manifests claim
(1.27: gRPC probes are GA) and the newest bundled. The PodMonitor (a CRD, no bundled schema) is
checked against the fields of the Prometheus Operator's monitoring.coreos.com/v1 PodMonitor.
Then the parts must fit together and fit the server: probes on the gRPC port and the health
service name the server registers, the grace period covers preStop + --shutdown_timeout, the
Service selects the pods, the HPA scales the Deployment on metrics the prometheus-adapter rules
serve from series the server exports, the GPU Deployment differs from the CPU one only where it
must, and the ConfigMap carries deploy/server.flags.
"""
import copy
import pathlib
import re

import pytest
import yaml

from test_deploy_dockerfile import flag_file, parse_dockerfile

ROOT = pathlib.Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
VERSIONS = ["1.27.0", "1.37.0"]
BUILTIN = ["configmap.yaml", "deployment-cpu.yaml", "deployment-gpu.yaml", "service.yaml",
           "hpa.yaml", "pdb.yaml"]


def load(name):
    return yaml.safe_load((K8S / name).read_text())


def pod_spec(deployment):
    return deployment["spec"]["template"]["spec"]


def container(deployment):
    [c] = pod_spec(deployment)["containers"]
    return c


def quantity(value):
    """Kubernetes quantity to a float (bytes or cores)."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "m": 1e-3, "k": 1e3,
             "M": 1e6, "G": 1e9}
    match = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(value))
    return float(match.group(1)) * units.get(match.group(2), 1)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", BUILTIN)
def test_schema_strict(name, version):
    import kubernetes_validate

    kubernetes_validate.validate(load(name), version, strict=True)


@pytest.mark.parametrize("mutate", [
    lambda d: container(d)["readinessProbe"].update(grpcc=container(d)["readinessProbe"]["grpc"]),
    lambda d: container(d)["resources"]["limits"].update(memory=["3Gi"]),
    lambda d: pod_spec(d).update(terminationGracePeriod=45),
    lambda d: container(d)["ports"][0].update(containerPort="grpc"),
])
def test_schema_check_fails_on_a_wrong_field(mutate):
    import kubernetes_validate

    deployment = load("deployment-cpu.yaml")
    mutate(deployment)
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, VERSIONS[-1], strict=True)


def test_kustomization_lists_existing_files():
    kustomization = load("kustomization.yaml")
    for resource in kustomization["resources"]:
        assert (K8S / resource).is_file(), resource
    assert "deployment-cpu.yaml" in kustomization["resources"]
    assert "podmonitor.yaml" in kustomization["resources"]


# monitoring.coreos.com/v1 PodMonitor: the fields of the CRD this file may use.
PODMONITOR_SPEC = {"jobLabel", "podTargetLabels", "podMetricsEndpoints", "selector",
                   "namespaceSelector", "sampleLimit", "targetLimit", "labelLimit",
                   "attachMetadata", "scrapeProtocols", "scrapeClassicHistograms"}
PODMONITOR_ENDPOINT = {"port", "portNumber", "targetPort", "path", "scheme", "params",
                       "interval", "scrapeTimeout", "honorLabels", "honorTimestamps",
                       "relabelings", "metricRelabelings", "enableHttp2", "followRedirects",
                       "filterRunning", "basicAuth", "bearerTokenSecret", "authorization",
                       "oauth2", "tlsConfig", "proxyUrl", "trackTimestampsStaleness"}


def check_podmonitor(monitor):
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["kind"] == "PodMonitor"
    assert set(monitor) <= {"apiVersion", "kind", "metadata", "spec"}
    spec = monitor["spec"]
    assert set(spec) <= PODMONITOR_SPEC, set(spec) - PODMONITOR_SPEC
    assert set(spec["selector"]) <= {"matchLabels", "matchExpressions"}
    for endpoint in spec["podMetricsEndpoints"]:
        assert set(endpoint) <= PODMONITOR_ENDPOINT, set(endpoint) - PODMONITOR_ENDPOINT
        for key in ("interval", "scrapeTimeout"):
            assert re.fullmatch(r"([0-9]+(ms|s|m|h))+", endpoint[key]), endpoint[key]


def test_podmonitor():
    monitor = load("podmonitor.yaml")
    check_podmonitor(monitor)
    broken = copy.deepcopy(monitor)
    broken["spec"]["podMetricEndpoints"] = broken["spec"].pop("podMetricsEndpoints")
    with pytest.raises(AssertionError):
        check_podmonitor(broken)

    deployment = load("deployment-cpu.yaml")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    spec = monitor["spec"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    # job="longenc", the job of the dashboard and of the alert rules.
    assert labels[spec["jobLabel"]] == "longenc"
    rules = (ROOT / "deploy" / "alerts" / "longenc.rules.yml").read_text()
    assert 'job="longenc"' in rules
    [endpoint] = spec["podMetricsEndpoints"]
    ports = {p["name"]: p["containerPort"] for p in container(deployment)["ports"]}
    metrics_port = int(flag_file()["metrics_address"].rsplit(":", 1)[1])
    assert ports[endpoint["port"]] == metrics_port
    assert endpoint["path"] == "/metrics"


def seconds(duration):
    return int(duration.rstrip("s"))


@pytest.mark.parametrize("name", ["deployment-cpu.yaml", "deployment-gpu.yaml"])
def test_deployment_fits_the_server(name):
    deployment = load(name)
    c = container(deployment)
    flags = flag_file()
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports["grpc"] == int(flags["port"])
    assert ports["metrics"] == int(flags["metrics_address"].rsplit(":", 1)[1])

    # Native gRPC probes on the standard health service; readiness on the Encoder service the
    # server sets (NOT_SERVING while loading and while draining).
    source = (ROOT / "server" / "grpc_server.cc").read_text()
    service_name = re.search(r'ServiceName\(\) \{ return "([^"]+)"', source).group(1)
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["grpc"]["port"] == ports["grpc"], probe
    assert c["readinessProbe"]["grpc"]["service"] == service_name
    startup = c["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120, "model load time"

    # preStop sleep, then SIGTERM drains for at most --shutdown_timeout, all inside the grace
    # period.
    command = c["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    grace = pod_spec(deployment)["terminationGracePeriodSeconds"]
    assert grace >= int(command[1]) + seconds(flags["shutdown_timeout"]) + 5

    # The image's user, non-root; the flag file where the ENTRYPOINT reads it.
    dockerfile = parse_dockerfile()
    user = next(a for k, a, _ in dockerfile if k == "USER")
    security = pod_spec(deployment)["securityContext"]
    assert security["runAsNonRoot"] is True
    assert f"{security['runAsUser']}:{security['runAsGroup']}" == user
    entrypoint = next(a for k, a, _ in dockerfile if k == "ENTRYPOINT")
    flagfile = re.search(r"--flagfile=([^\"]+)", entrypoint).group(1)
    [mount] = [m for m in c["volumeMounts"] if m["name"] == "flags"]
    assert f"{mount['mountPath']}/server.flags" == flagfile
    [volume] = [v for v in pod_spec(deployment)["volumes"] if v["name"] == "flags"]
    assert volume["configMap"]["name"] == load("configmap.yaml")["metadata"]["name"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    # The read-only root needs a writable volume where server.flags has the port file written
    # (the image's HEALTHCHECK reads it).
    port_dir = str(pathlib.PurePosixPath(flags["port_file"]).parent)
    assert port_dir in {m["mountPath"] for m in c["volumeMounts"]}, port_dir

    # Environment only sets flags that server.flags lets the environment set.
    tryfromenv = flags["tryfromenv"].split(",")
    for env in c["env"]:
        assert env["name"].startswith("FLAGS_") and env["name"][6:] in tryfromenv

    resources = c["resources"]
    for key in ("cpu", "memory"):
        assert quantity(resources["requests"][key]) <= quantity(resources["limits"][key])
    # Measured RSS (docs/DEPLOY.md "Sizing") must fit the request with headroom.
    match = re.search(r"measured peak RSS: ([0-9.]+) MiB", (ROOT / "docs" / "DEPLOY.md").read_text())
    assert match, 'docs/DEPLOY.md no longer states its "measured peak RSS: N MiB"'
    if name == "deployment-cpu.yaml":
        assert quantity(resources["requests"]["memory"]) >= 1.2 * float(match.group(1)) * 2**20


def test_gpu_and_cpu_deployments_differ_only_where_needed():
    cpu, gpu = load("deployment-cpu.yaml"), load("deployment-gpu.yaml")
    assert "nvidia.com/gpu" not in container(cpu)["resources"]["limits"]
    assert container(gpu)["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container(gpu)["resources"]["requests"]["nvidia.com/gpu"] == 1
    assert {e["name"]: e.get("value") for e in container(gpu)["env"]}["FLAGS_device"] == "cuda"
    assert container(gpu)["image"].endswith(":gpu") and container(cpu)["image"].endswith(":cpu")
    assert any(t["key"] == "nvidia.com/gpu" for t in pod_spec(gpu)["tolerations"])
    # Everything else is the same.
    for d in (cpu, gpu):
        c = container(d)
        c.pop("resources"), c.pop("image")
        c["env"] = [e for e in c["env"] if e["name"] != "FLAGS_device"]
        pod_spec(d).pop("tolerations", None), pod_spec(d).pop("nodeSelector", None)
        d["spec"]["template"]["metadata"]["labels"].pop("longenc/variant")
    assert cpu == gpu


def test_headless_service_selects_the_pods():
    service, deployment = load("service.yaml"), load("deployment-cpu.yaml")
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is False
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    port_names = {p["name"] for p in container(deployment)["ports"]}
    for port in service["spec"]["ports"]:
        assert port["targetPort"] in port_names
    pdb = load("pdb.yaml")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


def exported_metric_names():
    source = (ROOT / "server" / "metrics" / "metrics.cc").read_text()
    return set(re.findall(r'\{"(longenc_[a-z_]+)", Type::', source))


def test_hpa_uses_metrics_the_adapter_serves():
    hpa, deployment = load("hpa.yaml"), load("deployment-cpu.yaml")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]

    rules = yaml.safe_load((K8S / "prometheus-adapter" / "rules.yaml").read_text())["rules"]
    served = {}
    exported = exported_metric_names()
    assert "longenc_queue_documents" in exported
    for rule in rules:
        assert set(rule) == {"seriesQuery", "resources", "name", "metricsQuery"}
        assert rule["resources"]["overrides"] == {"namespace": {"resource": "namespace"},
                                                  "pod": {"resource": "pod"}}
        series = re.match(r"'?([a-z_]+)\{", rule["seriesQuery"]).group(1)
        family = re.sub(r"_(bucket|sum|count)$", "", series)
        assert family in exported, f"{series} is not exported by the server"
        assert re.fullmatch(rule["name"]["matches"].strip("^$"), series)
        for placeholder in ("<<.Series>>", "<<.LabelMatchers>>", "<<.GroupBy>>"):
            assert placeholder in rule["metricsQuery"]
        served[rule["name"]["as"]] = rule

    for metric in hpa["spec"]["metrics"]:
        assert metric["type"] == "Pods"
        name = metric["pods"]["metric"]["name"]
        assert name in served, f"the HPA scales on {name}, which the adapter does not serve"
        assert metric["pods"]["target"]["type"] in {"AverageValue", "Value"}
        assert quantity(metric["pods"]["target"]["averageValue"]) > 0


def test_configmap_carries_server_flags():
    configmap = load("configmap.yaml")
    assert configmap["data"]["server.flags"] == (ROOT / "deploy" / "server.flags").read_text()
