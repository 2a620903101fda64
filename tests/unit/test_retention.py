"""Finished tickets leave state after the retention, alike in replay and in the worker."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from worker.core.engine import Engine
from worker.core.policy import Policy
from worker.replay import Rejection, Replay
from worker.tasks.partition import Message, Partition, Topics
from worker.tasks.processor import TicketProcessor

DAY = timedelta(days=1)
T0 = datetime(2026, 11, 2, 9, tzinfo=UTC)


def ev(event_id: str, kind: str, ticket: str, at: datetime, **fields: Any) -> dict[str, Any]:
    iso = at.isoformat().replace("+00:00", "Z")
    return {"event_id": event_id, "type": kind, "ticket_id": ticket, "occurred_at": iso, **fields}


STREAM = [
    ev("c1", "ticket-created", "A", T0, plan="vip", priority=1),
    ev("s1", "status-changed", "A", T0 + timedelta(minutes=5), status="solved"),
    ev("c2", "ticket-created", "B", T0 + 2 * DAY, plan="vip", priority=1),  # A is gone now
    ev("r1", "reply-sent", "A", T0 + 2 * DAY, author="customer"),  # late: A is unknown
    ev("c1", "ticket-created", "A", T0, plan="vip", priority=1),  # a redelivery: too old
]


def replay(lines: list[dict[str, Any]], policy: Policy) -> tuple[Replay, list[Rejection]]:
    rejections: list[Rejection] = []
    run = Replay(Engine(policy, retention=DAY), lambda e: None, rejections.append)
    run.feed(json.dumps(line) for line in lines)
    return run, rejections


def test_replay_forgets_a_finished_ticket_after_the_retention(presets: Policy) -> None:
    run, rejections = replay(STREAM, presets)
    summary = run.finish(T0 + 3 * DAY)
    assert set(run.tickets) == {"B"} and summary.removed == 1
    assert [(r.line, r.reason) for r in rejections] == [(4, "unknown-ticket"), (5, "too-old")]
    assert summary.read == summary.applied + summary.duplicates + summary.rejected


def test_an_open_ticket_is_never_forgotten(presets: Policy) -> None:
    run, _ = replay(STREAM[:1] + STREAM[2:3], presets)
    run.finish(T0 + 90 * DAY)
    assert set(run.tickets) == {"A", "B"}


def test_the_worker_writes_a_tombstone_and_judges_late_events_alike(presets: Policy) -> None:
    topics = Topics("w", "b", "dead", "changelog")
    processor = TicketProcessor(Engine(presets, retention=DAY), None)
    partition = Partition(0, processor, topics, timedelta(0))
    messages = [
        Message("tickets", 0, n, line["ticket_id"].encode(), json.dumps(line).encode())
        for n, line in enumerate(STREAM)
    ]
    now = T0 + 3 * DAY
    partition.step(messages[:2], now, read_through=None)
    batch = partition.step(messages[2:], now, read_through=None)
    tombstones = [w for w in batch.writes if w.topic == "changelog" and w.value is None]
    assert [w.key for w in tombstones] == [b"A"]
    assert set(partition.tickets) == {"B"}
    assert [letter.reason for letter in batch.dead_letters] == ["unknown-ticket", "too-old"]
    assert ("A", None) in [(t, new) for t, new, _ in batch.state_changes]
