"""ISO 8601 durations for SLA targets, restricted to hours, minutes and seconds.

A target is an amount of *elapsed calendar time*: on a business calendar, `PT8H` is one
9-to-5 business day. Day, week, month and year designators are refused on purpose:
`P1D` would read as "one business day" to a person but mean 24 business hours (three
9-to-5 days) to the engine, a misreading that silently triples a deadline.
"""

from __future__ import annotations

import re
from datetime import timedelta

_PATTERN = re.compile(r"PT(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)(?:\.(\d{1,6}))?S)?")


def parse_duration(text: str) -> timedelta:
    """Parse `PT2H`, `PT1H30M`, `PT90S`, `PT0.5S` into a positive timedelta."""
    match = _PATTERN.fullmatch(text)
    if not match or not any(match.groups()):
        if re.fullmatch(r"P(\d+[YMWD])+(T.*)?", text):
            raise ValueError(
                f"invalid duration {text!r}: use hours, not days (a business day is "
                "not 24 hours; write PT8H for one 9-to-5 day)"
            )
        raise ValueError(f"invalid duration {text!r}")
    hours, minutes, seconds, fraction = match.groups()
    value = timedelta(
        hours=int(hours or 0),
        minutes=int(minutes or 0),
        seconds=int(seconds or 0),
        microseconds=int((fraction or "0").ljust(6, "0")),
    )
    if value <= timedelta(0):
        raise ValueError(f"invalid duration {text!r}: must be greater than zero")
    return value


def format_duration(value: timedelta) -> str:
    """The canonical ISO 8601 form: `PT2H`, `PT6H45M`, `PT0.5S` (never days)."""
    micros = value // timedelta(microseconds=1)
    if micros < 0:
        raise ValueError("negative durations have no ISO 8601 form here")
    seconds, micros = divmod(micros, 1_000_000)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    text = "PT"
    if hours:
        text += f"{hours}H"
    if minutes:
        text += f"{minutes}M"
    if seconds or micros or text == "PT":
        text += f"{seconds}.{micros:06d}".rstrip("0").rstrip(".") + "S"
    return text
