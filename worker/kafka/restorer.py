"""The restorer: a partition's state read back from its changelog (Kafka Streams'
changelog reader).

It never stalls the partitions that are running. The task manager runs restores in a
task of their own beside the main loop (as Kafka Streams' state updater thread), and
this module works in bounded chunks, giving the event loop back after each: at most
`READ_CHUNK` changelog (or snapshot) records are loaded, or `REBUILD_CHUNK` tickets
decoded into the due index, between two chances for the main loop to step and fire
timers. With a local snapshot (`worker.kafka.snapshot`), only the changelog's tail after
the snapshot's offset is read.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterator, MutableMapping
from datetime import UTC, datetime

from aiokafka.structs import TopicPartition

from worker.core.state_codec import StateFormatError
from worker.kafka import stored_index
from worker.kafka.clients import ChangelogConsumer
from worker.kafka.snapshot import (
    RECORD,
    Store,
    StoredStates,
    breached,
    index_ops,
    keep_in,
    settled,
    store_of,
    stored_count,
)
from worker.kafka.stored_index import StoredDueIndex
from worker.metrics import Metrics
from worker.tasks.partition import CLOCK_KEY, Partition, StateUnavailable

log = logging.getLogger("sla_worker")

CHANGELOG_STALL_SECONDS = 60.0
"""A changelog read that gets no record for this long fails (and is retried)."""
READ_CHUNK = 2000
"""Most changelog records loaded between two yields to the main loop."""
REBUILD_CHUNK = 500
"""Most tickets decoded into the due index between two yields to the main loop."""
GAUGE_CHUNK = 100
"""Most tickets decoded into the timer gauges between two yields to the main loop, after
a restart from the snapshot or a promotion: the partitions already run, and every turn
of their loop (a fetch, a seek, a commit: each an await) waits for one such chunk."""


class Restorer:
    """Reads changelog partitions into `Partition`s."""

    def __init__(self, changelogs: ChangelogConsumer, topic: str, metrics: Metrics) -> None:
        self.changelogs = changelogs
        self.topic = topic
        self.metrics = metrics

    async def ends(self, numbers: list[int]) -> dict[int, int]:
        """The changelog partitions' committed ends (read_committed: last stable offsets)."""
        tps = [TopicPartition(self.topic, p) for p in numbers]
        ends = await self.changelogs.end_offsets(tps)
        return {tp.partition: ends[tp] for tp in tps}

    async def beginnings(self, numbers: list[int]) -> dict[int, int]:
        """The changelog partitions' first offsets."""
        tps = [TopicPartition(self.topic, p) for p in numbers]
        starts = await self.changelogs.beginning_offsets(tps)
        return {tp.partition: starts[tp] for tp in tps}

    async def load(self, partition: Partition, store: Store, now: datetime | None = None) -> bool:
        """Make a usable local snapshot `partition`'s state: its tickets and its timer
        indexes stay in the store (`keep_in`), its clock record is read. Indexes the
        store computed under this engine (policy, retention, due rules, calendar data:
        `stored_index.fingerprint`) are used as they are, and only the at-risk index's
        breached tickets are read: nothing is decoded but the tickets whose stored due
        instant is past by `now` (default: the wall clock), whose exact instants are
        filed (`refine`: after a short downtime, few). Otherwise they are rebuilt
        from the stored states, in chunks. Returns whether they were used as they are
        (the timer gauges are then filled in after the partition runs, `count_timers`,
        which also finds and logs the states this version cannot read: until then
        `partition.unreadable` is empty, and such a ticket's next event is
        dead-lettered as unreadable-state all the same).
        Raises whatever the store raises (a damaged file: the caller discards it)."""
        keep_in(partition, store, stored_count(store))
        clock = store.db.get(RECORD + CLOCK_KEY)
        if clock is not None:
            partition.load(CLOCK_KEY, bytes(clock))
        expected = stored_index.fingerprint(partition.processor.engine)
        if expected is not None and store.db.get(stored_index.FINGERPRINT) == expected:
            partition.at_risk.restore_breached(breached(store))
            len(partition.tickets)  # (counted here if the store did not say)
            await self.refine(partition, now or datetime.now(UTC))  # past bounds: exact
            return True
        stored_index.clear(store.db)
        keep_in(partition, store, None)  # the indexes afresh: empty
        await self.rebuild(partition, warn=False)
        return False

    async def refine(self, partition: Partition, now: datetime) -> int:
        """File the exact due instant of every entry of the stored due index that is
        due by `now`, in chunks, as a rebuild would. The stored index holds what the
        event path filed: the lower bounds of running goal timers (docs/semantics.md,
        "Timers and due instants"); after a downtime many are past, and the first step
        would take them all at once, every partition stalled meanwhile. Here they are
        worked out beside the loop, before the partition runs: the first step takes
        only what is due indeed. Returns the entries moved."""
        due, store = partition.clock.due, store_of(partition)
        if not isinstance(due, StoredDueIndex) or store is None:
            return 0
        moved, after = 0, None
        while chunk := due.stored_until(after, now, REBUILD_CHUNK):
            for ticket_id, at in chunk:
                value = partition.tickets.get(ticket_id)
                try:
                    stored = None if value is None else json.loads(value)
                    ticket = None if stored is None else partition.processor.restore(stored)[1]
                except (ValueError, KeyError, TypeError, StateFormatError):
                    continue  # unreadable: left as it is (the count finds and logs it)
                exact = None if ticket is None else ticket.due
                if exact != at:  # (an exact instant still due is seen again: unchanged)
                    due.schedule(ticket_id, exact)
                    moved += 1
            after = chunk[-1]
            store.write([], None, 0, index_ops(partition))  # derived from the stored states
            settled(partition, [])
            await asyncio.sleep(0)  # the running partitions step meanwhile
        return moved

    async def read(
        self,
        partitions: dict[int, Partition],
        ends: dict[int, int],
        done: Callable[[int, Partition], None],
        froms: dict[int, int] | None = None,
        stores: dict[int, Store] | None = None,
        stamp_ms: int = 0,
        warm: set[int] | None = None,
        gauged: set[int] | None = None,
    ) -> None:
        """Load each partition's changelog from `froms` (default: its beginning) up to
        `ends`, then rebuild its due index, and hand it to `done` at once (the others may
        take longer); in chunks, yielding between them.

        A partition with a store in `stores` has each chunk written to it as it is read
        (committed records only: read_committed), and, once its end is reached, the
        offset the store then reflects, stamped `stamp_ms` (taken before `ends` were).

        A partition in `warm` is a promoted standby's (`worker.kafka.standby`), indexed
        as it was followed: each record of its tail is applied with `Partition.follow`,
        and it needs no rebuild; so is one loaded from its local snapshot, whose tickets
        are in `gauged` too: the timer gauges follow each record of its tail."""
        froms, stores, warm, gauged = froms or {}, stores or {}, warm or set(), gauged or set()
        tps = {TopicPartition(self.topic, p): part for p, part in partitions.items()}
        if not tps:
            return
        self.changelogs.assign(list(tps))
        try:
            for tp in tps:
                if tp.partition in froms:
                    self.changelogs.seek(tp, froms[tp.partition])
                else:
                    await self.changelogs.seek_to_beginning(tp)
            remaining = set(tps)
            progress = time.monotonic()
            while remaining:
                for tp in list(remaining):
                    if await self.changelogs.position(tp) >= ends[tp.partition]:
                        remaining.discard(tp)
                        partition = tps[tp]
                        partition.changelog_end = ends[tp.partition]
                        if tp.partition not in warm:
                            await self.rebuild(partition)
                        else:  # indexed as followed: only the warning rebuild gives
                            warn_unreadable(partition)
                        store = stores.get(tp.partition)
                        if store is not None:  # after the indexes: a store with an
                            # offset always has them complete
                            store.write([], partition.changelog_end, stamp_ms, index_ops(partition))
                            settled(partition, [])
                        done(tp.partition, partition)
                if not remaining:
                    break
                fetched = await self.changelogs.getmany(
                    *remaining, timeout_ms=500, max_records=READ_CHUNK
                )
                for tp, records in fetched.items():
                    partition = tps[tp]
                    pairs = [(record.key or b"", record.value) for record in records]
                    if tp.partition in gauged:
                        for key, value in pairs:
                            stored = partition.follow(key, value)
                            if key != CLOCK_KEY:
                                self.metrics.state(key.decode(), stored)
                    elif tp.partition in warm:
                        for key, value in pairs:
                            partition.follow(key, value)
                    else:
                        for key, value in pairs:
                            partition.load(key, value)
                    store = stores.get(tp.partition)
                    if store is not None:
                        store.write(pairs, None, stamp_ms, index_ops(partition))
                        settled(partition, pairs)  # a store-backed state's overlays empty
                if fetched:
                    progress = time.monotonic()
                elif time.monotonic() - progress > CHANGELOG_STALL_SECONDS:
                    raise TimeoutError(
                        f"no changelog record for {CHANGELOG_STALL_SECONDS:.0f} s while "
                        f"reading {sorted(tp.partition for tp in remaining)}"
                    )
                await asyncio.sleep(0)  # the running partitions step meanwhile
        finally:
            self.changelogs.assign([])

    async def count_timers(
        self, partition: Partition, held: Callable[[], bool] = lambda: True, check: bool = False
    ) -> int:
        """A promoted standby's, or a partition loaded from its snapshot's, tickets into
        the timer gauges, in chunks, while the partition may already run: each ticket's
        state is read when it is counted (a step may have changed it since). Stops as
        soon as `held()` turns false (the worker no longer holds this state). Returns the
        tickets counted.

        `check`: the partition's unreadable states are not known (loaded with its stored
        indexes: nothing was decoded): each state is read as `rebuild` reads it, and
        those this version cannot read are listed in `partition.unreadable` and logged
        at the end, as a restore that rebuilds logs them (a promoted standby's were
        listed as it followed, and logged at its promotion)."""
        unreadable = set(partition.unreadable)
        found: list[str] = []
        tickets, rows = partition.tickets, 0
        try:
            for chunk in _id_chunks(tickets):
                for ticket_id in chunk:
                    if not held():
                        return rows
                    value = tickets.get(ticket_id)
                    if value is not None and ticket_id not in unreadable:
                        try:
                            stored = json.loads(value)
                            if check:
                                partition.processor.restore(stored)
                            stored = stored if isinstance(stored, dict) else None
                            self.metrics.state(ticket_id, stored)
                        except (ValueError, KeyError, TypeError, StateFormatError):
                            # Unreadable by this version: no timer, as `rebuild` skips it.
                            if check:
                                found.append(ticket_id)
                            continue
                    rows += 1
                await asyncio.sleep(0)  # the running partitions step meanwhile
        except StateUnavailable as exc:  # the next step fails too, and restores it
            log.warning("partition %d: timer gauges not filled in: %s", partition.number, exc)
            return rows
        if found:
            partition.unreadable += [t for t in found if t not in unreadable]
            warn_unreadable(partition)
        return rows

    async def rebuild(self, partition: Partition, warn: bool = True) -> int:
        """The partition's due index and holds from its state, in chunks; metrics learn
        each ticket's timers. Returns the tickets rebuilt."""
        rows = 0
        store = store_of(partition)
        if store is not None:  # the store's indexes are not whole until the end
            store.db.delete(stored_index.FINGERPRINT)
            store.db.delete_range(stored_index.BREACHED, bytes([stored_index.BREACHED[0] + 1]))
        for ticket_id, stored in partition.rebuild():
            self.metrics.state(ticket_id, stored)
            rows += 1
            if rows % REBUILD_CHUNK == 0:
                if store is not None:  # the overlays stay one chunk small
                    store.write([], None, 0, index_ops(partition))
                    settled(partition, [])
                await asyncio.sleep(0)  # the running partitions step meanwhile
        if store is not None:
            assert isinstance(partition.tickets, StoredStates)
            partition.tickets.count = rows + len(partition.unreadable)
            mark = stored_index.fingerprint(partition.processor.engine)
            ops = index_ops(partition)
            if mark is not None:
                ops.append((stored_index.FINGERPRINT, mark))
            store.write([], None, 0, ops)
            settled(partition, [])
        if warn:
            warn_unreadable(partition)
        return rows


def warn_unreadable(partition: Partition) -> None:
    """After a restore or a promotion: say which tickets' state this version cannot read."""
    if partition.unreadable:
        log.warning(
            "partition %d: %d tickets' state cannot be read by this version (their "
            "next events are dead-lettered as unreadable-state), e.g. %s",
            partition.number,
            len(partition.unreadable),
            partition.unreadable[:5],
        )


def _id_chunks(tickets: MutableMapping[str, bytes]) -> Iterator[list[str]]:
    """The ticket ids, `GAUGE_CHUNK` at a time, for a caller that awaits between chunks:
    a store's read afresh after the last id each time (a RocksDB iterator held across
    an await would keep the store open after its owner closed it: reopening it would
    fail, and its LOCK stay held); a dict's copied first (it may change size meanwhile).
    Tickets written meanwhile may be seen or not: each is read when counted."""
    if isinstance(tickets, StoredStates):
        after = None
        while chunk := tickets.ids_after(after, GAUGE_CHUNK):
            yield chunk
            after = chunk[-1]
        return
    ids = list(tickets)
    for start in range(0, len(ids), GAUGE_CHUNK):
        yield ids[start : start + GAUGE_CHUNK]
