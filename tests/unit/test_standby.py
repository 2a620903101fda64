"""Warm standbys (`worker.kafka.standby`), without a broker: a standby follows a
partition's changelog as its owner commits, and its promotion reads only the tail.

Two workers share one fake changelog: `owner` commits steps to it (a `RecordingProducer`
appends what each transaction committed), `spare` keeps partition 0 as a standby with a
consumer of its own over the same records. The integration test
(tests/integration/test_standbys.py) does the same with real brokers and a SIGKILL.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError
from aiokafka.structs import TopicPartition

from tests.kafka_fakes import MARKER, FakeChangelogs, FakeConsumer, Record, RecordingProducer
from tests.partitions import body, created
from worker.core.engine import Engine
from worker.core.policy import Policy
from worker.kafka import standby as standby_module
from worker.kafka.clients import Clients, Membership
from worker.kafka.service import LiveWorker
from worker.kafka.standby import END_FRESH_MS, FAILURE_LIMIT
from worker.kafka.task_manager import TaskState
from worker.metrics import Metrics
from worker.settings import WorkerSettings
from worker.tasks.partition import CLOCK_KEY, Message, Partition, Topics
from worker.tasks.processor import TicketProcessor

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
INPUT = TopicPartition("tickets", 0)
TOPICS = Topics("warnings", "breaches", "dead", "changelog")


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
    presets: Policy,
    shared: dict[int, list[Any]],
    standby_replicas: int = 0,
    partitions: int = 1,
    retention_ms: int | None = None,
) -> LiveWorker:
    settings = WorkerSettings(
        partitions=partitions, app_id="unit", standby_replicas=standby_replicas
    )
    producer = RecordingProducer(changelogs=FakeChangelogs(shared))
    clients = Clients(
        FakeConsumer(),  # type: ignore[arg-type]
        FakeChangelogs(shared),  # type: ignore[arg-type]
        lambda number: producer,  # type: ignore[arg-type,return-value]
        FakeChangelogs(shared) if standby_replicas else None,  # type: ignore[arg-type]
    )
    return LiveWorker(
        settings, presets, Metrics(presets), clients, Membership(), None, retention_ms
    )


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
    presets: Policy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "sla_worker")
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
    assert worker.clients.changelogs.read_from == {0: 0}  # type: ignore[attr-defined]
    assert "partition 0: promoting its standby" not in caplog.text
    assert "not promoting its standby: it has read nothing yet" in caplog.text


# --- a standby that cannot be trusted is not promoted ----------------------------------------

RETENTION_MS = 3_600_000  # the changelog's delete.retention.ms in these tests: 1 h


async def warm_spare(
    presets: Policy, tickets: int = 5
) -> tuple[LiveWorker, LiveWorker, dict[int, list[Any]]]:
    """An owner of partition 0 that committed `tickets` tickets, and a spare whose
    standby of 0 has read them all."""
    shared: dict[int, list[Any]] = {0: []}
    owner = new_worker(presets, shared)
    spare = new_worker(presets, shared, standby_replicas=1, retention_ms=RETENTION_MS)
    await rebalanced(owner, [0], [])
    await rebalanced(spare, [], [0])
    await feed(owner, 0, *(created(i, f"HD-{i}", NOW) for i in range(tickets)))
    assert spare.standbys is not None
    await spare.standbys.turn()
    await spare.standbys.turn()
    assert spare.standbys.lags() == {0: 0}
    return owner, spare, shared


async def test_a_standby_caught_up_longer_ago_than_the_tombstone_retention_is_restored_cold(
    presets: Policy, caplog: pytest.LogCaptureFixture
) -> None:
    """Compaction may have removed a tombstone the standby never read: its state plus
    the changelog's tail could keep a ticket a cold restore would not."""
    caplog.set_level(logging.INFO, "sla_worker")
    _, spare, _ = await warm_spare(presets)
    assert spare.standbys is not None
    standby = spare.standbys.standbys[0]
    standby.caught_up_ms -= RETENTION_MS  # last at the changelog's end an hour ago
    await rebalanced(spare, [0], [])
    assert spare.clients.changelogs.read_from == {0: 0}  # type: ignore[attr-defined]
    assert spare.partitions[0] is not standby.partition
    assert "not promoting its standby: it last caught up with the changelog 1.0 h ago" in (
        caplog.text
    )
    assert set(spare.partitions[0].tickets) == {f"HD-{i}" for i in range(5)}


async def test_no_standby_is_promoted_when_the_tombstone_retention_is_not_known(
    presets: Policy, caplog: pytest.LogCaptureFixture
) -> None:
    """The broker refused DescribeConfigs: as with local snapshots, none is trusted (and
    the loop does not read them again and again)."""
    _, spare, _ = await warm_spare(presets)
    assert spare.standbys is not None
    spare.standbys.tombstone_retention_ms = 0
    standby = spare.standbys.standbys[0]
    await spare.standbys.turn()
    assert spare.standbys.standbys[0] is standby
    await rebalanced(spare, [0], [])
    assert spare.clients.changelogs.read_from == {0: 0}  # type: ignore[attr-defined]
    assert "delete.retention.ms is not known" in caplog.text


async def test_a_standby_left_behind_ages_and_one_caught_up_does_not(presets: Policy) -> None:
    _, spare, shared = await warm_spare(presets)
    assert spare.standbys is not None
    consumer = spare.clients.standbys
    assert isinstance(consumer, FakeChangelogs)
    standby = spare.standbys.standbys[0]
    # Caught up at every fetch: its stamp follows the fetches.
    before = standby.caught_up_ms
    time.sleep(0.002)
    await spare.standbys.turn()
    assert standby.caught_up_ms > before
    # Behind (a fetch returns less than the changelog holds): the stamp stays.
    standby.caught_up_ms = stamp = before - 1000
    owner_records = [(f"X-{i}".encode(), created(i, f"X-{i}", NOW)) for i in range(4)]
    shared[0].extend(owner_records)
    consumer.limit = 1
    await spare.standbys.turn()
    assert standby.lag(int(time.time() * 1000)) == 3 and standby.caught_up_ms == stamp


async def test_the_loop_reads_a_stale_standby_again_from_the_beginning(
    presets: Policy, caplog: pytest.LogCaptureFixture
) -> None:
    _, spare, _ = await warm_spare(presets)
    assert spare.standbys is not None
    old = spare.standbys.standbys[0]
    old.caught_up_ms -= RETENTION_MS
    consumer = spare.clients.standbys
    assert isinstance(consumer, FakeChangelogs)
    consumer.unreachable = True  # nothing refreshes it: its last fetch an hour ago
    consumer.polled_ms[0] -= RETENTION_MS
    await spare.standbys.turn()
    new = spare.standbys.standbys[0]
    assert new is not old and new.position == 0 and new.partition.tickets == {}
    assert "reading it again from the changelog's beginning" in caplog.text
    consumer.unreachable = False
    await spare.standbys.turn()
    await spare.standbys.turn()
    assert new.partition.tickets == old.partition.tickets and spare.standbys.lags() == {0: 0}


async def test_a_standby_whose_position_the_changelog_no_longer_holds_starts_again(
    presets: Policy, caplog: pytest.LogCaptureFixture
) -> None:
    """auto_offset_reset="none": the loop sees the position is gone (compact,delete,
    DeleteRecords, the topic recreated) instead of replaying over the state it has."""
    owner, spare, shared = await warm_spare(presets)
    assert spare.standbys is not None
    old = spare.standbys.standbys[0]
    consumer = spare.clients.standbys
    assert isinstance(consumer, FakeChangelogs)
    consumer.beginnings[0] = old.position + 2  # what it would read next is gone
    await feed(owner, 5, *(created(i, f"HD-{i}", NOW) for i in range(5, 9)))
    await spare.standbys.turn()  # raises OffsetOutOfRangeError inside: no failure
    assert spare.standbys.standbys[0] is not old
    assert "which the changelog no longer holds" in caplog.text
    await spare.standbys.turn()
    new = spare.standbys.standbys[0]
    assert new.position == len(shared[0]) and "HD-8" in new.partition.tickets
    assert spare.metrics.standby_failures._value.get() == 0


async def test_a_standby_before_the_changelogs_first_offset_is_not_promoted(
    presets: Policy, caplog: pytest.LogCaptureFixture
) -> None:
    _, spare, shared = await warm_spare(presets)
    assert spare.standbys is not None
    position = spare.standbys.standbys[0].position
    restorer = spare.clients.changelogs
    assert isinstance(restorer, FakeChangelogs)
    shared[0].extend([(b"HD-0", None), MARKER])  # a deletion the standby has not read...
    restorer.beginnings[0] = position + 1  # ...and records it has not read are gone
    await rebalanced(spare, [0], [])
    assert f"before the changelog's first offset {position + 1}" in caplog.text
    assert restorer.read_from == {0: position + 1}  # a cold restore
    assert "HD-0" not in spare.partitions[0].tickets


async def test_an_active_partition_kept_as_standby_is_promoted_without_a_fetch(
    presets: Policy, caplog: pytest.LogCaptureFixture
) -> None:
    """Its position is exact (it is what the worker committed): no cold restore."""
    caplog.set_level(logging.INFO, "sla_worker")
    shared: dict[int, list[Any]] = {0: []}
    worker = new_worker(presets, shared, standby_replicas=1)
    await rebalanced(worker, [0], [])
    await feed(worker, 0, created(1, "HD-1", NOW))
    kept = worker.partitions[0]
    kept.known_since["HD-1"] = NOW  # not in the changelog: a standby cannot follow it
    end = len(shared[0])
    await rebalanced(worker, [], [0])
    assert worker.standbys is not None and worker.standbys.standbys[0].end is None
    assert kept.known_since == {}
    restorer = worker.clients.changelogs
    assert isinstance(restorer, FakeChangelogs)
    restorer.read_from = {}
    await rebalanced(worker, [0], [])
    assert worker.partitions[0] is kept and worker.partitions[0].changelog_end == end
    assert restorer.read_from == {}  # nothing after its position to read
    assert "promoting its standby (1 tickets" in caplog.text


# --- lag, failures -----------------------------------------------------------------------------


async def test_a_standby_lag_is_unknown_once_no_fetch_reported_the_end_for_a_while(
    presets: Policy,
) -> None:
    """The brokers away: the lag announced, shown and exported is not frozen at 0."""
    owner, spare, _ = await warm_spare(presets)
    assert spare.standbys is not None
    consumer = spare.clients.standbys
    assert isinstance(consumer, FakeChangelogs)
    consumer.unreachable = True
    await feed(owner, 5, created(5, "HD-5", NOW))  # the standby does not see it
    await spare.standbys.turn()
    assert spare.standbys.lags() == {0: 0}  # the last fetch was just now
    consumer.polled_ms[0] -= END_FRESH_MS + 1
    spare.standbys.standbys[0].end_ms = consumer.polled_ms[0]
    await spare.standbys.turn()
    assert spare.standbys.lags() == {} and spare.membership.lags_now() == {}
    assert spare.standby_diagnostics()[0]["lag"] is None
    assert b"sla_standby_lag_records{" not in spare.metrics.render()
    consumer.unreachable = False  # back: known again, and it catches up
    await spare.standbys.turn()
    assert spare.standbys.lags() == {0: 0}
    assert b'sla_standby_lag_records{partition="0"} 0.0' in spare.metrics.render()


async def test_a_standby_that_keeps_failing_is_counted_logged_and_dropped(
    presets: Policy, caplog: pytest.LogCaptureFixture
) -> None:
    owner, spare, shared = await warm_spare(presets)
    assert spare.standbys is not None
    standby = spare.standbys.standbys[0]

    def broken(key: bytes, value: bytes | None) -> None:
        raise RuntimeError("a bug")

    standby.partition.follow = broken  # type: ignore[method-assign]
    await feed(owner, 5, created(5, "HD-5", NOW))
    for turn in range(1, FAILURE_LIMIT):
        await spare.standbys.turn()
        assert spare.metrics.standby_failures._value.get() == turn
        assert spare.standbys.standbys.get(0) is standby and standby.position < len(shared[0])
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and errors[0].exc_info is not None  # a bug: with its traceback
    await spare.standbys.turn()
    assert spare.standbys.standbys == {} and spare.standbys.lags() == {}
    assert "dropping its standby after 5 failures in a row" in caplog.text
    # A fetch that works resets the count.
    await rebalanced(spare, [], [0])
    await spare.standbys.turn()
    assert spare.standbys.standbys[0].failures == 0


async def test_the_loop_counts_a_failed_fetch_and_retries(
    presets: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, spare, _ = await warm_spare(presets)
    assert spare.standbys is not None
    monkeypatch.setattr(standby_module, "RETRY_SECONDS", 0.0)
    consumer = spare.clients.standbys
    assert isinstance(consumer, FakeChangelogs)
    fetches = 0

    async def failing(*tps: TopicPartition, **options: Any) -> dict[TopicPartition, list[Record]]:
        nonlocal fetches
        fetches += 1
        await asyncio.sleep(0)
        raise KafkaConnectionError("broker away")

    consumer.getmany = failing  # type: ignore[method-assign]
    loop = asyncio.create_task(spare.standbys.run())
    for _ in range(200):
        await asyncio.sleep(0)
        if spare.metrics.standby_failures._value.get() >= FAILURE_LIMIT:
            break
    loop.cancel()
    with pytest.raises(asyncio.CancelledError):
        await loop
    assert spare.metrics.standby_failures._value.get() >= FAILURE_LIMIT
    assert spare.standbys.standbys == {}  # dropped after FAILURE_LIMIT failures in a row
    assert b"sla_standby_failures_total" in spare.metrics.render()


# --- timer gauges of a promoted standby ------------------------------------------------------


async def test_a_promoted_standbys_timers_are_counted_even_when_the_restore_job_fails_after(
    presets: Policy,
) -> None:
    """Partition 0 (promoted) is done before partition 1's read fails: 0 runs at the next
    turn, and its gauges are filled in all the same."""
    shared: dict[int, list[Any]] = {0: [], 1: []}
    owner = new_worker(presets, shared, partitions=2)
    spare = new_worker(presets, shared, standby_replicas=1, partitions=2)
    await rebalanced(owner, [0], [])
    await rebalanced(spare, [], [0])
    await feed(owner, 0, *(created(i, f"HD-{i}", NOW) for i in range(3)))
    assert spare.standbys is not None
    await spare.standbys.turn()
    shared[1].extend([(b"X", created(9, "X", NOW)), MARKER])
    restorer = spare.clients.changelogs
    assert isinstance(restorer, FakeChangelogs)

    async def failing(*tps: TopicPartition, **options: Any) -> dict[TopicPartition, list[Record]]:
        raise KafkaConnectionError("broker away")

    restorer.getmany = failing  # type: ignore[method-assign]
    await spare.on_revoked()
    spare.membership.set_standbys([])
    await spare.on_assigned([TopicPartition("tickets", 0), TopicPartition("tickets", 1)])
    await spare.turn({})
    await spare.tasks.restored()
    await spare.turn({})
    assert spare.tasks.state_of(0) is TaskState.RUNNING
    assert spare.tasks.state_of(1) is TaskState.RESTORING
    await spare.tasks.counted()
    running = b'sla_running_timers{goal="",metric="first_response",plan="vip"} 3.0'
    assert running in timer_gauges(spare)


async def test_a_promoted_standby_with_unreadable_state_is_counted_and_logged(
    presets: Policy, caplog: pytest.LogCaptureFixture
) -> None:
    """A state this version cannot read (here: no plan) has no timer to count: the count
    skips it rather than dying on it, and the promotion says so as a restore does."""
    shared: dict[int, list[Any]] = {0: []}
    owner = new_worker(presets, shared)
    spare = new_worker(presets, shared, standby_replicas=1)
    await rebalanced(owner, [0], [])
    await rebalanced(spare, [], [0])
    await feed(owner, 0, created(1, "HD-1", NOW), created(2, "HD-2", NOW))
    broken = json.loads(owner.partitions[0].tickets["HD-1"])
    del broken["plan"]
    shared[0].extend([(b"HD-1", json.dumps(broken).encode()), MARKER])
    assert spare.standbys is not None
    await spare.standbys.turn()
    assert spare.standbys.standbys[0].partition.unreadable == ["HD-1"]
    await rebalanced(spare, [0], [])
    counting = list(spare.tasks._counting)
    await spare.tasks.counted()
    assert all(task.exception() is None for task in counting)
    running = b'sla_running_timers{goal="",metric="first_response",plan="vip"} 1.0'
    assert running in timer_gauges(spare)
    assert "1 tickets' state cannot be read by this version" in caplog.text


# --- races: a fetch in flight ---------------------------------------------------------------


async def in_flight(worker: LiveWorker) -> tuple[asyncio.Task[None], asyncio.Event]:
    """A standby turn whose fetch waits for the event returned."""
    consumer = worker.clients.standbys
    assert isinstance(consumer, FakeChangelogs) and worker.standbys is not None
    consumer.gate, consumer.fetching = asyncio.Event(), asyncio.Event()
    turn = asyncio.create_task(worker.standbys.turn())
    await consumer.fetching.wait()
    return turn, consumer.gate


async def test_a_fetch_in_flight_during_a_policy_reload_is_not_applied(presets: Policy) -> None:
    owner, spare, _ = await warm_spare(presets)
    assert spare.standbys is not None
    await feed(owner, 5, created(5, "HD-5", NOW))
    turn, gate = await in_flight(spare)
    await spare.reload_policy(presets)  # replaces the standby
    fresh = spare.standbys.standbys[0]
    gate.set()
    await turn
    assert spare.standbys.standbys[0] is fresh
    assert fresh.position == 0 and fresh.partition.tickets == {}


async def test_a_fetch_in_flight_during_a_promotion_is_not_applied(presets: Policy) -> None:
    owner, spare, _ = await warm_spare(presets)
    assert spare.standbys is not None
    await feed(owner, 5, created(5, "HD-5", NOW))
    turn, gate = await in_flight(spare)
    taken = await spare.standbys.take(0)
    assert taken is not None
    position, tickets = taken.position, dict(taken.partition.tickets)
    gate.set()
    await turn
    assert taken.position == position and taken.partition.tickets == tickets
    assert "HD-5" not in tickets


async def test_a_fetch_in_flight_when_the_standbys_change_is_read_again(presets: Policy) -> None:
    owner, spare, shared = await warm_spare(presets)
    assert spare.standbys is not None
    await feed(owner, 5, created(5, "HD-5", NOW))
    standby = spare.standbys.standbys[0]
    position = standby.position
    turn, gate = await in_flight(spare)
    spare.standbys.assign([0, 1])  # another standby: the consumer is assigned anew
    gate.set()
    await turn
    assert standby.position == position and "HD-5" not in standby.partition.tickets
    consumer = spare.clients.standbys
    assert isinstance(consumer, FakeChangelogs)
    consumer.gate = None
    await spare.standbys.turn()
    assert standby.position == len(shared[0]) and "HD-5" in standby.partition.tickets


# --- stopping ---------------------------------------------------------------------------------


class Stoppable(FakeChangelogs):
    def __init__(self, shared: dict[int, list[Any]], fails: bool = False) -> None:
        super().__init__(shared)
        self.fails, self.stopped = fails, False

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        self.stopped = True
        if self.fails:
            raise KafkaConnectionError("cannot reach the coordinator")


class Member(FakeConsumer):
    def __init__(self) -> None:
        super().__init__()
        self.stopped = False

    async def start(self) -> None:
        pass

    def subscribe(self, topics: list[str], listener: Any) -> None:
        pass

    async def stop(self) -> None:
        self.stopped = True
        raise KafkaConnectionError("cannot leave the group")


async def test_a_client_that_fails_to_stop_does_not_keep_the_standby_consumer_open(
    presets: Policy,
) -> None:
    shared: dict[int, list[Any]] = {0: []}
    settings = WorkerSettings(partitions=1, app_id="unit", standby_replicas=1)
    member, changelogs, standbys = Member(), Stoppable(shared, fails=True), Stoppable(shared)
    producer = RecordingProducer()
    clients = Clients(
        member,  # type: ignore[arg-type]
        changelogs,  # type: ignore[arg-type]
        lambda number: producer,  # type: ignore[arg-type,return-value]
        standbys,  # type: ignore[arg-type]
    )
    worker = LiveWorker(settings, presets, Metrics(presets), clients, Membership())
    stop = asyncio.Event()
    stop.set()
    await worker.run(stop)
    assert member.stopped and changelogs.stopped and standbys.stopped
