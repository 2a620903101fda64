"""The image the Dockerfile builds: non-root, compiled hot path, a worker that recovers.

The worker runs in the image on the host network against the test session's broker
(`kafka_bootstrap`), with the seconds-scale test policy mounted: it publishes a breach for
a produced ticket, stops cleanly on SIGTERM, and a second container, new and empty,
recovers the ticket from the changelog topic (the worker keeps no state on disk).
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from devtools.harness import free_port
from tests.integration.containers.engine import podman
from tests.integration.workers import FAST_POLICY


def test_the_image_runs_as_uid_10001_and_answers_help(worker_image: str) -> None:
    assert podman("run", "--rm", "--entrypoint", "id", worker_image, "-u").stdout.strip() == (
        "10001"
    )
    helped = podman("run", "--rm", worker_image, "--help")
    assert "worker" in helped.stdout and "replay" in helped.stdout, helped.stdout
    worker_help = podman("run", "--rm", worker_image, "worker", "--help")
    assert "--web-port" in worker_help.stdout, worker_help.stdout


def test_the_hot_path_in_the_image_is_compiled(worker_image: str) -> None:
    version = podman("run", "--rm", worker_image, "--version").stdout
    assert "hot path compiled with mypyc" in version, version
    probe = (
        "import json, importlib.util as u\n"
        "from worker.compiled import COMPILED_MODULES as m\n"
        "print(json.dumps({n: u.find_spec(n).origin for n in (*m, 'sla_worker__mypyc')}))"
    )
    origins = json.loads(
        podman("run", "--rm", "--entrypoint", "python3", worker_image, "-c", probe).stdout
    )
    assert all(origin.endswith(".so") for origin in origins.values()), origins
    assert any("/worker/core/" in origin for origin in origins.values()), origins


def test_the_image_declares_a_health_check_on_healthz(worker_image: str) -> None:
    inspected = json.loads(podman("image", "inspect", worker_image).stdout)[0]
    check = " ".join(inspected["Healthcheck"]["Test"])
    assert "/healthz" in check and "urllib" in check, check
    config = inspected["Config"]
    assert config["User"] == "sla"
    assert "6066/tcp" in config["ExposedPorts"]


class WorkerContainer:
    """`sla-worker worker` in the image, on the host network, on a free port, locked down
    like the Kubernetes manifests run it."""

    def __init__(self, image: str, name: str, options: list[str]) -> None:
        self.image = image
        self.name = name
        self.port = free_port()
        self.options = options

    def start(self) -> None:
        podman(
            "run",
            "--detach",
            "--name",
            self.name,
            "--network",
            "host",
            # As deploy/k8s/statefulset.yaml runs it: read-only root file system, no
            # capabilities, no privilege escalation.
            "--read-only",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            "--volume",
            f"{FAST_POLICY}:/etc/sla-worker/policies.yaml:ro",
            "--env",
            "SLA_POLICIES=/etc/sla-worker/policies.yaml",
            "--env",
            f"SLA_WEB_PORT={self.port}",
            "--env",
            "SLA_WEB_HOST=127.0.0.1",
            self.image,
            "worker",
            *self.options,
        )

    def logs(self) -> str:
        done = podman("logs", "--tail", "40", self.name, check=False)
        return done.stdout + done.stderr

    def get(self, path: str) -> tuple[int, Any]:
        url = f"http://127.0.0.1:{self.port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def running(self) -> bool:
        state = podman("inspect", "--format", "{{.State.Running}}", self.name, check=False)
        return state.stdout.strip() == "true"

    async def ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not await asyncio.to_thread(self.running):
                raise AssertionError(f"{self.name} exited:\n{self.logs()}")
            try:
                status, _ = await asyncio.to_thread(self.get, "/readyz")
                if status == 200:
                    return
            except (OSError, ValueError):
                pass
            await asyncio.sleep(0.5)
        raise AssertionError(f"{self.name} not ready after {timeout} s:\n{self.logs()}")

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM, as `docker stop` and Kubernetes send it; the exit status."""
        podman("kill", "--signal", "TERM", self.name)
        waited = podman("wait", self.name, timeout=timeout)
        return int(waited.stdout.strip().splitlines()[-1])

    def remove(self) -> None:
        podman("rm", "--force", "--time", "5", self.name, check=False)


@pytest.fixture
def containers(worker_image: str) -> Iterator[list[WorkerContainer]]:
    started: list[WorkerContainer] = []
    yield started
    for container in started:
        container.remove()


async def test_the_worker_in_the_image_breaches_stops_on_sigterm_and_recovers_from_kafka(
    worker_image: str,
    kafka_bootstrap: str,
    containers: list[WorkerContainer],
    create_topic: Any,
    produce_json: Any,
    consume_json: Any,
) -> None:
    tickets, breaches = await create_topic(partitions=3), await create_topic(partitions=3)
    app_id = f"sla-image-{uuid.uuid4().hex[:8]}"
    options = [
        "--bootstrap-servers",
        kafka_bootstrap,
        "--app-id",
        app_id,
        "--partitions",
        "3",
        "--input-topics",
        tickets,
        "--breaches-topic",
        breaches,
        "--timer-interval-seconds",
        "0.1",
    ]
    first = WorkerContainer(worker_image, f"{app_id}-1", options)
    containers.append(first)
    first.start()
    await first.ready()
    # The image's HEALTHCHECK passes (podman runs it on demand here: no systemd timers).
    assert podman("healthcheck", "run", first.name, check=False).returncode == 0, first.logs()

    # The fast test policy: plan "fast", priority 1, first response within 6 s.
    now = datetime.now(UTC).isoformat()
    created = {
        "event_id": "img-1",
        "type": "ticket-created",
        "ticket_id": "IMG-1",
        "occurred_at": now,
        "plan": "fast",
        "priority": 1,
    }
    await produce_json(tickets, [("IMG-1", created)])
    try:
        ((key, breach, _, _),) = await consume_json(breaches, 1, timeout=60)
    except TimeoutError as exc:
        raise AssertionError(f"no breach: {exc}\n{first.logs()}") from exc
    assert key == "IMG-1"
    assert (breach["type"], breach["ticket_id"], breach["metric"]) == (
        "sla-breach",
        "IMG-1",
        "first_response",
    )

    assert await asyncio.to_thread(first.terminate) == 0, first.logs()

    # A new container: nothing carried over but the Kafka topics.
    second = WorkerContainer(worker_image, f"{app_id}-2", options)
    containers.append(second)
    second.start()
    await second.ready()
    status, body = await asyncio.to_thread(second.get, "/tickets/IMG-1")
    assert status == 200, (body, second.logs())
    assert body["timers"][0]["breached"] is True, body
