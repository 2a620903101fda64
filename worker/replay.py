"""Replay: run the engine over a recorded stream with an event-time clock.

This is the audit path and the embedded default of the main job, and the reference the
Kafka worker is tested against. The clock is the stream itself, one per lane (a lane is
an input partition: a file is one, the audit keeps one per partition, as the worker does):

1. before an event at time t is applied, everything in its lane due strictly before t
   fires, across the lane's tickets, earliest first (a rejected or duplicate event moves
   no time);
2. the event is applied (which may fire points it put in the past, at once); an event
   older than its lane's clock (another ticket's later event came first) leaves nothing
   of its ticket due before that clock: it fires at once;
3. after the last event every lane's clock advances to `until`, and everything due at or
   before it fires.

A line that cannot be applied is reported through `on_reject` with its line number and
reason, and the run goes on.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime

from worker.core.due_index import DueIndex
from worker.core.engine import (
    Emission,
    Engine,
    Rejected,
    Ticket,
    TimerFinished,
    finished_record,
)
from worker.core.errors import SlaWorkerError
from worker.core.events import (
    InboundEvent,
    InvalidEvent,
    SlaBreach,
    SlaEvent,
    SlaTimerFinished,
    SlaWarning,
    parse_event,
)
from worker.core.limits import InputLimits, check_key
from worker.core.reasons import Reason


@dataclass(frozen=True, slots=True)
class Rejection:
    line: int
    reason: Reason
    detail: str
    event_id: str | None = None
    ticket_id: str | None = None


@dataclass(slots=True)
class Summary:
    read: int = 0
    applied: int = 0
    rejected: int = 0
    duplicates: int = 0
    warnings: int = 0
    breaches: int = 0
    met: int = 0
    running_timers: int = 0
    removed: int = 0  # finished tickets forgotten after the retention
    rejected_by_reason: dict[str, int] = field(default_factory=dict)

    def __str__(self) -> str:
        text = (
            f"events read: {self.read}, applied: {self.applied}, rejected: {self.rejected}, "
            f"duplicates: {self.duplicates}; warnings: {self.warnings}, "
            f"breaches: {self.breaches}, timers met: {self.met}; "
            f"timers still running: {self.running_timers}"
        )
        if self.removed:
            text += f"; finished tickets removed after the retention: {self.removed}"
        if self.rejected_by_reason:
            reasons = ", ".join(f"{k}: {v}" for k, v in sorted(self.rejected_by_reason.items()))
            text += f"\nrejected by reason: {reasons}"
        return text


class UntilBeforeLastEvent(SlaWorkerError, ValueError):
    """`finish(until)` with `until` before the last event: the clock never goes back."""


@contextmanager
def relaxed_garbage_collection() -> Iterator[None]:
    """Tune CPython's cycle collector for a replay run; restored on exit.

    A replay holds one long-lived, cycle-free state per ticket, and each line makes a few
    short-lived objects that reference counting frees. With the default thresholds the
    collector still runs about 500 times per 1,000,000 lines, full passes over every
    ticket among them: 7 % of the run, for no garbage found. Freezing what exists at the
    start (modules, policy, calendars) and collecting the young generation every 10,000
    instead of 700 allocations cuts that to about 2 %. Cycles (a rejected line's
    exception and traceback) are still collected.
    """
    thresholds = gc.get_threshold()
    # Unfreeze on exit only what this froze: a caller's own freeze (or an enclosing
    # use of this) stays, since the collector cannot unfreeze part of its set.
    frozen_by_caller = gc.get_freeze_count() > 0
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        if not frozen_by_caller:
            gc.unfreeze()


class Lane:
    """One partition's tickets and clock: the unit of event time, as in the live worker.

    The worker keeps an event-time clock per input partition (`worker.tasks.partition`),
    and the rules that read a clock (what is due before an event; `too-old`; when a
    finished ticket leaves state) read that partition's. A replay of a file is one lane;
    the audit, and `sla-worker replay --partitions N`, keep one per partition, so that they
    judge every ticket exactly as the worker that owned its partition did, however the
    tickets are spread over partitions.
    """

    __slots__ = ("clock", "due", "expiry", "tickets")

    def __init__(self) -> None:
        self.tickets: dict[str, Ticket] = {}
        self.due = DueIndex()
        self.expiry = DueIndex()  # finished tickets, at their last event plus retention
        self.clock: datetime | None = None  # the latest applied event's occurred_at


class Replay:
    """Feed lines with `feed` (or Kafka records with `feed_record`), then call `finish`.
    Emitted events go to `on_event`, and the `sla-timer-finished` records of finished
    timers to `on_finished` (if given)."""

    def __init__(
        self,
        engine: Engine,
        on_event: Callable[[SlaEvent], None],
        on_reject: Callable[[Rejection], None],
        now: datetime | None = None,
        limits: InputLimits | None = None,
        on_finished: Callable[[SlaTimerFinished], None] | None = None,
        partition_of: Callable[[str], int] | None = None,
        on_created: Callable[[str], None] | None = None,
    ) -> None:
        """`now`: the clock future timestamps are judged against (None: no such check);
        `limits`: size and clock-skew bounds on each line (defaults: 1,000,000 bytes, 5 min);
        `on_finished`: where finished-timer records go (None: counted only, never built);
        `partition_of`: the partition of a ticket id, whose lane the lines of
        `feed`/`feed_line` go to (None: one lane, the whole stream);
        `on_created`: told the id of every ticket a `ticket-created` starts."""
        if on_finished is not None and not engine.measure:
            raise ValueError("finished-timer records need an engine with measure=True")
        self.engine = engine
        self.now = now
        self.limits = limits or InputLimits()
        self._partition_of = partition_of
        self.summary = Summary()
        self._on_event = on_event
        self._on_reject = on_reject
        self._on_finished = on_finished
        self._on_created = on_created
        self._lanes: dict[int, Lane] = {0: Lane()}
        self._main = self._lanes[0]

    @property
    def tickets(self) -> dict[str, Ticket]:
        """Every ticket in state (one lane: its own dict; several: a merged copy)."""
        if len(self._lanes) == 1:
            return self._main.tickets
        return {k: t for lane in self._lanes.values() for k, t in lane.tickets.items()}

    @property
    def clock(self) -> datetime | None:
        """The latest applied event's time, over all lanes."""
        return max((lane.clock for lane in self._lanes.values() if lane.clock), default=None)

    def restore(self, ticket: Ticket, partition: int = 0) -> None:
        """Put a ticket restored from stored state into a lane (as the worker restores a
        partition from its changelog)."""
        lane = self._lane(partition)
        lane.tickets[ticket.ticket_id] = ticket
        lane.due.schedule(ticket.ticket_id, ticket.due)

    def feed(self, lines: Iterable[bytes | str]) -> None:
        for number, raw in enumerate(lines, start=1):
            # Blank lines are skipped (without `strip()`, which copies every line).
            if raw and not raw.isspace():
                self.feed_line(number, raw)

    def feed_line(self, number: int, raw: bytes | str) -> None:
        """One line of a file: its lane is the stream's (or, with `partition_of`, its
        ticket's partition's)."""
        event = self._parse(number, raw)
        if event is None:
            return
        partition_of = self._partition_of
        if partition_of is None:
            self._apply(number, event, self._main)
        else:
            self._apply(number, event, self._lane(partition_of(event.ticket_id)))

    def feed_record(self, number: int, value: bytes, partition: int, key: bytes | None) -> None:
        """One Kafka record, in its partition's lane, judged as the worker judges it: a
        record without a key, or keyed by another id than its ticket's, is rejected
        (`missing-key`, `key-mismatch`), since the worker could store it nowhere."""
        event = self._parse(number, value)
        if event is None:
            return
        try:
            check_key(key, event.ticket_id)
        except Rejected as exc:
            self._reject(Rejection(number, exc.reason, str(exc), event.event_id, event.ticket_id))
            return
        self._apply(number, event, self._lane(partition))

    def _lane(self, partition: int) -> Lane:
        lane = self._lanes.get(partition)
        if lane is None:
            lane = self._lanes[partition] = Lane()
        return lane

    def _parse(self, number: int, raw: bytes | str) -> InboundEvent | None:
        """The line's event, or None once it is rejected (size, syntax, future time)."""
        self.summary.read += 1
        try:
            self.limits.check_size(len(raw))
            event = parse_event(raw)
        except (InvalidEvent, Rejected) as exc:
            self._reject(Rejection(number, exc.reason, str(exc)))
            return None
        if self.now is not None:
            try:
                self.limits.check_time(event.occurred_at, self.now)
            except Rejected as exc:
                self._reject(
                    Rejection(number, exc.reason, str(exc), event.event_id, event.ticket_id)
                )
                return None
        return event

    def _apply(self, number: int, event: InboundEvent, lane: Lane) -> None:
        summary = self.summary
        at = event.occurred_at
        ticket_id = event.ticket_id
        tickets = lane.tickets
        known = tickets.get(ticket_id)
        clock = lane.clock
        # Only an event that applies moves the clock: a rejected or duplicate one (say,
        # dated 2099) must not fire anyone's timers.
        try:
            duplicate = self.engine.check(known, event, clock)
        except Rejected as exc:
            self._reject(Rejection(number, exc.reason, str(exc), event.event_id, ticket_id))
            return
        if duplicate:
            summary.duplicates += 1
            return
        due = lane.due
        first_due = due.peek()
        if first_due is not None and first_due < at:
            self._fire_due(lane, at, inclusive=False)
        first_expiry = lane.expiry.peek()
        if first_expiry is not None and first_expiry < at:
            self._remove_expired(lane, at)
            known = tickets.get(ticket_id)
        late = clock is not None and at < clock
        if not late:
            lane.clock = at
        result = self.engine.apply_checked(known, event)  # checked above: not a duplicate
        summary.applied += 1
        ticket = result.ticket
        if ticket is not known:  # a new ticket (the engine updates known ones in place)
            tickets[ticket_id] = ticket
            if self._on_created is not None and known is None:
                self._on_created(ticket_id)
        if result.emissions:
            self._publish(result.emissions)
        due.schedule(ticket_id, ticket.due)  # `Engine.next_due`, without the call
        retention = self.engine.retention
        if ticket.finished and retention is not None:
            lane.expiry.schedule(ticket_id, ticket.last_event_at + retention)
        if late and clock is not None and ticket.due is not None and ticket.due < clock:
            # An event older than the lane's clock (another ticket's event came first)
            # may leave its own ticket due before the clock: event time is past that
            # already, so it fires now, as the worker fires it after this event, whether
            # or not the same step still holds that ticket's next event.
            self._fire_due(lane, clock, inclusive=False)

    def finish(self, until: datetime | None = None) -> Summary:
        """Advance every lane's clock to `until` (default: the last applied event's
        time, over all lanes) and fire, earliest first across lanes."""
        last = self.clock
        if until is not None and last is not None and until < last:
            raise UntilBeforeLastEvent(
                f"--until {until.isoformat()} is before the last event ({last.isoformat()})"
            )
        end = until or last
        if end is not None:
            self._fire_all(end)
            for lane in self._lanes.values():
                self._remove_expired(lane, end)
        self.summary.running_timers = (
            sum(
                len(self.engine.timers(ticket, end))
                for lane in self._lanes.values()
                for ticket in lane.tickets.values()
            )
            if end is not None
            else 0
        )
        return self.summary

    def _fire_all(self, end: datetime) -> None:
        """Fire what every lane has due at or before `end`, earliest first overall (one
        lane: its own order)."""
        lanes = list(self._lanes.values())
        if len(lanes) == 1:
            self._fire_due(lanes[0], end, inclusive=True)
            return
        while True:
            first: Lane | None = None
            first_due: datetime | None = None
            for lane in lanes:
                due = lane.due.peek()
                if due is not None and due <= end and (first_due is None or due < first_due):
                    first, first_due = lane, due
            if first is None or first_due is None:
                return
            self._fire_due(first, first_due, inclusive=True)

    def _fire_due(self, lane: Lane, now: datetime, *, inclusive: bool) -> None:
        due = lane.due
        tickets = lane.tickets
        for ticket_id, at in due.pop_due(now, inclusive=inclusive):
            ticket = tickets[ticket_id]
            self._publish(self.engine.advance(ticket, at))
            due.schedule(ticket_id, self.engine.next_due(ticket))

    def _remove_expired(self, lane: Lane, now: datetime) -> None:
        """Forget finished tickets whose retention ended strictly before `now`."""
        for ticket_id, _ in lane.expiry.pop_due(now, inclusive=False):
            ticket = lane.tickets[ticket_id]
            if self.engine.expired(ticket, now):
                del lane.tickets[ticket_id]
                lane.due.schedule(ticket_id, None)
                self.summary.removed += 1

    def _publish(self, emissions: list[Emission]) -> None:
        for emission in emissions:
            if isinstance(emission, TimerFinished):
                if emission.met:
                    self.summary.met += 1
                if self._on_finished is not None:
                    self._on_finished(finished_record(emission))
                continue
            if type(emission) is SlaBreach:
                self.summary.breaches += 1
            elif type(emission) is SlaWarning:
                self.summary.warnings += 1
            self._on_event(emission)

    def _reject(self, rejection: Rejection) -> None:
        self.summary.rejected += 1
        counts = self.summary.rejected_by_reason
        counts[rejection.reason] = counts.get(rejection.reason, 0) + 1
        self._on_reject(rejection)
