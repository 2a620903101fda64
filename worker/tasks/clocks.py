"""When may a partition's timers fire? Per-partition due-indexes and event-time clocks.

The worker must not fire a timer before the events that precede its due time in the same
partition have been applied, or a backlog (after downtime, or a new consumer group) would
publish breaches that the backlog itself prevents. The rule, per partition:

    a timer due at d fires once the partition's event time has passed d, or once the
    worker has read everything the partition held at an instant past d + allowed
    lateness (on the wall clock).

"Everything the partition held at instant T" is what the service knows from its fetch
responses: the consumer's position has reached the last stable offset of the latest
one, and T is a time no later than the broker's snapshot in it (worker/kafka/inputs.py,
`InputWatch.caught_up`). So the wall clock alone never fires a timer: a fetch after the
deadline must have come back and shown nothing more to read. After a broker outage or a
paused input, the last response is old, and timers wait for a fresh one, or an event
produced just before its deadline, while the worker could not fetch, would be missed.

For an event log in time order this makes the worker publish exactly what replay emits
for the same log, whatever the lag. The wall clock is passed in by the caller; nothing
here reads it. Nor does it ever fire ahead of the wall clock.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from worker.core.due_index import DueIndex

_TICK = timedelta(microseconds=1)


class TimerIndex(Protocol):
    """What a partition asks of a timer index: `DueIndex` in RAM, or, with a local
    store, `worker.kafka.stored_index.StoredDueIndex`."""

    def __len__(self) -> int: ...
    def schedule(self, ticket_id: str, due: datetime | None) -> None: ...
    def get(self, ticket_id: str) -> datetime | None: ...
    def peek(self) -> datetime | None: ...
    def pop_due(
        self, now: datetime, *, inclusive: bool = True
    ) -> Iterator[tuple[str, datetime]]: ...
    def until(self, horizon: datetime) -> Iterator[tuple[str, datetime]]: ...


@dataclass
class PartitionClock:
    due: TimerIndex = field(default_factory=DueIndex)
    holds: TimerIndex = field(default_factory=DueIndex)  # wall-clock expiry of held events
    event_time: datetime | None = None  # latest occurred_at applied in this partition
    read_through: datetime | None = None  # input read completely as of (None: behind)

    @property
    def caught_up(self) -> bool:
        return self.read_through is not None

    def observe(self, occurred_at: datetime) -> None:
        if self.event_time is None or occurred_at > self.event_time:
            self.event_time = occurred_at

    def horizon(self, now: datetime, lateness: timedelta) -> datetime | None:
        """Everything due at or before this instant may fire now (None: nothing may)."""
        by_events = None if self.event_time is None else self.event_time - _TICK
        by_wall = None if self.read_through is None else min(now, self.read_through) - lateness
        if by_events is None or (by_wall is not None and by_wall > by_events):
            return by_wall
        # Never ahead of the wall clock, whatever the event time says: an event dated in
        # the future (a producer's fast clock) must not fire timers that a reply could
        # still meet.
        return min(by_events, now)

    def overdue(self, now: datetime) -> list[tuple[str, datetime, str]]:
        """Take every ticket due strictly before the event time (never past the wall
        clock), to advance to just before it.

        Asked after each applied event, as replay fires before the next one: a timer
        that an event puts behind the partition's event time (a late event of one ticket
        after a later one of another) fires then, whether or not the same step still
        holds its ticket's next event, so the output never depends on how messages were
        batched into steps."""
        if self.event_time is None:
            return []
        first = self.due.peek()
        if first is None or first >= self.event_time:
            return []
        until = min(self.event_time - _TICK, now)
        return [(ticket_id, until, "advance") for ticket_id, _ in self.due.pop_due(until)]

    def ready(self, now: datetime, lateness: timedelta) -> list[tuple[str, datetime, str]]:
        """Take every (ticket, instant, kind) to act on now.

        Kind `advance`: the ticket may fire what is due up to the instant (the horizon).
        Kind `expire`: events held for a ticket not yet created have waited their time
        (wall clock). Taken entries leave the index; acting on them reschedules.
        """
        fired = []
        horizon = self.horizon(now, lateness)
        if horizon is not None:
            for ticket_id, _ in self.due.pop_due(horizon):
                fired.append((ticket_id, horizon, "advance"))
        for ticket_id, _ in self.holds.pop_due(now):
            fired.append((ticket_id, now, "expire"))
        return fired
