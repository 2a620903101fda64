"""A small adversarial ticket log, its replay, and exact comparison with what was published.

The log: 30 tickets on the seconds-scale test policy (targets 6-12 s), about 60 events,
some answered in time, some late, some never; follow-up cycles; and hostile lines keyed
by existing tickets (a malformed `occurred_at`, invalid JSON), an unknown ticket, an
unknown event type and a redelivered event. Every hostile line is one that `sla-worker
replay` rejects (or counts as a duplicate) too, so "the same log" means the same thing to
both.

The comparison is by exact sets of `event_id`s, read with `read_committed` as a consumer
of the outputs should: nothing missing, nothing invented, same content for the same id;
repeats are counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError

from devtools.harness import Record, WorkerProcess, end_offsets, read_all, settled
from tests.integration.workers import FAST_POLICY
from worker.kafka.topics import default_partition

SESSION_TIMEOUT = "6"  # the smallest the worker accepts: takeovers within seconds
TIMERS_OVER = timedelta(seconds=15)  # after the last event every timer has fired


@dataclass(frozen=True)
class Line:
    at: datetime  # when it happens (live runs produce it then)
    key: bytes | None
    value: bytes
    bad: bool = False  # rejected by the worker and by replay


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def _event(event_id: str, kind: str, ticket: str, at: datetime, **fields: Any) -> dict[str, Any]:
    return {"event_id": event_id, "type": kind, "ticket_id": ticket, "occurred_at": _iso(at)} | {
        **fields
    }


def fault_log(seed: int, start: datetime, tickets: int = 30) -> list[Line]:
    """The log in time order. Points fall 3, 6 and 12 s after creation (first response:
    warnings at half the 6 or 12 s target) and 9 and 13 s after a customer reply (the
    8 s follow-up); no event of a ticket lies within 2 s of one of its points, so live
    runs, whose events are produced when they happen, do not depend on timing."""
    rng = random.Random(seed)
    lines: list[Line] = []

    def add(at: datetime, body: dict[str, Any]) -> None:
        lines.append(Line(at, body["ticket_id"].encode(), json.dumps(body).encode()))

    s = timedelta(seconds=1)
    for n in range(tickets):
        ticket = f"F{seed}-{n}"
        at = start + n * 0.3 * s
        priority = rng.choice([1, 2])
        add(at, _event(f"c-{ticket}", "ticket-created", ticket, at, plan="fast", priority=priority))
        roll = rng.random()
        if roll < 0.45:  # answered in time, before the first warning (3 s at priority 1)
            add(at + 1 * s, _event(f"a-{ticket}", "reply-sent", ticket, at + 1 * s, author="agent"))
            if priority == 1 and rng.random() < 0.6:  # a follow-up cycle, left to breach (8 s)
                add(
                    at + 5 * s,
                    _event(f"q-{ticket}", "reply-sent", ticket, at + 5 * s, author="customer"),
                )
        elif roll < 0.7:  # answered after the breach
            add(
                at + 16 * s,
                _event(f"l-{ticket}", "reply-sent", ticket, at + 16 * s, author="agent"),
            )
        # else: never answered

    hostile = rng.sample(range(tickets), 3)
    bad_time = f"F{seed}-{hostile[0]}"
    bad_json = f"F{seed}-{hostile[1]}"
    redelivered = next(line for line in lines if line.key == f"F{seed}-{hostile[2]}".encode())
    first = start + 0.5 * s
    extra = [
        Line(
            first + 1 * s,
            bad_time.encode(),
            json.dumps(
                {
                    "event_id": f"x-{bad_time}",
                    "type": "reply-sent",
                    "ticket_id": bad_time,
                    "occurred_at": "yesterday at noon",
                    "author": "agent",
                }
            ).encode(),
            bad=True,
        ),
        Line(first + 2 * s, bad_json.encode(), b'{"event_id": "x-json", "type": ', bad=True),
        Line(
            first + 3 * s,
            b"NOPE",
            json.dumps(
                _event("x-nope", "reply-sent", "NOPE", first + 3 * s, author="agent")
            ).encode(),
            bad=True,
        ),
        Line(
            first + 4 * s,
            bad_time.encode(),
            json.dumps(_event("x-type", "ticket-merged", bad_time, first + 4 * s)).encode(),
            bad=True,
        ),
        Line(redelivered.at + 8 * s, redelivered.key, redelivered.value),  # a duplicate
    ]
    return sorted([*lines, *extra], key=lambda line: line.at)


def shifted(lines: list[Line], start: datetime) -> list[Line]:
    """The same log moved to begin at `start` (event bodies rewritten accordingly)."""
    delta = start - lines[0].at
    moved = []
    for line in lines:
        value = line.value
        try:
            body = json.loads(value)
            at = datetime.fromisoformat(body["occurred_at"])
        except (ValueError, KeyError):
            pass
        else:
            body["occurred_at"] = _iso(at + delta)
            value = json.dumps(body).encode()
        moved.append(Line(line.at + delta, line.key, value, line.bad))
    return moved


def live_log(seed: int) -> list[Line]:
    """The log starting in two seconds, to be produced as it happens (a caught-up worker
    must never read an event after its deadline passed on the wall clock: it cannot
    un-fire)."""
    start = datetime.now(UTC) + timedelta(seconds=2)
    return shifted(fault_log(seed, start), start)


def replay_expected(
    lines: list[Line],
    until: datetime,
    workdir: Path,
    *,
    finished_timers: bool = False,
    policy: Path = FAST_POLICY,
) -> dict[str, Any]:
    """`sla-worker replay` of the log, run as a user would: {event_id: event}
    (`finished_timers`: with its sla-timer-finished records)."""
    workdir.mkdir(parents=True, exist_ok=True)
    events = workdir / f"log-{uuid.uuid4().hex[:8]}.jsonl"
    events.write_bytes(b"".join(line.value + b"\n" for line in lines))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "worker",
            "replay",
            str(events),
            "--policies",
            str(policy),
            "--until",
            until.isoformat(),
            *(["--finished-timers"] if finished_timers else []),
        ],
        capture_output=True,
        check=True,
    )
    result: dict[str, Any] = {}
    for raw in done.stdout.splitlines():
        event = json.loads(raw)
        result[event["event_id"]] = event
    return result


async def produce(
    bootstrap: str, topic: str, lines: list[Line], *, live: bool = False, patient: bool = False
) -> None:
    """Produce the lines in order; `live`: each when the wall clock reaches its time;
    `patient`: a line that cannot be sent (the broker is down) is retried until it is, as
    a help desk's producer buffers through a broker outage (`_produce_patiently`)."""
    if patient:
        await _produce_patiently(bootstrap, topic, lines, live)
        return
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for line in lines:
            await _wait_for(line, live)
            await producer.send_and_wait(topic, line.value, key=line.key)
    finally:
        await producer.stop()


async def _wait_for(line: Line, live: bool) -> None:
    if live:
        wait = (line.at - datetime.now(UTC)).total_seconds()
        if wait > 0:
            await asyncio.sleep(wait)


async def _produce_patiently(bootstrap: str, topic: str, lines: list[Line], live: bool) -> None:
    """Every line exactly once, through a broker outage.

    An idempotent aiokafka producer whose batch failed keeps numbering its later batches
    from where the failed ones left off, and the broker then refuses every one of them as
    out of order, for ever: so each failure gets a new producer. Whether the failed line
    landed before the failure is read from its partition's end (this is the topic's only
    producer, sending one line at a time): resent only if it did not, so no line, bad
    ones included, reaches the worker twice."""
    ends = {p: end for (_, p), end in (await end_offsets(bootstrap, [topic])).items()}
    producer: AIOKafkaProducer | None = None
    try:
        for line in lines:
            await _wait_for(line, live)
            partition = default_partition(line.key, len(ends)) if line.key else 0
            while True:
                try:
                    if producer is None:
                        producer = AIOKafkaProducer(
                            bootstrap_servers=bootstrap, acks="all", enable_idempotence=True
                        )
                        await producer.start()
                    sent = await producer.send_and_wait(
                        topic, line.value, key=line.key, partition=partition
                    )
                    ends[partition] = sent.offset + 1
                    break
                except KafkaError:
                    if producer is not None:
                        with contextlib.suppress(Exception):
                            await producer.stop()
                        producer = None
                    await asyncio.sleep(0.5)
                    end = await _end_when_reachable(bootstrap, topic, partition)
                    if end > ends[partition]:
                        ends[partition] = end  # it landed before the failure
                        break
    finally:
        if producer is not None:
            await producer.stop()


async def _end_when_reachable(bootstrap: str, topic: str, partition: int) -> int:
    while True:
        try:
            return (await end_offsets(bootstrap, [topic]))[(topic, partition)]
        except (KafkaError, OSError):
            await asyncio.sleep(0.5)


@dataclass
class Published:
    """What the output topics hold, as a read_committed consumer sees it."""

    events: dict[str, Any] = field(default_factory=dict)
    repeats: Counter[str] = field(default_factory=Counter)
    conflicts: list[str] = field(default_factory=list)  # one id, different content
    records: int = 0

    @classmethod
    def of(cls, records: list[Record]) -> Published:
        result = cls(records=len(records))
        # The bytes and the headers (CloudEvents, derived from the event alone): a repeat
        # must carry both unchanged.
        raw_by_id: dict[str, tuple[bytes, tuple[tuple[str, bytes], ...]]] = {}
        for record in records:
            value = record.value
            event = json.loads(value)
            event_id = event["event_id"]
            raw = (value, tuple(record.headers))
            if event_id in raw_by_id:
                result.repeats[event_id] += 1
                if raw_by_id[event_id] != raw:
                    result.conflicts.append(event_id)
                continue
            raw_by_id[event_id] = raw
            result.events[event_id] = event
        return result


async def published(bootstrap: str, topics: list[str], *, committed: bool = True) -> Published:
    records: list[Record] = []
    for topic in topics:
        records += await read_all(bootstrap, topic, committed=committed)
    return Published.of(records)


async def settled_outputs(
    workers: Sequence[WorkerProcess],
    outputs: list[str],
    until: datetime,
    timeout: float = 180,
) -> Published:
    """What the output topics hold once the `workers` have applied every input record
    and fired everything due by `until` (`devtools.harness.settled`): all there is to see
    for that period, with nothing left to wait for."""
    await settled(workers, until, timeout=timeout)
    return await published(workers[0].bootstrap, outputs)


async def wait_for_any(bootstrap: str, topics: list[str], timeout: float = 60) -> float:
    """Until the first record shows on any topic, even inside an open transaction
    (read_uncommitted): the moment a publication is on its way. Returns seconds waited."""
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=f"first-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_uncommitted",
    )
    await consumer.start()
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        while loop.time() - started < timeout:
            if await consumer.getmany(timeout_ms=20, max_records=1):
                return loop.time() - started
        raise TimeoutError(f"nothing published on {topics} within {timeout} s")
    finally:
        await consumer.stop()


async def dead_letters(bootstrap: str, topic: str) -> Counter[bytes]:
    """Dead-lettered values (read_committed), counted."""
    return Counter(record.value for record in await read_all(bootstrap, topic))


@dataclass
class Setup:
    bootstrap: str
    tickets: str
    warnings: str
    breaches: str
    dead: str
    partitions: int
    policy: Path = FAST_POLICY  # or FAST_GOALS_POLICY: the same log, every metric

    def options(self) -> dict[str, Any]:
        return {
            "input_topics": (self.tickets,),
            "partitions": self.partitions,
            "policy": self.policy,
            "extra": (
                *("--warnings-topic", self.warnings, "--breaches-topic", self.breaches),
                *("--dead-letter-topic", self.dead),
                *("--session-timeout-seconds", SESSION_TIMEOUT),
            ),
        }

    @property
    def outputs(self) -> list[str]:
        return [self.warnings, self.breaches]


async def check(
    setup: Setup,
    workers: Sequence[WorkerProcess],
    lines: list[Line],
    tmp_path: Path,
    record_property: Any,
    what: str,
) -> None:
    """The `workers` (those still running) published exactly what replay emits for the
    lines, each id once, read_committed, and dead-lettered exactly the bad lines; records
    of aborted transactions only repeat those, byte for byte, headers included; and no
    timer is left to fire later (the log's points all lie before `end`), so nothing else
    can follow."""
    end = lines[-1].at + TIMERS_OVER
    want = replay_expected(lines, end, tmp_path, policy=setup.policy)
    assert len(want) > 20, "the log must make the worker publish"
    got = await settled_outputs(workers, setup.outputs, end)
    for worker in workers:
        _, ready = await asyncio.to_thread(worker.get, "/readyz")
        assert [row["next_due"] for row in ready["inputs"] if row["next_due"]] == []
    missing = sorted(set(want) - set(got.events))
    invented = sorted(set(got.events) - set(want))
    different = sorted(i for i in want if i in got.events and got.events[i] != want[i])
    assert (missing, invented, different, got.conflicts) == ([], [], [], []), (
        f"missing {missing}, invented {invented}, different {different}"
    )
    # Transactions: a read_committed consumer sees each warning and breach exactly once.
    assert not got.repeats, f"repeated in committed output: {dict(got.repeats)}"
    letters = await dead_letters(setup.bootstrap, setup.dead)
    assert letters == Counter(line.value for line in lines if line.bad)
    uncommitted = await published(setup.bootstrap, setup.outputs, committed=False)
    assert set(uncommitted.events) == set(want) and not uncommitted.conflicts, (
        "records of aborted transactions that are not repeats of committed ones: "
        f"{sorted(set(uncommitted.events) - set(want))}, {uncommitted.conflicts}"
    )
    repeats = sum(got.repeats.values())
    aborted = uncommitted.records - got.records
    record_property("expected", len(want))
    record_property("repeats_committed", repeats)
    record_property("records_of_aborted_transactions", aborted)
    print(
        f"\n{what}: {len(want)} expected, 0 missing, 0 invented, {repeats} repeats "
        f"(read_committed); {aborted} records of aborted transactions"
    )
