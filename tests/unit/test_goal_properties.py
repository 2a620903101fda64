"""The goal path against an independent, brute-force model of its semantics.

The model knows nothing of segments, `Calendar.add` or banking. It walks time minute by
minute and, for every running timer, counts the minutes that were open on the calendar of
the target in force *during that minute* (the ticket's goal and group then), unless the
metric pauses in the ticket's status then or no target applied; it remembers the minute
each count was first reached. A point is due when its count was reached. Random
single-ticket histories with reopens, goal changes by priority and by tags, group moves
between Bratislava and New York hours (both with summer time and public holidays),
pauses and periodic updates must give the same warnings, breaches and finished timers as
the engine.

A stretch during which no target applied is measured, once a target applies again, on
that target's calendar (the model relabels those minutes; the engine, its segments).
"""

from __future__ import annotations

import re
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
version: goal-property-test
calendars:
  biz:
    timezone: Europe/Bratislava
    hours: {mon: ["09:00-17:00"], tue: ["09:00-17:00"], wed: ["09:00-17:00"],
            thu: ["09:00-17:00"], fri: ["09:00-17:00"]}
    holidays: {country: SK}
  ny:
    timezone: America/New_York
    hours: {mon: ["09:00-17:00"], tue: ["09:00-17:00"], wed: ["09:00-17:00"],
            thu: ["09:00-17:00"], fri: ["09:00-17:00"]}
    holidays: {country: US}
  clock: {always_open: true}
warnings: [0.5, 0.75]
goals:
  - name: vip
    when: {tags: [vip]}
    calendar: clock
    targets: {resolution: PT4H, periodic_update: PT1H}
  - name: urgent
    when: {priority: 1}
    calendar: clock
    targets: {resolution: PT2H, requester_wait: PT3H, agent_work: PT1H, periodic_update: PT2H}
  - name: team
    when: {priority: 2}
    calendar: {by: group, map: {emea: biz, amer: ny}, default: biz}
    targets: {resolution: PT8H, requester_wait: PT6H, agent_work: PT4H, periodic_update: PT4H}
  - name: normal
    when: {priority: 3}
    targets: {resolution: {target: PT16H, calendar: biz}, agent_work: {target: PT8H, calendar: biz}}
"""
    )
)
# goal -> metric -> (minutes, calendar; "group" = the group's)
TARGETS: dict[str | None, dict[str, tuple[int, str]]] = {
    "vip": {"resolution": (240, "clock"), "periodic_update": (60, "clock")},
    "urgent": {
        "resolution": (120, "clock"),
        "requester_wait": (180, "clock"),
        "agent_work": (60, "clock"),
        "periodic_update": (120, "clock"),
    },
    "team": {
        "resolution": (480, "group"),
        "requester_wait": (360, "group"),
        "agent_work": (240, "group"),
        "periodic_update": (240, "group"),
    },
    "normal": {"resolution": (960, "biz"), "agent_work": (480, "biz")},
    None: {},
}
PAUSES = {
    "resolution": {"pending", "on-hold"},
    "periodic_update": {"pending", "on-hold"},
    "requester_wait": {"pending"},
    "agent_work": {"pending", "on-hold"},
}
FRACTIONS = (0.5, 0.75)
ZONES = {"biz": ZoneInfo("Europe/Bratislava"), "ny": ZoneInfo("America/New_York")}
DAYS_OFF = {
    "biz": holidays.country_holidays("SK", years=range(2025, 2029)),
    "ny": holidays.country_holidays("US", years=range(2025, 2029)),
}
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def instant(minute: int) -> datetime:
    return EPOCH + timedelta(minutes=minute)


def is_open(calendar: str, minute: int) -> bool:
    if calendar == "clock":
        return True
    local = instant(minute).astimezone(ZONES[calendar])
    return local.weekday() < 5 and 9 <= local.hour < 17 and local.date() not in DAYS_OFF[calendar]


@dataclass
class ModelTimer:
    metric: str
    cycle: int
    start: int
    # Every minute it ran (not paused), with the calendar of the target then, or None
    # while no target applied (measured on the next target's calendar, when one does).
    ran: list[list[object]] = field(default_factory=list)
    emitted: set[float | None] = field(default_factory=set)
    _reached: list[int] | None = None

    @property
    def reached(self) -> list[int]:
        """reached[k]: the minute at which k minutes had counted."""
        if self._reached is None:
            self._reached = [self.start] + [
                int(m) + 1
                for m, calendar in self.ran
                if calendar and is_open(str(calendar), int(m))
            ]
        return self._reached

    def measure_on(self, calendar: str) -> None:
        for minute in self.ran:
            if minute[1] is None:
                minute[1] = calendar
                self._reached = None

    def count(self, minute: int, calendar: str | None) -> None:
        self.ran.append([minute, calendar])
        if calendar and is_open(calendar, minute) and self._reached is not None:
            self._reached.append(minute + 1)


@dataclass
class Model:
    priority: int
    group: str = "emea"
    vip: bool = False
    status: str = "open"
    solved_once: bool = False
    cycles: dict[str, int] = field(default_factory=dict)
    timers: dict[str, ModelTimer] = field(default_factory=dict)
    out: list[tuple[str, str, int, float | None, int]] = field(default_factory=list)
    finished: list[tuple[str, int, str, int]] = field(default_factory=list)

    def goal(self) -> str | None:
        if self.vip:
            return "vip"
        return {1: "urgent", 2: "team", 3: "normal"}.get(self.priority)

    def target(self, metric: str) -> tuple[int, str] | None:
        found = TARGETS[self.goal()].get(metric)
        if found is None:
            return None
        minutes, calendar = found
        return minutes, (
            {"emea": "biz", "amer": "ny"}[self.group] if calendar == "group" else calendar
        )

    def start(self, metric: str, minute: int) -> None:
        if self.status in ("solved", "closed"):
            return
        self.cycles[metric] = self.cycles.get(metric, 0) + 1
        self.timers[metric] = ModelTimer(metric, self.cycles[metric], minute)

    def stop(self, metric: str) -> None:
        timer = self.timers.pop(metric)
        if self.target(metric) is not None:
            result = "breached" if None in timer.emitted else "met"
            self.finished.append((metric, timer.cycle, result, len(timer.reached) - 1))

    def fire(self, minute: int, *, strict: bool) -> None:
        for timer in self.timers.values():
            target = self.target(timer.metric)
            if target is None or None in timer.emitted:
                continue
            minutes = target[0]
            for point in [f for f in FRACTIONS if f not in timer.emitted] + [None]:
                amount = minutes if point is None else int(minutes * point)
                if len(timer.reached) <= amount:
                    break
                due = timer.reached[amount]
                if due > minute or (due == minute and strict):
                    break
                kind = "sla-breach" if point is None else "sla-warning"
                self.out.append((kind, timer.metric, timer.cycle, point, due))
                timer.emitted.add(point)

    def apply(self, kind: str, value: int, minute: int) -> None:
        if self.status == "closed":
            return
        if kind == "agent":
            if "periodic_update" in self.timers:
                self.stop("periodic_update")
            self.start("periodic_update", minute)
        elif kind in ("pause", "open", "solved", "closed"):
            before = self.status
            self.status = {"pause": "pending" if value % 2 else "on-hold"}.get(kind, kind)
            if self.status in ("solved", "closed"):
                for metric in list(self.timers):
                    self.stop(metric)
            elif before == "solved":
                for metric in ("resolution", "requester_wait", "agent_work"):
                    self.start(metric, minute)
        elif kind in ("priority", "group", "tags"):
            if kind == "priority":
                self.priority = value
            elif kind == "group":
                self.group = "emea" if value % 2 else "amer"
            else:
                self.vip = value % 2 == 1
            for timer in self.timers.values():
                target = self.target(timer.metric)
                if target is not None:
                    timer.measure_on(target[1])
            self.fire(minute, strict=True)

    def tick(self, minute: int) -> None:
        """Count the minute [minute, minute + 1) on each timer's calendar of the moment."""
        for timer in self.timers.values():
            if self.status not in PAUSES[timer.metric]:
                target = self.target(timer.metric)
                timer.count(minute, None if target is None else target[1])


KINDS = st.sampled_from(
    [
        "agent",
        "agent",
        "customer",
        "note",
        "pause",
        "pause",
        "open",
        "open",
        "priority",
        "priority",
        "group",
        "group",
        "tags",
        "solved",
        "solved",
        "closed",
    ]
)
GAPS = st.integers(0, 40).map(lambda k: 15 * k) | st.integers(0, 3000)
STEPS = st.lists(st.tuples(GAPS, KINDS, st.integers(1, 4)), max_size=14)


@settings(max_examples=300, deadline=None)
@given(
    start=st.integers(0, 2 * 365 * 24 * 4).map(lambda k: 15 * k) | st.integers(0, 2 * 525600),
    initial_priority=st.integers(1, 4),
    steps=STEPS,
)
def test_goal_path_agrees_with_the_minute_by_minute_model(
    start: int, initial_priority: int, steps: list[tuple[int, str, int]]
) -> None:
    history: list[tuple[int, str, int]] = []
    minute = start
    for gap, kind, value in steps:
        minute += gap
        history.append((minute, kind, value))
    end = minute + 3 * 24 * 60

    model = Model(priority=initial_priority)
    for metric in ("resolution", "requester_wait", "agent_work"):
        model.start(metric, start)
    by_minute: dict[int, list[tuple[str, int]]] = {}
    for at, kind, value in history:
        by_minute.setdefault(at, []).append((kind, value))
    for m in range(start, end + 1):
        for kind, value in by_minute.get(m, []):
            model.apply(kind, value, m)
        model.fire(m, strict=False)
        model.tick(m)

    def event(n: int, at: int, kind: str, value: int) -> dict[str, object]:
        base = {"event_id": f"e{n}", "ticket_id": "T", "occurred_at": instant(at).isoformat()}
        if kind in ("agent", "customer", "note"):
            author = "agent" if kind == "note" else kind
            return {**base, "type": "reply-sent", "author": author, "public": kind != "note"}
        if kind == "priority":
            return {**base, "type": "priority-changed", "priority": value}
        if kind == "group":
            return {**base, "type": "ticket-updated", "group": "emea" if value % 2 else "amer"}
        if kind == "tags":
            return {**base, "type": "ticket-updated", "tags": ["vip"] if value % 2 else []}
        status = {"pause": "pending" if value % 2 else "on-hold"}.get(kind, kind)
        return {**base, "type": "status-changed", "status": status}

    lines: list[dict[str, object] | str] = [
        {
            "event_id": "e0",
            "type": "ticket-created",
            "ticket_id": "T",
            "occurred_at": instant(start).isoformat(),
            "plan": "p",
            "priority": initial_priority,
            "group": "emea",
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
    finished = sorted(
        (f["metric"], f["cycle"], f["result"], int(_minutes(f["business_time"])))
        for f in result.finished
    )
    assert finished == sorted(model.finished)


def _minutes(duration: str) -> float:
    """Minutes of an ISO 8601 duration as the outputs write it (PT0S, PT1H30M, PT90H)."""
    found = re.fullmatch(r"PT(?:(\d+)H)?(?:(\d+)M)?(?:([\d.]+)S)?", duration)
    assert found is not None, duration
    hours, minutes, seconds = (float(part or 0) for part in found.groups())
    return hours * 60 + minutes + seconds / 60
