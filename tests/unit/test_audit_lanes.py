"""The audit judges every partition as the worker that owned it did: equal by construction.

The worker keeps one event-time clock per input partition (`worker.tasks.partition`), and
the rules that read a clock read that one: what fires before an event, `too-old`, when a
finished ticket leaves state. The audit feeds each Kafka record to the lane of its
partition (`Replay.feed_record`). Here random hostile logs over several partitions, with
tickets out of order, lines that cannot be applied, keyless and mis-keyed records,
redeliveries and spans of weeks against a two-day retention, go through both the pure
worker partition (`Partition.step`, in randomly cut steps) and the audit's replay (in a
random interleaving of the partitions): they must publish exactly the same records.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.hostile_logs import RETENTION, Record, hostile_log
from worker.core.engine import Engine
from worker.core.policy import Policy
from worker.presets import load_presets
from worker.replay import Rejection, Replay
from worker.tasks.partition import Message, Partition, Topics
from worker.tasks.processor import TicketProcessor

NOW = datetime(2030, 1, 1, tzinfo=UTC)  # the wall clock: every event is long past
POLICY = load_presets()


def worker_output(
    records: list[Record], partitions: int, until: datetime, rng: random.Random
) -> dict[str, dict[str, Any]]:
    """What the worker publishes: each partition stepped in randomly cut batches, then
    caught up (read through `until`)."""
    topics = Topics("w", "b", "dead", "changelog")
    published: dict[str, dict[str, Any]] = {}
    for number in range(partitions):
        processor = TicketProcessor(Engine(POLICY, RETENTION), None)
        partition = Partition(number, processor, topics, timedelta(0))
        mine = [(key, value) for p, key, value in records if p == number]
        messages = [Message("tickets", number, n, k, v) for n, (k, v) in enumerate(mine)]
        while messages:
            cut = rng.randrange(1, 40)
            batch = partition.step(messages[:cut], NOW, read_through=None)
            messages = messages[cut:]
            published.update((e.event_id, json.loads(e.model_dump_json())) for e in batch.published)
        batch = partition.step([], NOW, read_through=until)
        published.update((e.event_id, json.loads(e.model_dump_json())) for e in batch.published)
    return published


def audit_output(
    records: list[Record], rng: random.Random
) -> tuple[dict[str, dict[str, Any]], datetime | None, list[Rejection]]:
    """What the audit's replay emits, fed one interleaving of the partitions (each
    partition's own order kept, as the merge keeps it)."""
    emitted: dict[str, dict[str, Any]] = {}
    rejections: list[Rejection] = []
    replay = Replay(
        Engine(POLICY, RETENTION),
        lambda e: emitted.__setitem__(e.event_id, json.loads(e.model_dump_json())),
        rejections.append,
        NOW,
    )
    queues: dict[int, list[tuple[bytes | None, bytes]]] = {}
    for partition, key, value in records:
        queues.setdefault(partition, []).append((key, value))
    number = 0
    while queues:
        partition = rng.choice(sorted(queues))
        key, value = queues[partition].pop(0)
        if not queues[partition]:
            del queues[partition]
        number += 1
        replay.feed_record(number, value, partition, key)
    until = replay.clock
    replay.finish(until)
    return emitted, until, rejections


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32), partitions=st.integers(1, 4))
def test_the_audit_publishes_what_the_worker_publishes(seed: int, partitions: int) -> None:
    records = hostile_log(seed, partitions)
    rng = random.Random(seed)
    audited, until, rejections = audit_output(records, rng)
    assert until is not None
    worked = worker_output(records, partitions, until, rng)
    assert worked == audited
    reasons = {r.reason for r in rejections}
    assert {"missing-key", "key-mismatch", "invalid-json"} <= reasons  # the log was hostile


def test_a_rejected_line_moves_no_partition_clock_in_the_audit(presets: Policy) -> None:
    """The issue's second cause: a line that cannot be applied, dated a month later, then
    a valid creation in the same partition. The worker applies the creation (the line
    moved no time); so does the audit, whatever other partitions did meanwhile."""

    def line(body: dict[str, Any]) -> bytes:
        return json.dumps(body).encode()

    late = datetime(2026, 11, 23, tzinfo=UTC)
    created = {
        "event_id": "c", "type": "ticket-created", "ticket_id": "A", "plan": "vip",
        "priority": 1, "occurred_at": "2026-10-23T09:00:00Z",
    }  # fmt: skip
    busy = {**created, "event_id": "b", "ticket_id": "B", "occurred_at": late.isoformat()}
    no_ticket = {k: v for k, v in busy.items() if k != "ticket_id"}
    emitted: list[str] = []
    rejections: list[Rejection] = []
    replay = Replay(
        Engine(presets, timedelta(days=30)), lambda e: emitted.append(e.ticket_id),
        rejections.append, NOW,
    )  # fmt: skip
    replay.feed_record(1, line(busy), 1, b"B")  # another partition is a month ahead
    replay.feed_record(2, line(no_ticket), 0, b"A")  # rejected: moves no time
    replay.feed_record(3, line(created), 0, b"A")
    replay.finish()
    assert [r.reason for r in rejections] == ["invalid-field"]
    assert "A" in emitted  # its first response breached, as the worker published it
