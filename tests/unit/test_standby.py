"""Warm standbys (`worker.kafka.standby`), without a broker: a standby follows a
partition's changelog as its owner commits, and its promotion reads only the tail.

Two workers share one fake changelog: `owner` commits steps to it (a `RecordingProducer`
appends what each transaction committed), `spare` keeps partition 0 as a standby with a
consumer of its own over the same records. The integration test
(tests/integration/test_standbys.py) does the same with real brokers and a SIGKILL.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka.structs import TopicPartition

from tests.kafka_fakes import FakeChangelogs, FakeConsumer, Record, RecordingProducer
from worker.core.engine import Engine
from worker.core.policy import Policy
from worker.kafka.clients import Clients, Membership
from worker.kafka.service import LiveWorker
from worker.kafka.task_manager import TaskState
from worker.metrics import Metrics
from worker.settings import WorkerSettings
from worker.tasks.partition import CLOCK_KEY, Message, Partition, Topics
from worker.tasks.processor import TicketProcessor

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
INPUT = TopicPartition("tickets", 0)
TOPICS = Topics("warnings", "breaches", "dead", "changelog")


def body(n: int, kind: str, ticket: str, at: datetime, **fields: Any) -> bytes:
    event = {
        "event_id": f"e{n}-{ticket}",
        "type": kind,
        "ticket_id": ticket,
        "occurred_at": at.isoformat(),
        **fields,
    }
    return json.dumps(event).encode()


def created(n: int, ticket: str, at: datetime) -> bytes:
    return body(n, "ticket-created", ticket, at, plan="vip", priority=1)


# --- Partition.follow equals load + rebuild -------------------------------------------------


def indexes(partition: Partition) -> tuple[Any, ...]:
    return (
        dict(partition.tickets),
        dict(partition.clock.due._due),
        dict(partition.clock.holds._due),
        dict(partition.retirements._due),
        set(partition.at_risk),
        sorted(partition.unreadable),
        partition.clock.event_time,
        partition.offsets,
    )


def test_following_a_changelog_record_by_record_equals_a_restore(presets: Policy) -> None:
    processor = TicketProcessor(Engine(presets, timedelta(days=30)), None)
    owner = Partition(0, processor, TOPICS, timedelta(0))
    t0 = NOW - timedelta(days=40)
    inputs = [
        created(1, "A", t0),
        created(2, "B", t0),
        body(3, "status-changed", "B", t0 + timedelta(minutes=5), status="solved"),
        created(4, "C", t0 + timedelta(days=31)),  # B leaves state: a tombstone
        body(5, "reply-sent", "A", t0 + timedelta(days=31), author="agent"),
        created(6, "D", NOW - timedelta(hours=2)),  # breached, still running: at risk
    ]
    changelog: list[tuple[bytes, bytes | None]] = []
    for offset, value in enumerate(inputs):
        ticket = json.loads(value)["ticket_id"].encode()
        message = Message("tickets", 0, offset, ticket, value)
        batch = owner.step([message], NOW, read_through=NOW)
        changelog += [(w.key or b"", w.value) for w in batch.writes if w.topic == "changelog"]
    assert (b"B", None) in changelog
    changelog.append((b"E", b'{"v": 99}'))  # a state this version cannot read

    followed = Partition(0, processor, TOPICS, timedelta(0))
    for key, value in changelog:
        followed.follow(key, value)
    restored = Partition(0, processor, TOPICS, timedelta(0))
    for key, maybe in changelog:
        restored.load(key, maybe)
    list(restored.rebuild())
    assert indexes(followed) == indexes(restored)
    assert set(followed.tickets) == {"A", "C", "D", "E"} and followed.unreadable == ["E"]
    assert "D" in followed.at_risk

    # A state that becomes readable again, and a ticket deleted, leave every index.
    followed.follow(b"E", changelog[0][1])
    followed.follow(b"A", None)
    restored.load(b"E", changelog[0][1])
    restored.load(b"A", None)
    list(restored.rebuild())
    assert indexes(followed) == indexes(restored) and followed.unreadable == []
    assert CLOCK_KEY.decode() not in followed.tickets


# --- a standby beside a running owner ---------------------------------------------------------


def new_worker(
    presets: Policy, shared: dict[int, list[Any]], standby_replicas: int = 0
) -> LiveWorker:
    settings = WorkerSettings(partitions=1, app_id="unit", standby_replicas=standby_replicas)
    producer = RecordingProducer(changelogs=FakeChangelogs(shared))
    clients = Clients(
        FakeConsumer(),  # type: ignore[arg-type]
        FakeChangelogs(shared),  # type: ignore[arg-type]
        lambda number: producer,  # type: ignore[arg-type,return-value]
        FakeChangelogs(shared) if standby_replicas else None,  # type: ignore[arg-type]
    )
    return LiveWorker(settings, presets, Metrics(presets), clients, Membership())


async def rebalanced(worker: LiveWorker, active: list[int], standby: list[int]) -> None:
    """As a rebalance gives the worker these partitions (the assignor's `on_assignment`
    first, then the listener), and its loop restores the active ones."""
    await worker.on_revoked()
    worker.membership.set_standbys(standby)
    await worker.on_assigned([TopicPartition("tickets", n) for n in active])
    await worker.turn({})
    await worker.tasks.restored()
    await worker.turn({})


async def feed(worker: LiveWorker, offset: int, *values: bytes) -> None:
    """Input records for partition 0, stepped and committed."""
    consumer = worker.clients.consumer
    assert isinstance(consumer, FakeConsumer)
    consumer.fetched_ms = int(time.time() * 1000)
    records = [
        Record("tickets", 0, offset + i, json.loads(v)["ticket_id"].encode(), v)
        for i, v in enumerate(values)
    ]
    await worker.turn({INPUT: records})


def timer_gauges(worker: LiveWorker) -> list[bytes]:
    return [
        line
        for line in worker.metrics.render().splitlines()
        if line.startswith((b"sla_running_timers", b"sla_paused_timers", b"sla_overdue_timers"))
    ]


async def test_a_standby_follows_the_owner_and_its_promotion_reads_only_the_tail(
    presets: Policy,
) -> None:
    shared: dict[int, list[Any]] = {0: []}
    owner = new_worker(presets, shared)
    spare = new_worker(presets, shared, standby_replicas=1)
    await rebalanced(owner, [0], [])
    await rebalanced(spare, [], [0])
    assert spare.standbys is not None and spare.standbys.numbers() == [0]
    assert spare.tasks.tasks == {} and spare.ready  # a standby is no task

    await feed(owner, 0, *(created(i, f"HD-{i}", NOW - timedelta(minutes=i)) for i in range(50)))
    for _ in range(3):
        await spare.standbys.turn()
    end = len(shared[0])
    assert spare.standbys.lags() == {0: 0}
    assert spare.membership.lags_now() == {0: 0}  # what it announces when it joins
    standby = spare.standbys.standbys[0]
    assert standby.position == end
    assert standby.partition.tickets == owner.partitions[0].tickets
    assert b'sla_standby_lag_records{partition="0"} 0.0' in spare.metrics.render()
    assert spare.standby_diagnostics() == [{"partition": 0, "position": end, "end": end, "lag": 0}]

    # The owner goes on; the standby has not fetched yet: 3 tickets behind.
    await feed(owner, 50, *(created(i, f"HD-{i}", NOW) for i in range(50, 53)))
    assert spare.standbys.standbys[0].position == end
    warm = spare.standbys.standbys[0].partition

    # A standby never produces, never begins a transaction, never commits.
    assert spare.clients.producer_for(0).calls == []  # type: ignore[attr-defined]

    # The owner dies; the spare is given partition 0: the standby's state is promoted,
    # and only what it had not read yet is read from the changelog.
    await rebalanced(spare, [0], [])
    assert spare.tasks.state_of(0) is TaskState.RUNNING and spare.ready
    assert spare.partitions[0] is warm
    assert spare.clients.changelogs.read_from == {0: end}  # type: ignore[attr-defined]
    assert set(warm.tickets) == {f"HD-{i}" for i in range(53)}
    assert spare.standbys.numbers() == []
    assert b"sla_standby_lag_records{" not in spare.metrics.render()

    # What it holds equals a cold restore of the whole changelog.
    cold = new_worker(presets, shared)
    await rebalanced(cold, [0], [])
    assert indexes(spare.partitions[0]) == indexes(cold.partitions[0])
    # Its tickets' timers are in the gauges, as after a restore (filled in beside the
    # loop once the partition runs).
    await spare.tasks.counted()
    assert timer_gauges(spare) == timer_gauges(cold)
    running = b'sla_running_timers{goal="",metric="first_response",plan="vip"} 53.0'
    assert running in timer_gauges(spare)


async def test_a_revoked_standby_is_closed_and_an_active_partition_turned_standby_keeps_its_state(
    presets: Policy,
) -> None:
    shared: dict[int, list[Any]] = {0: []}
    worker = new_worker(presets, shared, standby_replicas=1)
    await rebalanced(worker, [0], [])
    await feed(worker, 0, created(1, "HD-1", NOW))
    kept = worker.partitions[0]
    end = len(shared[0])

    # Partition 0 moves away, and this worker keeps it warm: the state it ran stays.
    await rebalanced(worker, [], [0])
    assert worker.standbys is not None
    standby = worker.standbys.standbys[0]
    assert standby.partition is kept and standby.position == end
    await worker.standbys.turn()
    assert worker.standbys.lags() == {0: 0}
    assert worker.clients.standbys.read_from == {0: end}  # type: ignore[union-attr]

    # Revoked as a standby too: closed, its state dropped.
    await rebalanced(worker, [], [])
    assert worker.standbys.standbys == {} and worker.standbys.lags() == {}
    assert b"sla_standby_lag_records{" not in worker.metrics.render()


async def test_a_policy_reload_reads_the_standbys_again(presets: Policy) -> None:
    shared: dict[int, list[Any]] = {0: [(b"HD-1", b'{"v": 99}')]}
    worker = new_worker(presets, shared, standby_replicas=1)
    await rebalanced(worker, [], [0])
    assert worker.standbys is not None
    await worker.standbys.turn()
    before = worker.standbys.standbys[0].partition
    await worker.reload_policy(presets)
    after = worker.standbys.standbys[0]
    assert after.partition is not before and after.position == 0
    await worker.standbys.turn()
    assert set(after.partition.tickets) == {"HD-1"}


async def test_a_standby_never_fetched_is_not_announced_and_a_cold_restore_replaces_it(
    presets: Policy,
) -> None:
    shared: dict[int, list[Any]] = {0: [(b"HD-1", created(1, "HD-1", NOW))]}
    worker = new_worker(presets, shared, standby_replicas=1)
    await rebalanced(worker, [], [0])
    assert worker.standbys is not None and worker.standbys.numbers() == [0]
    assert worker.membership.lags_now() == {}  # lag unknown: not caught up
    assert worker.standby_diagnostics() == [
        {"partition": 0, "position": 0, "end": None, "lag": None}
    ]
    await rebalanced(worker, [0], [])
    assert worker.partitions[0].changelog_end == 1 and set(worker.partitions[0].tickets) == {"HD-1"}
    assert worker.standbys.numbers() == []
