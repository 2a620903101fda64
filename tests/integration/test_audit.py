"""`sla-worker audit` against the real broker: replay from Kafka equals replay of a file,
and --verify proves (or disproves) what the live worker published."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from tests.integration.fault_log import (
    Line,
    fault_log,
    produce,
    replay_expected,
    settled_outputs,
)
from tests.integration.workers import FAST_POLICY

NOW = "2030-01-01T00:00:00Z"  # a fixed clock: both runs judge future timestamps alike


def sla_worker(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "worker", *args], capture_output=True, check=False, timeout=300
    )


async def test_audit_replays_kafka_and_verifies_the_published_output(
    create_topic: Any, kafka_bootstrap: str, worker_factory: Any, tmp_path: Path
) -> None:
    names = {n: await create_topic(partitions=3) for n in ("in", "w", "b", "dead")}
    lines = fault_log(11, datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10))
    await produce(kafka_bootstrap, names["in"], lines)
    worker = worker_factory(
        input_topics=(names["in"],),
        extra=(
            *("--warnings-topic", names["w"], "--breaches-topic", names["b"]),
            *("--dead-letter-topic", names["dead"]),
        ),
    )
    worker.start()
    until = lines[-1].at + timedelta(seconds=15)
    want = replay_expected(lines, until, tmp_path)
    got = await settled_outputs([worker], [names["w"], names["b"]], until)
    assert got.events == want

    common = [
        *("--bootstrap-servers", kafka_bootstrap, "--input-topics", names["in"]),
        *("--warnings-topic", names["w"], "--breaches-topic", names["b"]),
        *("--policies", str(FAST_POLICY), "--now", NOW),
    ]
    out, events, diff = tmp_path / "out.jsonl", tmp_path / "events.jsonl", tmp_path / "d.jsonl"
    audited = sla_worker(
        "audit", *common, "--output", str(out), "--events", str(events), "--verify",
        "--differences", str(diff),
    )  # fmt: skip
    assert audited.returncode == 0, audited.stderr.decode()
    report = audited.stderr.decode()
    assert "missing 0, unexpected 0, different 0" in report, report
    assert "ticket-created the log does not hold): 1" in report, report  # the hostile NOPE
    assert {json.loads(x)["event_id"] for x in out.read_text().splitlines()} == set(want)
    assert len(events.read_bytes().splitlines()) == len(lines)

    # The merged input, replayed from a file with a clock per partition as the summary
    # says: byte for byte.
    command = f"`sla-worker replay {events} --partitions 3 --now 2030-01-01T00:00:00+00:00`"
    assert f"events: {command} gives this output\n" in report, report
    replayed = sla_worker(
        "replay", str(events), "--policies", str(FAST_POLICY), "--now", NOW, "--partitions", "3"
    )
    assert replayed.returncode == 0 and replayed.stdout == out.read_bytes()

    # A breach nobody can derive from the input, published by someone else: caught.
    forged = {**json.loads(out.read_text().splitlines()[-1]), "event_id": "forged-1"}
    forged["type"] = "sla-breach"
    forged.pop("threshold", None)
    await produce_raw(kafka_bootstrap, names["b"], forged)
    caught = sla_worker("audit", *common, "--verify", "--differences", str(diff))
    assert caught.returncode == 1, caught.stderr.decode()
    assert "missing 0, unexpected 1, different 0" in caught.stderr.decode()
    (row,) = [json.loads(x) for x in diff.read_text().splitlines()]
    assert row["kind"] == "unexpected" and row["published"]["event_id"] == "forged-1"


async def produce_raw(bootstrap: str, topic: str, body: dict[str, Any]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, json.dumps(body).encode(), key=b"forged")
    finally:
        await producer.stop()


async def test_finished_timers_topic_equals_replay_and_the_audit_verifies_it(
    create_topic: Any, kafka_bootstrap: str, worker_factory: Any, tmp_path: Path
) -> None:
    """The worker's optional sla-timer-finished topic holds exactly the records `sla-worker
    replay --finished-timers` writes (customer_id included), and `audit --verify` with
    the topic compares them too."""
    names = {n: await create_topic(partitions=3) for n in ("in", "w", "b", "dead", "fin")}
    lines = [
        with_customer(line)
        for line in fault_log(5, datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10))
    ]
    await produce(kafka_bootstrap, names["in"], lines)
    topics = (
        *("--warnings-topic", names["w"], "--breaches-topic", names["b"]),
        *("--finished-timers-topic", names["fin"]),
    )
    worker = worker_factory(
        input_topics=(names["in"],), extra=(*topics, "--dead-letter-topic", names["dead"])
    )
    worker.start()
    until = lines[-1].at + timedelta(seconds=15)
    want = replay_expected(lines, until, tmp_path, finished_timers=True)
    finished = {k: e for k, e in want.items() if e["type"] == "sla-timer-finished"}
    assert {e["result"] for e in finished.values()} == {"met", "breached"}
    assert {e.get("customer_id") for e in finished.values()} == {"C-even", None}
    outputs = [names["w"], names["b"], names["fin"]]
    got = await settled_outputs([worker], outputs, until)
    assert got.events == want and not got.conflicts

    common = [
        *("--bootstrap-servers", kafka_bootstrap, "--input-topics", names["in"], *topics),
        *("--policies", str(FAST_POLICY), "--now", NOW),
    ]
    out = tmp_path / "out.jsonl"
    audited = sla_worker("audit", *common, "--finished-timers", "--output", str(out), "--verify")
    assert audited.returncode == 0, audited.stderr.decode()
    assert "missing 0, unexpected 0, different 0" in audited.stderr.decode()
    assert {json.loads(x)["event_id"] for x in out.read_text().splitlines()} == set(want)


def with_customer(line: Line) -> Line:
    """Every other ticket gets a customer_id."""
    if line.bad or b'"ticket-created"' not in line.value:
        return line
    body = json.loads(line.value)
    if int("".join(c for c in body["ticket_id"] if c.isdigit()) or 0) % 2 == 0:
        body["customer_id"] = "C-even"
    return Line(line.at, line.key, json.dumps(body).encode(), line.bad)
