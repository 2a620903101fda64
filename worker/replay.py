"""Replay: run the engine over a recorded stream with an event-time clock.

This is the audit path and the embedded default of the main job, and the reference the
Kafka worker is tested against. The clock is the stream itself:

1. before an event at time t is applied, everything due strictly before t fires,
   across all tickets, earliest first (a rejected or duplicate event moves no time);
2. the event is applied (which may fire points it put in the past, at once);
3. after the last event the clock advances to `until`, and everything due at or before
   it fires.

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
    InvalidEvent,
    SlaBreach,
    SlaEvent,
    SlaTimerFinished,
    SlaWarning,
    parse_event,
)
from worker.core.limits import InputLimits
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


class Replay:
    """Feed lines with `feed`, then call `finish`. Emitted events go to `on_event`, and
    the `sla-timer-finished` records of finished timers to `on_finished` (if given)."""

    def __init__(
        self,
        engine: Engine,
        on_event: Callable[[SlaEvent], None],
        on_reject: Callable[[Rejection], None],
        now: datetime | None = None,
        limits: InputLimits | None = None,
        on_finished: Callable[[SlaTimerFinished], None] | None = None,
    ) -> None:
        """`now`: the clock future timestamps are judged against (None: no such check);
        `limits`: size and clock-skew bounds on each line (defaults: 1,000,000 bytes, 5 min);
        `on_finished`: where finished-timer records go (None: counted only, never built)."""
        if on_finished is not None and not engine.measure:
            raise ValueError("finished-timer records need an engine with measure=True")
        self.engine = engine
        self.now = now
        self.limits = limits or InputLimits()
        self.tickets: dict[str, Ticket] = {}
        self.summary = Summary()
        self._on_event = on_event
        self._on_reject = on_reject
        self._on_finished = on_finished
        self._due = DueIndex()
        self._expiry = DueIndex()  # finished tickets, at their last event plus retention
        self._clock: datetime | None = None

    def feed(self, lines: Iterable[bytes | str]) -> None:
        for number, raw in enumerate(lines, start=1):
            # Blank lines are skipped (without `strip()`, which copies every line).
            if raw and not raw.isspace():
                self.feed_line(number, raw)

    def feed_line(self, number: int, raw: bytes | str) -> None:
        summary = self.summary
        summary.read += 1
        try:
            self.limits.check_size(len(raw))
            event = parse_event(raw)
        except (InvalidEvent, Rejected) as exc:
            self._reject(Rejection(number, exc.reason, str(exc)))
            return
        at = event.occurred_at
        if self.now is not None:
            try:
                self.limits.check_time(at, self.now)
            except Rejected as exc:
                self._reject(
                    Rejection(number, exc.reason, str(exc), event.event_id, event.ticket_id)
                )
                return
        ticket_id = event.ticket_id
        known = self.tickets.get(ticket_id)
        # Only an event that applies moves the clock: a rejected or duplicate one (say,
        # dated 2099) must not fire anyone's timers.
        try:
            duplicate = self.engine.check(known, event, self._clock)
        except Rejected as exc:
            self._reject(Rejection(number, exc.reason, str(exc), event.event_id, ticket_id))
            return
        if duplicate:
            summary.duplicates += 1
            return
        first_due = self._due.peek()
        if first_due is not None and first_due < at:
            self._fire_due(at, inclusive=False)
        first_expiry = self._expiry.peek()
        if first_expiry is not None and first_expiry < at:
            self._remove_expired(at)
            known = self.tickets.get(ticket_id)
        if self._clock is None or at > self._clock:
            self._clock = at
        result = self.engine.apply_checked(known, event)  # checked above: not a duplicate
        summary.applied += 1
        ticket = result.ticket
        if ticket is not known:  # a new ticket (the engine updates known ones in place)
            self.tickets[ticket_id] = ticket
        if result.emissions:
            self._publish(result.emissions)
        self._due.schedule(ticket_id, ticket.due)  # `Engine.next_due`, without the call
        retention = self.engine.retention
        if ticket.finished and retention is not None:
            self._expiry.schedule(ticket_id, ticket.last_event_at + retention)

    def finish(self, until: datetime | None = None) -> Summary:
        """Advance the clock to `until` (default: the last event's time) and fire."""
        if until is not None and self._clock is not None and until < self._clock:
            raise UntilBeforeLastEvent(
                f"--until {until.isoformat()} is before the last event ({self._clock.isoformat()})"
            )
        end = until or self._clock
        if end is not None:
            self._fire_due(end, inclusive=True)
            self._remove_expired(end)
        self.summary.running_timers = (
            sum(len(self.engine.timers(ticket, end)) for ticket in self.tickets.values())
            if end is not None
            else 0
        )
        return self.summary

    def _fire_due(self, now: datetime, *, inclusive: bool) -> None:
        for ticket_id, due in self._due.pop_due(now, inclusive=inclusive):
            ticket = self.tickets[ticket_id]
            self._publish(self.engine.advance(ticket, due))
            self._due.schedule(ticket_id, self.engine.next_due(ticket))

    def _remove_expired(self, now: datetime) -> None:
        """Forget finished tickets whose retention ended strictly before `now`."""
        for ticket_id, _ in self._expiry.pop_due(now, inclusive=False):
            ticket = self.tickets[ticket_id]
            if self.engine.expired(ticket, now):
                del self.tickets[ticket_id]
                self._due.schedule(ticket_id, None)
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
