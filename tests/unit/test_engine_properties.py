"""The engine against an independent, brute-force model of the timer semantics.

The model knows nothing of deadlines, `Calendar.add` or pause segments. It walks time
minute by minute; for every running clock and every calendar it counts the minutes that
were open and not paused, and remembers the instant each count was first reached. A point
(warning fraction or breach) is due at the instant its count was reached under the
calendar of the *current* priority. Random single-ticket histories, with priority changes
across calendars, pauses, follow-up cycles and solving, must give the same warnings,
breaches and met timers as the engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import holidays
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.replaying import run_replay
from worker.core.policy import Policy

POLICY = Policy.from_mapping(
    yaml.safe_load(
        """
version: property-test
calendars:
  biz:
    timezone: Europe/Bratislava
    hours: {mon: ["09:00-17:00"], tue: ["09:00-17:00"], wed: ["09:00-17:00"],
            thu: ["09:00-17:00"], fri: ["09:00-17:00"]}
    holidays: {country: SK}
  clock: {always_open: true}
warnings: [0.5, 0.75]
plans:
  p:
    default_priority: 2
    priorities:
      1: {first_response: {target: PT1H, calendar: clock},
          follow_up: {target: PT2H, calendar: clock}}
      2: {first_response: {target: PT4H, calendar: biz},
          follow_up: {target: PT8H, calendar: biz}}
      3: {first_response: {target: PT2H, calendar: biz}}
      4: {}
"""
    )
)
# (metric -> (minutes, calendar)) per priority, as the model sees the policy above.
TARGETS = {
    1: {"first_response": (60, "clock"), "follow_up": (120, "clock")},
    2: {"first_response": (240, "biz"), "follow_up": (480, "biz")},
    3: {"first_response": (120, "biz")},
    4: {},
}
FRACTIONS = (0.5, 0.75)
ZONE = ZoneInfo("Europe/Bratislava")
SK = holidays.country_holidays("SK", years=range(2025, 2029))
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def instant(minute: int) -> datetime:
    return EPOCH + timedelta(minutes=minute)


def is_open(calendar: str, minute: int) -> bool:
    """Is the minute starting at `minute` open? (Independent of worker.core.calendar.)"""
    if calendar == "clock":
        return True
    local = instant(minute).astimezone(ZONE)
    return local.weekday() < 5 and 9 <= local.hour < 17 and local.date() not in SK


@dataclass
class ModelClock:
    metric: str
    cycle: int
    reached: dict[str, list[int]]  # calendar -> minute at which count k was reached
    emitted: set[float | None] = field(default_factory=set)


@dataclass
class Model:
    priority: int = 2
    paused: bool = False
    responded: bool = False
    finished: bool = False
    cycles: int = 0
    clocks: dict[str, ModelClock] = field(default_factory=dict)
    out: list[tuple[str, str, int, float | None, int]] = field(default_factory=list)
    met: list[tuple[str, int]] = field(default_factory=list)

    def start(self, metric: str, cycle: int, minute: int) -> None:
        self.clocks[metric] = ModelClock(metric, cycle, {"biz": [minute], "clock": [minute]})

    def stop_all(self) -> None:
        for clock in self.clocks.values():
            if None not in clock.emitted and clock.metric in TARGETS[self.priority]:
                self.met.append((clock.metric, clock.cycle))
        self.clocks.clear()

    def fire(self, minute: int, *, strict: bool) -> None:
        for clock in list(self.clocks.values()):
            target = TARGETS[self.priority].get(clock.metric)
            if target is None or None in clock.emitted:
                continue
            minutes, calendar = target
            points = [f for f in FRACTIONS if f not in clock.emitted] + [None]
            for point in points:
                amount = minutes if point is None else int(minutes * point)
                reached = clock.reached[calendar]
                if len(reached) <= amount:
                    break
                due = reached[amount]
                if due > minute or (due == minute and strict):
                    break
                kind = "sla-breach" if point is None else "sla-warning"
                self.out.append((kind, clock.metric, clock.cycle, point, due))
                clock.emitted.add(point)

    def apply(self, kind: str, value: int, minute: int) -> None:
        if self.finished:
            if kind == "priority":
                self.priority = value
            return
        if kind == "agent":
            self.responded = True
            self.stop_all()
        elif kind == "customer":
            if self.responded and "follow_up" not in self.clocks:
                self.cycles += 1
                self.start("follow_up", self.cycles, minute)
        elif kind == "pause":
            self.paused = True
        elif kind == "open":
            self.paused = False
        elif kind == "priority":
            self.priority = value
            self.fire(minute, strict=True)
        elif kind == "solved":
            self.stop_all()
            self.finished = True

    def tick(self, minute: int) -> None:
        """Count the minute [minute, minute + 1) on every calendar."""
        if self.paused:
            return
        for clock in self.clocks.values():
            for calendar, reached in clock.reached.items():
                if is_open(calendar, minute):
                    reached.append(minute + 1)


# Agent replies end every timer, so they are rarer; pauses, priority changes and customer
# replies are what make histories interesting.
KINDS = st.sampled_from(
    [
        "agent",
        "customer",
        "customer",
        "note",
        "pause",
        "pause",
        "open",
        "open",
        "open",
        "priority",
        "priority",
        "priority",
        "solved",
    ]
)
# Gaps on a 15-minute grid make events land exactly on warning points, deadlines and the
# edges of business hours, where the subtle rules live; some gaps are off the grid.
GAPS = st.integers(0, 40).map(lambda k: 15 * k) | st.integers(0, 3000)
STEPS = st.lists(st.tuples(GAPS, KINDS, st.integers(1, 4)), max_size=14)


@settings(max_examples=300, deadline=None)
@given(
    start=st.integers(0, 2 * 365 * 24 * 4).map(lambda k: 15 * k) | st.integers(0, 2 * 525600),
    initial_priority=st.integers(1, 4),
    steps=STEPS,
)
def test_engine_agrees_with_the_minute_by_minute_model(
    start: int, initial_priority: int, steps: list[tuple[int, str, int]]
) -> None:
    # The history, as minutes.
    history: list[tuple[int, str, int]] = []
    minute = start
    for gap, kind, value in steps:
        minute += gap
        history.append((minute, kind, value))
    end = minute + 3 * 24 * 60

    # The model.
    model = Model(priority=initial_priority)
    model.start("first_response", 1, start)
    by_minute: dict[int, list[tuple[str, int]]] = {}
    for at, kind, value in history:
        by_minute.setdefault(at, []).append((kind, value))
    for m in range(start, end + 1):
        for kind, value in by_minute.get(m, []):
            model.apply(kind, value, m)
        model.fire(m, strict=False)
        model.tick(m)

    # The engine, through replay.
    def event(n: int, at: int, kind: str, value: int) -> dict[str, object]:
        base = {"event_id": f"e{n}", "ticket_id": "T", "occurred_at": instant(at).isoformat()}
        if kind in ("agent", "customer", "note"):
            author = "agent" if kind == "note" else kind
            return {**base, "type": "reply-sent", "author": author, "public": kind != "note"}
        if kind == "priority":
            return {**base, "type": "priority-changed", "priority": value}
        status = {"pause": "pending" if value % 2 else "on-hold", "open": "open"}.get(kind, kind)
        return {**base, "type": "status-changed", "status": status}

    lines: list[dict[str, object] | str] = [
        {
            "event_id": "e0",
            "type": "ticket-created",
            "ticket_id": "T",
            "occurred_at": instant(start).isoformat(),
            "plan": "p",
            "priority": initial_priority,
        }
    ]
    lines += [event(n, at, kind, value) for n, (at, kind, value) in enumerate(history, 1)]
    result = run_replay(lines, POLICY, until=instant(end).isoformat())

    assert result.rejections == []
    got = sorted(
        (
            e["type"],
            e["metric"],
            e["cycle"],
            e.get("threshold"),
            int((datetime.fromisoformat(e["due_at"]) - EPOCH) / timedelta(minutes=1)),
        )
        for e in result.events
    )
    assert got == sorted(model.out)
    assert result.summary.met == len(model.met)
