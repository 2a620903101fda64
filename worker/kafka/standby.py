"""Warm standbys: partitions whose state this worker keeps ready without owning them
(Kafka Streams' standby tasks, `num.standby.replicas`).

With `--standby-replicas N` the group's assignor (`worker.kafka.assignment`) gives each
partition, beside its active owner, to up to N other workers as a standby. A standby
tails the partition's changelog on a consumer of its own (no group, manual assignment,
read_committed, so it sees only what the owner's transactions committed) and applies
each record with `Partition.follow`: the tickets, the due-index, the holds, the
retirements and the at-risk index are the ones a restore would build. When the
partition is assigned to this worker as active, the task manager takes the standby's
`Partition` over (`take`) and reads only the changelog's records after the standby's
position: promotion is a state change, not a restore.

A standby never produces and never commits: exactly-once is the active owner's
business alone (its transactional producer fences any earlier one, as without
standbys). Its lag (records between its position and the changelog's last stable
offset) is reported to the group when the worker joins (the assignor prefers a
caught-up member), in `sla_standby_lag_records{partition}` and in `/readyz`.

A standby revoked by a rebalance is closed and its memory freed. Its memory cost is the
state a running partition would hold.

A standby is only as good as the changelog records it has not read yet. Those can go:
compaction removes a tombstone `delete.retention.ms` after writing it (a standby that
last caught up longer ago than that may miss a deletion, and keep a ticket a cold
restore would not), and a position can fall out of the log (compact,delete retention,
DeleteRecords, the topic recreated). Either way the standby is read again from the
changelog's beginning, and a takeover meanwhile restores the partition cold. Its lag is
known only while a recent fetch reported the changelog's end: a broker away or a
failing loop leaves it unknown (not announced, no gauge), never frozen at an old value.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka.errors import KafkaError, OffsetOutOfRangeError
from aiokafka.structs import TopicPartition

from worker.kafka.clients import ChangelogConsumer
from worker.logs import BROKER_LOGGER
from worker.metrics import Metrics
from worker.tasks.partition import Partition

log = logging.getLogger("sla_worker")
broker_log = logging.getLogger(BROKER_LOGGER)

FOLLOW_CHUNK = 2000
"""Most changelog records one fetch returns."""
APPLY_CHUNK = 500
"""Most changelog records applied between two yields to the main loop (as the
restorer's REBUILD_CHUNK)."""
IDLE_SECONDS = 0.2
"""How long the standby loop sleeps when it keeps no standby."""
FETCH_TIMEOUT_MS = 200
"""How long one fetch waits for records."""
RETRY_SECONDS = 2.0
"""How long the standby loop waits after a failed fetch."""
END_FRESH_MS = 10_000
"""A standby's lag is known only while the changelog end it is measured against was
reported by a fetch at most this long ago (the loop fetches several times a second):
otherwise (brokers unreachable, the loop failing) the lag is unknown, not frozen."""
FAILURE_LIMIT = 5
"""A standby whose turns fail this many times in a row is dropped until the next
rebalance (its partition, if assigned meanwhile, restores cold)."""


def wall_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Standby:
    """One partition's state, kept warm."""

    number: int
    partition: Partition
    position: int = 0
    """The next changelog offset to read: the state reflects everything before it."""
    end: int | None = None
    """The changelog's last stable offset as last seen (None: not seen yet)."""
    end_ms: int | None = None
    """When (wall clock, ms) the fetch that reported `end` came back."""
    caught_up_ms: int = field(default_factory=wall_ms)
    """The wall clock (ms) as of which no changelog record after `position` is older:
    when the standby started from the changelog's beginning or was adopted, or when a
    fetch last found it at the changelog's end. Compaction keeps every tombstone after
    `position` until at least this + delete.retention.ms; past that the standby may have
    missed a deletion and is not used."""
    failures: int = 0
    """Turns in a row that failed for this standby."""

    def lag(self, now_ms: int) -> int | None:
        """Committed changelog records not applied yet (None: not known, or the end it
        would be measured against is older than `END_FRESH_MS`)."""
        if self.end is None or self.end_ms is None or now_ms - self.end_ms > END_FRESH_MS:
            return None
        return max(self.end - self.position, 0)

    def stale(self, now_ms: int, retention_ms: int) -> bool:
        """Last caught up with the changelog too long ago to trust what it has not read."""
        return now_ms - self.caught_up_ms >= retention_ms


class Standbys:
    """The standbys of this worker, and the loop that keeps them warm."""

    def __init__(
        self,
        consumer: ChangelogConsumer,
        topic: str,
        new_partition: Callable[[int], Partition],
        metrics: Metrics,
        tombstone_retention_ms: int,
    ) -> None:
        self.consumer = consumer
        self.topic = topic
        self.new_partition = new_partition
        self.metrics = metrics
        self.tombstone_retention_ms = tombstone_retention_ms
        """The changelog's delete.retention.ms (0: not known, and no standby is promoted)."""
        self.standbys: dict[int, Standby] = {}
        self._lock = asyncio.Lock()
        """Held while fetched records are applied: `take` never hands over a partition
        halfway through a chunk."""
        self._reassign = True

    # --- what the group and the view read ---------------------------------------------------

    def numbers(self) -> list[int]:
        return sorted(self.standbys)

    def lags(self) -> dict[int, int]:
        """Partition -> records behind, for the standbys whose lag is known (announced
        when the worker joins; one not known is not caught up)."""
        now = wall_ms()
        lags = {n: s.lag(now) for n, s in sorted(self.standbys.items())}
        return {n: lag for n, lag in lags.items() if lag is not None}

    def diagnostics(self) -> list[dict[str, int | None]]:
        now = wall_ms()
        return [
            {"partition": n, "position": s.position, "end": s.end, "lag": s.lag(now)}
            for n, s in sorted(self.standbys.items())
        ]

    def report(self) -> None:
        """The lag gauge: a standby whose lag is not known has no series."""
        now = wall_ms()
        for number, standby in list(self.standbys.items()):
            lag = standby.lag(now)
            if lag is None:
                self.metrics.standby_closed(number)
            else:
                self.metrics.standby_lag_of(number, lag)

    # --- assignment ------------------------------------------------------------------------------

    def assign(
        self,
        numbers: Iterable[int],
        adopt: dict[int, Partition] | None = None,
        promoted: Iterable[int] = (),
    ) -> None:
        """Keep exactly these partitions warm. A standby revoked is closed and its state
        dropped, unless it is among `promoted` (assigned as active: kept, and followed,
        until the restore `take`s it); a new one starts from `adopt` (a partition's state
        this worker held as active, whose `changelog_end` it reflects, caught up as of
        now: nobody else wrote the changelog while this worker owned it) or from the
        changelog's beginning."""
        wanted = set(numbers)
        adopt = adopt or {}
        keep = wanted | set(promoted)
        for number in list(self.standbys):
            if number not in keep:
                self._close(number)
        for number in sorted(wanted - set(self.standbys)):
            kept = adopt.get(number)
            if kept is not None and kept.changelog_end >= 0:
                # Not in the changelog, so a standby cannot follow it (and a restore
                # has none): a promotion starts without it, as a restore does.
                kept.known_since.clear()
                self.standbys[number] = Standby(number, kept, position=kept.changelog_end)
            else:
                self.standbys[number] = Standby(number, self.new_partition(number))
        if wanted:
            log.info("standby partitions %s", sorted(wanted))
        self._reassign = True

    async def take(self, number: int) -> Standby | None:
        """The standby of `number`, handed over to become active (None: none kept). It
        leaves the standbys; its `position` is where the new owner reads the tail from."""
        async with self._lock:
            standby = self.standbys.pop(number, None)
            if standby is not None:
                self.metrics.standby_closed(number)
                self._reassign = True
            return standby

    def close(self) -> None:
        for number in list(self.standbys):
            self._close(number)

    def _close(self, number: int) -> None:
        self.standbys.pop(number, None)  # its state is garbage now
        self.metrics.standby_closed(number)
        self._reassign = True

    def _restart(self, number: int, why: str) -> None:
        """Read the standby of `number` again from the changelog's beginning."""
        log.warning(
            "partition %d: its standby %s; reading it again from the changelog's beginning",
            number,
            why,
        )
        self.standbys[number] = Standby(number, self.new_partition(number))
        self.metrics.standby_closed(number)
        self._reassign = True

    # --- the loop ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Tail the standbys' changelogs until cancelled."""
        try:
            while True:
                try:
                    await self.turn()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # a fetch failed: every standby's turn did
                    self._failed(list(self.standbys.values()), exc)
                    self._reassign = True
                    self.report()
                    await asyncio.sleep(RETRY_SECONDS)
        finally:
            with contextlib.suppress(Exception):
                self.consumer.assign([])

    async def turn(self) -> None:
        """One fetch for every standby, applied."""
        if self._reassign:
            await self._assign_consumer()
        if not self.standbys:
            await asyncio.sleep(IDLE_SECONDS)
            return
        fetching = dict(self.standbys)
        tps = [TopicPartition(self.topic, n) for n in sorted(fetching)]
        try:
            fetched = await self.consumer.getmany(
                *tps, timeout_ms=FETCH_TIMEOUT_MS, max_records=FOLLOW_CHUNK
            )
        except OffsetOutOfRangeError as exc:
            self._out_of_range(exc, fetching)
            return
        # What the fetch whose records these are said of the end, read before anything
        # awaits (a newer fetch answered meanwhile would make a caught-up standby look
        # behind): a partition with records left in the buffer is not fetched again.
        seen = {
            tp: (self.consumer.last_stable_offset(tp), self.consumer.last_poll_timestamp(tp))
            for tp in tps
        }
        async with self._lock:
            for tp in tps:
                if self._reassign:  # assigned anew meanwhile: the rest is read again
                    break
                standby = fetching[tp.partition]
                if self.standbys.get(tp.partition) is not standby:
                    continue  # closed, or replaced (a policy reload) meanwhile
                try:
                    await self._apply(tp, standby, fetched.get(tp, ()), *seen[tp])
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # read again from its position next turn
                    self._failed([standby], exc)
                    self._reassign = True
                else:
                    standby.failures = 0
        self._restart_stale()
        self.report()
        await asyncio.sleep(0)  # the main loop steps meanwhile

    async def _apply(
        self,
        tp: TopicPartition,
        standby: Standby,
        records: Iterable[Any],
        end: int | None,
        polled: int | None,
    ) -> None:
        """Apply one fetch's records to `standby` (under the lock), then note where it
        stands against the changelog's end (`end`, as the fetch at `polled` reported it)."""
        for count, record in enumerate(records, 1):
            standby.partition.follow(record.key or b"", record.value)
            if count % APPLY_CHUNK == 0:
                await asyncio.sleep(0)  # the main loop steps meanwhile
                if self.standbys.get(tp.partition) is not standby:
                    return  # closed or replaced meanwhile: garbage now
        standby.position = await self.consumer.position(tp)
        standby.partition.changelog_end = standby.position
        if end is not None and end >= 0 and polled is not None:
            standby.end, standby.end_ms = end, polled
            if standby.position >= end:  # every record after it is newer than that fetch
                standby.caught_up_ms = max(standby.caught_up_ms, polled)

    def _out_of_range(self, exc: OffsetOutOfRangeError, fetching: dict[int, Standby]) -> None:
        """The changelog no longer holds a standby's position (compact,delete retention,
        DeleteRecords, the topic recreated): what it has not read is gone."""
        offsets = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
        numbers = [tp.partition for tp in offsets] or list(fetching)
        for number in numbers:
            standby = fetching.get(number)
            if standby is not None and self.standbys.get(number) is standby:
                self._restart(
                    number,
                    f"is at changelog offset {standby.position}, which the changelog no "
                    "longer holds (compacted, deleted or recreated)",
                )

    def _restart_stale(self) -> None:
        """Standbys that last caught up longer ago than the changelog keeps tombstones."""
        if self.tombstone_retention_ms <= 0:  # not known: none is promoted anyway
            return
        now = wall_ms()
        for number, standby in list(self.standbys.items()):
            if standby.stale(now, self.tombstone_retention_ms):
                self._restart(
                    number,
                    f"last caught up with the changelog "
                    f"{(now - standby.caught_up_ms) / 3_600_000:.1f} h ago, not within its "
                    f"delete.retention.ms ({self.tombstone_retention_ms / 3_600_000:.1f} h): "
                    "it may miss a deletion compaction has removed since",
                )

    def _failed(self, standbys: list[Standby], exc: Exception) -> None:
        """A turn failed for these standbys: counted and logged (a broker's error as a
        retry, anything else as the bug it is, with its traceback); a standby failing
        `FAILURE_LIMIT` times in a row is dropped until the next rebalance."""
        self.metrics.standby_failed()
        numbers = sorted(s.number for s in standbys)
        if isinstance(exc, KafkaError):
            broker_log.warning(
                "standbys %s: could not read the changelog (%s: %s); retrying",
                numbers,
                type(exc).__name__,
                exc,
            )
        else:
            log.error("standbys %s: could not follow the changelog", numbers, exc_info=exc)
        for standby in standbys:
            standby.failures += 1
            if standby.failures >= FAILURE_LIMIT and self.standbys.get(standby.number) is standby:
                log.error(
                    "partition %d: dropping its standby after %d failures in a row; until "
                    "the next rebalance this worker keeps it no more (a takeover of it "
                    "restores it from the changelog)",
                    standby.number,
                    standby.failures,
                )
                self._close(standby.number)

    async def _assign_consumer(self) -> None:
        self._reassign = False
        tps = {TopicPartition(self.topic, n): s for n, s in sorted(self.standbys.items())}
        self.consumer.assign(list(tps))
        for tp, standby in tps.items():
            if standby.position > 0:
                self.consumer.seek(tp, standby.position)
            else:
                await self.consumer.seek_to_beginning(tp)
