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
up, ready, and counting that breach.
"""

from __future__ import annotations

import asyncio
import json
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
    (worker_target,) = {str(spec).split(":")[-1] for spec in services["worker"]["ports"]}
    (prometheus_target,) = {str(spec).split(":")[-1] for spec in services["prometheus"]["ports"]}
    return f"""\
services:
  kafka:
    ports: !override
      - "127.0.0.1:{kafka}:{kafka}"
    environment:
      KAFKA_LISTENERS: {listeners["KAFKA_LISTENERS"]}
      KAFKA_ADVERTISED_LISTENERS: {listeners["KAFKA_ADVERTISED_LISTENERS"]}
  worker:
    image: {image}
    ports: !override
      - "127.0.0.1:{worker}:{worker_target}"
  prometheus:
    ports: !override
      - "127.0.0.1:{prometheus}:{prometheus_target}"
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


async def test_compose_runs_kafka_the_worker_and_prometheus(stack: ComposeStack) -> None:
    # The worker image is built by compose from the Dockerfile (docker format: it keeps
    # the HEALTHCHECK), then the three services start.
    stack.compose(
        "--podman-build-args=--format docker",
        "up",
        "--detach",
        "--build",
        *SERVICES,
        timeout=UP_TIMEOUT_S,
    )
    worker = f"http://127.0.0.1:{stack.worker_port}"
    await eventually(
        "the compose worker's /readyz",
        lambda: http_json(f"{worker}/readyz")[0] == 200,
        stack,
        READY_TIMEOUT_S,
    )
    # The health checks compose declares (Kafka's) and the image's (the worker's) pass when
    # run (podman 4.3 runs them only on demand here).
    for service in ("kafka", "worker"):
        checked = podman("healthcheck", "run", f"{stack.project}_{service}_1", check=False)
        assert checked.returncode == 0, (service, checked.stdout, checked.stderr)

    # The built-in presets: vip, priority 1, first response within 1 hour on the clock.
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

    consumer = AIOKafkaConsumer(
        "sla-breaches",
        bootstrap_servers=stack.bootstrap,
        group_id=f"{stack.project}-reader",
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        message = await asyncio.wait_for(consumer.getone(), timeout=60)
    finally:
        await consumer.stop()
    breach = json.loads(message.value)
    assert (message.key, breach["type"], breach["ticket_id"], breach["plan"]) == (
        b"COMPOSE-1",
        "sla-breach",
        "COMPOSE-1",
        "vip",
    )
    assert breach["due_at"].startswith((created + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"))

    # Prometheus (scraping worker:6066 every 15 s, deploy/prometheus/prometheus.yml).
    api = f"http://127.0.0.1:{stack.prometheus_port}/api/v1/query"

    def query(expr: str) -> float | None:
        status, body = http_json(f"{api}?{urllib.parse.urlencode({'query': expr})}")
        result = body["data"]["result"] if status == 200 and body else []
        return float(result[0]["value"][1]) if len(result) == 1 else None

    expected = {
        'up{job="sla-worker"}': 1.0,
        'sum(sla_worker_ready{job="sla-worker"})': 1.0,
        'sum(sla_breaches_published_total{job="sla-worker",plan="vip",priority="1"})': 1.0,
    }

    def observed() -> dict[str, float | None] | None:
        got = {expr: query(expr) for expr in expected}
        return got if got == expected else None

    await eventually(f"Prometheus showing {expected}", observed, stack, 90)
