"""Hostile input through the live worker: time never moves on rejected input, the stream
never stops, and every message is accounted for (consumed = applied + duplicate + held +
dead-lettered, per reason)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from devtools.harness import WorkerProcess, read_all, settled
from tests.integration.fault_log import (
    Line,
    fault_log,
    produce,
    published,
    replay_expected,
)
from worker.tasks.partition import DEAD_LETTER_PREFIX

LIMIT = 150_000  # --max-message-bytes of the hostile run


def iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def body(event_id: str, kind: str, ticket: str, at: datetime | str, **fields: Any) -> bytes:
    when = at if isinstance(at, str) else iso(at)
    event = {"event_id": event_id, "type": kind, "ticket_id": ticket, "occurred_at": when}
    return json.dumps({**event, **fields}).encode()


async def topics(create_topic: Any, partitions: int) -> dict[str, str]:
    return {name: await create_topic(partitions=partitions) for name in ("in", "w", "b", "dead")}


def start(worker_factory: Any, names: dict[str, str], partitions: int, *extra: str) -> Any:
    return worker_factory(
        input_topics=(names["in"],),
        partitions=partitions,
        extra=(
            *("--warnings-topic", names["w"], "--breaches-topic", names["b"]),
            *("--dead-letter-topic", names["dead"], *extra),
        ),
    )


def consumed(worker: WorkerProcess) -> Counter[tuple[str, str]]:
    """sla_events_consumed_total by (outcome, reason)."""
    scrape = worker.scrape()
    assert scrape is not None
    counts: Counter[tuple[str, str]] = Counter()
    for labels, value in scrape.values("sla_events_consumed_total"):
        counts[(labels["outcome"], labels["reason"])] += int(value)
    return counts


async def test_rejected_and_future_events_never_fire_anyones_timers(
    create_topic: Any, kafka_bootstrap: str, worker_factory: Any
) -> None:
    """Issue #12's example, live: an event for an unknown ticket dated four minutes ahead
    (within the clock skew, rejected as unknown-ticket), one for T1 dated 2099 (rejected as
    future-timestamp), and a valid one dated three minutes ahead (applied: it moves event
    time, but the wall clock caps it) share T1's partition. T1 is answered two seconds
    after creation (its warning is due at three, its breach at six): nothing may fire."""
    names = await topics(create_topic, 1)
    worker = start(worker_factory, names, 1)
    worker.start()
    await worker.ready()
    now = datetime.now(UTC)
    far = datetime(2099, 1, 1, tzinfo=UTC)
    lines = [
        Line(now, b"T1", body("a1", "ticket-created", "T1", now, plan="fast", priority=1)),
        Line(
            now,
            b"NOPE",
            body("x1", "reply-sent", "NOPE", now + timedelta(minutes=4), author="agent"),
            bad=True,
        ),
        Line(now, b"T1", body("x2", "reply-sent", "T1", far, author="agent"), bad=True),
        Line(
            now, b"T2", body("c2", "ticket-created", "T2", now + timedelta(minutes=3), plan="fast")
        ),
        Line(
            now + timedelta(seconds=2),
            b"T1",
            body("a2", "reply-sent", "T1", now + timedelta(seconds=2), author="agent"),
        ),
    ]
    await produce(kafka_bootstrap, names["in"], lines, live=True)
    # Past T1's first-response deadline (6 s), everything read and nothing left to fire.
    await settled([worker], now + timedelta(seconds=7))
    outputs = await published(kafka_bootstrap, [names["w"], names["b"]])
    assert outputs.events == {}, outputs.events
    letters = await read_all(kafka_bootstrap, names["dead"])
    assert sorted(dict(letter.headers)["sla-dlq-reason"] for letter in letters) == [
        b"future-timestamp",
        b"unknown-ticket",
    ]
    status, ticket = await asyncio.to_thread(worker.get, "/tickets/T1")
    assert status == 200 and ticket["timers"] == []  # met by the reply


async def test_hostile_messages_are_dead_lettered_and_the_stream_goes_on(
    create_topic: Any, kafka_bootstrap: str, worker_factory: Any, tmp_path: Path
) -> None:
    names = await topics(create_topic, 3)
    valid = fault_log(7, datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10))
    target = valid[0].key
    assert target is not None
    t = target.decode()
    at = "2026-11-15T10:00:00Z"
    hostile: list[tuple[bytes | None, bytes, str]] = [
        (target, b"\x00\x9f random \xff bytes", "invalid-json"),
        (target, b"\xff\xfe" + body("h1", "reply-sent", t, at, author="agent"), "invalid-json"),
        (target, b"\xef\xbb\xbf" + body("h2", "reply-sent", t, at, author="agent"), "invalid-json"),
        (target, b'{"a":' * 10_000 + b"1" + b"}" * 10_000, "invalid-json"),
        (target, b'{"event_id": "' + b"x" * 200_000 + b'"}', "too-large"),
        (target, body("h3", "reply-sent", "T" * 100_000, at, author="agent"), "invalid-field"),
        (target, body("h4", "reply-sent", t, at, author=7), "invalid-field"),
        (
            target,
            body("h5", "priority-changed", t, at, priority=0).replace(b": 0", b": NaN"),
            "invalid-field",
        ),
        (
            target,
            body("h6", "reply-sent", t, at, author="agent")[:-1] + b', "occurred_at": "x"}',
            "invalid-field",
        ),
        (
            target,
            body("h7", "reply-sent", t, "0001-01-01T00:00:00+23:59", author="agent"),
            "invalid-field",
        ),
        (
            target,
            body("h8", "reply-sent", t, "2026-11-30T23:59:60Z", author="agent"),
            "invalid-field",
        ),
        (
            target,
            body("h9", "reply-sent", t, "2099-01-01T00:00:00Z", author="agent"),
            "future-timestamp",
        ),
        (None, body("h10", "ticket-created", "KEYLESS", at, plan="fast"), "missing-key"),
    ]
    lines = list(valid)
    for n, (key, value, _) in enumerate(hostile):
        lines.insert(3 + 4 * n, Line(valid[0].at, key, value, bad=True))
    await produce(kafka_bootstrap, names["in"], lines)

    worker = start(worker_factory, names, 3, "--max-message-bytes", str(LIMIT))
    worker.start()
    end = valid[-1].at + timedelta(seconds=15)
    want = replay_expected([line for line in valid], end, tmp_path)
    await settled([worker], end)
    got = await published(kafka_bootstrap, [names["w"], names["b"]])
    assert got.events == want

    letters = await read_all(kafka_bootstrap, names["dead"])
    reasons = Counter(dict(letter.headers)["sla-dlq-reason"].decode() for letter in letters)
    expected_reasons = Counter(reason for _, _, reason in hostile)
    expected_reasons.update(["invalid-field", "invalid-json", "unknown-ticket", "unknown-type"])
    assert reasons == expected_reasons  # the hostile ones and fault_log's own bad lines
    # The original bytes, untouched; a too-large one keeps its first 64 KiB, and says so.
    by_value = {letter.value: (letter.key, dict(letter.headers)) for letter in letters}
    for key, value, _ in hostile:
        kept = value if len(value) <= LIMIT else value[:DEAD_LETTER_PREFIX]
        assert kept in by_value, f"no dead letter for {value[:60]!r}..."
        dead_key, headers = by_value[kept]
        assert dead_key == key
        if kept is not value:
            assert headers["sla-dlq-truncated-from"] == str(len(value)).encode()

    counts = await asyncio.to_thread(consumed, worker)
    assert sum(counts.values()) == len(lines)
    dead = {reason: n for (outcome, reason), n in counts.items() if outcome == "dead_lettered"}
    assert {r: n for r, n in dead.items() if n} == dict(reasons)
    assert counts[("duplicate", "")] == 1 and counts[("held", "")] == 0
