"""Benchmark worker.core.calendar against the `businesstimedelta` package.

Both libraries get the same calendar (Monday-Friday 09:00-17:00 Europe/Bratislava with
the public holidays of Slovakia) and the same random inputs; the script times `add` and
`elapsed`, counts the results that differ, names each kind of difference, and prints
`speedup vs businesstimedelta: <N>x` last (N = the slower of the two speedups).

    .venv/bin/python bench/calendar_bench.py [--n 100000] [--seed 2026]

Inputs: instants uniform over 2026-2027 (both DST changes each year, two Easters, two
Christmases), a third of them at microsecond precision, a third on whole minutes and a
third on whole hours (so that some fall exactly on 09:00 and 17:00); durations up to
40 business hours with the same mix, 1% of them zero; `elapsed` spans up to 7 days.
businesstimedelta wants pytz zones; it is given aware UTC datetimes, which it converts
itself, and both results are compared as instants.
"""

from __future__ import annotations

import argparse
import platform
import random
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from datetime import time as clock
from pathlib import Path
from typing import Any

import businesstimedelta as btd
import holidays
import pytz

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from worker.core.calendar import Calendar

ZONE = "Europe/Bratislava"
START = datetime(2026, 1, 1, tzinfo=UTC)
END = datetime(2028, 1, 1, tzinfo=UTC)
HOUR_US = 3_600_000_000


def ours() -> Calendar:
    return Calendar.from_spec(
        {
            "timezone": ZONE,
            "hours": {day: ["09:00-17:00"] for day in ("mon", "tue", "wed", "thu", "fri")},
            "holidays": {"country": "SK"},
        },
        name="bench",
    )


def theirs() -> Any:
    tz = pytz.timezone(ZONE)
    workday = btd.WorkDayRule(
        start_time=clock(9), end_time=clock(17), working_days=[0, 1, 2, 3, 4], tz=tz
    )
    return btd.Rules([workday, btd.HolidayRule(holidays.country_holidays("SK"), tz=tz)])


def rounded(rng: random.Random, us: int) -> int:
    """A third each: microsecond precision, whole minutes, whole hours."""
    unit = rng.choice((1, 60_000_000, HOUR_US))
    return us - us % unit


def make_inputs(
    n: int, seed: int
) -> tuple[list[tuple[datetime, timedelta]], list[tuple[datetime, datetime]]]:
    rng = random.Random(seed)
    span = (END - START) // timedelta(microseconds=1)

    def instant() -> datetime:
        return START + timedelta(microseconds=rounded(rng, rng.randrange(span)))

    adds = []
    for _ in range(n):
        us = 0 if rng.random() < 0.01 else rounded(rng, rng.randrange(40 * HOUR_US))
        adds.append((instant(), timedelta(microseconds=us)))
    pairs = []
    for _ in range(n):
        a = instant()
        pairs.append((a, a + timedelta(microseconds=rounded(rng, rng.randrange(168 * HOUR_US)))))
    return adds, pairs


def timed(fn: Callable[[], list[Any]]) -> tuple[list[Any], float]:
    began = time.perf_counter()
    results = fn()
    return results, time.perf_counter() - began


def local(t: datetime) -> str:
    return t.astimezone(pytz.timezone(ZONE)).strftime("%a %Y-%m-%d %H:%M:%S.%f %Z")


def classify_add(
    cal: Calendar, start: datetime, duration: timedelta, mine: datetime, other: datetime
) -> str:
    if duration == timedelta(0) and not cal.is_open(start) and other == cal.next_open(start):
        return "zero duration from a closed instant: they return the next opening, we the start"
    if other == cal.next_open(mine) and not cal.is_open(mine):
        return "lands on a closing time: they return the next opening, we the closing instant"
    return "other"


def classify_elapsed(mine: timedelta, other: timedelta) -> str:
    if other == mine - timedelta(microseconds=mine.microseconds):
        return "elapsed truncated to whole seconds by businesstimedelta"
    return "other"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="inputs per operation")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()

    cal, rules = ours(), theirs()
    adds, pairs = make_inputs(args.n, args.seed)

    def their_add(s: datetime, d: timedelta) -> datetime:
        result: datetime = s + btd.BusinessTimeDelta(rules, timedelta=d)
        return result

    def their_elapsed(a: datetime, b: datetime) -> timedelta:
        result: timedelta = rules.difference(a, b).timedelta
        return result

    # Warm up both (our per-year tables, both holiday caches) on a few inputs.
    for (s, d), (a, b) in zip(adds[:200], pairs[:200], strict=True):
        cal.add(s, d), cal.elapsed(a, b), their_add(s, d), their_elapsed(a, b)

    our_adds, t_our_add = timed(lambda: [cal.add(s, d) for s, d in adds])
    our_els, t_our_el = timed(lambda: [cal.elapsed(a, b) for a, b in pairs])
    print(f"{args.n} inputs per operation; our side done, timing businesstimedelta...", flush=True)
    their_adds, t_their_add = timed(lambda: [their_add(s, d) for s, d in adds])
    their_els, t_their_el = timed(lambda: [their_elapsed(a, b) for a, b in pairs])

    kinds: Counter[str] = Counter()
    examples: dict[str, str] = {}
    for (s, d), mine, other in zip(adds, our_adds, their_adds, strict=True):
        if mine != other:
            kind = "add: " + classify_add(cal, s, d, mine, other)
            kinds[kind] += 1
            examples.setdefault(
                kind, f"start {local(s)} + {d}: ours {local(mine)}, theirs {local(other)}"
            )
    for (a, b), mine, other in zip(pairs, our_els, their_els, strict=True):
        if mine != other:
            kind = "elapsed: " + classify_elapsed(mine, other)
            kinds[kind] += 1
            examples.setdefault(kind, f"{local(a)} -> {local(b)}: ours {mine}, theirs {other}")

    per_call = 1e6 / args.n
    print(f"python {platform.python_version()}, {platform.machine()}")
    print(f"{'':10} {'ours us/call':>14} {'businesstimedelta us/call':>27} {'speedup':>9}")
    speedups = []
    for name, mine_s, their_s in (
        ("add", t_our_add, t_their_add),
        ("elapsed", t_our_el, t_their_el),
    ):
        speedups.append(their_s / mine_s)
        print(
            f"{name:10} {mine_s * per_call:14.2f} {their_s * per_call:27.2f} "
            f"{their_s / mine_s:8.0f}x"
        )
    total = sum(kinds.values())
    print(f"differences: {total} of {2 * args.n} results")
    for kind, count in kinds.most_common():
        print(f"  {count:7d}  {kind}")
        print(f"           e.g. {examples[kind]}")
    print(f"speedup vs businesstimedelta: {min(speedups):.0f}x")


if __name__ == "__main__":
    main()
