"""docker-compose.yml, brought up with podman-compose: Kafka, the worker, Prometheus.

The stack runs as the file says (the worker image built from the Dockerfile, the worker
on the built-in policy presets, Prometheus with deploy/prometheus/), with only what a test
on a shared machine must change, in an override file: free host ports instead of
29092/6066/9090 (so it meets neither a user's stack nor a parallel test run), a project
name of its own, a tag of its own for the worker image. Grafana is left out: it cannot be
had without a registry (docs/development.md#containers). podman 4.3 runs no health checks
by itself, so `depends_on: condition: service_healthy` is not awaited: the test waits for
the worker's /readyz itself (the worker restarts until Kafka answers).

A ticket created two hours ago on plan vip, priority 1 (first response within an hour on
the clock) is breached as soon as the worker reads it; the breach is read from the
`sla-breaches` topic through the host listener, and Prometheus' HTTP API shows the worker
up, ready, and counting that breach. That ticket arrived an hour after its deadline (a late
upstream, a backfill): its breach counts as published on time, so Prometheus, evaluating
the rules of deploy/prometheus/alerts.yml after it saw the breach, leaves
`SlaBreachPublicationLate` inactive (#25). Every published port is bound to 127.0.0.1, as
the compose file says (the override changes only the port numbers). Then `down` (without
`-v`) and `up`: Kafka's records survived on its volume, so the input and the breach are
still there, once, and the worker answers for the ticket from the state it restored.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from devtools.harness import free_port
from tests.integration.containers.engine import ROOT, podman, run_engine

SERVICES = ("kafka", "worker", "prometheus")
UP_TIMEOUT_S = 600.0
READY_TIMEOUT_S = 180.0


@dataclass
class ComposeStack:
    project: str
    files: tuple[Path, ...]
    kafka_port: int
    worker_port: int
    prometheus_port: int

    def compose(
        self, *args: str, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        command = [str(Path(sys.executable).parent / "podman-compose")]
        for file in self.files:
            command += ["--file", str(file)]
        command += ["--project-name", self.project, "--in-pod", "false", *args]
        return run_engine(command, timeout=timeout, check=check)

    def logs(self) -> str:
        parts = []
        for service in SERVICES:
            done = podman("logs", "--tail", "25", f"{self.project}_{service}_1", check=False)
            parts.append(f"--- {service} ---\n{done.stdout}{done.stderr}")
        return "\n".join(parts)

    @property
    def bootstrap(self) -> str:
        return f"localhost:{self.kafka_port}"


def override(image: str, kafka: int, worker: int, prometheus: int) -> str:
    """The test's compose override: host ports, and the worker image's tag.

    The Kafka listeners are the compose file's with its host port (29092) replaced, since
    the broker must advertise the port the host reaches it on. `!override` replaces a
    list where compose would otherwise append to it.
    """
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    kafka_env = services["kafka"]["environment"]
    (host_port,) = {str(spec).split(":")[-1] for spec in services["kafka"]["ports"]}
    listeners = {
        name: kafka_env[name].replace(f":{host_port}", f":{kafka}")
        for name in ("KAFKA_LISTENERS", "KAFKA_ADVERTISED_LISTENERS")
    }

    def port(service: str, published: int, target: int | None = None) -> str:
        """The service's one port mapping with another host port (and container port);
        the host address as the compose file has it."""
        (spec,) = services[service]["ports"]
        *address, _, container = str(spec).split(":")
        return ":".join([*address, str(published), str(target or container)])

    return f"""\
services:
  kafka:
    ports: !override
      - "{port("kafka", kafka, kafka)}"
    environment:
      KAFKA_LISTENERS: {listeners["KAFKA_LISTENERS"]}
      KAFKA_ADVERTISED_LISTENERS: {listeners["KAFKA_ADVERTISED_LISTENERS"]}
  worker:
    image: {image}
    ports: !override
      - "{port("worker", worker)}"
  prometheus:
    ports: !override
      - "{port("prometheus", prometheus)}"
"""


@pytest.fixture
def stack(container_bases: str, tmp_path: Path) -> Iterator[ComposeStack]:
    project = f"sla-test-{uuid.uuid4().hex[:8]}"
    image = f"localhost/sla-worker:{project}"
    ports = free_port(), free_port(), free_port()
    override_file = tmp_path / "docker-compose.test.yml"
    override_file.write_text(override(image, *ports))
    stack = ComposeStack(project, (ROOT / "docker-compose.yml", override_file), *ports)
    try:
        yield stack
    finally:
        stack.compose("down", "--volumes", "--timeout", "10", check=False)
        podman("rmi", "--force", image, check=False)


def http_json(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, None


async def eventually(what: str, probe: Any, stack: ComposeStack, timeout: float) -> Any:
    """Poll `probe()` (in a thread) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = await asyncio.to_thread(probe)
        except (OSError, ValueError) as exc:
            last = exc
        if last and not isinstance(last, Exception):
            return last
        await asyncio.sleep(1)
    raise AssertionError(f"{what} not within {timeout:.0f} s (last: {last!r})\n{stack.logs()}")


def prometheus_query(stack: ComposeStack, expr: str) -> list[dict[str, Any]] | None:
    """An instant query's result vector (None: Prometheus did not answer)."""
    api = f"http://127.0.0.1:{stack.prometheus_port}/api/v1/query"
    status, body = http_json(f"{api}?{urllib.parse.urlencode({'query': expr})}")
    return body["data"]["result"] if status == 200 and body else None


def scalar(stack: ComposeStack, expr: str) -> float | None:
    result = prometheus_query(stack, expr)
    return float(result[0]["value"][1]) if result and len(result) == 1 else None


def alert_rule(stack: ComposeStack, name: str) -> dict[str, Any] | None:
    """The alerting rule `name` as Prometheus last evaluated it (/api/v1/rules)."""
    status, body = http_json(f"http://127.0.0.1:{stack.prometheus_port}/api/v1/rules")
    if status != 200 or not body:
        return None
    rules = [rule for group in body["data"]["groups"] for rule in group["rules"]]
    (rule,) = [rule for rule in rules if rule.get("name") == name]
    return dict(rule)


def evaluated_at(rule: dict[str, Any]) -> float:
    """A rule's lastEvaluation (RFC 3339, nanoseconds) as Unix time."""
    stamp = re.sub(r"(\.\d{6})\d*", r"\1", rule["lastEvaluation"]).replace("Z", "+00:00")
    return datetime.fromisoformat(stamp).timestamp()


def host_bindings(stack: ComposeStack, service: str) -> set[str]:
    """The host addresses a service's published ports are bound to (podman inspect)."""
    done = podman("inspect", "--format", "json", f"{stack.project}_{service}_1")
    (container,) = json.loads(done.stdout)
    ports = container["HostConfig"]["PortBindings"] or {}
    return {binding["HostIp"] for bindings in ports.values() for binding in bindings or []}


async def up(stack: ComposeStack, *, build: bool) -> None:
    """`up --detach` of the three services, then wait for the worker's /readyz. With
    `build`, compose builds the worker image from the Dockerfile first (docker format: it
    keeps the HEALTHCHECK)."""
    options = ["--podman-build-args=--format docker", "up", "--build"] if build else ["up"]
    stack.compose(*options, "--detach", *SERVICES, timeout=UP_TIMEOUT_S)
    await eventually(
        "the compose worker's /readyz",
        lambda: http_json(f"http://127.0.0.1:{stack.worker_port}/readyz")[0] == 200,
        stack,
        READY_TIMEOUT_S,
    )


async def read_all(stack: ComposeStack, topic: str, expected: int) -> list[Any]:
    """Every committed record of `topic` from the beginning (a new group): `expected` of
    them, then nothing more within a second."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=stack.bootstrap,
        group_id=f"{stack.project}-reader-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    await consumer.start()
    records: list[Any] = []
    try:
        while len(records) < expected:
            records.append(await asyncio.wait_for(consumer.getone(), timeout=60))
        more = await consumer.getmany(timeout_ms=1000)
        records += [record for batch in more.values() for record in batch]
    finally:
        await consumer.stop()
    return records


async def test_compose_runs_kafka_the_worker_and_prometheus(stack: ComposeStack) -> None:
    # The worker image is built by compose from the Dockerfile, then the three services start.
    await up(stack, build=True)
    # The health checks compose declares (Kafka's) and the image's (the worker's) pass when
    # run (podman 4.3 runs them only on demand here).
    for service in ("kafka", "worker"):
        checked = podman("healthcheck", "run", f"{stack.project}_{service}_1", check=False)
        assert checked.returncode == 0, (service, checked.stdout, checked.stderr)
    # Nothing is published beyond the loopback address (the worker's /tickets has no token).
    for service in SERVICES:
        assert host_bindings(stack, service) == {"127.0.0.1"}, service

    # Prometheus has scraped the worker once before the breach: its lateness histogram at 0
    # (so the rate over the breach is seen; scrapes every 15 s, prometheus.yml).
    lateness_count = 'sum(sla_breach_publication_lateness_seconds_count{job="sla-worker"})'
    await eventually(
        "Prometheus scraping the worker",
        lambda: scalar(stack, lateness_count) == 0.0,
        stack,
        90,
    )

    # The built-in presets: vip, priority 1, first response within 1 hour on the clock. The
    # ticket arrives an hour after its deadline (a late upstream, a backfill).
    created = datetime.now(UTC) - timedelta(hours=2)
    event = {
        "event_id": f"compose-{stack.project}",
        "type": "ticket-created",
        "ticket_id": "COMPOSE-1",
        "occurred_at": created.isoformat(),
        "plan": "vip",
        "priority": 1,
    }
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait("tickets", json.dumps(event).encode(), key=b"COMPOSE-1")
    finally:
        await producer.stop()

    (message,) = await read_all(stack, "sla-breaches", 1)
    breach = json.loads(message.value)
    assert (message.key, breach["type"], breach["ticket_id"], breach["plan"]) == (
        b"COMPOSE-1",
        "sla-breach",
        "COMPOSE-1",
        "vip",
    )
    assert breach["due_at"].startswith((created + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"))

    # Prometheus (scraping worker:6066 every 15 s, deploy/prometheus/prometheus.yml).
    expected = {
        'up{job="sla-worker"}': 1.0,
        'sum(sla_worker_ready{job="sla-worker"})': 1.0,
        'sum(sla_breaches_published_total{job="sla-worker",plan="vip",priority="1"})': 1.0,
        lateness_count: 1.0,
    }

    def observed() -> dict[str, float | None] | None:
        got = {expr: scalar(stack, expr) for expr in expected}
        return got if got == expected else None

    await eventually(f"Prometheus showing {expected}", observed, stack, 90)

    # The late ticket's breach was published at once: not late. Prometheus evaluates
    # SlaBreachPublicationLate (alerts.yml, every 15 s) over the scrapes that saw it; an
    # evaluation after the breach is in its rate leaves the rule inactive, not pending.
    def breach_in_rate() -> float | None:
        """When Prometheus' lateness rate first included the breach (host clock)."""
        increase = "sum(increase(sla_breach_publication_lateness_seconds_count[10m]))"
        value = scalar(stack, increase)
        return time.time() if value is not None and value > 0 else None

    def evaluated_after(instant: float) -> dict[str, Any] | None:
        rule = alert_rule(stack, "SlaBreachPublicationLate")
        return rule if rule and evaluated_at(rule) > instant else None

    seen = await eventually("the breach in the lateness rate", breach_in_rate, stack, 60)
    rule = await eventually(
        "an evaluation of SlaBreachPublicationLate after the breach",
        lambda: evaluated_after(seen),
        stack,
        60,
    )
    lateness = scalar(stack, "sum(sla_breach_publication_lateness_seconds_sum)")
    print(f"compose: the late ticket's breach published {lateness} s after it could be known")
    assert rule["state"] == "inactive", (rule, lateness)
    assert rule["alerts"] == [], rule
    assert prometheus_query(stack, 'ALERTS{alertname="SlaBreachPublicationLate"}') == []
    assert lateness is not None and lateness < 5, lateness

    # `down` without -v keeps the volumes: after `up`, Kafka still holds the input and the
    # breach (once: the worker resumed from its committed offsets and state), and the worker
    # answers for the ticket from the state it restored from the changelog.
    stack.compose("down", "--timeout", "10", timeout=UP_TIMEOUT_S)
    assert podman("ps", "--all", "--quiet", "--filter", f"name={stack.project}_").stdout == ""
    await up(stack, build=False)
    (record,) = await read_all(stack, "tickets", 1)
    assert (record.key, json.loads(record.value)) == (b"COMPOSE-1", event)
    (again,) = await read_all(stack, "sla-breaches", 1)
    assert json.loads(again.value) == breach
    status, body = await asyncio.to_thread(
        http_json, f"http://127.0.0.1:{stack.worker_port}/tickets/COMPOSE-1"
    )
    assert status == 200, (status, body, stack.logs())
    assert body["timers"][0]["breached"] is True, body
