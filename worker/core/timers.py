"""The timers of a goal policy: business time banked per running stretch, per calendar.

A plan x priority policy's clocks (`ticket.Clock`) are measured again from their start,
on the calendar of the current target, whenever asked. A goal policy's timers instead
keep *segments*: stretches during which the timer ran, each on the calendar in force
then. A stretch ends when the timer pauses, stops, or its calendar changes (the ticket
moved to a group in another time zone, or to a goal with another calendar); business
time already run is banked and kept, and the rest of the target runs on the new calendar
from that instant (follow the sun). A stretch during which no target applied to the
metric has no calendar ("") and counts nothing while that lasts; when a target applies
again, those stretches are measured on its calendar (`measure_on`), as the plan path
measures a timer whose priority regains a target from its original start.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from worker.core.calendar import Calendar

_ZERO = timedelta(0)


@dataclass(init=False, slots=True)
class Segment:
    """A stretch during which a timer ran on `calendar`; `end` is None while it runs."""

    start: datetime
    end: datetime | None
    calendar: str

    def __init__(self, start: datetime, end: datetime | None, calendar: str) -> None:
        self.start = start
        self.end = end
        self.calendar = calendar


@dataclass(init=False, slots=True)
class Timer:
    """One cycle of one metric of a goal policy's ticket."""

    metric: str
    cycle: int
    started_at: datetime
    warned: list[float]
    breached: bool
    segments: list[Segment]
    banked: timedelta  # business time of the closed segments
    # When its next point not yet emitted may come due, None if none is due while
    # nothing changes: the exact instant, or a lower bound of it while the timer runs
    # (`due_bound`; the exact instant is computed when the bound comes due). A cache the
    # engine refreshes whenever it changes the timer or its target (not stored;
    # recomputed on restore).
    due: datetime | None

    def __init__(
        self,
        metric: str,
        cycle: int,
        started_at: datetime,
        warned: list[float] | None = None,
        breached: bool = False,
        segments: list[Segment] | None = None,
        banked: timedelta = _ZERO,
    ) -> None:
        self.metric = metric
        self.cycle = cycle
        self.started_at = started_at
        self.warned = [] if warned is None else warned
        self.breached = breached
        self.segments = [] if segments is None else segments
        self.banked = banked
        self.due = None

    @property
    def running(self) -> bool:
        """Not paused: its last segment is open."""
        segments = self.segments
        return bool(segments) and segments[-1].end is None

    def run(self, at: datetime, calendar: str) -> None:
        """Start a stretch at `at` (the timer was paused or just started)."""
        self.segments.append(Segment(at, None, calendar))

    def halt(self, at: datetime, calendars: dict[str, Calendar]) -> None:
        """End the running stretch at `at`, banking its business time."""
        last = self.segments[-1]
        last.end = at
        found = calendars.get(last.calendar)
        if found is not None:
            self.banked += found.elapsed(last.start, at)

    def measure_on(self, calendar: str, calendars: dict[str, Calendar]) -> None:
        """Give the stretches run without a target `calendar`, and bank them on it."""
        unmeasured = False
        for segment in self.segments:
            if segment.calendar == "":
                segment.calendar = calendar
                unmeasured = True
        if unmeasured:
            banked = _ZERO
            for segment in self.segments:
                found = calendars.get(segment.calendar)
                if segment.end is not None and found is not None:
                    banked += found.elapsed(segment.start, segment.end)
            self.banked = banked

    def elapsed(self, now: datetime, calendars: dict[str, Calendar]) -> timedelta:
        """Business time run up to `now` (at or after the last segment's start)."""
        total = self.banked
        if self.running:
            last = self.segments[-1]
            found = calendars.get(last.calendar)
            if found is not None and now > last.start:
                total += found.elapsed(last.start, now)
        return total

    def due_bound(self, amount: timedelta, calendars: dict[str, Calendar]) -> datetime | None:
        """A lower bound of `instant_at(amount)` that needs no calendar arithmetic while
        the timer runs: business time elapses no faster than wall time, so what remains
        of `amount` takes at least as long on the wall clock. Exact (the same as
        `instant_at`) when `amount` was reached in a closed stretch or the timer is
        paused (None: nothing is due while it stays paused).

        The engine schedules a running timer at this bound and computes the exact
        instant only when the bound comes due (`goal_deadlines.fire`), then fires or waits
        for the exact instant: most timers stop long before their deadline, so most
        never need the calendar arithmetic of a due instant at all."""
        if amount <= self.banked or not self.running:
            return self.instant_at(amount, calendars)
        last = self.segments[-1]
        if last.calendar not in calendars:
            return None  # not measured while no target applies (as `instant_at`)
        return last.start + (amount - self.banked)

    def instant_at(self, amount: timedelta, calendars: dict[str, Calendar]) -> datetime | None:
        """When `amount` of business time had run (or will, if it keeps running on its
        current calendar); None when it is paused before reaching it."""
        if amount <= self.banked:
            # Reached in a closed stretch: a goal change lowered the target, or the
            # timer paused (or moved) exactly as it reached it.
            for segment in self.segments:
                found = calendars.get(segment.calendar)
                if found is None or segment.end is None:
                    continue
                ran = found.elapsed(segment.start, segment.end)
                if amount <= ran:
                    return found.add(segment.start, amount)
                amount -= ran
            return None  # unreachable: the closed stretches add up to `banked`
        if not self.running:
            return None
        last = self.segments[-1]
        found = calendars.get(last.calendar)
        if found is None:
            return None  # not measured while no target applies
        return found.add(last.start, amount - self.banked)
