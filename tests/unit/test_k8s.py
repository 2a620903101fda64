"""deploy/k8s/: valid Kubernetes objects that fit the worker (no cluster needed).

Every object is checked against Kubernetes' own JSON schemas, offline and strictly (the
`kubernetes-validate` package ships them); the PodMonitor, a Prometheus Operator custom
resource those schemas do not cover, structurally. Then what ties the objects to the
worker: probe paths and ports, environment names and values (read by `WorkerSettings`
itself), the policy the ConfigMap mounts, the Secret, the services and selectors, and the
memory request against BENCHMARKS.md.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from worker.policy_file import load_policy
from worker.settings import WorkerSettings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
# The oldest Kubernetes still supported upstream when this was written, and the newest
# the package knows.
KUBERNETES_VERSIONS = ("1.32.0", kubernetes_validate.utils.latest_version())
NAME_LABEL = {"app.kubernetes.io/name": "sla-worker"}


def documents() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                docs.append(doc)
    return docs


def one(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [
        d
        for d in documents()
        if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"{len(found)} {kind} {name or ''} in deploy/k8s"
    return found[0]


def pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = one("StatefulSet")["spec"]["template"]["spec"]
    return spec


def container() -> dict[str, Any]:
    (worker,) = pod_spec()["containers"]
    assert isinstance(worker, dict)
    return worker


def env_names() -> list[str]:
    return [item["name"] for item in container()["env"]]


def settings_env_names() -> set[str]:
    """Every environment variable `WorkerSettings` reads (prefix SLA_, or an alias)."""
    prefix = WorkerSettings.model_config.get("env_prefix", "")
    names = set()
    for name, field in WorkerSettings.model_fields.items():
        alias = field.validation_alias
        choices = getattr(alias, "choices", None)
        if choices:
            names |= {c for c in choices if isinstance(c, str) and c.isupper()}
        else:
            names.add(f"{prefix}{name}".upper())
    return names


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_object_is_valid_against_the_kubernetes_schemas(version: str) -> None:
    checked = []
    for doc in documents():
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # a custom resource: test_the_pod_monitor_scrapes_the_workers
        kubernetes_validate.validate(doc, version, strict=True)
        checked.append(doc["kind"])
    assert sorted(checked) == [
        "ConfigMap",
        "PodDisruptionBudget",
        "Secret",
        "Service",
        "Service",
        "StatefulSet",
    ]


def test_each_pod_keeps_its_local_snapshots_on_a_volume_of_its_own() -> None:
    """State lives in Kafka (the changelog); the local snapshots that spare a restarted
    pod the full changelog read live on a claim per pod, where SLA_STATE_DIR points,
    writable by the worker's group."""
    statefulset = one("StatefulSet")
    [claim] = statefulset["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    mounts = {m["name"]: m["mountPath"] for m in container()["volumeMounts"]}
    env = {item["name"]: item.get("value") for item in container()["env"]}
    assert env["SLA_STATE_DIR"] == mounts[claim["metadata"]["name"]]
    assert pod_spec()["securityContext"]["fsGroup"] == 10001
    kinds = {tuple(sorted(set(v) - {"name"})) for v in pod_spec()["volumes"]}
    assert kinds == {("configMap",), ("emptyDir",)}
    assert statefulset["spec"]["selector"]["matchLabels"] == NAME_LABEL
    assert NAME_LABEL.items() <= statefulset["spec"]["template"]["metadata"]["labels"].items()


def test_probes_ask_healthz_and_readyz_on_the_worker_port() -> None:
    worker = container()
    ports = {port["name"]: port["containerPort"] for port in worker["ports"]}
    env = {item["name"]: item.get("value") for item in worker["env"]}
    web_port = int(env.get("SLA_WEB_PORT") or WorkerSettings.model_fields["web_port"].default)
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = worker[probe]["httpGet"]
        assert get["path"] == path, probe
        port = get["port"]
        assert (ports[port] if isinstance(port, str) else port) == web_port, probe


def test_the_routes_the_probes_ask_exist() -> None:
    web = (ROOT / "worker" / "kafka" / "web.py").read_text()
    for path in ("/healthz", "/readyz", "/metrics"):
        assert f'add_get("{path}"' in web


def test_environment_names_are_the_worker_settings() -> None:
    known = settings_env_names()
    values = " ".join(str(item.get("value", "")) for item in container()["env"])
    for name in env_names():
        if name in known:
            continue
        # Otherwise only a helper that a setting refers to as $(NAME) (the downward API).
        assert f"$({name})" in values, f"{name} is not a worker setting ({sorted(known)})"
    assert "SLA_SASL_PASSWORD" in env_names()


def resolved_environment() -> Iterator[tuple[str, str]]:
    """The container's environment as the kubelet would give it to pod sla-worker-0 in
    namespace ns, with the Secret's value read from secret-kafka.yaml."""
    secrets = {
        doc["metadata"]["name"]: doc.get("stringData", {})
        for doc in documents()
        if doc["kind"] == "Secret"
    }
    fields = {"metadata.name": "sla-worker-0", "metadata.namespace": "ns"}
    seen: dict[str, str] = {}
    for item in container()["env"]:
        if "value" in item:
            value = re.sub(r"\$\((\w+)\)", lambda m: seen[m.group(1)], item["value"])
        elif "secretKeyRef" in item["valueFrom"]:
            ref = item["valueFrom"]["secretKeyRef"]
            value = secrets[ref["name"]][ref["key"]]
        else:
            value = fields[item["valueFrom"]["fieldRef"]["fieldPath"]]
        seen[item["name"]] = value
        yield item["name"], value


def test_the_worker_reads_the_manifest_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("SLA_", "KAFKA_")):
            monkeypatch.delenv(name)
    for name, value in resolved_environment():
        monkeypatch.setenv(name, value)
    settings = WorkerSettings()

    headless = one("StatefulSet")["spec"]["serviceName"]
    assert settings.canonical_url == f"http://sla-worker-0.{headless}.ns.svc:6066"
    assert settings.security_protocol == "SASL_SSL" and settings.sasl_username
    assert settings.sasl_password is not None
    assert settings.sasl_password.get_secret_value() == "REPLACE-ME"
    assert settings.redacted()["sasl_password"] == "**********"
    # Every input partition has a worker to go to, and no worker idles for lack of one.
    assert one("StatefulSet")["spec"]["replicas"] <= settings.partitions

    # The policy file is the ConfigMap's key, where the volume mounts it, and it loads.
    assert settings.policies is not None
    mounts = {m["name"]: m["mountPath"] for m in container()["volumeMounts"]}
    (policy_volume,) = [v for v in pod_spec()["volumes"] if "configMap" in v]
    configmap = one("ConfigMap", policy_volume["configMap"]["name"])
    assert settings.policies.parent == Path(mounts[policy_volume["name"]])
    assert settings.policies.name in configmap["data"]


def test_the_policy_in_the_config_map_loads(tmp_path: Path) -> None:
    configmap = one("ConfigMap", "sla-worker-policies")
    policy_file = tmp_path / "policies.yaml"
    policy_file.write_text(configmap["data"]["policies.yaml"])
    policy = load_policy(policy_file)
    assert {"vip", "professional", "advanced"} <= set(policy.plans)


def test_runs_as_the_image_user_without_privileges() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    useradd = re.search(r"useradd .*--uid (\d+)", dockerfile)
    assert useradd, "the Dockerfile creates the image's user"
    uid = int(useradd.group(1))
    security = pod_spec()["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] == uid
    assert container()["securityContext"]["allowPrivilegeEscalation"] is False


def test_memory_request_holds_a_million_open_tickets() -> None:
    benchmarks = (ROOT / "BENCHMARKS.md").read_text()
    match = re.search(r"RSS with 1,000,000 running timers \| \*\*(\d+) MiB\*\*", benchmarks)
    assert match, "BENCHMARKS.md: the 1,000,000-timer RSS row"
    measured = int(match.group(1))
    resources = container()["resources"]

    def mib(quantity: str) -> float:
        parsed = re.fullmatch(r"(\d+)(Mi|Gi)", quantity)
        assert parsed, f"memory quantity {quantity!r}: use Mi or Gi"
        return int(parsed.group(1)) * (1024 if parsed.group(2) == "Gi" else 1)

    assert mib(resources["requests"]["memory"]) >= measured
    assert mib(resources["limits"]["memory"]) > mib(resources["requests"]["memory"])
    assert "cpu" not in resources.get("limits", {})


def test_services_select_the_workers_and_name_each_pod() -> None:
    port = container()["ports"][0]["name"]
    api = one("Service", "sla-worker")
    headless = one("Service", one("StatefulSet")["spec"]["serviceName"])
    for service in (api, headless):
        assert service["spec"]["selector"] == NAME_LABEL
        assert [p["targetPort"] for p in service["spec"]["ports"]] == [port]
    assert headless["spec"]["clusterIP"] == "None"
    # Pods own partitions while restoring them: their names must resolve meanwhile.
    assert headless["spec"]["publishNotReadyAddresses"] is True


def test_the_disruption_budget_keeps_all_but_one_worker() -> None:
    budget = one("PodDisruptionBudget")["spec"]
    assert budget["selector"]["matchLabels"] == NAME_LABEL
    assert budget["maxUnavailable"] == 1


def test_the_pod_monitor_scrapes_the_workers_as_job_sla_worker() -> None:
    monitor = one("PodMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    spec = monitor["spec"]
    assert set(spec) <= {"jobLabel", "selector", "podMetricsEndpoints", "namespaceSelector"}
    labels = one("StatefulSet")["spec"]["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    # The job label's value is the job name the alert rules and the dashboard select.
    assert labels[spec["jobLabel"]] == "sla-worker"
    assert 'up{job="sla-worker"}' in (ROOT / "deploy" / "prometheus" / "alerts.yml").read_text()
    ports = {p["name"] for p in container()["ports"]}
    for endpoint in spec["podMetricsEndpoints"]:
        assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout"}
        assert endpoint["port"] in ports and endpoint["path"] == "/metrics"
        assert re.fullmatch(r"\d+[sm]", endpoint["interval"])
