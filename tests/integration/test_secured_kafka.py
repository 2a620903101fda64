"""The worker and the audit on a secured broker: SASL_SSL (SCRAM-SHA-512) and mutual TLS.

Each mode runs its own broker (`scripts/kafka-local start --security ...`, via
`devtools.harness.LocalBroker`), whose client listener accepts nothing else; the worker
connects with the settings `client.json` names. A wrong password, a client certificate
the broker does not trust and a CA that did not sign the broker's certificate each end the
worker within seconds, non-zero, with a sentence naming the cause; no secret (password,
private key, the HTTP API's bearer token) reaches a log.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from devtools.harness import LocalBroker, WorkerProcess
from tests.integration.workers import FAST_POLICY, fast_worker
from worker.kafka.topics import client_options
from worker.settings import KafkaConnection

EXIT_WITHIN_SECONDS = 20.0


@dataclass
class Secured:
    mode: str
    broker: LocalBroker
    client: dict[str, str]

    @property
    def settings(self) -> KafkaConnection:
        return KafkaConnection(**self.client)

    def flags(self, **override: str) -> tuple[str, ...]:
        """The worker's flags for this broker; the password goes in the environment."""
        values = {k: v for k, v in {**self.client, **override}.items() if k != "sasl_password"}
        values.pop("bootstrap_servers")
        return tuple(x for k, v in values.items() for x in ("--" + k.replace("_", "-"), v))

    def env(self, password: str | None = None) -> dict[str, str]:
        if "sasl_password" not in self.client:
            return {}
        return {"SLA_SASL_PASSWORD": password or self.client["sasl_password"]}

    def secrets(self) -> list[str]:
        """What must never appear in a log: the password, the client key's lines."""
        found = [self.client["sasl_password"]] if "sasl_password" in self.client else []
        if "ssl_keyfile" in self.client:
            found += key_lines(Path(self.client["ssl_keyfile"]))
        return found


def key_lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line and "-----" not in line]


@pytest.fixture(scope="module", params=["sasl_ssl", "mtls"])
def secured(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Secured]:
    broker = LocalBroker(tmp_path_factory.mktemp(f"kafka-{request.param}"))
    started = time.monotonic()
    broker.start("--security", request.param)
    print(f"\n{request.param} broker started in {time.monotonic() - started:.1f} s")
    try:
        yield Secured(request.param, broker, broker.client())
    finally:
        broker._run("stop")


@dataclass
class Topics:
    tickets: str
    warnings: str
    breaches: str

    @classmethod
    def fresh(cls) -> Topics:
        tag = uuid.uuid4().hex[:8]
        return cls(f"tickets-{tag}", f"warnings-{tag}", f"breaches-{tag}")

    def flags(self) -> tuple[str, ...]:
        return ("--warnings-topic", self.warnings, "--breaches-topic", self.breaches)


@pytest.fixture
def worker_on(secured: Secured, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """`worker_on(topics, *flags, **env)`: a started worker on the secured broker (it
    creates its topics); killed at teardown if still running."""
    started: list[WorkerProcess] = []

    def start(topics: Topics, *extra: str, **env: str) -> WorkerProcess:
        worker = fast_worker(
            secured.broker.bootstrap,
            tmp_path,
            app_id=f"sla-{uuid.uuid4().hex[:8]}",
            input_topics=(topics.tickets,),
            extra=(*extra, *topics.flags()),
            env=env,
        )
        started.append(worker)
        worker.start()
        return worker

    yield start
    for worker in started:
        worker.stop_quietly()


def self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    """A certificate and key no broker here trusts (nor does it trust the broker's)."""
    key, cert = directory / f"{name}.key", directory / f"{name}.crt"
    command = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
    command += ["-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1"]
    subprocess.run([*command, "-subj", f"/CN={name}"], check=True, capture_output=True)
    return cert, key


def assert_no_secret(log: str, secrets: list[str]) -> None:
    leaked = [secret[:6] + "..." for secret in secrets if secret in log]
    assert not leaked, f"secrets in the worker's log: {leaked}"


async def test_the_worker_works_over_the_secured_listener(
    secured: Secured, worker_on: Callable[..., WorkerProcess], record_property: Any
) -> None:
    topics = Topics.fresh()
    token = "api-" + uuid.uuid4().hex  # the HTTP API's bearer token: never logged either
    env = {**secured.env(), "SLA_API_TOKEN": token}
    worker = worker_on(topics, *secured.flags(), "--log-level", "DEBUG", **env)
    ready = await worker.ready()
    record_property(f"{secured.mode}-worker-ready-seconds", round(ready, 2))
    options = client_options(secured.settings)
    ticket = f"SEC-{secured.mode}"
    created = {
        "event_id": f"c-{ticket}",
        "type": "ticket-created",
        "ticket_id": ticket,
        "occurred_at": datetime.now(UTC).isoformat(),
        "plan": "fast",
        "priority": 1,  # first response within 6 s
    }
    producer = AIOKafkaProducer(**options, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            topics.tickets, json.dumps(created).encode(), key=ticket.encode()
        )
    finally:
        await producer.stop()

    breach = await read_one(options, topics.breaches, timeout=40)
    assert breach["type"] == "sla-breach" and breach["ticket_id"] == ticket
    status, body = await asyncio.to_thread(get, worker, f"/tickets/{ticket}", token)
    assert status == 200 and body["timers"][0]["breached"], body
    assert (await asyncio.to_thread(get, worker, f"/tickets/{ticket}", None))[0] == 401

    # The audit reads the same history over the same secured listener.
    audit = [sys.executable, "-m", "worker", "audit", "--bootstrap-servers", worker.bootstrap]
    audit += [*secured.flags(), *topics.flags(), "--input-topics", topics.tickets]
    audit += ["--to", datetime.now(UTC).isoformat(), "--policies", str(FAST_POLICY), "--verify"]
    audited = await asyncio.to_thread(
        subprocess.run,
        audit,
        env={**os.environ, **secured.env()},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert audited.returncode == 0, audited.stderr
    assert "missing 0, unexpected 0, different 0" in audited.stderr, audited.stderr

    assert worker.terminate() == 0
    log = worker.log_path.read_text()
    assert '"level": "DEBUG"' in log  # the secrets were checked at DEBUG too
    assert_no_secret(log + audited.stdout + audited.stderr, [*secured.secrets(), token])


def get(worker: WorkerProcess, path: str, token: str | None) -> tuple[int, Any]:
    """GET from the worker's API, with the bearer token when one is given."""
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    request = urllib.request.Request(f"http://127.0.0.1:{worker.port}{path}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


async def read_one(options: dict[str, Any], topic: str, timeout: float) -> dict[str, Any]:
    consumer = AIOKafkaConsumer(
        topic,
        **options,
        group_id=f"read-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=int(timeout * 1000), max_records=1)
        records = [r for messages in batch.values() for r in messages]
        assert records, f"nothing on {topic} within {timeout} s"
        value: dict[str, Any] = json.loads(records[0].value)
        return value
    finally:
        await consumer.stop()


@pytest.mark.parametrize("fault", ["wrong-secret", "untrusted-broker"])
async def test_refused_credentials_end_the_worker_within_seconds(
    secured: Secured,
    worker_on: Callable[..., WorkerProcess],
    tmp_path: Path,
    fault: str,
    record_property: Any,
) -> None:
    """A wrong password (SASL_SSL) or a client certificate from an unknown CA (mTLS), and
    a CA that did not sign the broker's certificate: the worker stops, saying why."""
    rogue_cert, rogue_key = self_signed(tmp_path, "rogue")
    secrets = secured.secrets() + key_lines(rogue_key)
    wrong_password = "not-" + uuid.uuid4().hex
    env = secured.env()
    if fault == "untrusted-broker":
        flags = secured.flags(ssl_cafile=str(rogue_cert))
        expected = "the broker's TLS certificate is not trusted"
    elif secured.mode == "sasl_ssl":
        flags, env = secured.flags(), secured.env(wrong_password)
        secrets.append(wrong_password)
        expected = "the broker refused the SASL login of user 'sla-worker'"
    else:
        flags = secured.flags(ssl_certfile=str(rogue_cert), ssl_keyfile=str(rogue_key))
        expected = "it did not accept this client's certificate"
    started = time.monotonic()
    worker = worker_on(Topics.fresh(), *flags, "--log-level", "DEBUG", **env)
    assert worker.process is not None
    code = await asyncio.to_thread(worker.process.wait, 60)
    elapsed = time.monotonic() - started
    record_property(f"{secured.mode}-{fault}-exit-seconds", round(elapsed, 2))
    print(f"\n{secured.mode} {fault}: exit {code} after {elapsed:.1f} s")
    log = worker.log_path.read_text()
    assert code == 1, log
    assert elapsed <= EXIT_WITHIN_SECONDS, log
    assert expected in log, log
    assert_no_secret(log, secrets)
