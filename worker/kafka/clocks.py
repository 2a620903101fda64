"""When may a partition's timers fire? Per-partition due-indexes and event-time clocks.

The worker must not fire a timer before the events that precede its due time in the same
partition have been applied, or a backlog (after downtime, or a new consumer group) would
publish breaches that the backlog itself prevents. The rule, per partition:

    a timer due at d fires once the partition's event time has passed d, or once the
    worker has caught up with the partition's end and the wall clock has passed
    d + allowed lateness.

For an event log in time order this makes the worker publish exactly what replay emits
for the same log, whatever the lag. The wall clock is passed in by the caller; nothing
here reads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from worker.core.due_index import DueIndex

_TICK = timedelta(microseconds=1)


@dataclass
class PartitionClock:
    due: DueIndex = field(default_factory=DueIndex)
    holds: DueIndex = field(default_factory=DueIndex)  # wall-clock expiry of held events
    event_time: datetime | None = None  # latest occurred_at applied in this partition
    caught_up: bool = False

    def observe(self, occurred_at: datetime) -> None:
        if self.event_time is None or occurred_at > self.event_time:
            self.event_time = occurred_at

    def horizon(self, now: datetime, lateness: timedelta) -> datetime | None:
        """Everything due at or before this instant may fire now (None: nothing may)."""
        by_events = None if self.event_time is None else self.event_time - _TICK
        by_wall = now - lateness if self.caught_up else None
        if by_events is None or (by_wall is not None and by_wall > by_events):
            return by_wall
        return by_events


class TimerClocks:
    """The clocks of the partitions this worker owns, rebuilt on assignment."""

    def __init__(self, lateness: timedelta = timedelta(0)) -> None:
        self.lateness = lateness
        self._partitions: dict[int, PartitionClock] = {}

    def __contains__(self, partition: int) -> bool:
        return partition in self._partitions

    def partitions(self) -> list[int]:
        return sorted(self._partitions)

    def assign(self, partition: int) -> PartitionClock:
        return self._partitions.setdefault(partition, PartitionClock())

    def revoke(self, partition: int) -> None:
        self._partitions.pop(partition, None)

    def clear(self) -> None:
        self._partitions.clear()

    def clock(self, partition: int) -> PartitionClock | None:
        return self._partitions.get(partition)

    def schedule(self, partition: int, ticket_id: str, due: datetime | None) -> None:
        clock = self._partitions.get(partition)
        if clock is not None:
            clock.due.schedule(ticket_id, due)

    def hold(self, partition: int, ticket_id: str, until: datetime | None) -> None:
        clock = self._partitions.get(partition)
        if clock is not None:
            clock.holds.schedule(ticket_id, until)

    def running(self) -> int:
        """Tickets with something still due, over all owned partitions."""
        return sum(len(clock.due) for clock in self._partitions.values())

    def ready(self, now: datetime) -> list[tuple[int, str, datetime, str]]:
        """Take every (partition, ticket, instant, kind) to act on now.

        Kind `advance`: the ticket may fire what is due up to the instant (the partition's
        horizon). Kind `expire`: events held for a ticket not yet created have waited
        their time (wall clock). Taken entries leave the index: the command that acts on
        them reschedules the ticket; should it be lost (a crash), recovery rebuilds it.
        """
        fired = []
        for partition, clock in self._partitions.items():
            horizon = clock.horizon(now, self.lateness)
            if horizon is not None:
                for ticket_id, _ in clock.due.pop_due(horizon):
                    fired.append((partition, ticket_id, horizon, "advance"))
            for ticket_id, _ in clock.holds.pop_due(now):
                fired.append((partition, ticket_id, now, "expire"))
        return fired
