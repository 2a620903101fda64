"""docker-compose.yml, the Dockerfile and deploy/ hang together (no Docker needed: only parsing)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def _environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as a dict, whichever of the two compose forms it uses."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def _listeners(value: str) -> dict[str, tuple[str, int]]:
    """'NAME://host:port,...' -> {NAME: (host, port)} (an empty host means all interfaces)."""
    result = {}
    for item in filter(None, (part.strip() for part in value.split(","))):
        parts = urlsplit(item)
        assert parts.scheme and parts.port, f"bad listener {item!r}"
        result[parts.scheme.upper()] = (parts.hostname or "", parts.port)
    return result


def _published(port_spec: str | int | dict[str, Any]) -> tuple[int, int]:
    """A compose port mapping -> (host port, container port)."""
    if isinstance(port_spec, dict):
        return int(port_spec["published"]), int(port_spec["target"])
    fields = str(port_spec).split(":")
    assert len(fields) >= 2, f"port {port_spec!r} is not published on the host"
    return int(fields[-2]), int(fields[-1].split("/")[0])


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    services = compose["services"]
    assert isinstance(services, dict)
    return services


def test_services_are_kafka_worker_prometheus_and_grafana(
    services: dict[str, dict[str, Any]],
) -> None:
    assert {"kafka", "worker", "prometheus", "grafana"} <= set(services)


def test_kafka_image_is_the_version_scripts_kafka_local_runs(
    services: dict[str, dict[str, Any]],
) -> None:
    pom = (ROOT / "scripts" / "kafka" / "pom.xml").read_text()
    match = re.search(r"<kafka\.version>\s*([^<\s]+)\s*</kafka\.version>", pom)
    assert match, "scripts/kafka/pom.xml pins <kafka.version>"
    assert services["kafka"]["image"] == f"apache/kafka:{match.group(1)}"


def test_kafka_is_a_single_kraft_node(services: dict[str, dict[str, Any]]) -> None:
    env = _environment(services["kafka"])
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    node_id = env["KAFKA_NODE_ID"]
    controller_host, controller_port = (
        env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split("@")[1].split(":")
    )
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(f"{node_id}@")
    listeners = _listeners(env["KAFKA_LISTENERS"])
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert listeners[controller][1] == int(controller_port)
    assert controller_host in {"kafka", services["kafka"].get("hostname")}
    for setting in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
    ):
        assert env[setting] == "1", setting
    assert env["KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"] == "0"
    assert "healthcheck" in services["kafka"]


def test_worker_bootstrap_is_the_kafka_service_listener(
    services: dict[str, dict[str, Any]],
) -> None:
    kafka_env = _environment(services["kafka"])
    bootstrap = _environment(services["worker"])["KAFKA_BOOTSTRAP_SERVERS"]
    host, port = bootstrap.rsplit(":", 1)

    assert host in {"kafka", services["kafka"].get("hostname")}
    # The address the worker bootstraps from is one the broker advertises back to it ...
    advertised = _listeners(kafka_env["KAFKA_ADVERTISED_LISTENERS"])
    names = [name for name, address in advertised.items() if address == (host, int(port))]
    assert names, f"{bootstrap} is not among the advertised listeners {advertised}"
    # ... and the broker really listens on that port, for that listener, in plaintext.
    (name,) = names
    assert _listeners(kafka_env["KAFKA_LISTENERS"])[name][1] == int(port)
    protocols = dict(
        pair.split(":") for pair in kafka_env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    assert protocols[name] == "PLAINTEXT"
    assert name != kafka_env["KAFKA_CONTROLLER_LISTENER_NAMES"]


def test_worker_waits_for_a_healthy_kafka(services: dict[str, dict[str, Any]]) -> None:
    depends_on = services["worker"]["depends_on"]
    assert depends_on["kafka"]["condition"] == "service_healthy"


def test_ports(services: dict[str, dict[str, Any]]) -> None:
    worker_ports = [_published(spec) for spec in services["worker"]["ports"]]
    assert (6066, 6066) in worker_ports
    kafka_env = _environment(services["kafka"])
    host_ports = {port for _, port in _listeners(kafka_env["KAFKA_LISTENERS"]).values()}
    for published, target in (_published(spec) for spec in services["kafka"].get("ports", [])):
        assert target in host_ports, f"kafka publishes {target}, on which nothing listens"
        assert published == target, "the advertised HOST listener must keep its port"


def test_every_published_port_is_on_loopback_only(services: dict[str, dict[str, Any]]) -> None:
    """Nothing is reachable from other machines: the worker's /tickets answers without a
    token unless one is set, and Kafka, Prometheus and Grafana have no authentication."""
    for name, service in services.items():
        for spec in service.get("ports", []):
            host_ip = spec.get("host_ip") if isinstance(spec, dict) else None
            if host_ip is None:
                fields = str(spec).split(":")
                host_ip = fields[0] if len(fields) == 3 else None
            assert host_ip == "127.0.0.1", f"{name} publishes {spec!r} on every interface"


def test_kafka_keeps_its_records_on_a_named_volume(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    """`docker compose down` (without -v) keeps named volumes: Kafka's log directory must
    be on one, or every record (inputs, the state changelog, outputs) goes with it."""
    kafka = services["kafka"]
    log_dirs = _environment(kafka)["KAFKA_LOG_DIRS"].split(",")
    volumes: dict[str, str] = {}
    for volume in kafka.get("volumes", []):
        if isinstance(volume, dict):
            volumes[volume["target"].rstrip("/")] = volume.get("source", "")
        else:
            source, target = str(volume).split(":")[:2]
            volumes[target.rstrip("/")] = source
    for log_dir in log_dirs:
        named = volumes.get(log_dir.rstrip("/"))
        assert named, f"{log_dir} is not on a volume"
        assert named in (compose.get("volumes") or {}), f"{named} is not a named volume"


def test_worker_is_built_from_the_dockerfile(services: dict[str, dict[str, Any]]) -> None:
    build = services["worker"]["build"]
    context = build if isinstance(build, str) else build.get("context", ".")
    dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
    assert (ROOT / context).resolve() == ROOT
    text = (ROOT / dockerfile).read_text()
    instructions = [
        line.split(None, 1)
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#") and line[0].isupper()
    ]
    by_name: dict[str, list[str]] = {}
    for name, *rest in instructions:
        by_name.setdefault(name, []).append(rest[0] if rest else "")
    assert by_name["FROM"] == ["python:3.11-slim AS build", "python:3.11-slim"]
    # The build stage compiles the hot path (setup.py) into the wheel the image installs.
    assert any("setup.py" in copy.split() for copy in by_name["COPY"])
    assert any(
        re.search(r"SLA_WORKER_COMPILED=1 pip wheel .*--wheel-dir /wheels \.(\s|$)", run)
        for run in by_name["RUN"]
    )
    # Dependencies from the lock file, hash-checked; the wheel alone after them.
    assert any("requirements/runtime.lock" in copy.split() for copy in by_name["COPY"])
    assert any(re.search(r"pip install --require-hashes -r ", run) for run in by_name["RUN"])
    assert re.search(r"&& pip install --no-deps /wheels/", text)  # a continuation line
    assert by_name["ENTRYPOINT"] == ['["sla-worker"]']
    assert by_name["CMD"] == ['["worker"]']
    assert "6066" in by_name["EXPOSE"]
    assert services["worker"].get("command") in (None, ["worker"], "worker")


# --- Prometheus and Grafana ------------------------------------------------------------------


def _mounts(service: dict[str, Any]) -> dict[str, Path]:
    """A service's bind mounts of repository paths: {container path: host path}."""
    mounts = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            source, target = volume.get("source", ""), volume["target"]
        else:
            source, target = str(volume).split(":")[:2]
        if source.startswith("."):
            mounts[target.rstrip("/")] = (ROOT / source).resolve()
    return mounts


def _host_path(service: dict[str, Any], container_path: str) -> Path:
    """The repository file a service sees at `container_path` (through its bind mounts)."""
    for target, source in sorted(_mounts(service).items(), key=lambda m: -len(m[0])):
        if container_path == target or container_path.startswith(target + "/"):
            return source / container_path[len(target) :].lstrip("/")
    raise AssertionError(f"{container_path} is not mounted from the repository")


def _flag(command: list[str], name: str, default: str) -> str:
    for item in command:
        if item.startswith(f"{name}="):
            return item.split("=", 1)[1]
    return default


def test_services_include_prometheus_and_grafana_from_official_images(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, image in (("prometheus", "prom/prometheus"), ("grafana", "grafana/grafana")):
        repository, _, tag = services[name]["image"].partition(":")
        assert repository == image
        assert tag and tag != "latest", f"{name}: pin an image version"
        # Each UI is published on the host, on loopback only (like Kafka).
        assert all(str(spec).startswith("127.0.0.1:") for spec in services[name]["ports"])


def test_prometheus_loads_the_repository_config_and_rules(
    services: dict[str, dict[str, Any]],
) -> None:
    prometheus = services["prometheus"]
    config_path = _flag(prometheus["command"], "--config.file", "/etc/prometheus/prometheus.yml")
    config_file = _host_path(prometheus, config_path)
    assert config_file == ROOT / "deploy" / "prometheus" / "prometheus.yml"
    config = yaml.safe_load(config_file.read_text())
    for rule_file in config["rule_files"]:
        container_rule = str(Path(config_path).parent / rule_file)
        assert _host_path(prometheus, container_rule).is_file(), rule_file
    assert (9090, 9090) in [_published(spec) for spec in prometheus["ports"]]


def test_prometheus_scrapes_the_worker_service_on_its_web_port(
    services: dict[str, dict[str, Any]],
) -> None:
    from worker.settings import WorkerSettings

    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "sla-worker"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    targets = [t for static in job["static_configs"] for t in static["targets"]]
    web_port = _environment(services["worker"]).get(
        "SLA_WEB_PORT", str(WorkerSettings.model_fields["web_port"].default)
    )
    assert targets == [f"worker:{web_port}"]
    # Alert rules and the dashboard select the worker by this job name.
    alerts = (ROOT / "deploy" / "prometheus" / "alerts.yml").read_text()
    assert 'up{job="sla-worker"}' in alerts


def test_grafana_provisions_the_prometheus_datasource_and_the_dashboards(
    services: dict[str, dict[str, Any]],
) -> None:
    grafana = services["grafana"]
    provisioning = _host_path(grafana, "/etc/grafana/provisioning")
    assert provisioning == ROOT / "deploy" / "grafana" / "provisioning"

    (datasource,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    assert datasource["type"] == "prometheus"
    url = urlsplit(datasource["url"])
    assert url.hostname == "prometheus" and url.hostname in services
    assert url.port == 9090  # where the prometheus service listens (its default)

    (provider,) = yaml.safe_load((provisioning / "dashboards" / "sla-worker.yml").read_text())[
        "providers"
    ]
    dashboards_dir = _host_path(grafana, provider["options"]["path"])
    assert dashboards_dir == ROOT / "deploy" / "grafana" / "dashboards"
    dashboards = sorted(dashboards_dir.glob("*.json"))
    assert [d.name for d in dashboards] == ["sla-worker.json"]
    home = _environment(grafana).get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    assert home is None or _host_path(grafana, home) == dashboards[0]

    # Every query of the dashboard goes to the provisioned datasource.
    def datasource_uids(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            if isinstance(node.get("datasource"), dict):
                yield node["datasource"]["uid"]
            for value in node.values():
                yield from datasource_uids(value)
        elif isinstance(node, list):
            for value in node:
                yield from datasource_uids(value)

    dashboard = json.loads(dashboards[0].read_text())
    assert set(datasource_uids(dashboard)) == {datasource["uid"]}
    assert (3000, 3000) in [_published(spec) for spec in grafana["ports"]]


def test_grafana_and_prometheus_start_after_what_they_read(
    services: dict[str, dict[str, Any]],
) -> None:
    def depends(name: str) -> set[str]:
        value = services[name].get("depends_on", [])
        return set(value)

    assert "worker" in depends("prometheus")
    assert "prometheus" in depends("grafana")


def test_the_readme_s_first_event_is_valid_and_keyed_by_its_ticket_id() -> None:
    """The README's copy-paste example: one `key|value` line whose key is the ticket id,
    and a value that is a valid ticket-created once the shell filled in its date."""
    from worker.core.events import parse_event

    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## With Docker") :]
    section = section[: section.index("\n## ", 1)]
    (line,) = [line for line in section.splitlines() if re.match(r"^[\w-]+\|\{", line)]
    key, value = line.split("|", 1)
    value = re.sub(r"\$\(date [^)]*\)", "2026-12-07T10:00:00Z", value)
    event = parse_event(value)
    assert event.type == "ticket-created"
    assert event.ticket_id == key
    assert "parse.key=true" in section and "key.separator=|" in section
    assert "(schemas/)" in section and "missing-key" in section
