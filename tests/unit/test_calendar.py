"""Hand-written tables for worker.core.calendar: aware instants in, expected instants out.

Times are written in Europe/Bratislava civil time unless they end in Z. The zone is
CET (+01:00) in winter and CEST (+02:00) from the last Sunday of March to the last Sunday
of October: 2026-03-29, 2026-10-25, 2027-03-28, 2027-10-31.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from worker.core.calendar import Calendar, CalendarError, CalendarSpec

BA = "Europe/Bratislava"
WORKWEEK = ("mon", "tue", "wed", "thu", "fri")
ALL_DAYS = (*WORKWEEK, "sat", "sun")
NINE_TO_FIVE = {day: ["09:00-17:00"] for day in WORKWEEK}


def t(text: str) -> datetime:
    return datetime.fromisoformat(text)


def h(hours: float) -> timedelta:
    return timedelta(hours=hours)


def make(spec: dict[str, Any], name: str = "test") -> Calendar:
    return Calendar.from_spec(spec, name=name)


VIP = make({"timezone": BA, "hours": NINE_TO_FIVE}, "vip")
PRO = make({"timezone": BA, "hours": NINE_TO_FIVE, "holidays": {"country": "SK"}}, "pro")
# Every night 01:00-05:00 local: the DST nights are 3 and 5 real hours long.
NIGHTS = make({"timezone": BA, "hours": {day: ["01:00-05:00"] for day in ALL_DAYS}})
# Night shift Sunday..Thursday 22:00 to 06:00 the next morning, with Slovak holidays.
NIGHT_SHIFT = make(
    {
        "timezone": BA,
        "hours": {day: ["22:00-06:00"] for day in ("sun", "mon", "tue", "wed", "thu")},
        "holidays": {"country": "SK"},
        "closed": [date(2026, 11, 29)],
    }
)
ALWAYS = Calendar.always_open()


# ---------------------------------------------------------------- reference examples


@pytest.mark.parametrize(
    ("cal", "start", "duration", "expected"),
    [
        # EX-100: vip, Tue 16:00 CET + 2 business hours; the 75% warning at 90 minutes.
        (VIP, "2026-11-24T16:00+01:00", h(2), "2026-11-25T09:00Z"),
        (VIP, "2026-11-24T16:00+01:00", h(1.5), "2026-11-25T08:30Z"),
        # EX-300: professional, created 17:30 CET (after hours): 1 h elapses by Wed 10:00;
        # after the pause 8 h remain from Thu 09:30; the warning is 5h45 after resuming.
        (PRO, "2026-11-24T16:30Z", h(1), "2026-11-25T10:00+01:00"),
        (PRO, "2026-11-26T09:30+01:00", h(8), "2026-11-27T08:30Z"),
        (PRO, "2026-11-26T09:30+01:00", h(5.75), "2026-11-26T14:15Z"),
        # EX-200: advanced priority 1 runs 24x7.
        (ALWAYS, "2026-11-24T16:10+01:00", h(1), "2026-11-24T17:10+01:00"),
    ],
)
def test_reference_examples(cal: Calendar, start: str, duration: timedelta, expected: str) -> None:
    assert cal.add(t(start), duration) == t(expected)


def test_ex300_elapsed_before_pause() -> None:
    assert PRO.elapsed(t("2026-11-24T16:30Z"), t("2026-11-25T10:00+01:00")) == h(1)
    assert PRO.elapsed(t("2026-11-24T16:30Z"), t("2026-11-27T08:30Z")) == h(1 + 7.5 + 8)


# ----------------------------------------------------------------------- weekends


@pytest.mark.parametrize(
    ("start", "duration", "expected"),
    [
        ("2026-11-27T16:00+01:00", h(2), "2026-11-30T10:00+01:00"),  # Fri -> Mon
        ("2026-11-28T12:00+01:00", h(2), "2026-11-30T11:00+01:00"),  # Sat noon
        ("2026-11-29T23:59+01:00", timedelta(minutes=1), "2026-11-30T09:01+01:00"),
        ("2026-11-27T15:00+01:00", h(2), "2026-11-27T17:00+01:00"),  # lands on 17:00
        (
            "2026-11-27T15:00+01:00",
            h(2) + timedelta(microseconds=1),
            "2026-11-30T09:00:00.000001+01:00",
        ),
        ("2026-11-27T17:00+01:00", h(1), "2026-11-30T10:00+01:00"),  # starts on 17:00
        ("2026-11-27T17:00+01:00", h(0), "2026-11-27T17:00+01:00"),  # zero: start itself
        ("2026-11-28T12:00+01:00", h(0), "2026-11-28T12:00+01:00"),
        ("2026-11-30T09:00+01:00", h(40), "2026-12-04T17:00+01:00"),  # a whole week
        ("2026-11-30T09:00+01:00", h(40) + timedelta(minutes=1), "2026-12-07T09:01+01:00"),
        ("2026-11-30T08:59:59.999999+01:00", h(1), "2026-11-30T10:00+01:00"),
        ("2026-11-30T09:00:00.000001+01:00", h(8), "2026-12-01T09:00:00.000001+01:00"),
        # 52 weeks of 40 h from the first Monday of 2026 ends on Friday 1 Jan 2027 17:00.
        ("2026-01-05T09:00+01:00", h(52 * 40), "2027-01-01T17:00+01:00"),
    ],
)
def test_add_weekends(start: str, duration: timedelta, expected: str) -> None:
    assert VIP.add(t(start), duration) == t(expected)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("2026-11-27T16:00+01:00", "2026-11-30T10:00+01:00", h(2)),
        ("2026-11-28T00:00+01:00", "2026-11-30T00:00+01:00", h(0)),  # Sat + Sun
        ("2026-11-30T09:00+01:00", "2026-12-07T09:00+01:00", h(40)),
        ("2026-11-30T17:00+01:00", "2026-12-01T09:00+01:00", h(0)),
        ("2026-11-30T12:00+01:00", "2026-11-30T12:00+01:00", h(0)),
        (
            "2026-11-30T09:00:00.000001+01:00",
            "2026-11-30T09:00:00.000003+01:00",
            timedelta(microseconds=2),
        ),
        ("2026-11-30T08:00Z", "2026-11-30T09:00+01:00", h(0)),  # the same instant
        ("2026-01-05T00:00+01:00", "2027-01-04T00:00+01:00", h(52 * 40)),  # across years
        # a > b gives the negative of elapsed(b, a)
        ("2026-11-30T10:00+01:00", "2026-11-27T16:00+01:00", h(-2)),
    ],
)
def test_elapsed_weekends(a: str, b: str, expected: timedelta) -> None:
    assert VIP.elapsed(t(a), t(b)) == expected


# -------------------------------------------------------------------------- edges


@pytest.mark.parametrize(
    ("instant", "is_open", "next_open", "next_close"),
    [
        ("2026-11-30T09:00+01:00", True, "2026-11-30T09:00+01:00", "2026-11-30T17:00+01:00"),
        (
            "2026-11-30T08:59:59.999999+01:00",
            False,
            "2026-11-30T09:00+01:00",
            "2026-11-30T17:00+01:00",
        ),
        (
            "2026-11-30T16:59:59.999999+01:00",
            True,
            "2026-11-30T16:59:59.999999+01:00",
            "2026-11-30T17:00+01:00",
        ),
        ("2026-11-30T17:00+01:00", False, "2026-12-01T09:00+01:00", "2026-12-01T17:00+01:00"),
        ("2026-11-27T17:00+01:00", False, "2026-11-30T09:00+01:00", "2026-11-30T17:00+01:00"),
        ("2026-11-28T12:00+01:00", False, "2026-11-30T09:00+01:00", "2026-11-30T17:00+01:00"),
        ("2026-11-30T12:00Z", True, "2026-11-30T12:00Z", "2026-11-30T16:00Z"),
    ],
)
def test_open_close_edges(instant: str, is_open: bool, next_open: str, next_close: str) -> None:
    assert VIP.is_open(t(instant)) is is_open
    assert VIP.next_open(t(instant)) == t(next_open)
    assert VIP.next_close(t(instant)) == t(next_close)


def test_results_are_utc() -> None:
    start = t("2026-11-30T10:00+01:00")
    for result in (VIP.add(start, h(1)), VIP.add(start, h(0)), VIP.next_open(start)):
        assert result.tzinfo is UTC
    assert VIP.next_close(start) == t("2026-11-30T16:00Z")


def test_adjoining_intervals_merge() -> None:
    split = make({"timezone": BA, "hours": {"mon": ["09:00-12:00", "12:00-17:00"]}})
    assert split.is_open(t("2026-11-30T12:00+01:00"))
    assert split.next_close(t("2026-11-30T10:00+01:00")) == t("2026-11-30T17:00+01:00")
    assert split.add(t("2026-11-30T11:00+01:00"), h(2)) == t("2026-11-30T13:00+01:00")


def test_lunch_break() -> None:
    tue = make({"timezone": BA, "hours": {"tue": ["09:00-12:00", "13:00-17:00"]}})
    assert tue.add(t("2026-12-01T11:00+01:00"), h(2)) == t("2026-12-01T14:00+01:00")
    assert tue.add(t("2026-12-01T11:00+01:00"), h(1)) == t("2026-12-01T12:00+01:00")
    assert not tue.is_open(t("2026-12-01T12:30+01:00"))
    assert tue.next_close(t("2026-12-01T12:30+01:00")) == t("2026-12-01T17:00+01:00")
    assert tue.elapsed(t("2026-12-01T00:00+01:00"), t("2026-12-02T00:00+01:00")) == h(7)


def test_adjoining_across_midnight_merge() -> None:
    cal = make({"timezone": BA, "hours": {"mon": ["18:00-24:00"], "tue": ["00:00-06:00"]}})
    assert cal.next_close(t("2026-11-30T20:00+01:00")) == t("2026-12-01T06:00+01:00")
    assert cal.add(t("2026-11-30T23:00+01:00"), h(2)) == t("2026-12-01T01:00+01:00")


# ------------------------------------------------------------------ Slovak holidays


@pytest.mark.parametrize(
    ("cal", "start", "duration", "expected"),
    [
        # Christmas: 24 (Thu), 25 (Fri), 26 (Sat) December 2026.
        (PRO, "2026-12-23T16:00+01:00", h(2), "2026-12-28T10:00+01:00"),
        (VIP, "2026-12-23T16:00+01:00", h(2), "2026-12-24T10:00+01:00"),
        # Easter 2026: Good Friday 3 April, Easter Monday 6 April (already CEST).
        (PRO, "2026-04-02T16:00+02:00", h(2), "2026-04-07T10:00+02:00"),
        (VIP, "2026-04-02T16:00+02:00", h(2), "2026-04-03T10:00+02:00"),
        # Easter 2027: Good Friday 26 March (CET), Easter Monday 29 March (CEST since 28th).
        (PRO, "2027-03-25T16:00+01:00", h(2), "2027-03-30T10:00+02:00"),
        (VIP, "2027-03-25T16:00+01:00", h(2), "2027-03-26T10:00+01:00"),
        # New Year (Fri 1 Jan 2027) and Epiphany (Wed 6 Jan 2027).
        (PRO, "2026-12-31T16:00+01:00", h(2), "2027-01-04T10:00+01:00"),
        (PRO, "2027-01-05T16:00+01:00", h(2), "2027-01-07T10:00+01:00"),
    ],
)
def test_slovak_holidays(cal: Calendar, start: str, duration: timedelta, expected: str) -> None:
    assert cal.add(t(start), duration) == t(expected)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("2026-12-21T00:00+01:00", "2026-12-28T00:00+01:00", h(3 * 8)),  # Mon-Wed only
        ("2026-03-30T00:00+02:00", "2026-04-13T00:00+02:00", h(8 * 8)),  # Easter 2026
        ("2027-03-22T00:00+01:00", "2027-04-05T00:00+02:00", h(8 * 8)),  # Easter 2027
    ],
)
def test_slovak_holidays_elapsed(a: str, b: str, expected: timedelta) -> None:
    assert PRO.elapsed(t(a), t(b)) == expected


@pytest.mark.parametrize(
    "instant",
    [
        "2026-12-24T10:00+01:00",
        "2026-12-25T10:00+01:00",
        "2026-04-03T10:00+02:00",
        "2026-04-06T10:00+02:00",
        "2027-03-26T10:00+01:00",
        "2027-03-29T10:00+02:00",
    ],
)
def test_slovak_holidays_are_closed(instant: str) -> None:
    assert not PRO.is_open(t(instant))
    assert VIP.is_open(t(instant))


# -------------------------------------------------------------------------- DST


@pytest.mark.parametrize(
    ("night", "real_hours"),
    [
        ("2026-03-28", 4),
        ("2026-03-29", 3),  # spring forward: 02:00 CET -> 03:00 CEST
        ("2026-10-25", 5),  # fall back: 03:00 CEST -> 02:00 CET
        ("2027-03-28", 3),
        ("2027-10-31", 5),
        ("2027-11-01", 4),
    ],
)
def test_dst_nights_last_what_the_clock_says(night: str, real_hours: int) -> None:
    day = date.fromisoformat(night)
    start = datetime(day.year, day.month, day.day, 1, tzinfo=NIGHTS.timezone)
    midnight = datetime(day.year, day.month, day.day, tzinfo=NIGHTS.timezone)
    assert NIGHTS.elapsed(midnight, midnight + h(24)) == h(real_hours)
    close = NIGHTS.next_close(start)
    assert close is not None
    assert close - start == h(real_hours)
    assert NIGHTS.add(start, h(real_hours)) == close


@pytest.mark.parametrize(
    ("start", "duration", "expected"),
    [
        ("2026-03-29T01:00+01:00", h(3), "2026-03-29T05:00+02:00"),
        ("2026-03-29T01:30+01:00", h(1), "2026-03-29T03:30+02:00"),  # across the jump
        ("2026-10-25T01:00+02:00", h(5), "2026-10-25T05:00+01:00"),
        ("2026-10-25T02:30+02:00", h(1), "2026-10-25T02:30+01:00"),  # the hour twice
        ("2027-03-28T01:00+01:00", h(3), "2027-03-28T05:00+02:00"),
        ("2027-10-31T01:00+02:00", h(5), "2027-10-31T05:00+01:00"),
        ("2027-10-31T04:00+01:00", h(2), "2027-11-01T02:00+01:00"),
    ],
)
def test_dst_nights_add(start: str, duration: timedelta, expected: str) -> None:
    assert NIGHTS.add(t(start), duration) == t(expected)


@pytest.mark.parametrize(
    ("cal", "start", "duration", "expected"),
    [
        (VIP, "2026-03-27T16:00+01:00", h(2), "2026-03-30T10:00+02:00"),
        (VIP, "2026-10-23T16:00+02:00", h(2), "2026-10-26T10:00+01:00"),
        (VIP, "2027-03-26T16:00+01:00", h(2), "2027-03-29T10:00+02:00"),
        (VIP, "2027-10-29T16:00+02:00", h(2), "2027-11-01T10:00+01:00"),
        (PRO, "2027-03-25T16:00+01:00", h(9), "2027-03-30T17:00+02:00"),
    ],
)
def test_business_days_across_dst(
    cal: Calendar, start: str, duration: timedelta, expected: str
) -> None:
    assert cal.add(t(start), duration) == t(expected)


def test_dst_weeks_still_have_40_hours() -> None:
    for monday in ("2026-03-23", "2026-10-19", "2027-03-22", "2027-10-25"):
        start = datetime.fromisoformat(monday).replace(tzinfo=VIP.timezone)
        assert VIP.elapsed(start, start + timedelta(days=7)) == h(40)


@pytest.mark.parametrize(
    ("interval", "day", "opens", "closes"),
    [
        # Nonexistent wall times (02:00-03:00 on spring-forward day) resolve to the jump.
        ("02:30-04:00", "2026-03-29", "2026-03-29T01:00Z", "2026-03-29T02:00Z"),
        ("00:00-02:30", "2026-03-29", "2026-03-28T23:00Z", "2026-03-29T01:00Z"),
        # Repeated wall times (02:00-03:00 on fall-back day) resolve to the first pass.
        ("02:30-06:00", "2026-10-25", "2026-10-25T00:30Z", "2026-10-25T05:00Z"),
        ("00:00-02:30", "2026-10-25", "2026-10-24T22:00Z", "2026-10-25T00:30Z"),
        ("02:00-03:00", "2026-10-25", "2026-10-25T00:00Z", "2026-10-25T02:00Z"),
    ],
)
def test_nonexistent_and_repeated_wall_times(
    interval: str, day: str, opens: str, closes: str
) -> None:
    cal = make({"timezone": BA, "hours": {"sun": [interval]}})
    midnight = t(f"{day}T00:00Z") - h(6)
    assert cal.next_open(midnight) == t(opens)
    assert cal.next_close(midnight) == t(closes)
    assert cal.elapsed(midnight, midnight + h(30)) == t(closes) - t(opens)


def test_interval_inside_skipped_hour_is_empty() -> None:
    cal = make({"timezone": BA, "hours": {"sun": ["02:15-02:45"]}})
    assert cal.next_open(t("2026-03-28T12:00Z")) == t("2026-04-05T02:15+02:00")
    assert cal.elapsed(t("2026-03-29T00:00Z"), t("2026-03-30T00:00Z")) == h(0)


def test_thirty_minute_dst_lord_howe() -> None:
    # Lord Howe moves from +11 to +10:30 at 02:00 on 2026-04-05 (02:00 -> 01:30).
    cal = make({"timezone": "Australia/Lord_Howe", "hours": {"sun": ["01:00-03:00"]}})
    assert cal.elapsed(t("2026-04-04T00:00Z"), t("2026-04-06T00:00Z")) == h(2.5)


# ------------------------------------------------------------- midnight crossing


@pytest.mark.parametrize(
    ("instant", "is_open"),
    [
        ("2026-11-22T21:59:59+01:00", False),  # Sunday evening
        ("2026-11-22T22:00+01:00", True),
        ("2026-11-23T03:00+01:00", True),  # Monday morning belongs to Sunday's interval
        ("2026-11-23T06:00+01:00", False),
        ("2026-11-27T05:59+01:00", True),  # Thursday's interval runs into Friday
        ("2026-11-27T22:00+01:00", False),  # Friday night: no interval starts Friday
        # 29 Nov (Sun) is a closed date: its own interval is gone, Saturday's isn't there,
        # and Monday morning 30 Nov (which belongs to 29 Nov) is closed too.
        ("2026-11-29T23:00+01:00", False),
        ("2026-11-30T03:00+01:00", False),
        ("2026-11-30T23:00+01:00", True),
        # 24 Dec (Thu) is a holiday: Wednesday's interval still runs into it...
        ("2026-12-24T03:00+01:00", True),
        # ...but the interval that would start on the 24th does not.
        ("2026-12-24T23:00+01:00", False),
        ("2026-12-25T03:00+01:00", False),
        ("2026-12-27T23:00+01:00", True),  # Sunday 27th is an ordinary day
    ],
)
def test_midnight_crossing_is_open(instant: str, is_open: bool) -> None:
    assert NIGHT_SHIFT.is_open(t(instant)) is is_open


@pytest.mark.parametrize(
    ("start", "duration", "expected"),
    [
        ("2026-11-22T21:00+01:00", h(1), "2026-11-22T23:00+01:00"),
        ("2026-11-22T23:00+01:00", h(7), "2026-11-23T06:00+01:00"),
        ("2026-11-22T23:00+01:00", h(8), "2026-11-23T23:00+01:00"),
        # Friday 05:00 is inside Thursday's night; Sunday 29 Nov is a closed date.
        ("2026-11-27T05:00+01:00", h(2), "2026-11-30T23:00+01:00"),
        ("2026-12-23T23:00+01:00", h(8), "2026-12-27T23:00+01:00"),
    ],
)
def test_midnight_crossing_add(start: str, duration: timedelta, expected: str) -> None:
    assert NIGHT_SHIFT.add(t(start), duration) == t(expected)


def test_midnight_crossing_next_close() -> None:
    assert NIGHT_SHIFT.next_close(t("2026-11-23T01:00+01:00")) == t("2026-11-23T06:00+01:00")
    assert NIGHT_SHIFT.next_close(t("2026-11-23T12:00+01:00")) == t("2026-11-24T06:00+01:00")


@pytest.mark.parametrize("end", ["24:00", "00:00"])
def test_midnight_end_spellings(end: str) -> None:
    cal = make({"timezone": BA, "hours": {"mon": [f"20:00-{end}"]}})
    assert cal.next_close(t("2026-11-30T21:00+01:00")) == t("2026-12-01T00:00+01:00")


def test_sunday_night_into_monday_morning_wraps_the_week() -> None:
    cal = make({"timezone": BA, "hours": {"sun": ["22:00-06:00"], "mon": ["06:00-08:00"]}})
    assert cal.next_close(t("2026-11-29T23:00+01:00")) == t("2026-11-30T08:00+01:00")


# -------------------------------------------------------------------------- 24x7


@pytest.mark.parametrize(
    "start", ["2026-03-29T00:30+01:00", "2026-10-25T01:00+02:00", "2026-12-31T23:30Z"]
)
def test_always_open(start: str) -> None:
    s = t(start)
    assert ALWAYS.is_open(s)
    assert ALWAYS.next_open(s) == s
    assert ALWAYS.next_close(s) is None
    assert ALWAYS.add(s, h(5)) == s + h(5)
    assert ALWAYS.add(s, timedelta(days=800)) == s + timedelta(days=800)
    assert ALWAYS.elapsed(s, s + timedelta(days=1000, microseconds=7)) == timedelta(
        days=1000, microseconds=7
    )
    assert ALWAYS.name == "24x7"


def test_always_open_spec_and_full_week_hours() -> None:
    spec = {"always_open": True}
    assert Calendar.from_spec(spec).next_close(t("2026-01-01T00:00Z")) is None
    full = make({"timezone": BA, "hours": {d: ["00:00-24:00"] for d in ALL_DAYS}})
    s = t("2026-03-28T12:00Z")
    assert full.next_close(s) is None
    assert full.elapsed(s, s + timedelta(days=900)) == timedelta(days=900)
    assert full.add(s, timedelta(days=900)) == s + timedelta(days=900)


def test_full_week_with_holidays_closes_on_holidays() -> None:
    cal = make(
        {
            "timezone": "America/New_York",
            "hours": {d: ["00:00-24:00"] for d in ALL_DAYS},
            "holidays": {"country": "SK"},
        }
    )
    # 27 Dec to 1 Jan (New York time) is one stretch that crosses the UTC new year.
    assert cal.next_close(t("2026-12-28T00:00Z")) == t("2027-01-01T00:00-05:00")
    assert cal.next_open(t("2026-12-25T12:00Z")) == t("2026-12-27T00:00-05:00")
    assert cal.elapsed(t("2026-12-31T00:00-05:00"), t("2027-01-03T00:00-05:00")) == h(24 + 24)


def test_stretch_across_utc_new_year_in_other_zone() -> None:
    cal = make({"timezone": "Asia/Kathmandu", "hours": {"thu": ["20:00-08:00"]}})
    # Thu 31 Dec 2026 20:00 +05:45 = 14:15Z; ends Fri 08:00 +05:45 = 02:15Z in 2027.
    assert cal.next_close(t("2026-12-31T20:00Z")) == t("2027-01-01T02:15Z")
    assert cal.add(t("2026-12-31T23:00Z"), h(4)) == t("2027-01-07T15:00Z")
    assert cal.elapsed(t("2026-12-31T00:00Z"), t("2027-01-02T00:00Z")) == h(12)


# ------------------------------------------------- exceptions, extra days, versions


@pytest.mark.parametrize(
    ("extra", "start", "duration", "expected"),
    [
        # An exception wins over the holiday on 24 Dec: open 09-12.
        ({"exceptions": {"2026-12-24": ["09:00-12:00"]}}, "2026-12-23T16:00+01:00", h(2),
         "2026-12-24T10:00+01:00"),
        ({"exceptions": {"2026-12-24": ["09:00-12:00"]}}, "2026-12-23T16:00+01:00", h(5),
         "2026-12-28T10:00+01:00"),
        # An empty exception closes a working Wednesday.
        ({"exceptions": {"2026-11-25": []}}, "2026-11-24T16:00+01:00", h(2),
         "2026-11-26T10:00+01:00"),
        ({"closed": ["2026-11-25"]}, "2026-11-24T16:00+01:00", h(2), "2026-11-26T10:00+01:00"),
        # An extra working Saturday, and an extra working holiday.
        ({"extra_working": {"2026-11-28": "mon"}}, "2026-11-27T16:00+01:00", h(2),
         "2026-11-28T10:00+01:00"),
        ({"extra_working": {"2026-12-24": "thu"}}, "2026-12-23T16:00+01:00", h(2),
         "2026-12-24T10:00+01:00"),
        # An exception may cross midnight into the next date.
        ({"exceptions": {"2026-11-28": ["20:00-02:00"]}}, "2026-11-28T19:00+01:00", h(6),
         "2026-11-29T02:00+01:00"),
    ],
)  # fmt: skip
def test_exceptions_and_extra_working(
    extra: dict[str, Any], start: str, duration: timedelta, expected: str
) -> None:
    cal = make({"timezone": BA, "hours": NINE_TO_FIVE, "holidays": {"country": "SK"}, **extra})
    assert cal.add(t(start), duration) == t(expected)


def test_exception_overlapping_a_crossing_interval_is_united() -> None:
    cal = make(
        {
            "timezone": BA,
            "hours": {"sun": ["22:00-06:00"]},
            "exceptions": {"2026-11-30": ["04:00-10:00"]},
        }
    )
    start = t("2026-11-29T22:00+01:00")
    assert cal.next_close(start) == t("2026-11-30T10:00+01:00")
    assert cal.elapsed(start, start + h(24)) == h(12)


def test_versions() -> None:
    cal = make(
        {
            "timezone": BA,
            "hours": NINE_TO_FIVE,
            "versions": [
                # Listed out of order on purpose: versions are sorted by date.
                {"effective_from": "2027-06-01", "holidays": None},
                {"effective_from": "2027-01-01", "hours": {d: ["08:00-16:00"] for d in WORKWEEK}},
                {"effective_from": "2027-03-01", "holidays": {"country": "SK"}},
            ],
        }
    )
    # Base hours until 31 Dec 2026, 08-16 from Friday 1 Jan 2027 (not a holiday yet).
    assert cal.add(t("2026-12-31T16:00+01:00"), h(2)) == t("2027-01-01T09:00+01:00")
    assert cal.is_open(t("2026-12-24T10:00+01:00"))
    # From March the 08-16 hours are kept and Slovak holidays apply: Easter 2027.
    assert cal.add(t("2027-03-25T15:00+01:00"), h(2)) == t("2027-03-30T09:00+02:00")
    # From June holidays are dropped again; the hours stay 08-16.
    assert cal.is_open(t("2027-12-24T08:00+01:00"))
    assert not cal.is_open(t("2027-12-24T16:00+01:00"))


def test_version_boundary_with_crossing_interval() -> None:
    cal = make(
        {
            "timezone": BA,
            "hours": {"sun": ["22:00-06:00"]},
            "versions": [{"effective_from": "2026-11-30", "hours": {"mon": ["00:00-08:00"]}}],
        }
    )
    # Sunday 29 Nov still uses the base schedule; its night runs into the new version.
    assert cal.next_close(t("2026-11-29T23:00+01:00")) == t("2026-11-30T08:00+01:00")
    assert not cal.is_open(t("2026-12-06T23:00+01:00"))


def test_calendar_that_stops_opening() -> None:
    cal = make(
        {
            "timezone": BA,
            "hours": NINE_TO_FIVE,
            "versions": [{"effective_from": "2027-01-01", "hours": {}}],
        }
    )
    assert cal.add(t("2026-12-31T16:00+01:00"), h(1)) == t("2026-12-31T17:00+01:00")
    with pytest.raises(CalendarError, match="never opens again"):
        cal.add(t("2026-12-31T16:00+01:00"), h(2))
    with pytest.raises(CalendarError, match="never opens again"):
        cal.next_open(t("2027-01-01T00:00Z"))
    assert cal.elapsed(t("2026-12-31T00:00Z"), t("2090-01-01T00:00Z")) == h(8)


def test_spec_shape_from_yaml_like_dict() -> None:
    spec = CalendarSpec.model_validate(
        {
            "timezone": BA,
            "hours": {
                "mon": ["09:00-17:00"],
                "tue": ["09:00-12:00", "13:00-17:00"],
                "sun": ["22:00-06:00"],
            },
            "holidays": {"country": "SK", "subdivision": None},
            "closed": [date(2026, 12, 31)],
            "exceptions": {date(2026, 12, 24): ["09:00-12:00"]},
            "extra_working": {date(2027, 1, 2): "mon"},
            "versions": [{"effective_from": date(2027, 1, 1), "hours": {"mon": ["10:00-18:00"]}}],
        }
    )
    cal = spec.build(name="custom")
    assert cal.name == "custom"
    assert cal.spec is spec
    assert cal.is_open(t("2027-01-02T10:00+01:00"))  # extra working Saturday, new hours
    assert not cal.is_open(t("2027-01-02T09:30+01:00"))


# ------------------------------------------------------------ identity and sharing


def test_calendar_is_immutable_and_hashable() -> None:
    a = make({"timezone": BA, "hours": {"mon": ["09:00-17:00"], "tue": ["09:00-17:00"]}})
    b = make({"timezone": BA, "hours": {"tue": ["09:00-17:00"], "mon": ["09:00-17:00"]}})
    assert a == b
    assert hash(a) == hash(b)
    assert len({a, b, VIP}) == 2
    assert a != make({"timezone": BA, "hours": {"mon": ["09:00-17:00"]}})
    assert Calendar(a.spec, name="other") != a
    with pytest.raises(AttributeError):
        a.name = "x"  # type: ignore[misc]
    assert repr(VIP) == "Calendar(name='vip', timezone='Europe/Bratislava')"


# ---------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"timezone": BA, "hours": {"mon": ["09:00-12:00", "11:00-13:00"]}},
         r"hours\.mon: overlapping intervals 09:00-12:00 and 11:00-13:00"),
        ({"timezone": BA, "hours": {"mon": ["09:00-12:00", "09:00-12:00"]}},
         "overlapping intervals"),
        ({"timezone": BA, "hours": {"sun": ["22:00-06:00"], "mon": ["05:00-09:00"]}},
         "hours: overlapping intervals sun 22:00-06:00 and mon 05:00-09:00"),
        ({"timezone": BA, "hours": {"mon": ["22:00-06:00"], "tue": ["05:59-09:00"]}},
         "overlapping intervals mon 22:00-06:00 and tue 05:59-09:00"),
        ({"timezone": BA, "hours": {"mon": ["09:00-09:00"]}}, "ends where it starts"),
        ({"timezone": BA, "hours": {"mon": ["00:00-00:00"]}}, "ends where it starts"),
        ({"timezone": BA, "hours": {"mon": ["9-17"]}}, r"hours\.mon\[0\]: malformed interval"),
        ({"timezone": BA, "hours": {"mon": ["09:00\u201317:00"]}}, "malformed interval"),
        ({"timezone": BA, "hours": {"mon": ["9:00-17:00"]}}, "malformed interval"),
        ({"timezone": BA, "hours": {"mon": ["09:00-17:00", "25:00-26:00"]}},
         r"hours\.mon\[1\]: malformed interval '25:00-26:00'"),
        ({"timezone": BA, "hours": {"mon": ["09:60-10:00"]}}, "malformed interval"),
        ({"timezone": BA, "hours": {"mon": ["24:00-01:00"]}}, "malformed interval"),
        ({"timezone": BA, "hours": {"mon": ["09:00-24:30"]}}, "malformed interval"),
        ({"timezone": "Mars/Olympus_Mons", "hours": NINE_TO_FIVE},
         "timezone: unknown time zone 'Mars/Olympus_Mons'"),
        ({"timezone": "../etc/passwd", "hours": NINE_TO_FIVE}, "unknown time zone"),
        ({"hours": NINE_TO_FIVE}, "timezone: required"),
        ({"timezone": BA, "hours": NINE_TO_FIVE, "holidays": {"country": "XX"}},
         "holidays: Country XX not available"),
        ({"timezone": BA, "hours": NINE_TO_FIVE,
          "holidays": {"country": "SK", "subdivision": "ZZ"}},
         "holidays: .*does not have subdivision ZZ"),
        ({"timezone": BA, "hours": {"monday": ["09:00-17:00"]}}, r"hours\.monday"),
        ({"timezone": BA, "hours": NINE_TO_FIVE, "timezon": "UTC"}, "timezon"),
        ({"timezone": BA, "hours": {"mon": "09:00-17:00"}}, r"hours\.mon"),
        ({"timezone": BA}, "hours: no open interval"),
        ({"timezone": BA, "hours": {"mon": []}}, "hours: no open interval"),
        ({"always_open": True, "hours": NINE_TO_FIVE},
         "always_open: a 24x7 calendar takes no hours"),
        ({"always_open": True, "timezone": "Nowhere/Land"}, "unknown time zone"),
        ({"timezone": BA, "hours": NINE_TO_FIVE, "closed": ["2026-12-24"],
          "exceptions": {"2026-12-24": []}}, "closed: 2026-12-24 also has an exception"),
        ({"timezone": BA, "hours": NINE_TO_FIVE, "closed": ["2026-12-24"],
          "extra_working": {"2026-12-24": "mon"}}, "also an extra working date"),
        ({"timezone": BA, "hours": NINE_TO_FIVE, "exceptions": {"2026-12-24": []},
          "extra_working": {"2026-12-24": "mon"}}, "also an extra working date"),
        ({"timezone": BA, "hours": NINE_TO_FIVE, "extra_working": {"2026-12-26": "sat"}},
         "extra_working: 2026-12-26 uses sat, which has no hours"),
        ({"timezone": BA, "hours": NINE_TO_FIVE,
          "exceptions": {"2026-12-24": ["09:00-12:00", "11:00-13:00"]}},
         r"exceptions\[2026-12-24\]: overlapping intervals"),
        ({"timezone": BA, "hours": NINE_TO_FIVE, "exceptions": {"2026-12-24": ["9-12"]}},
         r"exceptions\[2026-12-24\]\[0\]: malformed interval"),
        ({"timezone": BA, "hours": NINE_TO_FIVE,
          "versions": [{"effective_from": "2027-01-01", "hours": {"mon": ["x"]}}]},
         r"versions\[2027-01-01\]\.hours\.mon\[0\]: malformed"),
        ({"timezone": BA, "hours": NINE_TO_FIVE,
          "versions": [{"effective_from": "2027-01-01", "holidays": {"country": "XX"}}]},
         r"versions\[2027-01-01\]\.holidays: Country XX"),
        ({"timezone": BA, "hours": NINE_TO_FIVE,
          "versions": [{"effective_from": "2027-01-01", "hours": {}},
                       {"effective_from": "2027-01-01", "hours": NINE_TO_FIVE}]},
         "two versions take effect on the same date"),
        ({"timezone": BA, "hours": NINE_TO_FIVE, "versions": [{"effective_from": "2027-01-01"}]},
         "must replace hours and/or holidays"),
        ({"timezone": BA, "hours": NINE_TO_FIVE,
          "versions": [{"effective_from": "2027-01-01", "timezone": "UTC"}]},
         r"versions\.0\.timezone"),
    ],
)  # fmt: skip
def test_validation_errors(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(CalendarError, match=message):
        Calendar.from_spec(spec)


def test_validation_error_inside_pydantic_keeps_the_message() -> None:
    with pytest.raises(ValidationError, match="overlapping intervals 09:00-12:00 and 11:00-13:00"):
        CalendarSpec.model_validate(
            {"timezone": BA, "hours": {"mon": ["09:00-12:00", "11:00-13:00"]}}
        )
    assert issubclass(CalendarError, ValueError)


@pytest.mark.parametrize(
    "call",
    [
        lambda n: VIP.add(n, h(1)),
        lambda n: VIP.elapsed(n, t("2026-11-30T10:00Z")),
        lambda n: VIP.elapsed(t("2026-11-30T10:00Z"), n),
        VIP.is_open,
        VIP.next_open,
        VIP.next_close,
    ],
)
def test_naive_datetimes_are_rejected(call: Any) -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        call(datetime(2026, 11, 30, 10))


def test_negative_duration_is_rejected() -> None:
    with pytest.raises(ValueError, match="negative duration"):
        VIP.add(t("2026-11-30T10:00Z"), h(-1))


@pytest.mark.parametrize("instant", ["1899-12-31T23:59Z", "9999-01-01T00:00Z"])
def test_out_of_range_instants(instant: str) -> None:
    with pytest.raises(CalendarError, match="supported UTC years"):
        VIP.is_open(t(instant))


@pytest.mark.parametrize(
    ("hours", "never_closes"),
    [
        ({d: ["00:00-24:00"] for d in ALL_DAYS}, True),
        ({d: ["12:00-08:00", "08:00-12:00"] for d in ALL_DAYS}, True),  # via midnight crossing
        ({**{d: ["00:00-24:00"] for d in ALL_DAYS}, "sun": ["00:00-23:59"]}, False),
        ({d: ["00:00-24:00"] for d in WORKWEEK}, False),
    ],
)
def test_never_closing_week_is_detected(hours: dict[str, list[str]], never_closes: bool) -> None:
    cal = make({"timezone": BA, "hours": hours})
    s = t("2026-03-25T12:00Z")
    assert (cal.next_close(s) is None) is never_closes
    assert (cal.elapsed(s, s + timedelta(days=30)) == timedelta(days=30)) is never_closes


def test_never_closes_after_the_last_closed_date() -> None:
    cal = make(
        {"timezone": BA, "hours": {d: ["00:00-24:00"] for d in ALL_DAYS}, "closed": ["2026-12-24"]}
    )
    assert cal.next_close(t("2026-12-20T12:00Z")) == t("2026-12-24T00:00+01:00")
    assert cal.next_open(t("2026-12-24T12:00Z")) == t("2026-12-25T00:00+01:00")
    assert cal.next_close(t("2026-12-24T12:00Z")) is None
    a, b = t("2026-12-01T00:00+01:00"), t("2027-12-01T00:00+01:00")
    assert cal.elapsed(a, b) == b - a - h(24)
    assert cal.add(a, b - a - h(24)) == b
