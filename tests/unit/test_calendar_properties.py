"""Property tests: the calendar against a brute-force oracle that steps minute by minute.

The oracle shares no code with the calendar. It walks UTC minutes, reads the local wall
clock at each, and keeps the running maximum M of that reading. A wall time w has been
reached at instant u when M(u) >= w (the calendar's rule: a wall time resolves to the
first instant the clock reads w or later), so minute u is open when some interval of
local date M.date() or the day before satisfies start <= M(u) < end. Schedules, DST
transitions and the instants drawn are all whole minutes, so this is exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache
from itertools import accumulate
from typing import Any
from zoneinfo import ZoneInfo

import holidays
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.core.calendar import WEEKDAYS, Calendar

ZONES = [
    "Europe/Bratislava",
    "America/New_York",
    "Australia/Lord_Howe",
    "Asia/Kathmandu",
    "UTC",
]
DAY = 1440
WEEK = 7 * DAY
MINUTE = timedelta(minutes=1)
WINDOW_DAYS = 9  # oracle window after the start instant
FIRST = datetime(2024, 1, 1, tzinfo=UTC)
LAST = datetime(2029, 12, 20, tzinfo=UTC)
SPAN_MINUTES = int((LAST - FIRST) / MINUTE)

Spans = list[tuple[int, int]]  # minutes from the owning date's midnight, end may be > 1440


def fmt(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


@cache
def transitions(zone: str) -> list[int]:
    """Minutes after FIRST at which the zone's UTC offset changes (exact to the minute)."""
    tz = ZoneInfo(zone)

    def offset(minute: int) -> timedelta | None:
        return (FIRST + minute * MINUTE).astimezone(tz).utcoffset()

    out = []
    for day in range(1, SPAN_MINUTES // DAY):
        lo, hi = (day - 1) * DAY, day * DAY
        if offset(lo) != offset(hi):
            while hi - lo > 1:  # offset(lo) is the old offset, offset(hi) the new one
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if offset(mid) == offset(lo) else (lo, mid)
            out.append(hi)
    return out


# ------------------------------------------------------------------ strategies


@st.composite
def day_spans(draw: st.DrawFn, max_spans: int) -> Spans:
    """Disjoint spans in one day's minute line [0, 2880), each at most a day long."""
    n = draw(st.integers(0, max_spans))
    points = sorted(draw(st.sets(st.integers(0, 2 * DAY - 1), min_size=2 * n, max_size=2 * n)))
    spans = []
    for a, b in zip(points[::2], points[1::2], strict=True):
        if a >= DAY:
            break
        end = min(b, a + (DAY if a == 0 else DAY - 1))
        spans.append((a, end))
    return spans


@st.composite
def weekly(draw: st.DrawFn) -> list[Spans]:
    """Per weekday spans, disjoint on the cyclic week; some cross midnight or Sunday night."""
    n = draw(st.integers(1, 9))
    points = sorted(draw(st.sets(st.integers(0, WEEK - 1), min_size=2 * n, max_size=2 * n)))
    shift = draw(st.integers(0, WEEK - 1))
    week: list[Spans] = [[] for _ in range(7)]
    for a, b in zip(points[::2], points[1::2], strict=True):
        start = (a + shift) % WEEK
        day, s = divmod(start, DAY)
        length = min(b - a, DAY if s == 0 else DAY - 1)
        week[day].append((s, s + length))
    return week


def texts(spans: Spans, midnight_as_zero: bool) -> list[str]:
    out = []
    for s, e in spans:
        if e < DAY or (e == DAY and (s == 0 or not midnight_as_zero)):
            out.append(f"{fmt(s)}-{fmt(e)}")  # "24:00" for the end of the day
        else:
            out.append(f"{fmt(s)}-{fmt(e - DAY)}")  # crosses midnight
    return out


@dataclass
class Case:
    zone: str
    week: list[Spans]
    later_week: list[Spans] | None  # a version from `version_from` on
    version_from: date
    country: str | None
    closed: set[date]
    exceptions: dict[date, Spans]
    start: datetime  # a whole UTC minute
    midnight_as_zero: bool

    def spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "timezone": self.zone,
            "hours": self.hours(self.week),
            "closed": sorted(self.closed),
            "exceptions": {d: texts(s, self.midnight_as_zero) for d, s in self.exceptions.items()},
        }
        if self.country:
            spec["holidays"] = {"country": self.country}
        if self.later_week is not None:
            spec["versions"] = [
                {"effective_from": self.version_from, "hours": self.hours(self.later_week)}
            ]
        return spec

    def hours(self, week: list[Spans]) -> dict[str, list[str]]:
        return {WEEKDAYS[d]: texts(week[d], self.midnight_as_zero) for d in range(7) if week[d]}


@st.composite
def cases(draw: st.DrawFn) -> Case:
    zone = draw(st.sampled_from(ZONES))
    exceptions: dict[date, Spans] = {}
    if transitions(zone) and draw(st.booleans()):
        # Start up to 4 days before a DST change; on the change's local date, add an
        # exception whose edges fall within 90 minutes of it (skipped/repeated times).
        change = draw(st.sampled_from(transitions(zone)))
        base = change - draw(st.integers(0, 4 * DAY))
        wall = (FIRST + (change - 1) * MINUTE).astimezone(ZoneInfo(zone)) + MINUTE
        at = wall.hour * 60 + wall.minute
        n = draw(st.integers(1, 3))
        points = draw(
            st.sets(st.integers(max(at - 90, 0), min(at + 90, DAY)), min_size=2 * n, max_size=2 * n)
        )
        ordered = sorted(points)
        exceptions[wall.date()] = list(zip(ordered[::2], ordered[1::2], strict=True))
    elif draw(st.booleans()):
        # Start within 4 days before a UTC new year, where the per-year tables meet.
        year = draw(st.integers(2025, 2029))
        base = int((datetime(year, 1, 1, tzinfo=UTC) - FIRST) / MINUTE)
        base -= draw(st.integers(0, 4 * DAY))
    else:
        base = draw(st.integers(0, SPAN_MINUTES - 20 * DAY))
    start = FIRST + timedelta(minutes=max(base, 0))
    first_day = start.date()

    def some_date() -> date:
        return first_day + timedelta(days=draw(st.integers(-1, WINDOW_DAYS)))

    week = draw(weekly())
    later = draw(st.none() | weekly())
    closed = {some_date() for _ in range(draw(st.integers(0, 2)))} - exceptions.keys()
    for _ in range(draw(st.integers(0, 2))):
        day = some_date()
        if day not in closed and day not in exceptions:
            exceptions[day] = draw(day_spans(3))
    return Case(
        zone=zone,
        week=week,
        later_week=later,
        version_from=some_date(),
        country=draw(st.sampled_from([None, None, "SK", "US"])),
        closed=closed,
        exceptions=exceptions,
        start=start,
        midnight_as_zero=draw(st.booleans()),
    )


# ---------------------------------------------------------------------- oracle


class Oracle:
    def __init__(self, case: Case) -> None:
        self.case = case
        self.tz = ZoneInfo(case.zone)
        self.holidays = holidays.country_holidays(case.country) if case.country else None

    def spans(self, day: date) -> Spans:
        c = self.case
        if day in c.exceptions:
            return c.exceptions[day]
        if day in c.closed or (self.holidays is not None and day in self.holidays):
            return []
        week = c.week if c.later_week is None or day < c.version_from else c.later_week
        return week[day.weekday()]

    def walls(self, day: date) -> list[tuple[datetime, datetime]]:
        midnight = datetime(day.year, day.month, day.day)
        return [(midnight + s * MINUTE, midnight + e * MINUTE) for s, e in self.spans(day)]

    def open_minutes(self, start: datetime, minutes: int) -> list[bool]:
        """Whether each minute [start + i, start + i + 1) is open, i < minutes."""
        warmup = 4 * 60  # longer than any clock setback, so the running max is right
        running = datetime.min
        out = []
        for i in range(-warmup, minutes):
            wall = (start + i * MINUTE).astimezone(self.tz).replace(tzinfo=None)
            running = max(running, wall)
            if i < 0:
                continue
            day = running.date()
            out.append(
                any(
                    a <= running < b
                    for d in (day - timedelta(days=1), day)
                    for a, b in self.walls(d)
                )
            )
        return out


# ------------------------------------------------------------------- properties


@settings(max_examples=120, deadline=None)
@given(case=cases(), data=st.data())
def test_matches_minute_oracle(case: Case, data: st.DataObject) -> None:
    cal = Calendar.from_spec(case.spec())
    window = WINDOW_DAYS * DAY
    opens = Oracle(case).open_minutes(case.start, window)
    before = [0, *accumulate(opens)]  # before[i] = open minutes in [start, start + i)
    s = case.start

    # elapsed from the start, and between two points of the window
    i = data.draw(st.integers(0, window), label="i")
    j = data.draw(st.integers(i, window), label="j")
    assert cal.elapsed(s, s + i * MINUTE) == before[i] * MINUTE
    assert cal.elapsed(s + i * MINUTE, s + j * MINUTE) == (before[j] - before[i]) * MINUTE

    # add: the end of the d-th open minute (the start itself for d == 0)
    d = data.draw(st.integers(0, before[window]), label="d")
    expected = s if d == 0 else s + (before.index(d, 1)) * MINUTE
    assert cal.add(s, d * MINUTE) == expected
    k = data.draw(st.integers(0, window - 1), label="k")
    if before[k] + d <= before[window]:
        expected = s + k * MINUTE if d == 0 else s + before.index(before[k] + d, k + 1) * MINUTE
        assert cal.add(s + k * MINUTE, d * MINUTE) == expected

    # is_open / next_open / next_close at minute k, when the answer lies in the window
    assert cal.is_open(s + k * MINUTE) is opens[k]
    first_open = next((m for m in range(k, window) if opens[m]), None)
    if first_open is not None:
        assert cal.next_open(s + k * MINUTE) == s + first_open * MINUTE
        close = next((m for m in range(first_open, window) if not opens[m]), None)
        if close is not None:
            assert cal.next_close(s + k * MINUTE) == s + close * MINUTE


MICRO = st.integers(0, SPAN_MINUTES * 60_000_000).map(lambda us: FIRST + timedelta(microseconds=us))


@settings(max_examples=300, deadline=None)
@given(
    case=cases(),
    a=MICRO,
    gaps=st.lists(st.integers(0, 40 * 86_400_000_000), min_size=2, max_size=2),
    data=st.data(),
)
def test_algebra_at_microsecond_precision(
    case: Case, a: datetime, gaps: list[int], data: st.DataObject
) -> None:
    # Up to ten weeks' worth of the sparser weekly schedule (a few years at most).
    weeks = [case.week] if case.later_week is None else [case.week, case.later_week]
    per_week = min(sum(e - s for day in week for s, e in day) for week in weeks)
    duration = timedelta(microseconds=data.draw(st.integers(0, 10 * per_week * 60_000_000)))
    cal = Calendar.from_spec(case.spec())
    b = a + timedelta(microseconds=gaps[0])
    c = b + timedelta(microseconds=gaps[1])
    one = timedelta(microseconds=1)

    # add is the earliest instant at which exactly `duration` has elapsed
    end = cal.add(a, duration)
    assert end >= a
    assert cal.elapsed(a, end) == duration
    if duration:
        assert cal.elapsed(a, end - one) < duration
        assert cal.is_open(end - one)

    # elapsed is additive and antisymmetric
    assert cal.elapsed(a, b) + cal.elapsed(b, c) == cal.elapsed(a, c)
    assert cal.elapsed(c, a) == -cal.elapsed(a, c)
    assert timedelta(0) <= cal.elapsed(a, b) <= b - a

    # next_open / next_close describe the stretch at or after `a`
    opened = cal.next_open(a)
    assert opened >= a
    assert cal.is_open(opened)
    assert cal.elapsed(a, opened) == timedelta(0)
    assert (opened == a) is cal.is_open(a)
    closed = cal.next_close(a)
    if closed is not None:
        assert closed > opened
        assert not cal.is_open(closed)
        assert cal.is_open(closed - one)
        assert cal.elapsed(opened, closed) == closed - opened
