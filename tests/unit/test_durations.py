from __future__ import annotations

from datetime import timedelta

import pytest

from worker.core.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("PT2H", timedelta(hours=2)),
        ("PT16H", timedelta(hours=16)),
        ("PT1H30M", timedelta(hours=1, minutes=30)),
        ("PT6H45M", timedelta(hours=6, minutes=45)),
        ("PT90S", timedelta(seconds=90)),
        ("PT0.5S", timedelta(milliseconds=500)),
        ("PT1M0.000001S", timedelta(minutes=1, microseconds=1)),
    ],
)
def test_parse(text: str, value: timedelta) -> None:
    assert parse_duration(text) == value


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(hours=2), "PT2H"),
        (timedelta(hours=6, minutes=45), "PT6H45M"),
        (timedelta(hours=48), "PT48H"),
        (timedelta(seconds=90), "PT1M30S"),
        (timedelta(milliseconds=1500), "PT1.5S"),
        (timedelta(0), "PT0S"),
    ],
)
def test_format(value: timedelta, text: str) -> None:
    assert format_duration(value) == text
    if value:
        assert parse_duration(text) == value


@pytest.mark.parametrize("text", ["PT", "P", "", "2H", "PT-1H", "PT0S", "PT1.5H", "pt2h"])
def test_invalid(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["P1D", "P1W", "P1DT2H", "P1M"])
def test_days_are_refused_with_advice(text: str) -> None:
    with pytest.raises(ValueError, match="write PT8H"):
        parse_duration(text)
