"""The task manager: every partition this worker was given, and what state it is in
(Kafka Streams' TaskManager and its tasks' lifecycle).

A task is one partition number (across all input topics):

- RESTORING: assigned; its state is being read (or waits to be, after a failure); its
  inputs are paused. It may hold the partition's state from before a rebalance, kept
  if nobody wrote the changelog since.
- RUNNING: restored; the main loop steps it, and its timers fire.
- SUSPENDED: revoked by a rebalance; its state is kept in memory in case it comes back
  (the assignor hands a member the partitions it holds, `worker.kafka.assignment`).

Warm standbys (`--standby-replicas`) are not tasks: `worker.kafka.standby` keeps them.
A partition assigned as active whose standby this worker keeps is *promoted*: its
restore takes the standby's state, already indexed, and reads only the changelog's
records after the standby's position (step 2 below).

Restores run in a task of their own beside the main loop, in bounded chunks
(`worker.kafka.restorer`): while one partition reads a long changelog, the running ones
go on stepping and firing on time. Restoring a partition takes, in this order:

1. fence: the partition's producer starts (`Committer.open`), which aborts whatever an
   earlier owner left open, so the changelog's and the offsets' committed ends are final;
2. state: kept from before (if the changelog's end is still the one it reflects), or
   the standby's plus the changelog's tail after it, or read from the changelog;
3. inputs (in the main loop, between two steps): seeked to the offsets the last
   committed transaction recorded (the group's committed offsets, or those the
   changelog's clock record holds, if later), then resumed; the task runs.

Everything that changes the set of tasks (a rebalance, a policy reload, a failed commit)
happens under `lock`, between two steps, and cancels the restore under way first.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from aiokafka.errors import KafkaError

from worker.kafka.clients import GroupConsumer
from worker.kafka.committer import RESTORE_RETRY_SECONDS, Committer
from worker.kafka.inputs import InputWatch
from worker.kafka.restorer import Restorer
from worker.kafka.snapshot import (
    Snapshots,
    Store,
    StoredStates,
    index_ops,
    keep_in,
    settled,
    store_of,
)
from worker.kafka.standby import Standby, Standbys
from worker.kafka.stored_index import StoredDueIndex
from worker.logs import BROKER_LOGGER
from worker.metrics import Metrics
from worker.tasks.partition import Partition

log = logging.getLogger("sla_worker")
# Failures that come in thousands while the broker is away: rate-limited (worker/logs.py).
broker_log = logging.getLogger(BROKER_LOGGER)


INDEX_OVERLAY_LIMIT = 1000
"""Most timer index changes a store-backed partition keeps in RAM between two commits
that write changelog records (`TaskManager.settle_indexes`)."""


class TaskState(enum.Enum):
    RESTORING = "restoring"
    RUNNING = "running"
    SUSPENDED = "suspended"


@dataclass
class Task:
    number: int
    state: TaskState
    partition: Partition | None = None
    """The state in memory: a running task's; a suspended one's kept; a restoring one's
    kept from before, if any (None: read from the changelog)."""
    retry_at: float = 0.0
    """Restoring: not before this instant (monotonic)."""
    restored: bool = False
    """Restoring: `partition` is restored, and the task starts at the next turn."""
    since: float = 0.0
    """Restoring: when its restore began (monotonic)."""


class TaskManager:
    """The tasks, their transitions, and the restores."""

    def __init__(
        self,
        consumer: GroupConsumer,
        inputs: InputWatch,
        committer: Committer,
        restorer: Restorer,
        metrics: Metrics,
        new_partition: Callable[[int], Partition],
        reachable: Callable[[], bool],
        snapshots: Snapshots | None = None,
        standbys: Standbys | None = None,
    ) -> None:
        self.consumer = consumer
        self.inputs = inputs
        self.committer = committer
        self.restorer = restorer
        self.metrics = metrics
        self.new_partition = new_partition
        self.reachable = reachable
        self.snapshots = snapshots
        self.standbys = standbys
        self.stores: dict[int, Store] = {}
        # Partitions whose store failed (a full or read-only volume): run without one
        # until the worker restarts, as without --state-dir.
        self.storeless: set[int] = set()
        """The open local snapshots of the assigned partitions (with `snapshots`)."""
        self.tasks: dict[int, Task] = {}
        self.lock = asyncio.Lock()
        """One step, one rebalance, one install of restored state or one reload at a time."""
        self._job: asyncio.Task[None] | None = None
        self._counting: set[asyncio.Task[int]] = set()
        """Promoted standbys' timer gauges being filled in (`_count_timers`)."""
        self._indexed: set[int] = set()
        """Partitions of the restore under way loaded with their stored indexes (no
        rebuild): their timer gauges are filled in once the restore job ended."""
        self._counting_lock = asyncio.Lock()
        self._to_count: set[int] = set()
        """Restored with their stored indexes: their gauges are filled in once they run."""
        self._uncounted: set[int] = set()
        """Those of them restored: counted when the job ends, whatever it ends with."""

    # --- what the view reads ----------------------------------------------------------------

    def running(self) -> dict[int, Partition]:
        return {
            n: t.partition
            for n, t in sorted(self.tasks.items())
            if t.state is TaskState.RUNNING and t.partition is not None
        }

    def restoring(self) -> list[int]:
        return sorted(n for n, t in self.tasks.items() if t.state is TaskState.RESTORING)

    def held(self) -> list[int]:
        """Partitions whose state this worker holds (announced when it joins)."""
        return sorted(n for n, t in self.tasks.items() if t.partition is not None)

    def state_of(self, number: int) -> TaskState | None:
        task = self.tasks.get(number)
        return None if task is None else task.state

    # --- rebalances (under the lock) ----------------------------------------------------------

    async def revoke_all(self) -> None:
        """Eager rebalancing revokes everything: running and restoring tasks are suspended
        with whatever state they hold."""
        await self.cancel_restore()
        for number, task in list(self.tasks.items()):
            if task.partition is None:
                del self.tasks[number]
            else:
                task.state, task.restored = TaskState.SUSPENDED, False

    async def assign(self, numbers: set[int], standby: Iterable[int] = ()) -> None:
        """Only take note (heartbeats stop during the rebalance callback): the assigned
        tasks restore in the background; `standby` (with `standbys`): the partitions to
        keep warm, a partition that moves from active to standby keeping its state."""
        await self.cancel_restore()
        adopt: dict[int, Partition] = {}
        warm = set(standby) - numbers
        for number in list(self.tasks):
            if number not in numbers:
                task = self.tasks.pop(number)
                # A standby keeps its state in RAM: one kept in the partition's local
                # store (closed below) is not adopted; the standby reads the changelog.
                if (
                    number in warm
                    and task.partition is not None
                    and not isinstance(task.partition.tickets, StoredStates)
                ):
                    adopt[number] = task.partition
                self._forget(task)
        if self.standbys is not None:
            self.standbys.assign(warm, adopt, promoted=numbers)
        await self.committer.close_all(keep=numbers)
        for number in list(self.stores):
            if number not in numbers:  # kept on disk: read again if the partition returns
                with contextlib.suppress(Exception):
                    self.stores.pop(number).close()
        for number in numbers:
            task = self.tasks.setdefault(number, Task(number, TaskState.RESTORING))
            task.state, task.retry_at, task.restored = TaskState.RESTORING, 0.0, False
            self.pause(number)

    # --- failures (under the lock) ------------------------------------------------------------

    def lose(self, number: int, why: str, wait: float) -> None:
        """A step could not be committed: forget what memory holds, stop reading the
        partition's inputs, and restore it from Kafka in `wait` seconds."""
        broker_log.warning(
            "could not commit a step of partition %d (%s); restoring it from the changelog",
            number,
            why,
        )
        task = self.tasks.setdefault(number, Task(number, TaskState.RESTORING))
        self._forget(task)
        task.state, task.retry_at = TaskState.RESTORING, time.monotonic() + wait
        self.pause(number)

    def state_failed(self, number: int, why: str) -> None:
        """A step could not read the partition's local store (a damaged file): restore
        it from the changelog, without the store (given up until the worker restarts)."""
        self.lose(number, f"its local store failed: {why}", 0.0)
        store = self.stores.pop(number, None)
        if store is not None:
            self.storeless.add(number)
            with contextlib.suppress(Exception):
                store.wipe()
                store.close()

    async def drop_state(self) -> None:
        """Forget the state of every task but the running ones (a new policy: what was
        kept was scheduled under the old one); a restore under way starts again."""
        await self.cancel_restore()
        if self.standbys is not None:  # indexed under the old policy: read them again
            warm = self.standbys.numbers()
            self.standbys.close()
            self.standbys.assign(warm)
        for number, task in list(self.tasks.items()):
            if task.state is TaskState.SUSPENDED:
                self._forget(self.tasks.pop(number))
            elif task.state is TaskState.RESTORING:
                self._forget(task)
                task.retry_at = 0.0

    def _forget(self, task: Task) -> None:
        task.restored = False
        if task.partition is not None:
            # A store-backed state whose store failed cannot be listed: its gauges stay
            # until the restore writes every ticket's again.
            with contextlib.suppress(Exception):
                self.metrics.forget(task.partition.tickets)
            task.partition = None

    # --- inputs --------------------------------------------------------------------------------

    def pause(self, number: int) -> None:
        with contextlib.suppress(Exception):  # not assigned any more: nothing to pause
            self.consumer.pause(*self.inputs.of(number))

    def pause_all(self) -> None:
        for number in self.tasks:
            if self.tasks[number].state is not TaskState.SUSPENDED:
                self.pause(number)

    def resume_running(self) -> None:
        for number in self.running():  # restoring ones resume when restored
            with contextlib.suppress(Exception):
                self.consumer.resume(*self.inputs.of(number))

    # --- restores ------------------------------------------------------------------------------

    def start_restores(self) -> None:
        """Start restoring the tasks whose restore is due, unless a restore is under way
        (tasks that fail meanwhile wait for the next one)."""
        if self._job is not None and not self._job.done():
            return
        now = time.monotonic()
        due = [
            n
            for n in self.restoring()
            if self.tasks[n].retry_at <= now and not self.tasks[n].restored
        ]
        if due:
            self._job = asyncio.create_task(self._restore(due))

    async def restored(self) -> None:
        """Until the restore under way (if any) has ended."""
        if self._job is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self._job)

    async def counted(self) -> None:
        """Until the timer gauges of the promoted standbys are filled in."""
        await asyncio.gather(*self._counting, return_exceptions=True)

    async def cancel_restore(self) -> None:
        job, self._job = self._job, None
        if job is not None and not job.done():
            job.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await job

    async def _restore(self, numbers: list[int]) -> None:
        try:
            await self._restore_job(numbers)
        finally:  # counted once they run (`start_restored`), whatever the job ended with
            self._to_count |= self._uncounted
            self._uncounted, self._indexed = set(), set()

    async def _restore_job(self, numbers: list[int]) -> None:
        started = time.monotonic()
        log.info("restoring partitions %s", numbers)
        for number in numbers:
            self.tasks[number].since = started
        try:
            # 1. Fence (see the module docstring).
            # Every open ends before the job does (none may outlive a failed job and
            # open a producer for a partition a later rebalance took away).
            opened = await asyncio.gather(
                *(self.committer.open(p) for p in numbers), return_exceptions=True
            )
            for result in opened:
                if isinstance(result, BaseException):
                    raise result
            # 2. State: kept if nobody wrote the changelog since, else read (from the
            #    local snapshot's offset on, if there is a usable one).
            stamp_ms = int(time.time() * 1000)  # before the ends: all after them is newer
            ends = await self.restorer.ends(numbers)
            kept: dict[int, Partition] = {}
            to_read: dict[int, Partition] = {}
            tails: dict[int, int] = {}  # promoted standbys: where their tail begins
            for number in numbers:
                task = self.tasks[number]
                if task.partition is not None and task.partition.changelog_end == ends[number]:
                    kept[number] = task.partition
                    continue
                self._forget(task)
                promoted = await self._promote(number, ends[number])
                if promoted is not None:
                    to_read[number], tails[number] = promoted
                else:
                    to_read[number] = self.new_partition(number)
            self._restored(kept, set(), started)  # these run at once, whatever the
            cold = {n: p for n, p in to_read.items() if n not in tails}  # others take
            loaded, indexed = await self._load_snapshots(cold, ends)  # to read
            self._indexed = indexed
            froms = loaded | tails
            to_read.update(cold)  # (a snapshot that failed to load: an empty partition)
            stores = {n: self.stores[n] for n in cold if n in self.stores}
            await self.restorer.read(
                to_read,
                ends,
                lambda n, p: self._read(n, p, started, tails),  # each when read
                froms,
                stores,
                stamp_ms,
                warm=set(tails) | set(loaded),
                gauged=set(loaded),
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            broker_log.warning(
                "could not restore partitions %s (%s: %s); retrying in %.0f s",
                numbers,
                type(exc).__name__,
                exc,
                RESTORE_RETRY_SECONDS,
            )
            # Not a broker's error: the local store's (a full or read-only volume, whose
            # every write fails until it is reopened). The retry goes without it, as a
            # worker without --state-dir would, rather than failing the same way for ever.
            store_failed = not isinstance(exc, (KafkaError, TimeoutError))
            for number in numbers:
                failed = self.tasks.get(number)
                # A task already restored (its state whole: kept, or read before the
                # failure) starts at the next turn; only the others restore again.
                if failed is None or failed.state is not TaskState.RESTORING or failed.restored:
                    continue
                self._forget(failed)
                failed.retry_at = time.monotonic() + RESTORE_RETRY_SECONDS
                store = self.stores.pop(number, None) if store_failed else None
                if store is not None:
                    self.storeless.add(number)
                    with contextlib.suppress(Exception):
                        store.wipe()
                        store.close()

    async def _promote(self, number: int, end: int) -> tuple[Partition, int] | None:
        """The standby of `number` (if this worker keeps one), handed over with the offset
        its changelog tail begins at. With --state-dir, the promoted partition writes no
        local snapshot until its next restore (its store would miss what the standby
        read; the snapshot on disk stays valid for the offset it records)."""
        if self.standbys is None:
            return None
        standby = await self.standbys.take(number)
        if standby is None:
            return None
        why, level = await self._unusable(number, standby, end)
        if why is not None:
            log.log(
                level,
                "partition %d: not promoting its standby: it %s; restoring the partition "
                "from the changelog",
                number,
                why,
            )
            return None
        store = self.stores.pop(number, None)
        if store is not None:
            with contextlib.suppress(Exception):
                store.close()
        log.info(
            "partition %d: promoting its standby (%d tickets, changelog offset %d); reading "
            "the changelog's %d records after it",
            number,
            len(standby.partition.tickets),
            standby.position,
            end - standby.position,
        )
        return standby.partition, standby.position

    async def _unusable(self, number: int, standby: Standby, end: int) -> tuple[str | None, int]:
        """Why the standby of `number` cannot be promoted (None: it can), and how loud to
        say so. Its state plus the changelog's records after its position must be what a
        cold restore reads: so a record it has not read must still be there (not before
        the changelog's first offset, no tombstone compacted away since)."""
        assert self.standbys is not None
        position = standby.position
        if position <= 0:  # a cold restore is as quick (and may use a snapshot)
            return "has read nothing yet", logging.INFO
        if position > end:  # cannot be (read_committed): never trusted
            return f"is at changelog offset {position}, past the changelog's end {end}", (
                logging.WARNING
            )
        retention_ms = self.standbys.tombstone_retention_ms
        if retention_ms <= 0:
            return "cannot be checked: the changelog's delete.retention.ms is not known", (
                logging.WARNING
            )
        now_ms = int(time.time() * 1000)
        age_ms = now_ms - standby.caught_up_ms
        if standby.stale(now_ms, retention_ms):
            return (
                f"last caught up with the changelog {age_ms / 3_600_000:.1f} h ago, not "
                f"within its delete.retention.ms ({retention_ms / 3_600_000:.1f} h): it may "
                "miss a deletion compaction has removed since",
                logging.WARNING,
            )
        beginning = (await self.restorer.beginnings([number]))[number]
        if position < beginning:
            return (
                f"is at changelog offset {position}, before the changelog's first offset "
                f"{beginning}: records it has not read are gone",
                logging.WARNING,
            )
        return None, logging.INFO

    def _read(
        self, number: int, partition: Partition, started: float, tails: dict[int, int]
    ) -> None:
        """The restorer read `number` to its end: it starts at the next turn; a promoted
        standby's timer gauges are filled in beside the loop from now on (whatever
        happens to the rest of the restore job)."""
        self._restored({number: partition}, {number}, started, tails)
        if number in self._indexed:
            # Its gauges are filled in once the whole restore job ended: decoding every
            # ticket beside the loop must not hold back the partitions still restoring
            # (readiness waits for them), only the gauges wait.
            self._uncounted.add(number)
        elif number in tails:
            self._count_timers(number)

    def _count_timers(self, number: int, check: bool = False) -> None:
        """Fill in the timer gauges of a promoted standby's tickets, or of a partition's
        loaded with its stored indexes (`check`: its unreadable states are found and
        logged on the way), in a task of its own beside the loop (not in the restore
        job: a restore due meanwhile does not wait for it). It stops when the
        partition's state leaves the task (revoked for good, or lost and restored again,
        which counts its tickets anew)."""
        task = self.tasks.get(number)
        if task is None or task.partition is None:
            return
        partition = task.partition

        def held() -> bool:
            now = self.tasks.get(number)
            return now is not None and now.partition is partition

        async def count() -> int:
            async with self._counting_lock:  # one partition at a time: one chunk per turn
                return await self.restorer.count_timers(partition, held, check)

        counting = asyncio.create_task(count())
        self._counting.add(counting)
        counting.add_done_callback(self._counting.discard)

    async def _load_snapshots(
        self, partitions: dict[int, Partition], ends: dict[int, int]
    ) -> tuple[dict[int, int], set[int]]:
        """Make each partition with a local store keep its tickets and timer indexes
        there (`keep_in`): a usable snapshot is loaded (`Restorer.load`), the others are
        discarded (the partition is read from the changelog's beginning into the fresh
        store; one that fails while loaded is replaced in `partitions` by an empty one).
        Returns the offsets to read the loaded ones' changelogs from, and those loaded
        with their stored indexes as they were (nothing decoded)."""
        if self.snapshots is None or not partitions:
            return {}, set()
        starts = await self.restorer.beginnings(sorted(partitions))
        froms, indexed = {}, set()
        for number, partition in partitions.items():
            store = self.stores.get(number)
            if store is None and number in self.storeless:
                continue
            if store is None:
                store = self.snapshots.open(number)
                if store is None:
                    continue
                self.stores[number] = store
            offset, why = self.snapshots.usable(store, starts[number], ends[number])
            if offset is None:
                # A store without an offset is what a first start finds: no news.
                level = logging.INFO if why.startswith("has no offset") else logging.WARNING
                log.log(level, "partition %d: discarding the local snapshot: it %s", number, why)
                store.wipe()
                keep_in(partition, store)
                continue
            try:
                as_stored = await self.restorer.load(partition, store)
            except Exception as exc:  # a damaged file: read the changelog instead
                log.warning(
                    "partition %d: discarding the local snapshot: it cannot be read (%s: %s)",
                    number,
                    type(exc).__name__,
                    exc,
                )
                store.wipe()
                partitions[number] = fresh = self.new_partition(number)
                keep_in(fresh, store)
                continue
            froms[number] = offset
            if as_stored:
                indexed.add(number)
            log.info(
                "partition %d: %d tickets from the local snapshot at changelog offset %d "
                "(%s); reading the changelog's %d records after it",
                number,
                len(partition.tickets),
                offset,
                "its timer indexes as stored" if as_stored else "timer indexes rebuilt",
                ends[number] - offset,
            )
        return froms, indexed

    def snapshot(
        self, number: int, records: list[tuple[bytes, bytes | None]], end: int, stamp_ms: int
    ) -> None:
        """After a step of `number` committed: its changelog records into the local
        snapshot, which then reflects the changelog up to `end`."""
        store = self.stores.get(number)
        if store is None:
            return
        task = self.tasks.get(number)
        partition = None if task is None else task.partition
        if partition is None or store_of(partition) is not store:
            return  # (a state in RAM never writes to a store: its indexes would be stale)
        try:
            store.write(records, end, stamp_ms, index_ops(partition))
        except Exception as exc:  # the store would lag its offset: start it afresh
            log.warning(
                "partition %d: could not write the local snapshot (%s: %s); discarding it and "
                "running without one until the worker restarts",
                number,
                type(exc).__name__,
                exc,
            )
            if partition is not None and isinstance(partition.tickets, StoredStates):
                # Its tickets are in that store: restored from the changelog, into RAM.
                self.lose(number, "its local store could not be written", 0.0)
            self.stores.pop(number, None)
            self.storeless.add(number)
            with contextlib.suppress(Exception):
                store.wipe()
                store.close()
            return
        settled(partition, records)

    def settle_indexes(self, number: int) -> None:
        """After a step of `number` that had nothing to commit: if its timer indexes'
        overlays hold more than `INDEX_OVERLAY_LIMIT` changes (bounds that came due and
        were filed at their exact instants, nothing published: no changelog record to
        carry them), write them to its store now. They derive from committed states
        only (every earlier step committed, or the partition was thrown away), so the
        store does not get ahead of Kafka; its offset is not moved. Otherwise a quiet
        partition's overlays grow without end, and a restart pops the old bounds again."""
        store = self.stores.get(number)
        task = self.tasks.get(number)
        partition = None if task is None else task.partition
        if store is None or partition is None or store_of(partition) is not store:
            return
        indexes = (partition.clock.due, partition.clock.holds, partition.retirements)
        pending = sum(len(i.pending) for i in indexes if isinstance(i, StoredDueIndex))
        if pending <= INDEX_OVERLAY_LIMIT:
            return
        try:
            store.write([], None, 0, index_ops(partition))
        except Exception as exc:  # as a failed write after a commit
            self.state_failed(number, f"its timer indexes could not be written: {exc}")
            return
        settled(partition, [])

    def close_stores(self) -> None:
        for counting in list(self._counting):  # the worker stops: the gauges go anyway
            counting.cancel()
        for store in self.stores.values():
            with contextlib.suppress(Exception):
                store.close()
        self.stores.clear()

    def _restored(
        self,
        partitions: dict[int, Partition],
        read: set[int],
        started: float,
        tails: dict[int, int] | None = None,
    ) -> None:
        """The state of these tasks is restored: they start at the next turn of the loop."""
        if not partitions:
            return
        for number, partition in partitions.items():
            task = self.tasks[number]
            task.partition, task.restored = partition, True
        promoted = sorted(set(partitions) & set(tails or {}))
        if promoted:
            log.info(
                "promoted standby partitions %s: %d changelog records read after the "
                "standby's position, in %.2f s",
                promoted,
                sum(partitions[n].changelog_end - (tails or {})[n] for n in promoted),
                time.monotonic() - started,
            )
            return
        log.info(
            "restored partitions %s: %d tickets read from the changelog, %d kept, in %.2f s",
            sorted(partitions),
            sum(len(p.tickets) for n, p in partitions.items() if n in read),
            sum(len(p.tickets) for n, p in partitions.items() if n not in read),
            time.monotonic() - started,
        )

    async def start_restored(self) -> set[int]:
        """3. Inputs (in the main loop, under the lock, before a step): seek the restored
        tasks' inputs to the committed offsets and resume them; the tasks run. Returns
        them: what the loop's last fetch returned for them was read before the seek (the
        consumer reads it again from there), so this turn does not step it."""
        ready = [t for t in self.tasks.values() if t.state is TaskState.RESTORING and t.restored]
        for task in ready:
            partition = task.partition
            assert partition is not None
            for tp in self.inputs.of(task.number):
                committed = await self.consumer.committed(tp)
                recorded = partition.offsets.get(tp.topic)
                start = max((o for o in (committed, recorded) if o is not None), default=None)
                if start is None:
                    await self.consumer.seek_to_beginning(tp)
                else:
                    self.consumer.seek(tp, start)
            self.inputs.forget(task.number)
            task.state, task.restored = TaskState.RUNNING, False
            if self.reachable():  # else they resume when the brokers are back
                self.consumer.resume(*self.inputs.of(task.number))
        for task in ready:
            if task.number in self._to_count:
                # Decoding every ticket beside the loop starts only now: until the task
                # ran, every await of its start (seeks, offsets) waited for its chunks.
                self._to_count.discard(task.number)
                self._count_timers(task.number, check=True)  # nothing decoded yet
        if ready:
            seconds = time.monotonic() - min(t.since for t in ready)
            tickets = sum(len(p.tickets) for p in self.running().values())
            self.metrics.recovered(tickets, max(seconds, 0.0))
        return {t.number for t in ready}
