"""Business calendars: exact business-time arithmetic across time zones, DST and holidays.

A `Calendar` answers four questions about timezone-aware instants: is the business open
(`is_open`), when does it next open or close (`next_open`, `next_close`), how much business
time lies between two instants (`elapsed`) and when has a given amount of business time
elapsed (`add`). `CalendarSpec` is the declarative shape a policy file embeds.

Model (docs/calendar.md has the full reasoning):

- Each local date owns a list of wall-clock intervals (minutes from its midnight; an
  interval whose end is not after its start crosses into the next date). The list comes
  from, in order of precedence: an exception for that date, an extra working date, an
  explicit closed date or a holiday (both give no intervals), the weekly schedule. The
  version in effect on the date supplies the weekly schedule and holidays.
- A wall time resolves to the first instant at which the local clock reads that time or
  later: a repeated time is its first occurrence, a skipped time is the transition itself.
- Resolved intervals become half-open UTC ranges in integer microseconds since the Unix
  epoch; overlapping or touching ranges merge. They are cut into one table per UTC year,
  built lazily, with prefix sums of business microseconds, so every operation is a
  `bisect` in one (occasionally a few) tables.
"""

from __future__ import annotations

import json
import re
from bisect import bisect_left, bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from typing import Any, Final, Literal, NoReturn, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays as holidays_lib
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from worker.core.errors import SlaWorkerError

__all__ = [
    "MAX_YEAR",
    "MIN_YEAR",
    "WEEKDAYS",
    "Calendar",
    "CalendarError",
    "CalendarSpec",
    "CalendarVersionSpec",
    "HolidaySpec",
    "Weekday",
]

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: Final[tuple[Weekday, ...]] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

#: Instants must lie in UTC years MIN_YEAR..MAX_YEAR (inclusive).
MIN_YEAR: Final = 1900
MAX_YEAR: Final = 9998

_DAY_MIN: Final = 1440
_WEEK_MIN: Final = 7 * _DAY_MIN
_ONE_US: Final = timedelta(microseconds=1)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_NAIVE: Final = datetime(1970, 1, 1)
# _YEAR_START_US[k] is the first microsecond of UTC year MIN_YEAR + k.
_YEAR_START_US: Final = [
    (datetime(y, 1, 1) - _EPOCH_NAIVE) // _ONE_US for y in range(MIN_YEAR, MAX_YEAR + 2)
]
_END_US: Final = _YEAR_START_US[-1]  # the first microsecond after MAX_YEAR
_INTERVAL_RE: Final = re.compile(r"(\d\d):(\d\d)-(\d\d):(\d\d)")

# (start, end) in minutes from the owning date's local midnight; end may exceed 1440.
_Span = tuple[int, int]
_Day = tuple[_Span, ...]


class CalendarError(SlaWorkerError, ValueError):
    """An invalid calendar definition, or a question the calendar cannot answer."""


# --------------------------------------------------------------------------- spec


class HolidaySpec(BaseModel):
    """Public holidays of a country (ISO code) and optional subdivision, from `holidays`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    country: str
    subdivision: str | None = None


class CalendarVersionSpec(BaseModel):
    """From `effective_from` on, the given fields replace those in effect before."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    effective_from: date
    hours: dict[Weekday, tuple[str, ...]] | None = None
    holidays: HolidaySpec | None = None  # given as null: no holidays from this date on


class CalendarSpec(BaseModel):
    """The declarative calendar shape (see docs/calendar.md); `build()` makes a Calendar.

    Validation is complete: a spec that validates always builds. Semantic problems are
    raised as `CalendarError` inside pydantic, so `model_validate` reports them as a
    `pydantic.ValidationError` (also a ValueError) with the same message;
    `Calendar.from_spec(mapping)` re-raises any problem as `CalendarError`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    timezone: str | None = None
    always_open: bool = False
    hours: dict[Weekday, tuple[str, ...]] = Field(default_factory=dict)
    holidays: HolidaySpec | None = None
    closed: tuple[date, ...] = ()
    exceptions: dict[date, tuple[str, ...]] = Field(default_factory=dict)
    extra_working: dict[date, Weekday] = Field(default_factory=dict)
    versions: tuple[CalendarVersionSpec, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> Self:
        _compile(self)
        return self

    def __hash__(self) -> int:
        return hash(json.dumps(self.model_dump(mode="json"), sort_keys=True))

    def build(self, name: str = "calendar") -> Calendar:
        return Calendar(self, name=name)


def never_opens_issue(calendar: Calendar) -> str | None:
    """Why no target may run on `calendar`, as a policy issue's message: from some
    instant on it never opens again, so a timer running then could never come due
    (None: it keeps opening). Policies check every calendar a target can run on."""
    closes = calendar.never_opens_from
    if closes is None:
        return None
    return (
        f"calendar {calendar.name!r} never opens again from {closes.date().isoformat()} on: "
        "a timer running on it then could never come due (give it hours from then on, "
        "in a version, or use another calendar)"
    )


# ----------------------------------------------------------------- compiled rules


@dataclass(frozen=True, slots=True)
class _Rules:
    """The weekly schedule and holidays of one version, compiled."""

    week: tuple[_Day, ...]  # indexed by date.weekday(), spans sorted
    holidays: HolidaySpec | None


@dataclass(frozen=True, slots=True)
class _Compiled:
    tz: ZoneInfo
    rules: tuple[_Rules, ...]  # rules[0] is the base; rules[i] starts at starts[i - 1]
    starts: tuple[date, ...]
    closed: frozenset[date]
    exceptions: Mapping[date, _Day]
    extra_working: Mapping[date, int]
    # From this instant on the calendar never opens / never closes (None: unknown).
    closed_after_us: int | None
    open_after_us: int | None


def _fail(message: str) -> NoReturn:
    raise CalendarError(message)


def _fmt(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def _label(span: _Span) -> str:
    return f"{_fmt(span[0])}-{_fmt(span[1] % _DAY_MIN if span[1] > _DAY_MIN else span[1])}"


def _parse_span(text: str, where: str) -> _Span:
    m = _INTERVAL_RE.fullmatch(text.strip())
    if m is None:
        _fail(f"{where}: malformed interval {text!r}: expected 'HH:MM-HH:MM'")
    sh, sm, eh, em = (int(g) for g in m.groups())
    if sh > 23 or sm > 59 or eh > 24 or em > 59 or (eh == 24 and em != 0):
        _fail(f"{where}: malformed interval {text!r}: not a time of day (00:00-24:00)")
    start, end = sh * 60 + sm, eh * 60 + em
    if start == end:
        _fail(f"{where}: interval {text!r} ends where it starts (a whole day is '00:00-24:00')")
    return (start, end if end > start else end + _DAY_MIN)


def _check_disjoint(pieces: list[tuple[int, int, str]], where: str) -> None:
    """Raise on the first overlap among (start, end, label) pieces; touching is fine."""
    pieces.sort()
    for (_, end, label), (start, _, other) in pairwise(pieces):
        if start < end:
            _fail(f"{where}: overlapping intervals {label} and {other}")


def _compile_day(texts: Sequence[str], where: str) -> _Day:
    spans = [_parse_span(text, f"{where}[{i}]") for i, text in enumerate(texts)]
    _check_disjoint([(s, e, _label((s, e))) for s, e in spans], where)
    return tuple(sorted(spans))


def _compile_week(hours: Mapping[Weekday, Sequence[str]], where: str) -> tuple[_Day, ...]:
    week = tuple(_compile_day(hours.get(name, ()), f"{where}.{name}") for name in WEEKDAYS)
    pieces: list[tuple[int, int, str]] = []
    for wd, day in enumerate(week):
        for s, e in day:
            label = f"{WEEKDAYS[wd]} {_label((s, e))}"
            start, end = wd * _DAY_MIN + s, wd * _DAY_MIN + e
            pieces.append((start, min(end, _WEEK_MIN), label))
            if end > _WEEK_MIN:  # Sunday night into Monday morning
                pieces.append((0, end - _WEEK_MIN, label))
    _check_disjoint(pieces, where)
    return week


def _covers_week(week: tuple[_Day, ...]) -> bool:
    pieces: list[tuple[int, int]] = []
    for wd, day in enumerate(week):
        for s, e in day:
            start, end = wd * _DAY_MIN + s, wd * _DAY_MIN + e
            pieces.append((start, min(end, _WEEK_MIN)))
            if end > _WEEK_MIN:
                pieces.append((0, end - _WEEK_MIN))
    reach = 0
    for start, end in sorted(pieces):
        if start > reach:
            return False
        reach = max(reach, end)
    return reach >= _WEEK_MIN


def _load_zone(name: str | None) -> ZoneInfo:
    if not name:
        _fail("timezone: required (an IANA name such as 'Europe/Bratislava')")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        _fail(f"timezone: unknown time zone {name!r}")


def _holiday_table(spec: HolidaySpec, where: str = "holidays") -> holidays_lib.HolidayBase:
    try:
        table: holidays_lib.HolidayBase = holidays_lib.country_holidays(
            spec.country.upper(), subdiv=spec.subdivision
        )
    except NotImplementedError as exc:  # unknown country or subdivision
        _fail(f"{where}: {exc}")
    return table


def _day_start_us(day: date) -> int:
    return (datetime(day.year, day.month, day.day) - _EPOCH_NAIVE) // _ONE_US


def _compile(spec: CalendarSpec) -> _Compiled:
    if spec.always_open:
        given = [
            name
            for name in ("hours", "holidays", "closed", "exceptions", "extra_working", "versions")
            if getattr(spec, name)
        ]
        if given:
            _fail(f"always_open: a 24x7 calendar takes no {', '.join(given)}")
        full: _Day = ((0, _DAY_MIN),)
        return _Compiled(
            tz=_load_zone(spec.timezone or "UTC"),
            rules=(_Rules(week=(full,) * 7, holidays=None),),
            starts=(),
            closed=frozenset(),
            exceptions={},
            extra_working={},
            closed_after_us=None,
            open_after_us=_YEAR_START_US[0],
        )

    tz = _load_zone(spec.timezone)
    if spec.holidays is not None:
        _holiday_table(spec.holidays)
    rules = [_Rules(week=_compile_week(spec.hours, "hours"), holidays=spec.holidays)]
    starts: list[date] = []
    for version in sorted(spec.versions, key=lambda v: v.effective_from):
        where = f"versions[{version.effective_from.isoformat()}]"
        if starts and version.effective_from == starts[-1]:
            _fail(f"{where}: two versions take effect on the same date")
        if version.hours is None and "holidays" not in version.model_fields_set:
            _fail(f"{where}: a version must replace hours and/or holidays")
        previous = rules[-1]
        week = previous.week
        if version.hours is not None:
            week = _compile_week(version.hours, f"{where}.hours")
        hol = previous.holidays
        if "holidays" in version.model_fields_set:
            if version.holidays is not None:
                _holiday_table(version.holidays, f"{where}.holidays")
            hol = version.holidays
        rules.append(_Rules(week=week, holidays=hol))
        starts.append(version.effective_from)
    if not any(span for r in rules for day in r.week for span in day):
        _fail("hours: no open interval on any weekday (use always_open for 24x7)")

    closed = frozenset(spec.closed)
    exceptions = {
        day: _compile_day(texts, f"exceptions[{day.isoformat()}]")
        for day, texts in spec.exceptions.items()
    }
    extra = {day: WEEKDAYS.index(name) for day, name in spec.extra_working.items()}
    for day in sorted(closed & exceptions.keys()):
        _fail(f"closed: {day.isoformat()} also has an exception")
    for day in sorted(closed & extra.keys()):
        _fail(f"closed: {day.isoformat()} is also an extra working date")
    for day in sorted(exceptions.keys() & extra.keys()):
        _fail(f"exceptions: {day.isoformat()} is also an extra working date")
    for day, wd in sorted(extra.items()):
        if not rules[bisect_right(starts, day)].week[wd]:
            _fail(f"extra_working: {day.isoformat()} uses {WEEKDAYS[wd]}, which has no hours")

    # Past the last dated fact (plus margin for zone offsets and midnight-crossing
    # intervals) the last version repeats weekly: detect "never opens"/"never closes".
    dated = [*starts, *closed, *exceptions, *extra]
    last_dated = min(max(dated), date(MAX_YEAR, 12, 31)) if dated else None
    after = _day_start_us(last_dated + timedelta(days=3)) if last_dated else _YEAR_START_US[0]
    last = rules[-1]
    closed_after = after if not any(last.week) else None
    open_after = after if last.holidays is None and _covers_week(last.week) else None
    return _Compiled(
        tz=tz,
        rules=tuple(rules),
        starts=tuple(starts),
        closed=closed,
        exceptions=exceptions,
        extra_working=extra,
        closed_after_us=closed_after,
        open_after_us=open_after,
    )


def _spec_error_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, CalendarError):
            parts.append(str(cause))
        else:
            loc = ".".join(str(p) for p in err["loc"]) or "calendar"
            parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


# ------------------------------------------------------------------------ tables


class _Table:
    """Merged open intervals of one UTC year as epoch microseconds, with prefix sums.

    Interval i is [starts[i], ends[i]); cum[i] is the business time of the table before
    it, cumend[i] = cum[i] + its length, total = cumend[-1]. Intervals are clipped to the
    year [lo, hi), so a stretch may continue in the next table exactly at hi.
    """

    __slots__ = ("cum", "cumend", "ends", "hi", "lo", "starts", "total")

    def __init__(self, lo: int, hi: int, spans: list[tuple[int, int]]) -> None:
        self.lo, self.hi = lo, hi
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.cum: list[int] = []
        self.cumend: list[int] = []
        total = 0
        for s, e in spans:  # sorted, disjoint, non-touching, non-empty
            self.starts.append(s)
            self.ends.append(e)
            self.cum.append(total)
            total += e - s
            self.cumend.append(total)
        self.total = total


def _input_error(*values: object) -> Exception:
    """The error for an input that is not an aware datetime (after a TypeError)."""
    for t in values:
        if isinstance(t, datetime) and t.utcoffset() is None:
            return ValueError(f"naive datetime {t.isoformat()}: an aware instant is required")
    return TypeError(f"expected aware datetimes, got {', '.join(type(v).__name__ for v in values)}")


def _to_us(t: datetime) -> int:
    try:
        return (t - _EPOCH) // _ONE_US
    except TypeError:
        raise _input_error(t) from None


def _from_us(us: int) -> datetime:
    return _EPOCH + _ONE_US * us  # exact integer arithmetic, faster than timedelta(...)


def _year_index(us: int) -> int:
    return bisect_right(_YEAR_START_US, us) - 1


# ---------------------------------------------------------------------- calendar


class Calendar:
    """An immutable business calendar. All results are UTC-aware datetimes.

    Intervals are half-open: open at their start, closed at their end. Inputs must be
    timezone-aware (naive datetimes raise ValueError) and lie in UTC years
    MIN_YEAR..MAX_YEAR (else CalendarError).
    """

    __slots__ = ("_c", "_holidays", "_tables", "name", "spec")

    name: str
    spec: CalendarSpec
    _c: _Compiled
    _tables: dict[int, _Table]
    _holidays: dict[HolidaySpec, Any]  # holidays.HolidayBase (auto-expanding by year)

    def __init__(self, spec: CalendarSpec, *, name: str = "calendar") -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "spec", spec)
        object.__setattr__(self, "_c", _compile(spec))
        object.__setattr__(self, "_tables", {})
        object.__setattr__(self, "_holidays", {})

    @classmethod
    def from_spec(
        cls, spec: CalendarSpec | Mapping[str, Any], *, name: str = "calendar"
    ) -> Calendar:
        """Build from a spec or its dict/YAML form; every problem raises CalendarError."""
        if not isinstance(spec, CalendarSpec):
            try:
                spec = CalendarSpec.model_validate(spec)
            except ValidationError as exc:
                raise CalendarError(_spec_error_message(exc)) from None
        return cls(spec, name=name)

    @classmethod
    def always_open(cls, name: str = "24x7", timezone: str = "UTC") -> Calendar:
        return cls(CalendarSpec(always_open=True, timezone=timezone), name=name)

    def __setattr__(self, key: str, value: object) -> None:
        raise AttributeError(f"Calendar is immutable (cannot set {key!r})")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Calendar):
            return NotImplemented
        return self.name == other.name and self.spec == other.spec

    def __hash__(self) -> int:
        return hash((self.name, self.spec))

    def __repr__(self) -> str:
        return f"Calendar(name={self.name!r}, timezone={self._c.tz.key!r})"

    @property
    def timezone(self) -> ZoneInfo:
        return self._c.tz

    @property
    def never_opens_from(self) -> datetime | None:
        """The instant (a UTC midnight) from which the calendar never opens again, if it
        has one: its last version has no hours on any weekday. None: it keeps opening.

        Past this instant `add`, `next_open` and `next_close` raise CalendarError, so a
        timer running on such a calendar could never come due: policies refuse to use one
        (`worker.core.policy`). The instant is a safe bound (a few days after the last
        dated fact of the spec), not necessarily the end of the last open stretch."""
        closed_after = self._c.closed_after_us
        return None if closed_after is None else _from_us(closed_after)

    # ------------------------------------------------------------- operations

    def is_open(self, t: datetime) -> bool:
        us = _to_us(t)
        tbl = self._table(_year_index(us))
        i = bisect_right(tbl.ends, us)
        return i < len(tbl.ends) and tbl.starts[i] <= us

    def next_open(self, t: datetime) -> datetime:
        """`t` (in UTC) if open, else the start of the next open stretch."""
        us = _to_us(t)
        k = _year_index(us)
        tbl = self._table(k)
        i = bisect_right(tbl.ends, us)
        while i == len(tbl.ends):
            k, tbl, i = k + 1, self._next_table(k + 1, "opens"), 0
        return _from_us(max(us, tbl.starts[i]))

    def next_close(self, t: datetime) -> datetime | None:
        """End of the open stretch containing `t`, or of the next one if `t` is closed.

        Adjoining intervals (also across dates) form one stretch. None if the calendar
        never closes again after `t` (always for a 24x7 calendar).
        """
        us = _to_us(t)
        open_after = self._c.open_after_us
        if open_after is not None and us >= open_after:
            return None
        k = _year_index(us)
        tbl = self._table(k)
        i = bisect_right(tbl.ends, us)
        while i == len(tbl.ends):
            k, tbl, i = k + 1, self._next_table(k + 1, "opens"), 0
        end = tbl.ends[i]
        while end == tbl.hi:  # the stretch may continue into the next year's table
            if open_after is not None and end >= open_after:
                return None
            k, tbl = k + 1, self._next_table(k + 1, "closes")
            if not tbl.starts or tbl.starts[0] != end:
                break
            end = tbl.ends[0]
        return _from_us(end)

    def elapsed(self, a: datetime, b: datetime) -> timedelta:
        """Business time in [a, b); negative (= -elapsed(b, a)) when a > b."""
        try:
            ua, ub = (a - _EPOCH) // _ONE_US, (b - _EPOCH) // _ONE_US
        except TypeError:
            raise _input_error(a, b) from None
        lo, hi = (ub, ua) if ua > ub else (ua, ub)
        open_after = self._c.open_after_us
        if open_after is not None and open_after <= lo and hi < _END_US:
            business = hi - lo  # open for good from `open_after` on (see `add`)
        else:
            business = self._offset_between(lo, hi)
        return -_ONE_US * business if ua > ub else _ONE_US * business

    def add(self, start: datetime, duration: timedelta) -> datetime:
        """The earliest instant (in UTC) at which `duration` of business time has elapsed
        since `start`. `add(start, 0) == start`; a negative duration raises ValueError."""
        # The hot path: helpers are inlined (see docs/calendar.md, performance).
        try:
            us = (start - _EPOCH) // _ONE_US
        except TypeError:
            raise _input_error(start) from None
        remaining = duration // _ONE_US
        if remaining <= 0:
            if remaining == 0:
                return _EPOCH + _ONE_US * us
            raise ValueError(f"negative duration {duration}")
        open_after = self._c.open_after_us
        if open_after is not None and open_after <= us and us + remaining < _END_US:
            # Open for good from `open_after` on (always for 24x7): business time is
            # wall time. Results past the supported years take the general path, which
            # raises.
            return _EPOCH + _ONE_US * (us + remaining)
        k = bisect_right(_YEAR_START_US, us) - 1
        tbl = self._tables.get(k) or self._table(k)
        ends = tbl.ends
        i = bisect_right(ends, us)
        if i < len(ends):
            s = tbl.starts[i]
            target = tbl.cum[i] + (us - s if us > s else 0) + remaining
        else:
            target = tbl.total + remaining
        while target > tbl.total:
            target -= tbl.total
            k += 1
            tbl = self._next_table(k, "opens")
        j = bisect_left(tbl.cumend, target)
        return _EPOCH + _ONE_US * (tbl.starts[j] + target - tbl.cum[j])

    # -------------------------------------------------------------- internals

    def _offset_between(self, ua: int, ub: int) -> int:
        """Business microseconds in [ua, ub), ua <= ub."""
        ka = bisect_right(_YEAR_START_US, ua) - 1
        ta = self._tables.get(ka) or self._table(ka)
        if ub < ta.hi:
            return _offset(ta, ub) - _offset(ta, ua)
        kb = _year_index(ub)
        total = ta.total - _offset(ta, ua)
        for k in range(ka + 1, kb):
            total += self._total(k)
        return total + _offset(self._table(kb), ub)

    def _total(self, k: int) -> int:
        tbl = self._tables.get(k)
        if tbl is not None:
            return tbl.total
        lo, hi = _YEAR_START_US[k], _YEAR_START_US[k + 1]
        c = self._c
        if c.closed_after_us is not None and lo >= c.closed_after_us:
            return 0
        if c.open_after_us is not None and lo >= c.open_after_us:
            return hi - lo
        return self._table(k).total

    def _next_table(self, k: int, what: str) -> _Table:
        c = self._c
        if c.closed_after_us is not None and _YEAR_START_US[k] >= c.closed_after_us:
            _fail(f"calendar {self.name!r} never {what} again after {_from_us(c.closed_after_us)}")
        return self._table(k)

    def _table(self, k: int) -> _Table:
        tbl = self._tables.get(k)
        if tbl is None:
            if not 0 <= k <= MAX_YEAR - MIN_YEAR:
                _fail(f"instant outside the supported UTC years {MIN_YEAR}..{MAX_YEAR}")
            tbl = self._tables[k] = self._build(k)
        return tbl

    def _build(self, k: int) -> _Table:
        lo, hi = _YEAR_START_US[k], _YEAR_START_US[k + 1]
        c = self._c
        if c.closed_after_us is not None and lo >= c.closed_after_us:
            return _Table(lo, hi, [])
        if c.open_after_us is not None and lo >= c.open_after_us:
            return _Table(lo, hi, [(lo, hi)])
        year = MIN_YEAR + k
        # Local dates whose intervals can reach into this UTC year: offsets are within
        # +-26 h and an interval ends at most at the owning date's second midnight.
        day, last = date(year - 1, 12, 29), date(year + 1, 1, 2)
        raw: list[tuple[int, int]] = []
        while day <= last:
            for s, e in self._day_spans(day):
                a = max(self._resolve(day, s), lo)
                b = min(self._resolve(day, e), hi)
                if a < b:
                    raw.append((a, b))
            day += timedelta(days=1)
        raw.sort()
        merged: list[tuple[int, int]] = []
        for s, e in raw:
            if merged and s <= merged[-1][1]:
                if e > merged[-1][1]:
                    merged[-1] = (merged[-1][0], e)
            else:
                merged.append((s, e))
        return _Table(lo, hi, merged)

    def _day_spans(self, day: date) -> _Day:
        c = self._c
        spans = c.exceptions.get(day)
        if spans is not None:
            return spans
        rules = c.rules[bisect_right(c.starts, day)]
        wd = c.extra_working.get(day)
        if wd is not None:
            return rules.week[wd]
        if day in c.closed or (rules.holidays is not None and self._is_holiday(rules, day)):
            return ()
        return rules.week[day.weekday()]

    def _is_holiday(self, rules: _Rules, day: date) -> bool:
        spec = rules.holidays
        assert spec is not None
        table = self._holidays.get(spec)
        if table is None:
            table = self._holidays[spec] = _holiday_table(spec)
        return day in table

    def _resolve(self, day: date, minute: int) -> int:
        """Epoch microseconds of the first instant the local clock reads >= the wall time."""
        wall = datetime(day.year, day.month, day.day) + timedelta(minutes=minute)
        local_us = (wall - _EPOCH_NAIVE) // _ONE_US
        tz = self._c.tz
        off0 = wall.replace(tzinfo=tz).utcoffset()
        off1 = wall.replace(tzinfo=tz, fold=1).utcoffset()
        assert off0 is not None and off1 is not None
        if off0 >= off1:  # unambiguous, or repeated (clocks went back): first occurrence
            return local_us - off0 // _ONE_US
        # Skipped (clocks went forward): the transition instant T, where the offset
        # changes from off0 to off1, lies in (local - off1, local - off0].
        lo, hi = local_us - off1 // _ONE_US, local_us - off0 // _ONE_US
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if _from_us(mid).astimezone(tz).utcoffset() == off0:
                lo = mid
            else:
                hi = mid
        return hi


def _offset(tbl: _Table, us: int) -> int:
    """Business microseconds in [tbl.lo, us) for us within the table's year."""
    i = bisect_right(tbl.ends, us)
    if i == len(tbl.ends):
        return tbl.total
    s = tbl.starts[i]
    return tbl.cum[i] + (us - s if us > s else 0)
