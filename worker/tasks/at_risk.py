"""Which timers breach next: the at-risk query over one partition (issue #24).

Pure: the web layer (`worker.kafka.at_risk_web`) hands each owned `Partition` and the
wall-clock instant to `answer`, then merges the partitions' answers (and the other
workers') with `merge`.

A row is one running timer (ticket, metric, cycle) whose deadline falls within
`within` of now, or that is already breached and still running. Rows are ordered by
the *remaining business time* (the target minus the business time elapsed on the
timer's calendar; negative once breached), ties by deadline, then ticket id, metric
and cycle: every worker orders the same rows the same way.

Where the candidates come from, never a scan of all tickets:

- **The due index** (`PartitionClock.due`) holds each ticket's next unemitted point, a
  warning or the deadline, which is never later than the deadline. So every ticket with
  a timer whose deadline is by `now + within` is due by then: `DueIndex.until` walks
  only those entries.
- **A breached timer has no due point any more.** `BreachedIndex` keeps the tickets of
  a partition that have a breached timer still running; `Partition` updates it wherever
  it updates the due index (every state write, rebuild and retirement).

Decoding a ticket's state and its calendar arithmetic cost tens of microseconds, so a
ticket's timers are summarised once per stored value (`TimerSummaries`, keyed by the
very bytes object the partition holds: a state write replaces it, which invalidates the
summary) and only the remaining time is computed per query: for a running timer, what
remained when it was summarised, at `anchor`, minus `calendar.elapsed(anchor, now)` (no
timer pauses or changes calendar until the state changes); a paused timer's remaining
time does not change while it is paused.
"""

from __future__ import annotations

import heapq
import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from worker.core.calendar import Calendar
from worker.core.engine import Engine
from worker.core.state_codec import StateFormatError, running_timers

if TYPE_CHECKING:
    from worker.tasks.partition import Partition

MAX_LIMIT = 10_000
DEFAULT_LIMIT = 100
DEFAULT_WITHIN = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class AtRiskQuery:
    """What `GET /at-risk` asks. Empty filter sets match everything."""

    within: timedelta = DEFAULT_WITHIN
    include_breached: bool = True
    limit: int = DEFAULT_LIMIT
    metrics: frozenset[str] = frozenset()
    plans: frozenset[str] = frozenset()
    priorities: frozenset[int] = frozenset()
    customers: frozenset[str] = frozenset()
    # A row's `goal` is None under a plan x priority policy (and for the goals its short
    # form expands to); `group` is None for a ticket that names none. A filter on either
    # matches the rows whose value is listed.
    goals: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class AtRiskRow:
    """One running timer near or past its deadline."""

    ticket_id: str
    customer_id: str | None
    plan: str
    priority: int
    metric: str
    cycle: int
    deadline: datetime
    remaining: timedelta
    """Business time left on the timer's calendar (negative: past the deadline)."""
    target: timedelta
    calendar: str
    paused: bool
    breached: bool
    partition: int
    goal: str | None = None
    group: str | None = None

    @property
    def order(self) -> tuple[timedelta, datetime, str, str, int]:
        return (self.remaining, self.deadline, self.ticket_id, self.metric, self.cycle)


@dataclass(slots=True)
class AtRiskAnswer:
    """The rows of some partitions: the first `limit`, and counts of all that matched."""

    rows: list[AtRiskRow] = field(default_factory=list)
    total: int = 0
    breached: int = 0
    by_priority: Counter[int] = field(default_factory=Counter)
    by_metric: Counter[str] = field(default_factory=Counter)


# --- the breached-and-running index ------------------------------------------------------


class BreachedIndex:
    """The tickets of one partition with a breached timer still running (or paused).

    `rows` keeps their breached timers as ready-made rows, per calendar, so that a query
    does not visit each breached ticket again (a desk with a backlog has thousands of
    them): only those whose state changed since the last query (`dirty`) are summarised
    again (`breached_rows`), and the rest is sorted and counted in bulk.
    """

    def __init__(self) -> None:
        self._tickets: set[str] = set()
        self.dirty: set[str] = set()
        self.rows: dict[int, dict[str, tuple[_Row, ...]]] = {}
        """calendar id (0: paused) -> ticket -> its breached timers' rows on it."""

    def __len__(self) -> int:
        return len(self._tickets)

    def __iter__(self) -> Iterator[str]:
        return iter(self._tickets)

    def __contains__(self, ticket_id: object) -> bool:
        return ticket_id in self._tickets

    def note(self, ticket_id: str, stored: Mapping[str, Any] | None) -> None:
        """After a state write (`stored` None: the ticket left state)."""
        summary = None if stored is None else running_timers(dict(stored))
        if summary is not None and any(breached for _, breached in summary[3]):
            self._tickets.add(ticket_id)
            self.dirty.add(ticket_id)
        elif ticket_id in self._tickets:
            self._tickets.discard(ticket_id)
            self.dirty.add(ticket_id)

    def clear(self) -> None:
        self._tickets.clear()
        self.dirty.clear()
        self.rows.clear()


# --- per-ticket summaries ----------------------------------------------------------------


_US = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class _Timer:
    metric: str
    cycle: int
    deadline: datetime
    deadline_us: int
    target: timedelta
    calendar: Calendar | None
    """None: paused (its remaining time does not change while it waits)."""
    calendar_name: str
    paused: bool
    breached: bool
    key: int
    """Remaining business time, in microseconds, plus the calendar's business time from the
    cache's reference instant to now: `key - elapsed(reference, now)` is the remaining time
    (see `TimerSummaries`). A paused timer: its remaining time."""


@dataclass(frozen=True, slots=True)
class _Summary:
    value: bytes  # the stored value summarised (compared by identity)
    engine: Engine
    plan: str
    priority: int
    customer_id: str | None
    timers: tuple[_Timer, ...]
    goal: str | None = None
    group: str | None = None


class TimerSummaries:
    """A partition's cache of ticket -> timers with deadlines (see the module docstring).

    Business time is additive, `elapsed(a, c) = elapsed(a, b) + elapsed(b, c)`, so a running
    timer's remaining time at `now`, `left - elapsed(anchor, now)` (`left` what remained
    at `anchor`, when it was summarised), is `key - elapsed(reference, now)` with the constant
    `key = left + elapsed(reference, anchor)`, for any fixed `reference` instant. A query
    computes `elapsed(reference, now)` once per calendar, and the remaining time of each
    row with one subtraction; within one calendar the order of the keys is the order of
    the remaining times.
    """

    def __init__(self) -> None:
        self._cache: dict[str, _Summary] = {}
        self._kept = 0
        self.reference: datetime | None = None  # the first `now` asked about

    def __len__(self) -> int:
        return len(self._cache)

    def get(self, partition: Partition, ticket_id: str, now: datetime) -> _Summary | None:
        value = partition.tickets.get(ticket_id)
        if value is None:
            self._cache.pop(ticket_id, None)
            return None
        engine = partition.processor.engine
        cached = self._cache.get(ticket_id)
        if cached is not None and cached.value is value and cached.engine is engine:
            return cached
        if self.reference is None:
            self.reference = now
        summary = _summarise(partition, value, now, self.reference)
        if summary is None:
            self._cache.pop(ticket_id, None)
        else:
            self._cache[ticket_id] = summary
        return summary

    def cached(self, partition: Partition, ticket_id: str) -> bool:
        """Whether `get` would answer from the cache."""
        cached = self._cache.get(ticket_id)
        return (
            cached is not None
            and cached.value is partition.tickets.get(ticket_id)
            and cached.engine is partition.processor.engine
        )

    def clock(self, now: datetime) -> _CalendarClock:
        """Per calendar, on demand: business microseconds from the reference to `now`."""
        reference = self.reference or now
        return _CalendarClock(reference, now)

    def prune(self, partition: Partition) -> None:
        """Forget summaries of tickets whose state changed or that have nothing at risk
        any more (neither due nor breached), once the cache has doubled since the last
        prune: memory tracks what queries asked about, never all tickets for long."""
        if len(self._cache) <= 2 * self._kept + 1024:
            return
        tickets, due, breached = partition.tickets, partition.clock.due, partition.at_risk
        self._cache = {
            t: s
            for t, s in self._cache.items()
            if tickets.get(t) is s.value and (due.get(t) is not None or t in breached)
        }
        self._kept = len(self._cache)


class _CalendarClock:
    """Per calendar, business microseconds from `reference` to `now`, computed when first
    asked; a paused timer (no calendar) -> 0. Keyed by the calendar's identity: hashing a
    `Calendar` hashes its whole specification."""

    def __init__(self, reference: datetime, now: datetime) -> None:
        self.reference = reference
        self.now = now
        self._offsets: dict[int, int] = {}

    def offset(self, calendar: Calendar | None) -> int:
        if calendar is None:
            return 0
        key = id(calendar)
        value = self._offsets.get(key)
        if value is None:
            value = self._offsets[key] = calendar.elapsed(self.reference, self.now) // _US
        return value


def _summarise(
    partition: Partition, value: bytes, now: datetime, reference: datetime
) -> _Summary | None:
    """The ticket's timers with deadlines, as of `now`.

    Until the ticket's state changes (which replaces `value`, and so this summary), no
    timer pauses, resumes or changes calendar: a running timer's business time grows on
    its current calendar alone, so `now` is its anchor and what remained at `now` its
    `left`. This holds on both paths: a plan x priority ticket's clocks pause together
    on one calendar each, a goal policy's timers (#22) pause on their own metric's
    statuses and bank business time per stretch on the calendar then in force (follow
    the sun). A paused timer's remaining time is constant (a pause after the deadline,
    too, stops a breached timer's overdue time)."""
    try:
        stored = json.loads(value)
        _, ticket, _ = partition.processor.restore(stored)
    except (ValueError, KeyError, TypeError, StateFormatError):
        return None  # unreadable state: `GET /tickets` and the logs say so
    if ticket is None:
        return None  # only held events: no timer yet
    engine = partition.processor.engine
    calendars = engine.policy_of(ticket).calendars
    timers = []
    goal: str | None = None
    for view in engine.timers(ticket, now):
        goal = view.goal
        if view.deadline is None:
            continue  # paused before its deadline: nothing is at risk while it waits
        target = view.target.duration
        left = target - view.elapsed
        current = calendars[view.calendar]
        calendar: Calendar | None = None  # paused: its remaining time is constant
        key = left // _US
        if not view.paused:
            calendar, key = current, (left + current.elapsed(reference, now)) // _US
        timers.append(
            _Timer(
                view.metric,
                view.cycle,
                view.deadline,
                _micros(view.deadline),
                target,
                calendar,
                view.calendar,
                view.paused,
                view.breached,
                key,
            )
        )
    return _Summary(
        value,
        engine,
        ticket.plan,
        ticket.priority,
        ticket.customer_id,
        tuple(timers),
        goal,
        ticket.group,
    )


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _micros(t: datetime) -> int:
    return (t - _EPOCH) // _US


# --- the query ---------------------------------------------------------------------------


def candidates(partition: Partition, query: AtRiskQuery, now: datetime) -> set[str]:
    """Tickets that may have a row: due by the horizon, or with a breached timer."""
    found = {ticket_id for ticket_id, _ in partition.clock.due.until(now + query.within)}
    if query.include_breached:
        found.update(partition.at_risk)
    return found


_Row = tuple[int, int, str, str, int, "_Timer", "_Summary"]
"""(remaining or key in µs, deadline in µs, ticket, metric, cycle, timer, summary): sorts
in C by its first five fields, which differ for any two timers."""


def breached_rows(partition: Partition, now: datetime) -> dict[int, dict[str, tuple[_Row, ...]]]:
    """The partition's breached timers as rows (their first field the timer's key), per
    calendar: `BreachedIndex.rows`, brought up to date."""
    index, cache = partition.at_risk, partition.at_risk_summaries
    for ticket_id in index.dirty:
        for by_ticket in index.rows.values():
            by_ticket.pop(ticket_id, None)
        if ticket_id not in index:
            continue
        summary = cache.get(partition, ticket_id, now)
        if summary is None:
            continue
        for timer in summary.timers:
            if timer.breached:
                row = (timer.key, timer.deadline_us, ticket_id, timer.metric, timer.cycle)
                by_ticket = index.rows.setdefault(id(timer.calendar) if timer.calendar else 0, {})
                by_ticket[ticket_id] = (*by_ticket.get(ticket_id, ()), (*row, timer, summary))
    index.dirty.clear()
    return index.rows


def answer(partition: Partition, query: AtRiskQuery, now: datetime) -> AtRiskAnswer:
    """The partition's rows for `query` as of the wall-clock instant `now`.

    Every matching timer is counted, but a row is built only for the first `limit`:
    the timers due within the window are visited one by one (few); the breached ones come
    ready-made from `breached_rows` and are filtered, counted and sorted in bulk (within
    one calendar the order of their keys is the order of their remaining times).
    """
    horizon_us = _micros(now + query.within)
    cache = partition.at_risk_summaries
    clock = cache.clock(now)
    offset = clock.offset
    metrics, plans, priorities = query.metrics, query.plans, query.priorities
    customers, goals, groups = query.customers, query.goals, query.groups
    found: list[_Row] = []
    by_priority: Counter[int] = Counter()
    by_metric: Counter[str] = Counter()
    due = {ticket_id for ticket_id, _ in partition.clock.due.until(now + query.within)}
    for ticket_id in due:
        summary = cache.get(partition, ticket_id, now)
        if summary is None:
            continue
        if plans and summary.plan not in plans:
            continue
        if priorities and summary.priority not in priorities:
            continue
        if customers and summary.customer_id not in customers:
            continue
        if goals and summary.goal not in goals:
            continue
        if groups and summary.group not in groups:
            continue
        for timer in summary.timers:
            if timer.breached or timer.deadline_us > horizon_us:
                continue  # breached: with the breached rows below
            if metrics and timer.metric not in metrics:
                continue
            found.append(
                (
                    timer.key - offset(timer.calendar),
                    timer.deadline_us,
                    ticket_id,
                    timer.metric,
                    timer.cycle,
                    timer,
                    summary,
                )
            )
            by_priority[summary.priority] += 1
            by_metric[timer.metric] += 1
    total, breached = len(found), 0
    first = heapq.nsmallest(query.limit, found)
    if query.include_breached:
        filtered = plans or priorities or customers or metrics or goals or groups
        for by_ticket in breached_rows(partition, now).values():
            rows = [row for rows in by_ticket.values() for row in rows]
            if filtered:
                rows = [
                    row
                    for row in rows
                    if (not plans or row[6].plan in plans)
                    and (not priorities or row[6].priority in priorities)
                    and (not customers or row[6].customer_id in customers)
                    and (not metrics or row[3] in metrics)
                    and (not goals or row[6].goal in goals)
                    and (not groups or row[6].group in groups)
                ]
            if not rows:
                continue
            total += len(rows)
            breached += len(rows)
            by_priority.update(row[6].priority for row in rows)
            by_metric.update(row[3] for row in rows)
            shift = offset(rows[0][5].calendar)
            first += [
                (row[0] - shift, row[1], row[2], row[3], row[4], row[5], row[6])
                for row in heapq.nsmallest(query.limit, rows)
            ]
        first = heapq.nsmallest(query.limit, first)
    cache.prune(partition)
    return AtRiskAnswer(
        rows=[
            AtRiskRow(
                ticket_id,
                summary.customer_id,
                summary.plan,
                summary.priority,
                timer.metric,
                timer.cycle,
                timer.deadline,
                remaining * _US,
                timer.target,
                timer.calendar_name,
                timer.paused,
                timer.breached,
                partition.number,
                summary.goal,
                summary.group,
            )
            for remaining, _, ticket_id, _, _, timer, summary in first
        ],
        total=total,
        breached=breached,
        by_priority=by_priority,
        by_metric=by_metric,
    )


def _order(row: AtRiskRow) -> tuple[timedelta, datetime, str, str, int]:
    return row.order


def warm(partition: Partition, now: datetime, within: timedelta, enough: Callable[[], bool]) -> int:
    """Summarise the tickets a query would visit (breached, or due within `within`) that
    are not summarised yet, until `enough()` says stop; returns how many were.

    After a restore every summary is cold, and the first query would decode thousands of
    tickets at once (seconds, with the event loop blocked): the web layer calls this in
    small slices in the background instead, so queries find the cache warm.
    """
    cache = partition.at_risk_summaries
    done = 0
    for ticket_id in candidates(partition, AtRiskQuery(within=within), now):
        if cache.cached(partition, ticket_id):
            continue
        cache.get(partition, ticket_id, now)
        done += 1
        if done % 16 == 0 and enough():
            break
    return done


def merge(answers: Iterable[AtRiskAnswer], limit: int) -> AtRiskAnswer:
    """Several partitions' (or workers') answers as one: rows merged in order, counts
    summed. Each answer's rows must already be in order."""
    result = AtRiskAnswer()
    parts = list(answers)
    for part in parts:
        result.total += part.total
        result.breached += part.breached
        result.by_priority.update(part.by_priority)
        result.by_metric.update(part.by_metric)
    merged = heapq.merge(*(part.rows for part in parts), key=_order)
    result.rows = [row for _, row in zip(range(limit), merged, strict=False)]
    return result


def due_soon(
    partition: Partition, windows: Iterable[timedelta], now: datetime
) -> Counter[tuple[str, int, str, timedelta]]:
    """Running (not breached, not paused) timers whose deadline is within each window
    from `now` (not before it):
    (plan, priority, metric, window) -> count. Windows nest: a timer due within 15
    minutes counts in the 1-hour and 4-hour windows too."""
    spans = sorted(windows)
    counts: Counter[tuple[str, int, str, timedelta]] = Counter()
    if not spans:
        return counts
    cache = partition.at_risk_summaries
    now_us = _micros(now)
    limits = [(span, span // _US) for span in spans]
    tickets = {t for t, _ in partition.clock.due.until(now + spans[-1])}
    for ticket_id in tickets:
        summary = cache.get(partition, ticket_id, now)
        if summary is None:
            continue
        for timer in summary.timers:
            if timer.breached or timer.paused:
                continue
            left = timer.deadline_us - now_us
            if left < 0:
                continue  # past its deadline, its breach about to fire: overdue, not due
            for span, span_us in limits:
                if left <= span_us:
                    counts[(summary.plan, summary.priority, timer.metric, span)] += 1
    cache.prune(partition)
    return counts
