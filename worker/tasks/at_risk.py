"""Which timers breach next: the at-risk query over one partition (issue #24).

Pure: the web layer (`worker.kafka.at_risk_web`) hands each owned `Partition` and the
wall-clock instant to `answer`, then merges the partitions' answers (and the other
workers') with `merge`.

A row is one running timer (ticket, metric, cycle) whose deadline falls within
`within` of now, or that is already breached and still running. Rows are ordered by
the *remaining business time* (the target minus the business time elapsed on the
timer's calendar; negative once breached), ties by deadline, then ticket id, metric
and cycle: every worker orders the same rows the same way.

Where the rows come from, never a scan of all tickets: `AtRiskIndex` keeps, per
partition and per calendar, the breached timers still running and the running timers of
every ticket due within the next few hours (`KEPT_WITHIN`) in order, with their counts;
`Partition` marks a ticket at every state write (`note`), and its rows are replaced at the
next `refresh`. The due index (`PartitionClock.due`) holds each ticket's next unemitted
point, a warning or the deadline, never later than the deadline: a walk of its entries
due by a horizon (`DueIndex.until`) finds every ticket with a deadline by then, which
fills the index, and answers a window wider than the index keeps.

Decoding a ticket's state and its calendar arithmetic cost tens of microseconds, so a
ticket's timers are summarised once per stored value (`TimerSummaries`, keyed by the
very bytes object the partition holds: a state write replaces it, which invalidates the
summary) and only the remaining time is computed per query: for a running timer, what
remained when it was summarised, at `anchor`, minus `calendar.elapsed(anchor, now)` (no
timer pauses or changes calendar until the state changes); a paused timer's remaining
time does not change while it is paused. Within one calendar, then, the order of the
remaining times is the order of a constant per timer, and a query takes its first
`limit` rows from a merge of the calendars' lists.
"""

from __future__ import annotations

import heapq
import itertools
import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sortedcontainers import SortedList

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


# --- the ordered indexes --------------------------------------------------------------------


_Row = tuple[int, int, str, str, int, "_Timer", "_Summary"]
"""(key in µs, deadline in µs, ticket, metric, cycle, timer, summary): sorts by its first
five fields, which differ for any two timers. Within one calendar the order of the keys
is the order of the remaining times (see `TimerSummaries`)."""

_Group = tuple[str, int, str, "str | None", "str | None"]
"""(plan, priority, metric, goal, group): what the counts are kept per."""

KEPT_WITHIN = timedelta(hours=4)
"""The window `AtRiskIndex` keeps ordered from now: every query within it (the board's
default is one hour, the due-soon gauge's widest window four) is answered by bisects and
a merge of list heads. A wider query walks the due index for its running timers."""
KEPT_AHEAD = timedelta(hours=1)
"""How far beyond `KEPT_WITHIN` the index is filled when it is extended, so that it is
extended about once an hour (a walk of the due index up to the new horizon), not at
every query."""
DIRTY_LIMIT = 100_000
"""Tickets written since the last query or warm-up beyond which the index forgets its
running timers (it is rebuilt at the next query): memory stays bounded when nobody asks."""


class AtRiskIndex:
    """One partition's at-risk timers, kept in order as tickets change (issue #24).

    - **Breached timers still running** (or paused), every one of them: they have no due
      point any more, so the due index does not hold them. Per calendar (0: paused), a
      sorted list of rows; counts per (plan, priority, metric, goal, group).
    - **Running timers not breached, of every ticket due by `covered`** (an instant at
      least `KEPT_WITHIN` ahead once a query or the warmer asked): per calendar a sorted
      list of rows, and per (plan, priority, metric, goal, group) a sorted list of
      deadlines (the counts within any window by two bisects).

    A ticket's rows come from its summary (`TimerSummaries`) and change only when its
    state does: `Partition` calls `note` at every state write (and the rebuild after a
    restore, and retirement); the ticket is marked `dirty`, and the next `refresh` takes
    its rows out and puts the new ones in, when it is breached or due by `covered`. A
    ticket that is neither has no timer with a deadline by `covered` (its next due point,
    never later than a deadline, is later), until its state changes.
    """

    def __init__(self) -> None:
        self._breached: set[str] = set()
        self.dirty: set[str] = set()
        self.covered: int | None = None
        """µs since the epoch: every ticket due by then is in the running lists."""
        self.engine: Engine | None = None
        self._rows: dict[str, list[tuple[SortedList, _Row]]] = {}
        self.breached_rows: dict[int, SortedList] = {}
        self.running_rows: dict[int, SortedList] = {}
        self.breached_counts: Counter[_Group] = Counter()
        self.deadlines: dict[_Group, SortedList] = {}

    def __len__(self) -> int:
        return len(self._breached)

    def __iter__(self) -> Iterator[str]:
        return iter(self._breached)

    def __contains__(self, ticket_id: object) -> bool:
        return ticket_id in self._breached

    def note(self, ticket_id: str, stored: Mapping[str, Any] | None) -> None:
        """After a state write (`stored` None: the ticket left state)."""
        summary = None if stored is None else running_timers(dict(stored))
        if summary is not None and any(breached for _, breached in summary[3]):
            self._breached.add(ticket_id)
            self.dirty.add(ticket_id)
        elif ticket_id in self._breached:
            self._breached.discard(ticket_id)
            self.dirty.add(ticket_id)
        elif self.covered is not None:
            self.dirty.add(ticket_id)
            if len(self.dirty) > DIRTY_LIMIT:
                self.forget()

    def restore_breached(self, ticket_ids: Iterable[str]) -> None:
        """After a restart from a local snapshot that kept the breached tickets
        (`worker.kafka.stored_index`): they are known without decoding every ticket;
        their rows are made at the next `refresh`, as after `note`."""
        for ticket_id in ticket_ids:
            self._breached.add(ticket_id)
            self.dirty.add(ticket_id)

    def clear(self) -> None:
        """Before a rebuild: nothing is known."""
        self._breached.clear()
        self.forget()
        self.dirty.clear()

    def forget(self) -> None:
        """Drop every row; the next `refresh` builds them again (breached tickets from
        `dirty`, running timers from the due index)."""
        self.covered = None
        self.engine = None
        self._rows.clear()
        self.breached_rows.clear()
        self.running_rows.clear()
        self.breached_counts.clear()
        self.deadlines.clear()
        self.dirty = set(self._breached)

    def refresh(self, partition: Partition, now: datetime, horizon: datetime | None) -> bool:
        """Bring the rows up to date with the partition's state and, when `horizon` is
        not later than `KEPT_WITHIN` from `now`, make sure every ticket due by it is in the
        running lists (extending them to `KEPT_WITHIN + KEPT_AHEAD` ahead when they end
        before). Returns whether the running lists cover `horizon`."""
        cache = partition.at_risk_summaries
        if self.engine is not partition.processor.engine:
            self.forget()
            self.engine = partition.processor.engine
        due = partition.clock.due
        covered = self.covered
        for ticket_id in self.dirty:
            self._drop(ticket_id)
            if ticket_id in self._breached:
                self._admit(ticket_id, cache.get(partition, ticket_id, now))
            elif covered is not None:
                when = due.get(ticket_id)
                if when is not None and _micros(when) <= covered:
                    self._admit(ticket_id, cache.get(partition, ticket_id, now))
        self.dirty.clear()
        if horizon is None:
            return False
        horizon_us = _micros(horizon)
        if covered is not None and horizon_us <= covered:
            return True
        if horizon > now + KEPT_WITHIN:
            return False
        until = now + KEPT_WITHIN + KEPT_AHEAD
        for ticket_id, _ in due.until(until):
            if ticket_id not in self._rows:
                self._admit(ticket_id, cache.get(partition, ticket_id, now))
        self.covered = _micros(until)
        return True

    def _drop(self, ticket_id: str) -> None:
        for rows, row in self._rows.pop(ticket_id, ()):
            rows.remove(row)
            timer, summary = row[5], row[6]
            group = (summary.plan, summary.priority, timer.metric, summary.goal, summary.group)
            if timer.breached:
                self.breached_counts[group] -= 1
                if not self.breached_counts[group]:
                    del self.breached_counts[group]
            else:
                self.deadlines[group].remove(timer.deadline_us)

    def _admit(self, ticket_id: str, summary: _Summary | None) -> None:
        if summary is None:
            return
        placed = []
        for timer in summary.timers:
            row: _Row = (
                timer.key,
                timer.deadline_us,
                ticket_id,
                timer.metric,
                timer.cycle,
                timer,
                summary,
            )
            calendar = id(timer.calendar) if timer.calendar is not None else 0
            group = (summary.plan, summary.priority, timer.metric, summary.goal, summary.group)
            if timer.breached:
                rows = self.breached_rows.setdefault(calendar, SortedList())
                self.breached_counts[group] += 1
            else:
                rows = self.running_rows.setdefault(calendar, SortedList())
                self.deadlines.setdefault(group, SortedList()).add(timer.deadline_us)
            rows.add(row)
            placed.append((rows, row))
        self._rows[ticket_id] = placed


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
        # Equal bytes, not the same object: a store-backed state (`--state-dir`) reads
        # a new bytes object each time (comparing is a length check, then memcmp).
        if cached is not None and cached.value == value and cached.engine is engine:
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
            and cached.value == partition.tickets.get(ticket_id)
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
            if tickets.get(t) == s.value and (due.get(t) is not None or t in breached)
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


_SLACK_US = 1_000_000
"""A running timer whose remaining time exceeds the business time to the horizon by more
than this is due after the horizon: a walk in order stops there (the slack covers a
deadline rounded by the calendar arithmetic; rows beyond the horizon are skipped)."""


class _Filter:
    """A query's filters over rows, and over the (plan, priority, metric, goal, group)
    keys of the counts (the customer is not among them: with a customer filter every
    row is visited to count)."""

    def __init__(self, query: AtRiskQuery) -> None:
        self.query = query
        self.any = bool(
            query.plans
            or query.priorities
            or query.customers
            or query.metrics
            or query.goals
            or query.groups
        )

    def group(self, group: _Group) -> bool:
        q = self.query
        plan, priority, metric, goal, team = group
        return (
            (not q.plans or plan in q.plans)
            and (not q.priorities or priority in q.priorities)
            and (not q.metrics or metric in q.metrics)
            and (not q.goals or goal in q.goals)
            and (not q.groups or team in q.groups)
        )

    def row(self, row: _Row) -> bool:
        summary = row[6]
        q = self.query
        return (
            (not q.plans or summary.plan in q.plans)
            and (not q.priorities or summary.priority in q.priorities)
            and (not q.customers or summary.customer_id in q.customers)
            and (not q.metrics or row[3] in q.metrics)
            and (not q.goals or summary.goal in q.goals)
            and (not q.groups or summary.group in q.groups)
        )


def _stream(
    rows: Iterable[_Row], shift: int, keep: _Filter, horizon_us: int | None, stop: int | None
) -> Iterator[_Row]:
    """Rows of one calendar's list in order, as (remaining, ...): those `keep` accepts,
    due by `horizon_us` (None: breached rows, any deadline), ending where the remaining
    time passes `stop`."""
    for row in rows:
        remaining = row[0] - shift
        if stop is not None and remaining > stop:
            return
        if horizon_us is not None and row[1] > horizon_us:
            continue
        if keep.any and not keep.row(row):
            continue
        yield (remaining, row[1], row[2], row[3], row[4], row[5], row[6])


def answer(partition: Partition, query: AtRiskQuery, now: datetime) -> AtRiskAnswer:
    """The partition's rows for `query` as of the wall-clock instant `now`.

    From `AtRiskIndex`: per calendar a list of rows in order, so the first `limit` rows
    are a merge of the lists' heads (the remaining time computed only for the rows
    taken), and the counts are kept per (plan, priority, metric, goal, group) or bisected
    from sorted deadlines. A filter the rows do not satisfy is skipped over in the walk
    (a selective filter walks further); with a customer filter the counts visit every
    matching row. A window wider than `KEPT_WITHIN` walks the due index (`_running_by_scan`).
    """
    horizon = now + query.within
    horizon_us = _micros(horizon)
    index = partition.at_risk
    kept = index.refresh(partition, now, horizon)
    clock = partition.at_risk_summaries.clock(now)
    keep = _Filter(query)
    streams: list[Iterator[_Row]] = []
    total = breached = 0
    by_priority: Counter[int] = Counter()
    by_metric: Counter[str] = Counter()

    if kept:
        for rows in index.running_rows.values():
            if not rows:
                continue
            calendar = rows[0][5].calendar
            shift = clock.offset(calendar)
            stop = None
            if calendar is not None:
                stop = calendar.elapsed(now, horizon) // _US + _SLACK_US
            streams.append(_stream(rows, shift, keep, horizon_us, stop))
        if query.customers:
            total += _tally(index.running_rows.values(), keep, horizon_us, by_priority, by_metric)
        else:
            due = ((group, d.bisect_right(horizon_us)) for group, d in index.deadlines.items())
            total += _tally_groups(due, keep, by_priority, by_metric)
    else:
        found = _running_by_scan(partition, query, now, keep)
        for row in found:
            by_priority[row[6].priority] += 1
            by_metric[row[3]] += 1
        total = len(found)
        streams.append(iter(heapq.nsmallest(query.limit, found)))

    if query.include_breached:
        for rows in index.breached_rows.values():
            if rows:
                shift = clock.offset(rows[0][5].calendar)
                streams.append(_stream(rows, shift, keep, None, None))
        if query.customers:
            breached += _tally(index.breached_rows.values(), keep, None, by_priority, by_metric)
        else:
            breached += _tally_groups(index.breached_counts.items(), keep, by_priority, by_metric)
        total += breached

    first = list(itertools.islice(heapq.merge(*streams), query.limit))
    partition.at_risk_summaries.prune(partition)
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
        by_priority=+by_priority,
        by_metric=+by_metric,
    )


def _tally(
    lists: Iterable[SortedList],
    keep: _Filter,
    horizon_us: int | None,
    by_priority: Counter[int],
    by_metric: Counter[str],
) -> int:
    """Count the rows `keep` accepts (due by `horizon_us`, when given) one by one: the
    kept counts are per group, and a customer is not part of a group."""
    n = 0
    for rows in lists:
        for row in rows:
            if (horizon_us is None or row[1] <= horizon_us) and keep.row(row):
                n += 1
                by_priority[row[6].priority] += 1
                by_metric[row[3]] += 1
    return n


def _tally_groups(
    counts: Iterable[tuple[_Group, int]],
    keep: _Filter,
    by_priority: Counter[int],
    by_metric: Counter[str],
) -> int:
    """Add up the counts kept per group that `keep` accepts."""
    n = 0
    for group, count in counts:
        if count and not (keep.any and not keep.group(group)):
            n += count
            by_priority[group[1]] += count
            by_metric[group[2]] += count
    return n


def _running_by_scan(
    partition: Partition, query: AtRiskQuery, now: datetime, keep: _Filter
) -> list[_Row]:
    """The running (not breached) timers due by `now + query.within`, as (remaining, ...)
    rows, from a walk of the due index: for a window wider than the index keeps."""
    horizon_us = _micros(now + query.within)
    cache = partition.at_risk_summaries
    offset = cache.clock(now).offset
    found: list[_Row] = []
    # A set: a ticket rescheduled back to an earlier due instant is in the heap twice.
    for ticket_id in {t for t, _ in partition.clock.due.until(now + query.within)}:
        summary = cache.get(partition, ticket_id, now)
        if summary is None:
            continue
        for timer in summary.timers:
            if timer.breached or timer.deadline_us > horizon_us:
                continue  # breached: from the index
            remaining = timer.key - offset(timer.calendar)
            row: _Row = (
                remaining,
                timer.deadline_us,
                ticket_id,
                timer.metric,
                timer.cycle,
                timer,
                summary,
            )
            if keep.any and not keep.row(row):
                continue
            found.append(row)
    return found


def _order(row: AtRiskRow) -> tuple[timedelta, datetime, str, str, int]:
    return row.order


def warm(partition: Partition, now: datetime, within: timedelta, enough: Callable[[], bool]) -> int:
    """Summarise the tickets a query would visit (breached, or due within `within`) that
    are not summarised yet, until `enough()` says stop; returns how many were. When none
    was cold, bring the partition's `AtRiskIndex` up to date (cheap: the summaries are
    warm), so that queries find it ready.

    After a restore every summary is cold, and the first query would decode thousands of
    tickets at once (seconds, with the event loop blocked): the web layer calls this in
    small slices in the background instead, so queries find the cache warm.
    """
    index = partition.at_risk
    covered = index.covered
    if covered is not None and _micros(now + within) <= covered:
        index.refresh(partition, now, None)  # only what changed: the rest is in the index
        return 0
    cache = partition.at_risk_summaries
    done = 0
    ahead = now + within + KEPT_AHEAD
    found = {ticket_id for ticket_id, _ in partition.clock.due.until(ahead)}
    found.update(index)
    for ticket_id in found:
        if cache.cached(partition, ticket_id):
            continue
        cache.get(partition, ticket_id, now)
        done += 1
        if done % 16 == 0 and enough():
            return done
    index.refresh(partition, now, now + min(within, KEPT_WITHIN))
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
    minutes counts in the 1-hour and 4-hour windows too.

    Two bisects per window in each sorted list of deadlines of `AtRiskIndex` (a paused
    timer past its deadline, the only paused one with a deadline, is before `now`); a
    window wider than `KEPT_WITHIN` visits the tickets due within it instead."""
    spans = sorted(windows)
    counts: Counter[tuple[str, int, str, timedelta]] = Counter()
    if not spans:
        return counts
    now_us = _micros(now)
    index = partition.at_risk
    if index.refresh(partition, now, now + spans[-1]):
        limits = [(span, now_us + span // _US) for span in spans]
        for (plan, priority, metric, _, _), deadlines in index.deadlines.items():
            first = deadlines.bisect_left(now_us)
            for span, until in limits:
                n = deadlines.bisect_right(until) - first
                if n:
                    counts[(plan, priority, metric, span)] += n
        return counts
    cache = partition.at_risk_summaries
    spans_us = [(span, span // _US) for span in spans]
    for ticket_id in {t for t, _ in partition.clock.due.until(now + spans[-1])}:
        summary = cache.get(partition, ticket_id, now)
        if summary is None:
            continue
        for timer in summary.timers:
            if timer.breached or timer.paused:
                continue
            left = timer.deadline_us - now_us
            if left < 0:
                continue  # past its deadline, its breach about to fire: overdue, not due
            for span, span_us in spans_us:
                if left <= span_us:
                    counts[(summary.plan, summary.priority, timer.metric, span)] += 1
    cache.prune(partition)
    return counts
