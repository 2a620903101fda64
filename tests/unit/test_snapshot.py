"""Local snapshots (`--state-dir`): written only after a commit, read back on restore so
that only the changelog's tail is read, and discarded whenever they could be wrong.

A real RocksDB (rocksdict) in a temporary directory; fake Kafka clients whose changelog
holds exactly what the fake producer committed (tests/kafka_fakes.py). The kill tests
against the real broker, with snapshots on and off, are tests/integration/test_faults.py.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiokafka.structs import TopicPartition

from tests.kafka_fakes import FakeChangelogs, FakeConsumer, Record, RecordingProducer
from worker.core.policy import Policy
from worker.kafka.clients import Clients
from worker.kafka.service import LiveWorker
from worker.kafka.snapshot import OFFSET, Checkpoint, Snapshots, Store, StoredStates
from worker.kafka.stored_index import DUE, StoredDueIndex
from worker.metrics import Metrics
from worker.settings import WorkerSettings

INPUT = TopicPartition("tickets", 0)
DAY_MS = 86_400_000


def created(offset: int, ticket: str) -> Record:
    at = datetime.now(UTC) - timedelta(minutes=1)
    body = {"event_id": f"c-{ticket}", "type": "ticket-created", "ticket_id": ticket}
    value = {**body, "occurred_at": at.isoformat(), "plan": "vip", "priority": 1}
    return Record("tickets", 0, offset, ticket.encode(), json.dumps(value).encode())


class Deployment:
    """One broker's changelog and one worker's state directory; workers started on them
    in turn, as restarts of the same pod."""

    def __init__(self, presets: Policy, state_dir: Path) -> None:
        self.presets = presets
        self.state_dir = state_dir
        self.changelogs = FakeChangelogs()
        self.workers: list[LiveWorker] = []

    async def start(self, producer: RecordingProducer | None = None) -> LiveWorker:
        """A worker that is given partition 0 and has restored it."""
        settings = WorkerSettings(partitions=1, app_id="unit", state_dir=self.state_dir)
        producer = producer or RecordingProducer(changelogs=self.changelogs)
        producer.changelogs = self.changelogs
        clients = Clients(FakeConsumer(), self.changelogs, lambda number: producer)
        snapshots = Snapshots(self.state_dir, "unit", DAY_MS)
        worker = LiveWorker(
            settings,
            self.presets,
            Metrics(self.presets),
            clients,  # type: ignore[arg-type]
            snapshots=snapshots,
        )
        self.workers.append(worker)
        self.changelogs.read_from = {}
        await worker.on_assigned([INPUT])
        await worker.turn({})
        await worker.tasks.restored()
        await worker.turn({})
        assert worker.ready
        return worker

    def stop(self, worker: LiveWorker) -> None:
        """As the process ends (a kill included: RocksDB's WAL holds every write)."""
        worker.tasks.close_stores()

    def store(self) -> Store:
        """Partition 0's store, opened as the next process would (none may hold it)."""
        return Store(self.state_dir / "unit" / "0", "unit", 0)

    def store_of(self, worker: LiveWorker) -> Store:
        """The store `worker` holds open for partition 0."""
        return worker.tasks.stores[0]


@pytest.fixture
async def deployment(presets: Policy, tmp_path: Path) -> AsyncIterator[Deployment]:
    made = Deployment(presets, tmp_path / "state")
    yield made
    for worker in made.workers:
        worker.tasks.close_stores()


async def test_a_restart_reads_only_the_changelog_after_the_snapshot(
    deployment: Deployment, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "sla_worker")
    worker = await deployment.start()
    assert deployment.changelogs.read_from == {}  # an empty changelog: nothing to read
    for n in range(3):
        await worker.turn({INPUT: [created(n, f"HD-{n}")]})
    end = len(deployment.changelogs.records[0])
    assert worker.partitions[0].changelog_end == end
    deployment.stop(worker)

    again = await deployment.start()

    assert deployment.changelogs.read_from == {}  # the snapshot was at the end: no read
    assert set(again.partitions[0].tickets) == {"HD-0", "HD-1", "HD-2"}
    assert again.partitions[0].offsets == {"tickets": 3}
    # The tickets and their timer indexes stay in the store, not in RAM: read, not rebuilt.
    partition = again.partitions[0]
    assert isinstance(partition.tickets, StoredStates)
    assert isinstance(partition.clock.due, StoredDueIndex)
    assert {t for t, _ in partition.clock.due.items()} == {"HD-0", "HD-1", "HD-2"}
    assert "timer indexes as stored" in caplog.text
    # The timer gauges are filled in beside the loop once the restore job ended.
    await again.tasks.counted()
    assert len(again.metrics.timers) == 3


async def test_a_restart_from_the_stored_indexes_finds_unreadable_states_as_it_counts(
    deployment: Deployment, caplog: pytest.LogCaptureFixture
) -> None:
    """A restart from the stored indexes decodes nothing before the partition runs: a
    state this version cannot read is found as the timer gauges are filled in beside
    the loop (each state read as a rebuild reads it), then listed and logged as a
    restore that rebuilds does. Until then its next event is dead-lettered all the same."""
    worker = await deployment.start()
    for n in range(3):
        await worker.turn({INPUT: [created(n, f"HD-{n}")]})
    deployment.stop(worker)
    store = deployment.store()
    store.write([(b"HD-1", b'{"v": 99}')], None, 0)  # written by a version unknown here
    store.close()

    again = await deployment.start()
    assert again.partitions[0].unreadable == []  # nothing decoded yet
    await again.tasks.counted()

    assert again.partitions[0].unreadable == ["HD-1"]
    assert "1 tickets' state cannot be read by this version" in caplog.text
    assert len(again.metrics.timers) == 2


async def test_index_changes_with_nothing_to_commit_reach_the_store_once_many(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A goal timer's bound that comes due and is filed at its exact instant, nothing
    published, changes only the due index: no changelog record carries it. Once the
    overlays hold more than `INDEX_OVERLAY_LIMIT` such changes, a step with nothing to
    commit writes them to the store (its offset unmoved): a quiet partition's RAM stays
    bounded, and a restart does not take the old bounds again."""
    from worker.kafka import task_manager

    monkeypatch.setattr(task_manager, "INDEX_OVERLAY_LIMIT", 1)
    worker = await deployment.start()
    await worker.turn({INPUT: [created(0, "HD-0"), created(1, "HD-1")]})
    store = deployment.store_of(worker)
    offset = store.checkpoint()
    due = worker.partitions[0].clock.due
    assert isinstance(due, StoredDueIndex) and not due.pending
    later = {t: at + timedelta(hours=1) for t, at in due.items()}

    due.schedule("HD-0", later["HD-0"])  # as a bound that came due would be
    await worker.turn({})
    assert due.pending  # one change: kept in RAM

    due.schedule("HD-1", later["HD-1"])
    await worker.turn({})
    assert not due.pending  # more than the limit: in the store
    assert dict(StoredDueIndex(store.db, DUE).items()) == later
    assert store.checkpoint() == offset


async def test_a_store_that_cannot_be_written_after_a_commit_restores_the_partition_into_ram(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The step committed, but its records cannot reach the store that holds the
    partition's tickets: the partition is restored from the changelog, in RAM, as
    without --state-dir, and the store is given up until the worker restarts."""
    from worker.kafka import task_manager

    monkeypatch.setattr(task_manager, "RESTORE_RETRY_SECONDS", 0.0)
    worker = await deployment.start()
    await worker.turn({INPUT: [created(0, "HD-0")]})

    def full(self: Store, *args: object) -> None:
        raise OSError("IO error: No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr(Store, "write", full)
        await worker.turn({INPUT: [created(1, "HD-1")]})
    assert worker.restoring == [0] and 0 not in worker.tasks.stores

    await worker.turn({})
    await worker.tasks.restored()
    await worker.turn({})

    assert worker.ready and set(worker.partitions[0].tickets) == {"HD-0", "HD-1"}
    assert isinstance(worker.partitions[0].tickets, dict)


async def test_a_snapshot_behind_the_changelog_reads_the_tail(deployment: Deployment) -> None:
    """A crash between a commit and its snapshot write: the store is behind Kafka, never
    ahead; the next restore reads the committed records it lacks."""
    worker = await deployment.start()
    await worker.turn({INPUT: [created(0, "HD-0")]})
    behind = len(deployment.changelogs.records[0])
    snapshot = worker.tasks.snapshot
    worker.tasks.snapshot = lambda *args: None  # type: ignore[method-assign]
    await worker.turn({INPUT: [created(1, "HD-1")]})  # its snapshot write never happens
    worker.tasks.snapshot = snapshot  # type: ignore[method-assign]
    assert len(deployment.changelogs.records[0]) > behind  # committed in Kafka
    # What the store lacks, the overlay of uncommitted-to-the-store writes still shows.
    assert set(worker.partitions[0].tickets) == {"HD-0", "HD-1"}
    deployment.stop(worker)

    again = await deployment.start()

    assert deployment.changelogs.read_from == {0: behind}
    assert set(again.partitions[0].tickets) == {"HD-0", "HD-1"}
    assert again.partitions[0].offsets == {"tickets": 2}
    checkpoint = deployment.store_of(again).checkpoint()
    assert checkpoint is not None and checkpoint.offset == len(deployment.changelogs.records[0])


async def test_a_step_that_did_not_commit_never_reaches_the_snapshot(
    deployment: Deployment,
) -> None:
    producer = RecordingProducer(fail_on="commit")
    worker = await deployment.start(producer)

    await worker.turn({INPUT: [created(0, "HD-0")]})

    assert worker.restoring == [0]  # lost, to be restored
    store = deployment.store_of(worker)
    checkpoint = store.checkpoint()
    assert checkpoint is not None and checkpoint.offset == 0
    assert list(store.records()) == []


@pytest.mark.parametrize(
    "damage, why",
    [
        ("no-offset", "has no offset"),
        ("other-app", "belongs to app 'other'"),
        ("beyond-end", "outside the changelog's"),
        ("too-old", "delete.retention.ms"),
        ("garbage", "cannot be read"),
        ("format", "has format 0"),
        ("format-1", "has format 1"),  # before #23 stage 2: no timer indexes
    ],
)
async def test_a_snapshot_that_could_be_wrong_is_discarded_for_a_full_restore(
    deployment: Deployment, damage: str, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "sla_worker")
    worker = await deployment.start()
    await worker.turn({INPUT: [created(0, "HD-0")]})
    deployment.stop(worker)
    store = deployment.store()
    checkpoint = store.checkpoint()
    assert checkpoint is not None
    store.write([(b"GHOST", b"{}")], None, 0)  # a ticket only the snapshot has
    if damage == "no-offset":
        store.db.delete(OFFSET)
    elif damage == "garbage":
        store.db.put(OFFSET, b"\x00not json")
    else:
        changed = {
            "other-app": {"app_id": "other"},
            "beyond-end": {"offset": checkpoint.offset + 10},
            # Behind the changelog's end (a record after it) and as old as the
            # tombstones' retention: one after it may be gone.
            "too-old": {
                "stamp_ms": int(time.time() * 1000) - DAY_MS - 1,
                "offset": checkpoint.offset - 1,
            },
            "format": {"format": 0},
            "format-1": {"format": 1},
        }[damage]
        data = json.loads(checkpoint.dump()) | changed
        store.db.put(OFFSET, Checkpoint(**data).dump())
    store.close()

    again = await deployment.start()

    assert why in caplog.text
    assert deployment.changelogs.read_from == {0: 0}  # the whole changelog
    assert set(again.partitions[0].tickets) == {"HD-0"}  # no ghost
    assert {key for key, _ in deployment.store_of(again).records()} == {b"", b"HD-0"}


async def test_an_old_snapshot_at_the_changelog_end_is_used(
    deployment: Deployment, caplog: pytest.LogCaptureFixture
) -> None:
    """A snapshot older than the tombstones' retention may miss a deletion written
    after it, but only if something was written after it: one at the changelog's very
    end (a quiet partition, or nobody wrote while the worker was down) is used, and
    nothing is read."""
    caplog.set_level(logging.INFO, "sla_worker")
    worker = await deployment.start()
    await worker.turn({INPUT: [created(0, "HD-0")]})
    deployment.stop(worker)
    store = deployment.store()
    checkpoint = store.checkpoint()
    assert checkpoint is not None
    assert checkpoint.offset == len(deployment.changelogs.records[0])  # at the end
    data = json.loads(checkpoint.dump()) | {"stamp_ms": int(time.time() * 1000) - 3 * DAY_MS}
    store.db.put(OFFSET, Checkpoint(**data).dump())
    store.close()
    caplog.clear()

    again = await deployment.start()

    assert deployment.changelogs.read_from == {}  # nothing read
    assert set(again.partitions[0].tickets) == {"HD-0"}
    assert "discarding" not in caplog.text


async def test_a_worker_without_a_state_dir_keeps_nothing_on_disk(
    presets: Policy, tmp_path: Path
) -> None:
    settings = WorkerSettings(partitions=1, app_id="unit")
    assert settings.state_dir is None
    changelogs = FakeChangelogs()
    producer = RecordingProducer(changelogs=changelogs)
    clients = Clients(FakeConsumer(), changelogs, lambda number: producer)
    worker = LiveWorker(settings, presets, Metrics(presets), clients)  # type: ignore[arg-type]
    await worker.on_assigned([INPUT])
    await worker.turn({})
    await worker.tasks.restored()
    await worker.turn({})
    await worker.turn({INPUT: [created(0, "HD-0")]})
    assert worker.tasks.stores == {} and worker.ready


def test_a_store_another_process_holds_is_left_alone(tmp_path: Path) -> None:
    """Two workers given one --state-dir: the second runs without a snapshot and never
    removes the first one's files (RocksDB's lock refuses a second opening)."""
    snapshots = Snapshots(tmp_path, "unit", DAY_MS)
    held = snapshots.open(0)
    assert held is not None
    held.write([(b"HD-1", b"{}")], 5, int(time.time() * 1000))

    assert snapshots.open(0) is None
    assert [key for key, _ in held.records()] == [b"HD-1"]
    held.close()


def test_a_store_this_process_still_reads_is_kept_not_discarded(tmp_path: Path) -> None:
    """A RocksDB iterator keeps its store open, and its LOCK held, after `close()`:
    opening the store again meanwhile fails with "lock hold by current process". That
    is a lock, not damage: the snapshot is kept (never deleted under a reader), and
    opens again, whole, once the reader is gone."""
    snapshots = Snapshots(tmp_path, "unit", DAY_MS)
    store = snapshots.open(0)
    assert store is not None
    store.write([(b"A", b"a"), (b"B", b"b")], 2, int(time.time() * 1000))
    reader = iter(StoredStates(store))
    assert next(reader) == "A"
    store.close()  # the partition went to another member, a reader still lives

    assert snapshots.open(0) is None  # in use: this time without a snapshot

    del reader
    again = snapshots.open(0)
    assert again is not None
    try:
        checkpoint = again.checkpoint()
        assert checkpoint is not None and checkpoint.offset == 2
        assert list(StoredStates(again)) == ["A", "B"]
    finally:
        again.close()


def test_a_store_that_cannot_be_opened_is_replaced_by_an_empty_one(tmp_path: Path) -> None:
    path = tmp_path / "unit" / "0"
    path.mkdir(parents=True)
    (path / "CURRENT").write_text("MANIFEST-that-is-not-there\n")

    store = Snapshots(tmp_path, "unit", DAY_MS).open(0)

    assert store is not None and store.checkpoint() is None and list(store.records()) == []
    store.close()


@pytest.mark.parametrize("where", ["data-block", "footer"])
async def test_a_damaged_snapshot_file_means_a_full_restore(
    deployment: Deployment, where: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Flipped bytes in the store's table file: RocksDB refuses it, at open (a damaged
    footer) or while it is loaded (a data block's checksum), and the partition is read
    from the changelog instead."""
    worker = await deployment.start()
    for n in range(50):
        await worker.turn({INPUT: [created(n, f"HD-{n}")]})
    deployment.store_of(worker).db.flush()  # the records into a table file
    deployment.stop(worker)
    [table] = sorted((deployment.state_dir / "unit" / "0").glob("*.sst"))
    data = bytearray(table.read_bytes())
    damaged = range(20, 60) if where == "data-block" else range(len(data) - 40, len(data))
    for i in damaged:
        data[i] ^= 0xFF
    table.write_bytes(bytes(data))

    again = await deployment.start()

    assert deployment.changelogs.read_from == {0: 0}  # the whole changelog
    assert len(again.partitions[0].tickets) == 50
    said = "cannot be read" if where == "data-block" else "cannot be opened"
    assert said in caplog.text


async def test_a_store_whose_index_read_fails_is_given_up_and_the_partition_restored(
    deployment: Deployment,
) -> None:
    """A step that only fires timers reads the due index: a store that fails that read
    is given up, and the partition restored from the changelog into RAM, as when a
    ticket's state cannot be read; the worker goes on."""
    worker = await deployment.start()
    for n in range(3):
        await worker.turn({INPUT: [created(n, f"HD-{n}")]})
    deployment.store_of(worker).db.close()  # every read fails from now on

    await worker.turn({})  # a timer-only step: it fails, and the partition restores
    await worker.turn({})
    await worker.tasks.restored()
    await worker.turn({})

    assert worker.ready and 0 not in worker.tasks.stores
    assert not isinstance(worker.partitions[0].tickets, StoredStates)
    assert len(worker.partitions[0].tickets) == 3


async def test_a_policy_reload_whose_rebuild_fails_restores_that_partition(
    deployment: Deployment, presets: Policy
) -> None:
    """SIGHUP rebuilds every running partition's indexes from its state: one whose
    store fails meanwhile is given up and restored from the changelog (under the new
    policy), not left half rebuilt, and the reload ends."""
    worker = await deployment.start()
    for n in range(3):
        await worker.turn({INPUT: [created(n, f"HD-{n}")]})
    deployment.store_of(worker).db.close()

    await worker.reload_policy(presets)
    await worker.turn({})
    await worker.tasks.restored()
    await worker.turn({})

    assert worker.ready and 0 not in worker.tasks.stores
    assert len(worker.partitions[0].tickets) == 3


async def test_a_store_that_cannot_be_written_during_a_restore_is_dropped(
    presets: Policy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full or read-only volume: every write to the store fails. The partition is
    restored again without it, as without --state-dir, instead of failing for ever."""
    from worker.kafka import task_manager

    monkeypatch.setattr(task_manager, "RESTORE_RETRY_SECONDS", 0.0)

    def full(self: Store, *args: object) -> None:
        raise OSError("IO error: No space left on device")

    monkeypatch.setattr(Store, "write", full)
    changelogs = FakeChangelogs({0: [(f"T-{i}".encode(), b"{}") for i in range(10)]})
    settings = WorkerSettings(partitions=1, app_id="unit", state_dir=tmp_path)
    clients = Clients(FakeConsumer(), changelogs, lambda number: RecordingProducer())
    worker = LiveWorker(
        settings,
        presets,
        Metrics(presets),
        clients,  # type: ignore[arg-type]
        snapshots=Snapshots(tmp_path, "unit", DAY_MS),
    )
    await worker.on_assigned([INPUT])
    for _ in range(4):
        await worker.turn({})
        await worker.tasks.restored()
    try:
        assert list(worker.partitions) == [0] and worker.ready
        assert 0 not in worker.tasks.stores  # and none is opened again
    finally:
        worker.tasks.close_stores()
