"""`sla-worker audit --verify` never accuses a correct worker, and catches a wrong output.

Through a real broker: a worker runs until it has published everything due, then the
audit judges its output. Two causes once made it accuse a correct worker (issue #21):
records the worker fired on the wall clock after the last event, and a retention rule
judged against the whole stream's event time where the worker judges its partition's.
Then random hostile logs over three partitions: every window the flags can ask for
verifies clean, and a forged, an altered and a removed record are each named.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from devtools.harness import read_all
from tests.hostile_logs import RETENTION, Record, hostile_log
from tests.integration.fault_log import settled_outputs
from tests.integration.workers import FAST_POLICY
from worker.kafka.topics import default_partition

PARTITIONS = 3
SEC = timedelta(seconds=1)


def sla_worker(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker", *args],
        capture_output=True,
        check=False,
        timeout=300,
        text=True,
    )


def iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


async def produce(bootstrap: str, topic: str, records: list[Record]) -> None:
    """Each record to its own partition, in order."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for partition, key, value in records:
            await producer.send_and_wait(topic, value, key=key, partition=partition)
    finally:
        await producer.stop()


def tickets_on_other_partitions() -> tuple[str, str]:
    """Two ticket ids that the default partitioner puts on different partitions, the
    first on a higher one (the old audit's merge broke ties by partition)."""
    ids = [f"T-{n}" for n in range(100)]
    first = next(t for t in ids if default_partition(t.encode(), PARTITIONS) > 0)
    low = default_partition(first.encode(), PARTITIONS)
    second = next(t for t in ids if default_partition(t.encode(), PARTITIONS) < low)
    return first, second


class Setup:
    """Topics of one test, the worker on them, and the audit's flags for them."""

    def __init__(self, bootstrap: str, names: dict[str, str]) -> None:
        self.bootstrap = bootstrap
        self.names = names

    def flags(self, warnings: str | None = None, breaches: str | None = None) -> list[str]:
        return [
            *("--bootstrap-servers", self.bootstrap, "--input-topics", self.names["in"]),
            *("--warnings-topic", warnings or self.names["w"]),
            *("--breaches-topic", breaches or self.names["b"]),
        ]

    def worker_topics(self) -> tuple[str, ...]:
        return (
            *("--warnings-topic", self.names["w"], "--breaches-topic", self.names["b"]),
            *("--dead-letter-topic", self.names["dead"]),
        )


@pytest.fixture
async def setup(create_topic: Any, kafka_bootstrap: str) -> Setup:
    names = {n: await create_topic(partitions=PARTITIONS) for n in ("in", "w", "b", "dead")}
    return Setup(kafka_bootstrap, names)


def audit(setup: Setup, *flags: str, policy: Path | None = FAST_POLICY) -> tuple[int, str]:
    policies = ("--policies", str(policy)) if policy else ()
    done = sla_worker("audit", *setup.flags(), *policies, "--verify", *flags)
    return done.returncode, done.stderr


async def test_records_the_worker_fired_after_the_last_event_are_not_accused(
    setup: Setup, worker_factory: Any
) -> None:
    """Cause 1: a ticket paused, then reopened in the log's last event; its warning and
    breach fall due after it, and the worker fires them on the wall clock. `--to end`
    judges what the audit's clock reached (the last event): they are outside, not
    unexpected."""
    last = datetime.now(UTC).replace(microsecond=0)

    def event(n: int, kind: str, at: datetime, **fields: Any) -> Record:
        body = {"event_id": f"e{n}", "type": kind, "ticket_id": "P", "occurred_at": iso(at)}
        return (default_partition(b"P", PARTITIONS), b"P", json.dumps(body | fields).encode())

    await produce(
        setup.bootstrap,
        setup.names["in"],
        [
            event(1, "ticket-created", last - timedelta(seconds=3), plan="fast", priority=2),
            event(2, "status-changed", last - timedelta(seconds=2), status="pending"),
            event(3, "status-changed", last, status="open"),
        ],
    )
    worker = worker_factory(input_topics=(setup.names["in"],), extra=setup.worker_topics())
    worker.start()
    got = await settled_outputs([worker], [setup.names["w"], setup.names["b"]], last + 15 * SEC)
    assert {e["type"] for e in got.events.values()} == {"sla-warning", "sla-breach"}

    code, report = audit(setup)
    assert code == 0, report
    assert "missing 0, unexpected 0, different 0; 2 outside the window" in report, report
    assert f"through {last.isoformat()}" in report, report  # the clock stopped there

    # Run as far as the worker's clock instead (`--to` a later instant): judged, and true.
    code, report = audit(setup, "--to", iso(last + 15 * SEC))
    assert code == 0, report
    assert "2 published records compared; missing 0, unexpected 0, different 0" in report


async def test_a_rejected_line_moves_no_partition_clock_for_the_retention(
    setup: Setup, worker_factory: Any
) -> None:
    """Cause 2: in one partition a line that cannot be applied, dated D, then a valid
    `ticket-created` dated 31 days before D; another partition is at D already. The
    worker applies the creation (its partition's event time never moved) and publishes
    the warning and breach; the audit judges that partition by its own clock and agrees."""
    late, busy = tickets_on_other_partitions()
    d = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    created = {"type": "ticket-created", "plan": "fast", "priority": 1}

    def body(event_id: str, ticket: str | None, at: datetime) -> bytes:
        fields = {"event_id": event_id, **created, "occurred_at": iso(at)}
        return json.dumps(fields | ({"ticket_id": ticket} if ticket else {})).encode()

    late_partition = default_partition(late.encode(), PARTITIONS)
    busy_partition = default_partition(busy.encode(), PARTITIONS)
    await produce(
        setup.bootstrap,
        setup.names["in"],
        [
            (busy_partition, busy.encode(), body("b1", busy, d - SEC)),
            (late_partition, late.encode(), body("x1", None, d)),  # no ticket_id: rejected
            (late_partition, late.encode(), body("c1", late, d - timedelta(days=31))),
        ],
    )
    worker = worker_factory(input_topics=(setup.names["in"],), extra=setup.worker_topics())
    worker.start()
    got = await settled_outputs([worker], [setup.names["w"], setup.names["b"]], d + 15 * SEC)
    assert sorted(e["type"] for e in got.events.values() if e["ticket_id"] == late) == [
        "sla-breach",
        "sla-warning",
    ]

    code, report = audit(setup)
    assert code == 0, report
    assert "missing 0, unexpected 0, different 0" in report, report
    assert "too-old" not in report, report


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_verify_is_exact_on_random_hostile_logs_whatever_the_window(
    seed: int, setup: Setup, worker_factory: Any, create_topic: Any, tmp_path: Path
) -> None:
    """The property of issue #21, through the broker: a hostile log (out-of-order,
    malformed, keyless and mis-keyed lines, redeliveries, a quiet gap longer than the
    two-day retention), one worker until it published everything due; `--verify`
    exits 0 for every window, and exits 1 naming a forged, an altered or a removed
    record."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=45)
    records = hostile_log(seed, PARTITIONS, start)
    await produce(setup.bootstrap, setup.names["in"], records)
    retention = ("--finished-retention-days", str(RETENTION.days))
    worker = worker_factory(
        input_topics=(setup.names["in"],), policy=None, extra=(*setup.worker_topics(), *retention)
    )
    worker.start()
    last = max(
        datetime.fromisoformat(json.loads(v)["occurred_at"])
        for _, _, v in records
        if v.startswith(b"{") and b"ticket_id" in v and b"2029" not in v
    )
    outputs = [setup.names["w"], setup.names["b"]]
    got = await settled_outputs([worker], outputs, min(last, datetime.now(UTC)), timeout=240)
    assert len(got.events) > 20 and not got.conflicts

    quarter = timedelta(days=10)
    windows = [
        (),
        ("--from", iso(start + quarter)),
        ("--to", iso(start + 2 * quarter)),
        ("--from", iso(start + quarter), "--to", iso(start + 3 * quarter)),
    ]
    for window in windows:
        code, report = audit(setup, *retention, *window, policy=None)
        assert code == 0, (window, report)
        assert "missing 0, unexpected 0, different 0" in report, (window, report)

    # Tampered copies of the output, each in fresh topics: one record forged, one
    # altered, one removed. Each is named, with exit 1.
    published = [
        (topic, record) for topic in outputs for record in await read_all(setup.bootstrap, topic)
    ]
    # A victim well inside every judged window but the narrowest: due before the quiet
    # gap and the end of the log.
    victim = next(
        event
        for event in (json.loads(record.value) for _, record in published)
        if start + quarter < datetime.fromisoformat(event["due_at"]) < start + 2 * quarter
    )
    forged = {**victim, "event_id": f"forged-{uuid.uuid4().hex[:6]}"}
    altered = {**victim, "deadline": iso(start)}
    for kind, replacement in (("unexpected", forged), ("different", altered), ("missing", None)):
        copies = {topic: await create_topic(partitions=PARTITIONS) for topic in outputs}
        producer = AIOKafkaProducer(bootstrap_servers=setup.bootstrap, acks="all")
        await producer.start()
        try:
            for topic, record in published:
                value = record.value
                if json.loads(value)["event_id"] == victim["event_id"]:
                    if replacement is None:
                        continue
                    if kind == "unexpected":
                        await producer.send_and_wait(copies[topic], value, key=record.key)
                    value = json.dumps(replacement).encode()
                await producer.send_and_wait(copies[topic], value, key=record.key)
        finally:
            await producer.stop()
        differences = tmp_path / f"differences-{kind}.jsonl"
        done = sla_worker(
            "audit",
            *setup.flags(copies[outputs[0]], copies[outputs[1]]),
            *retention,
            "--verify",
            "--differences",
            str(differences),
        )
        assert done.returncode == 1, (kind, done.stderr)
        (row,) = [json.loads(line) for line in differences.read_text().splitlines()]
        assert row["kind"] == kind, row
        named = row.get("published") or row.get("expected")
        wanted = forged if kind == "unexpected" else victim
        assert named["event_id"] == wanted["event_id"], row
