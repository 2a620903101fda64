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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from aiokafka.structs import TopicPartition

from worker.kafka.clients import ChangelogConsumer
from worker.logs import BROKER_LOGGER
from worker.metrics import Metrics
from worker.tasks.partition import Partition

log = logging.getLogger("sla_worker")
broker_log = logging.getLogger(BROKER_LOGGER)

FOLLOW_CHUNK = 2000
"""Most changelog records applied between two yields to the main loop."""
IDLE_SECONDS = 0.2
"""How long the standby loop sleeps when it keeps no standby."""
RETRY_SECONDS = 2.0
"""How long the standby loop waits after a failed fetch."""


@dataclass
class Standby:
    """One partition's state, kept warm."""

    number: int
    partition: Partition
    position: int = 0
    """The next changelog offset to read: the state reflects everything before it."""
    end: int | None = None
    """The changelog's last stable offset as last seen (None: not seen yet)."""

    @property
    def lag(self) -> int | None:
        """Committed changelog records not applied yet (None: not known yet)."""
        return None if self.end is None else max(self.end - self.position, 0)


class Standbys:
    """The standbys of this worker, and the loop that keeps them warm."""

    def __init__(
        self,
        consumer: ChangelogConsumer,
        topic: str,
        new_partition: Callable[[int], Partition],
        metrics: Metrics,
    ) -> None:
        self.consumer = consumer
        self.topic = topic
        self.new_partition = new_partition
        self.metrics = metrics
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
        when the worker joins; one not known yet is not caught up)."""
        return {n: s.lag for n, s in sorted(self.standbys.items()) if s.lag is not None}

    def diagnostics(self) -> list[dict[str, int | None]]:
        return [
            {"partition": n, "position": s.position, "end": s.end, "lag": s.lag}
            for n, s in sorted(self.standbys.items())
        ]

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
        this worker held as active, whose `changelog_end` it reflects) or from the
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

    # --- the loop ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Tail the standbys' changelogs until cancelled."""
        try:
            while True:
                try:
                    await self.turn()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # a broker away: the next fetch retries
                    broker_log.warning(
                        "standbys: could not read the changelogs (%s: %s); retrying in %.0f s",
                        type(exc).__name__,
                        exc,
                        RETRY_SECONDS,
                    )
                    self._reassign = True
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
        fetched = await self.consumer.getmany(*tps, timeout_ms=200, max_records=FOLLOW_CHUNK)
        async with self._lock:
            for tp in tps:
                if self._reassign:  # assigned anew meanwhile: the rest is read again
                    return
                standby = fetching[tp.partition]
                if self.standbys.get(tp.partition) is not standby:
                    continue  # closed, or replaced (a policy reload) meanwhile
                for record in fetched.get(tp, ()):
                    standby.partition.follow(record.key or b"", record.value)
                standby.position = await self.consumer.position(tp)
                standby.partition.changelog_end = standby.position
                end = self.consumer.last_stable_offset(tp)
                if end is not None and end >= 0:
                    standby.end = end
                if standby.lag is not None:
                    self.metrics.standby_lag_of(standby.number, standby.lag)
        await asyncio.sleep(0)  # the main loop steps meanwhile

    async def _assign_consumer(self) -> None:
        self._reassign = False
        tps = {TopicPartition(self.topic, n): s for n, s in sorted(self.standbys.items())}
        self.consumer.assign(list(tps))
        for tp, standby in tps.items():
            if standby.position > 0:
                self.consumer.seek(tp, standby.position)
            else:
                await self.consumer.seek_to_beginning(tp)
