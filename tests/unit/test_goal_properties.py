"""The goal path against an independent, brute-force model of its semantics.

The model knows nothing of segments, `Calendar.add`, banking or the engine's signal sets.
It is written from docs/semantics.md ("Goals, metrics as data, calendars per team"): the
metric table and the policy's own metrics as start / stop / reset rules on what an event
says, the guards on a start (nothing starts while solved or after closed, `reopens`,
`after`), first-match goals and calendars chosen by group, channel or customer. It walks
time minute by minute and, for every running timer, counts the minutes that were open on
the calendar of the target in force *during that minute* (the ticket's goal and
attributes then), unless the metric pauses in the ticket's status then or no target
applied; it remembers the minute each count was first reached. A point is due when its
count was reached; a deadline not yet reached is found by walking on, minute by minute,
on the calendar in force (none while paused).

Random single-ticket histories must give the same warnings and breaches (type, metric,
cycle, threshold, `due_at`, `deadline`, `goal`, `calendar`) and the same finished timers
(metric, cycle, result, `finished_by`, business time, target, `deadline`, `goal`,
`calendar`) as the engine, with the ticket stored and restored (`dump_ticket`,
`load_ticket`, `Engine.refresh`) between events at random. The histories mix public and
internal replies by agents and customers, pauses, reopens, closing, goal changes by
priority, tags, customer and custom fields, and calendar changes by group (Bratislava and
New York hours, both with summer time and public holidays), channel and customer.

A stretch during which no target applied is measured, once a target applies again, on
that target's calendar (the model relabels those minutes; the engine, its segments).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import holidays
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.core.engine import Engine, Ticket, TimerFinished, finished_record
from worker.core.events import parse_event
from worker.core.policy import Policy
from worker.core.state_codec import dump_ticket, load_ticket

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
metrics:
  triage:   # until a team is assigned; a priority change restarts it; not after solved
    start: [{event: ticket-created}]
    stop: [{event: ticket-updated, field: group}, {event: status-changed, status: [solved, closed]}]
    reset: [{event: priority-changed}]
    pause: [pending]
    reopens: false
  touch:    # from the first response on, any agent reply (a note too) restarts it; it runs
            # while solved and ends when the tags or the customer change, or when closed;
            # a channel or priority change starts it again
    start: [{event: reply-sent, author: agent, public: true},
            {event: ticket-updated, field: channel}, {event: priority-changed}]
    reset: [{event: reply-sent, author: agent}]
    stop: [{event: ticket-updated, field: [tags, customer]},
           {event: status-changed, status: closed}]
    pause: [on-hold]
    after: first_response
goals:
  - name: vip
    when: {tags: [vip]}
    calendar: clock
    targets: {first_response: PT30M, follow_up: PT1H, resolution: PT4H, periodic_update: PT1H,
              touch: PT45M}
  - name: urgent
    when: {priority: 1}
    calendar: clock
    targets: {first_response: PT1H, follow_up: PT90M, resolution: PT2H, requester_wait: PT3H,
              agent_work: PT1H, periodic_update: PT2H, triage: PT20M, touch: PT30M}
  - name: acme
    when: {customer: acme, priority: [2, 3]}
    calendar: {by: channel, map: {phone: clock, email: ny}, default: biz}
    targets: {first_response: PT2H, follow_up: PT3H, resolution: PT8H, triage: PT1H,
              touch: PT2H}
  - name: team
    when: {priority: 2}
    calendar: {by: group, map: {emea: biz, amer: ny}, default: biz}
    targets: {resolution: PT8H, requester_wait: PT6H, agent_work: PT4H, periodic_update: PT4H,
              follow_up: PT2H, touch: PT3H}
  - name: eu
    when: {fields: {region: [eu]}}
    calendar: {by: customer, map: {acme: ny}, default: biz}
    targets: {first_response: {target: PT4H, calendar: clock}, resolution: PT16H,
              triage: PT2H}
  - name: normal
    when: {priority: 3}
    targets: {resolution: {target: PT16H, calendar: biz}, agent_work: {target: PT8H, calendar: biz}}
"""
    )
)

# --- The model's reading of the policy above and of docs/semantics.md -------------------

# goal -> metric -> (minutes, calendar: a name, or the attribute a map is keyed by)
TARGETS: dict[str | None, dict[str, tuple[int, str]]] = {
    "vip": {
        "first_response": (30, "clock"),
        "follow_up": (60, "clock"),
        "resolution": (240, "clock"),
        "periodic_update": (60, "clock"),
        "touch": (45, "clock"),
    },
    "urgent": {
        "first_response": (60, "clock"),
        "follow_up": (90, "clock"),
        "resolution": (120, "clock"),
        "requester_wait": (180, "clock"),
        "agent_work": (60, "clock"),
        "periodic_update": (120, "clock"),
        "triage": (20, "clock"),
        "touch": (30, "clock"),
    },
    "acme": {
        m: (minutes, "by channel")
        for m, minutes in (
            ("first_response", 120),
            ("follow_up", 180),
            ("resolution", 480),
            ("triage", 60),
            ("touch", 120),
        )
    },
    "team": {
        m: (minutes, "by group")
        for m, minutes in (
            ("resolution", 480),
            ("requester_wait", 360),
            ("agent_work", 240),
            ("periodic_update", 240),
            ("follow_up", 120),
            ("touch", 180),
        )
    },
    "eu": {
        "first_response": (240, "clock"),
        "resolution": (960, "by customer"),
        "triage": (120, "by customer"),
    },
    "normal": {"resolution": (960, "biz"), "agent_work": (480, "biz")},
    None: {},
}
CALENDAR_MAPS = {
    "by group": ({"emea": "biz", "amer": "ny"}, "biz"),
    "by channel": ({"phone": "clock", "email": "ny"}, "biz"),
    "by customer": ({"acme": "ny"}, "biz"),
}

STATUSES = ("open", "pending", "on-hold", "solved", "closed")
AGENT_PUBLIC = {"reply:agent:public"}
SOLVED = {f"status:{b}>{t}" for b in STATUSES for t in ("solved", "closed")}
CLOSED = {f"status:{b}>closed" for b in STATUSES}
REOPENED = {f"status:solved>{t}" for t in ("open", "pending", "on-hold")}
DEFAULT_PAUSE = {"pending", "on-hold"}


@dataclass(frozen=True)
class Rules:
    """One metric as the docs' table (or the policy's `metrics:`) describes it."""

    start: set[str]
    stop: set[str] = field(default_factory=set)
    reset: set[str] = field(default_factory=set)
    pause: set[str] = field(default_factory=lambda: DEFAULT_PAUSE)
    after: str | None = None
    reopens: bool = True


# In the order the engine lists them (built-ins, then the policy's): only the order of the
# records one event gives depends on it, and the comparison sorts.
METRICS = {
    "first_response": Rules({"created"}, AGENT_PUBLIC | SOLVED, reopens=False),
    "follow_up": Rules(
        {"reply:customer:public"}, AGENT_PUBLIC | SOLVED, after="first_response", reopens=False
    ),
    "resolution": Rules({"created"} | REOPENED, SOLVED),
    "periodic_update": Rules(AGENT_PUBLIC, SOLVED, reset=AGENT_PUBLIC),
    "requester_wait": Rules({"created"} | REOPENED, SOLVED, pause={"pending"}),
    "agent_work": Rules({"created"} | REOPENED, SOLVED),
    "triage": Rules(
        {"created"}, {"updated:group"} | SOLVED, {"priority"}, {"pending"}, reopens=False
    ),
    "touch": Rules(
        AGENT_PUBLIC | {"updated:channel", "priority"},
        {"updated:tags", "updated:customer"} | CLOSED,
        {"reply:agent:public", "reply:agent:internal"},
        {"on-hold"},
        after="first_response",
    ),
}
FRACTIONS = (0.5, 0.75)
ZONES = {"biz": ZoneInfo("Europe/Bratislava"), "ny": ZoneInfo("America/New_York")}
DAYS_OFF = {
    "biz": holidays.country_holidays("SK", years=range(2025, 2030)),
    "ny": holidays.country_holidays("US", years=range(2025, 2030)),
}
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
_OPEN_HOURS: dict[tuple[str, int], bool] = {}


def instant(minute: int) -> datetime:
    return EPOCH + timedelta(minutes=minute)


def minute_of(at: str) -> int:
    return int((datetime.fromisoformat(at) - EPOCH) / timedelta(minutes=1))


def is_open(calendar: str, minute: int) -> bool:
    if calendar == "clock":
        return True
    # Both zones are whole hours from UTC, and both calendars open and close on the hour:
    # a UTC hour is open or closed as a whole (remembered, for speed).
    hour = minute // 60
    found = _OPEN_HOURS.get((calendar, hour))
    if found is None:
        local = instant(hour * 60).astimezone(ZONES[calendar])
        found = _OPEN_HOURS[calendar, hour] = (
            local.weekday() < 5 and 9 <= local.hour < 17 and local.date() not in DAYS_OFF[calendar]
        )
    return found


@dataclass
class ModelTimer:
    metric: str
    cycle: int
    start: int
    # Every minute it ran (not paused), with the calendar of the target then, or None
    # while no target applied (measured on the next target's calendar, when one does).
    ran: list[list[Any]] = field(default_factory=list)
    emitted: set[float | None] = field(default_factory=set)
    _reached: list[int] | None = None

    @property
    def reached(self) -> list[int]:
        """reached[k]: the minute at which k minutes had counted."""
        if self._reached is None:
            self._reached = [self.start] + [
                int(m) + 1 for m, calendar in self.ran if calendar and is_open(calendar, m)
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

    def deadline(self, minutes: int, now: int, calendar: str | None) -> int | None:
        """When `minutes` had counted or will, running on `calendar` from `now` on (None:
        paused, so not known yet)."""
        reached = self.reached
        if len(reached) > minutes:
            return reached[minutes]
        if calendar is None:
            return None
        missing = minutes - (len(reached) - 1)
        at = now
        while missing:
            if is_open(calendar, at):
                missing -= 1
            at += 1
        return at


Emitted = tuple[str, str, int, float | None, int, int | None, str | None, str]
Finished = tuple[str, int, str, str, int, int, int | None, str | None, str]


@dataclass
class Model:
    priority: int
    group: str | None
    customer: str | None
    channel: str | None
    region: str | None
    tags: tuple[str, ...]
    status: str = "open"
    before: str = "open"  # the status before the event being applied
    solved_once: bool = False
    cycles: dict[str, int] = field(default_factory=dict)
    met: set[str] = field(default_factory=set)
    timers: dict[str, ModelTimer] = field(default_factory=dict)
    out: list[Emitted] = field(default_factory=list)
    finished: list[Finished] = field(default_factory=list)

    def goal(self) -> str | None:
        """The first goal whose conditions all hold (docs: "the first match wins")."""
        if "vip" in self.tags:
            return "vip"
        if self.priority == 1:
            return "urgent"
        if self.customer == "acme" and self.priority in (2, 3):
            return "acme"
        if self.priority == 2:
            return "team"
        if self.region == "eu":
            return "eu"
        if self.priority == 3:
            return "normal"
        return None

    def target(self, metric: str) -> tuple[int, str] | None:
        found = TARGETS[self.goal()].get(metric)
        if found is None:
            return None
        minutes, calendar = found
        if calendar in CALENDAR_MAPS:
            mapping, default = CALENDAR_MAPS[calendar]
            key = {"by group": self.group, "by channel": self.channel}.get(calendar, self.customer)
            calendar = mapping.get(key or "", default)
        return minutes, calendar

    def running_calendar(self, metric: str, status: str) -> str | None:
        target = self.target(metric)
        if target is None or status in METRICS[metric].pause:
            return None
        return target[1]

    def may_start(self, metric: str) -> bool:
        rules = METRICS[metric]
        return (
            self.status not in ("solved", "closed")
            and (rules.reopens or not self.solved_once)
            and (rules.after is None or rules.after in self.met)
        )

    def start(self, metric: str, minute: int) -> None:
        self.cycles[metric] = self.cycles.get(metric, 0) + 1
        self.timers[metric] = ModelTimer(metric, self.cycles[metric], minute)

    def stop(self, metric: str, minute: int, by: str) -> None:
        timer = self.timers.pop(metric)
        self.met.add(metric)
        target = self.target(metric)
        if target is None:
            return
        minutes, calendar = target
        # It ran up to this event in the status before it (a stop comes before a pause).
        deadline = timer.deadline(minutes, minute, self.running_calendar(metric, self.before))
        result = "breached" if None in timer.emitted else "met"
        self.finished.append(
            (
                metric,
                timer.cycle,
                result,
                by,
                len(timer.reached) - 1,
                minutes,
                deadline,
                self.goal(),
                calendar,
            )
        )

    def fire(self, minute: int, *, strict: bool) -> None:
        for timer in self.timers.values():
            target = self.target(timer.metric)
            if target is None or None in timer.emitted:
                continue
            minutes, calendar = target
            for point in [f for f in FRACTIONS if f not in timer.emitted] + [None]:
                amount = minutes if point is None else int(minutes * point)
                if len(timer.reached) <= amount:
                    break
                due = timer.reached[amount]
                if due > minute or (due == minute and strict):
                    break
                kind = "sla-breach" if point is None else "sla-warning"
                running = self.running_calendar(timer.metric, self.status)
                deadline = timer.deadline(minutes, minute, running)
                self.out.append(
                    (kind, timer.metric, timer.cycle, point, due, deadline, self.goal(), calendar)
                )
                timer.emitted.add(point)

    def signal(self, signal: str, by: str, minute: int) -> None:
        for metric, rules in METRICS.items():
            if metric in self.timers:
                if signal in rules.stop:
                    self.stop(metric, minute, by)
                elif signal in rules.reset:
                    self.stop(metric, minute, by)
                    if self.may_start(metric):
                        self.start(metric, minute)
            elif signal in rules.start and self.may_start(metric):
                self.start(metric, minute)

    def create(self, minute: int) -> None:
        self.signal("created", "ticket-created", minute)

    def apply(self, kind: str, value: int, minute: int) -> None:
        closed = self.status == "closed"
        self.before = self.status
        signals: list[str] = []
        by = "reply"
        if kind in REPLIES:
            signals.append(f"reply:{REPLIES[kind]}")
        elif kind == "status":
            if closed:
                return  # a closed ticket stays closed
            status = NEW_STATUS[value % len(NEW_STATUS)]
            signals.append(f"status:{self.status}>{status}")
            self.status = by = status
            if status in ("solved", "closed"):
                self.solved_once = True
        else:
            by = "priority-changed" if kind == "priority" else "ticket-updated"
            if kind == "priority":
                self.priority = value % 4 + 1
                signals.append("priority")
            else:
                attribute, new = ATTRIBUTES[kind][value % len(ATTRIBUTES[kind])]
                if getattr(self, attribute) != new:
                    setattr(self, attribute, new)
                    signals.append(f"updated:{UPDATED[attribute]}")
            if not closed:
                # The stretches run without a target are measured on the new one's
                # calendar; points it puts in the past fire before this event's signals.
                for timer in self.timers.values():
                    target = self.target(timer.metric)
                    if target is not None:
                        timer.measure_on(target[1])
                self.fire(minute, strict=True)
        if closed:
            return
        for signal in signals:
            self.signal(signal, by, minute)
        if self.status == "closed":
            for metric in list(self.timers):
                self.stop(metric, minute, "closed")
        self.fire(minute, strict=True)
        self.before = self.status

    def tick(self, minute: int) -> None:
        """Count the minute [minute, minute + 1) on each timer's calendar of the moment."""
        for timer in self.timers.values():
            if self.status not in METRICS[timer.metric].pause:
                target = self.target(timer.metric)
                timer.count(minute, None if target is None else target[1])


# A status change's value picks its new status: `closed` (final) rarely.
NEW_STATUS = ("open",) * 3 + ("pending", "on-hold") * 2 + ("solved",) * 5 + ("closed",)
REPLIES = {
    "agent-reply": "agent:public",
    "agent-note": "agent:internal",
    "customer-reply": "customer:public",
    "customer-note": "customer:internal",
}
# kind -> the values a ticket-updated sets (model attribute, value)
ATTRIBUTES: dict[str, list[tuple[str, Any]]] = {
    "group": [("group", "emea"), ("group", "amer"), ("group", "apac")],
    "tags": [("tags", ("vip",)), ("tags", ()), ("tags", ("other",))],
    "customer": [("customer", "acme"), ("customer", "globex")],
    "channel": [("channel", "phone"), ("channel", "email"), ("channel", "chat")],
    "fields": [("region", "eu"), ("region", None), ("region", "us")],
}
# model attribute -> the attribute a ticket-updated names as changed (its `field`)
UPDATED = {
    "group": "group",
    "tags": "tags",
    "customer": "customer",
    "channel": "channel",
    "region": "fields",
}

# Weighted so that most histories get a first response, a customer's follow-up, a solve
# and something after it (a reopen, or an agent's note on the solved ticket).
KINDS = st.sampled_from(
    [
        "agent-reply",
        "agent-reply",
        "agent-reply",
        "customer-reply",
        "customer-reply",
        "customer-reply",
        "agent-note",
        "customer-note",
        "status",
        "status",
        "status",
        "status",
        "priority",
        "priority",
        "group",
        "tags",
        "customer",
        "channel",
        "fields",
    ]
)
GAPS = st.integers(0, 40).map(lambda k: 15 * k) | st.integers(0, 3000)
STEPS = st.lists(st.tuples(GAPS, KINDS, st.integers(0, 14), st.booleans()), max_size=14)
CREATED = st.fixed_dictionaries(
    {
        "priority": st.integers(1, 4),
        "group": st.sampled_from([None, "emea", "amer", "apac"]),
        "customer": st.sampled_from([None, "acme", "globex"]),
        "channel": st.sampled_from([None, "phone", "email", "chat"]),
        "region": st.sampled_from([None, "eu", "us"]),
        "tags": st.sampled_from([(), ("vip",), ("other",)]),
    }
)


def _event(n: int, at: int, kind: str, value: int) -> dict[str, Any]:
    base = {"event_id": f"e{n}", "ticket_id": "T", "occurred_at": instant(at).isoformat()}
    if kind in REPLIES:
        author, visibility = REPLIES[kind].split(":")
        return {**base, "type": "reply-sent", "author": author, "public": visibility == "public"}
    if kind == "status":
        return {**base, "type": "status-changed", "status": NEW_STATUS[value % len(NEW_STATUS)]}
    if kind == "priority":
        return {**base, "type": "priority-changed", "priority": value % 4 + 1}
    attribute, new = ATTRIBUTES[kind][value % len(ATTRIBUTES[kind])]
    if attribute == "tags":
        return {**base, "type": "ticket-updated", "tags": list(new)}
    if attribute == "region":
        return {**base, "type": "ticket-updated", "fields": {"region": new}}
    if attribute == "customer":
        return {**base, "type": "ticket-updated", "customer_id": new}
    return {**base, "type": "ticket-updated", attribute: new}


@settings(max_examples=300, deadline=None)
@given(
    start=st.integers(0, 2 * 365 * 24 * 4).map(lambda k: 15 * k) | st.integers(0, 2 * 525600),
    created=CREATED,
    steps=STEPS,
)
def test_goal_path_agrees_with_the_minute_by_minute_model(
    start: int, created: dict[str, Any], steps: list[tuple[int, str, int, bool]]
) -> None:
    history: list[tuple[int, str, int, bool]] = []
    minute = start
    for gap, kind, value, restore in steps:
        minute += gap
        history.append((minute, kind, value, restore))
    end = minute + 3 * 24 * 60

    model = Model(**created)
    model.create(start)
    by_minute: dict[int, list[tuple[str, int]]] = {}
    for at, kind, value, _ in history:
        by_minute.setdefault(at, []).append((kind, value))
    for m in range(start, end + 1):
        for kind, value in by_minute.get(m, []):
            model.apply(kind, value, m)
        model.fire(m, strict=False)
        model.tick(m)

    first: dict[str, Any] = {
        "event_id": "e0",
        "type": "ticket-created",
        "ticket_id": "T",
        "occurred_at": instant(start).isoformat(),
        "plan": "p",
        "priority": created["priority"],
        "tags": list(created["tags"]),
    }
    for name, key in (("group", "group"), ("channel", "channel"), ("customer", "customer_id")):
        if created[name] is not None:
            first[key] = created[name]
    if created["region"] is not None:
        first["fields"] = {"region": created["region"]}
    events, finished = _run_engine(
        [first]
        + [
            (_event(n, at, kind, value), restore)
            for n, (at, kind, value, restore) in enumerate(history, 1)
        ],
        end,
    )
    assert sorted(events, key=repr) == sorted(model.out, key=repr)
    assert sorted(finished, key=repr) == sorted(model.finished, key=repr)


def _run_engine(lines: list[Any], end: int) -> tuple[list[Emitted], list[Finished]]:
    """Apply the events one by one as the worker does, storing the ticket and restoring
    it from its stored form (through JSON, as the changelog holds it) where a step asks;
    at the end, fire what is due up to `end`."""
    engine = Engine(POLICY)
    created, *rest = lines
    applied = engine.apply(None, parse_event(json.dumps(created)))
    ticket: Ticket = applied.ticket
    emissions = list(applied.emissions)
    for event, restore in rest:
        if restore:
            ticket = engine.refresh(load_ticket(json.loads(json.dumps(dump_ticket(ticket)))))
        applied = engine.apply(ticket, parse_event(json.dumps(event)))
        ticket = applied.ticket
        emissions += applied.emissions
    emissions += engine.advance(ticket, instant(end))
    events: list[Emitted] = []
    finished: list[Finished] = []
    for emission in emissions:
        if isinstance(emission, TimerFinished):
            f = json.loads(finished_record(emission).model_dump_json())
            finished.append(
                (
                    f["metric"],
                    f["cycle"],
                    f["result"],
                    f["finished_by"],
                    _whole_minutes(f["business_time"]),
                    _whole_minutes(f["target"]),
                    None if f["deadline"] is None else minute_of(f["deadline"]),
                    f.get("goal"),
                    f["calendar"],
                )
            )
        else:
            e = json.loads(emission.model_dump_json())
            events.append(
                (
                    e["type"],
                    e["metric"],
                    e["cycle"],
                    e.get("threshold"),
                    minute_of(e["due_at"]),
                    None if e["deadline"] is None else minute_of(e["deadline"]),
                    e.get("goal"),
                    e["calendar"],
                )
            )
    return events, finished


def _whole_minutes(duration: str) -> int:
    """Minutes of an ISO 8601 duration as the outputs write it (PT0S, PT1H30M, PT90H);
    every instant here is on a whole minute."""
    found = re.fullmatch(r"PT(?:(\d+)H)?(?:(\d+)M)?(?:([\d.]+)S)?", duration)
    assert found is not None, duration
    hours, minutes, seconds = (float(part or 0) for part in found.groups())
    total = hours * 60 + minutes + seconds / 60
    assert total == int(total), duration
    return int(total)
