"""Goals as the engine uses them: targets, conditions and the matcher, as plain data.

`worker.core.goals` holds the policy file's shapes (pydantic specs, for loading only);
`worker.core.goal_policy` turns them into the classes below. These are read on every
event, so they are plain classes and functions that setup.py compiles with mypyc along
with the engine (the specs are not: pydantic models cannot be compiled, and are not
needed per event). See `worker.core.goals` for what conditions and calendar maps mean.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from worker.core.calendar import Calendar

if TYPE_CHECKING:
    from worker.core.ticket import Ticket


@dataclass(frozen=True, slots=True)
class GoalTarget:
    """A metric's promise under a goal: `duration` on a fixed or attribute-mapped calendar."""

    duration: timedelta
    calendar: Calendar  # the fixed one, or the map's default
    by: str | None
    calendars: dict[str, Calendar]  # read-only: attribute value -> calendar
    warnings: tuple[float, ...]
    warning_amounts: tuple[timedelta, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        amounts = tuple(self.duration * fraction for fraction in self.warnings)
        object.__setattr__(self, "warning_amounts", amounts)

    def calendar_for(self, ticket: Ticket) -> Calendar:
        by = self.by
        if by is None:
            return self.calendar
        value = attribute(ticket, by)
        found = None if value is None else self.calendars.get(str(value))
        return self.calendar if found is None else found


@dataclass(frozen=True, slots=True)
class Goal:
    name: str | None  # None for the goals the plan x priority short form expands to
    conditions: tuple[tuple[str, frozenset[str]], ...]  # (attribute, accepted values)
    fields: tuple[tuple[str, frozenset[str]], ...]
    targets: dict[str, GoalTarget]  # read-only

    def matches(self, attributes: dict[str, str | None], ticket: Ticket) -> bool:
        """`attributes`: the ticket's, as `attributes_of` gives them (made once per match
        over all goals, not once per goal)."""
        for name, accepted in self.conditions:
            if name == "tags":
                if accepted.isdisjoint(ticket.tags):
                    return False
            else:
                value = attributes[name]
                if value is None or value not in accepted:
                    return False
        if not self.fields:
            return True
        values = ticket.fields or {}
        for name, accepted in self.fields:
            value = values.get(name)
            if value is None or value not in accepted:
                return False
        return True

    def shadows(self, later: Goal) -> bool:
        """Does every ticket `later` matches also match this goal (so `later` never wins)?"""
        mine = dict(self.conditions)
        theirs = dict(later.conditions)
        for name, accepted in mine.items():
            other = theirs.get(name)
            if other is None or not other <= accepted:
                return False
        their_fields = dict(later.fields)
        for name, accepted in self.fields:
            other = their_fields.get(name)
            if other is None or not other <= accepted:
                return False
        return True


def attribute(ticket: Ticket, name: str) -> str | int | None:
    """A ticket attribute a condition or calendar map reads."""
    if name == "plan":
        return ticket.plan
    if name == "priority":
        return ticket.priority
    if name == "customer":
        return ticket.customer_id
    if name == "group":
        return ticket.group
    if name == "channel":
        return ticket.channel
    if name == "product_stage":
        return ticket.stage
    return None


def attributes_of(ticket: Ticket) -> dict[str, str | None]:
    """The ticket's attributes that conditions compare, as strings."""
    return {
        "plan": ticket.plan,
        "priority": str(ticket.priority),
        "customer": ticket.customer_id,
        "group": ticket.group,
        "channel": ticket.channel,
        "product_stage": ticket.stage,
    }


def match(goals: tuple[Goal, ...], ticket: Ticket) -> int:
    """The index of the first goal `ticket` matches; -1 for none."""
    attributes = attributes_of(ticket)
    for i, goal in enumerate(goals):
        if goal.matches(attributes, ticket):
            return i
    return -1


class GoalMatcher:
    """The first goal a ticket matches, testing only the goals that can match it.

    Each goal is filed under one of its conditions on a single-valued attribute (the one
    accepting the fewest values), by each accepted value; a goal without such a condition
    (none, or only tags and custom fields) is a candidate for every ticket. A ticket's
    candidates are those filed under its own values, tested in policy order: a goal
    filed under another value cannot match, so the first candidate that matches is the
    first goal that matches (`match` over all of them gives the same answer). A policy of
    twenty goals on customers then tests two or three goals per ticket, not twenty.

    `reads`: the ticket attributes that conditions and calendar maps read (`fields` for
    custom fields): a change of any other attribute changes neither the goal nor a
    calendar, and needs no match.
    """

    __slots__ = ("_always", "_goals", "_keyed", "reads")

    def __init__(self, goals: tuple[Goal, ...]) -> None:
        self._goals = goals
        keyed: dict[str, dict[str, list[int]]] = {}
        always: list[int] = []
        reads: set[str] = set()
        for i, goal in enumerate(goals):
            key: tuple[str, frozenset[str]] | None = None
            for name, accepted in goal.conditions:
                reads.add(name)
                if name != "tags" and (key is None or len(accepted) < len(key[1])):
                    key = (name, accepted)
            if goal.fields:
                reads.add("fields")
            for target in goal.targets.values():
                if target.by is not None:
                    reads.add(target.by)
            if key is None:
                always.append(i)
                continue
            by_value = keyed.setdefault(key[0], {})
            for value in key[1]:
                by_value.setdefault(value, []).append(i)
        self._keyed: tuple[tuple[str, dict[str, tuple[int, ...]]], ...] = tuple(
            (name, {value: tuple(found) for value, found in by_value.items()})
            for name, by_value in keyed.items()
        )
        self._always = tuple(always)
        self.reads: frozenset[str] = frozenset(reads)

    def match(self, ticket: Ticket) -> int:
        """The index of the first goal `ticket` matches; -1 for none."""
        attributes = attributes_of(ticket)
        candidates = list(self._always)
        for name, by_value in self._keyed:
            value = attributes[name]
            if value is not None:
                found = by_value.get(value)
                if found is not None:
                    candidates += found
        if len(candidates) > 1:
            candidates.sort()
        goals = self._goals
        for i in candidates:
            if goals[i].matches(attributes, ticket):
                return i
        return -1
