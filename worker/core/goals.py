"""Goals: which targets apply to a ticket, chosen by conditions on its attributes.

A goal policy holds an ordered list of goals; each has conditions (`when`) on ticket
attributes and the targets that apply when it matches. The first goal that matches wins
(Zendesk's policy order); a ticket that matches none has no SLA while that lasts. The
plan x priority form of a policy file is a short form: each plan and priority expands to
one (unnamed) goal.

Conditions: every attribute named in `when` must match (AND); a list means any of its
values (OR); `tags` match when the ticket has at least one of them; `fields` names custom
fields, each with its accepted values. A goal without `when` matches every ticket.

A target's calendar is a name, or taken from a ticket attribute through a map
(`{by: group, map: {emea: eu-hours, amer: us-hours}, default: eu-hours}`): follow the sun.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from worker.core.durations import parse_duration
from worker.core.events import ProductStage
from worker.core.goal_match import (
    Goal,
    GoalMatcher,
    GoalTarget,
    attribute,
    attributes_of,
    match,
)

# What the engine uses per event (compiled with it); re-exported for the loaders.
from worker.core.thresholds import warning_fractions

Duration = Annotated[
    timedelta, BeforeValidator(lambda v: parse_duration(v) if isinstance(v, str) else v)
]
Attribute = Literal["plan", "priority", "customer", "group", "channel", "product_stage"]
ATTRIBUTES: tuple[str, ...] = (
    "plan",
    "priority",
    "customer",
    "group",
    "channel",
    "product_stage",
    "tags",
)
__all__ = [
    "ATTRIBUTES",
    "CalendarMapSpec",
    "CalendarRef",
    "Goal",
    "GoalMatcher",
    "GoalSpec",
    "GoalTarget",
    "GoalTargetSpec",
    "WhenSpec",
    "attribute",
    "attributes_of",
    "conditions_of",
    "match",
]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _listed(value: Any) -> Any:
    return value if isinstance(value, list) else [value]


_Names = Annotated[list[str], BeforeValidator(_listed)]


class WhenSpec(_Spec):
    plan: _Names | None = None
    priority: Annotated[list[Annotated[int, Field(ge=1)]], BeforeValidator(_listed)] | None = None
    customer: _Names | None = None
    group: _Names | None = None
    channel: _Names | None = None
    product_stage: Annotated[list[ProductStage], BeforeValidator(_listed)] | None = None
    tags: _Names | None = Field(default=None, description="Matches a ticket with any of them.")
    fields: dict[str, _Names] | None = Field(
        default=None, description="Custom fields and their accepted values."
    )


class CalendarMapSpec(_Spec):
    by: Literal["customer", "group", "channel", "plan"]
    map: dict[str, str] = Field(min_length=1)
    default: str


CalendarRef = str | CalendarMapSpec


class GoalTargetSpec(_Spec):
    target: Duration
    calendar: CalendarRef | None = Field(default=None, description="The goal's when absent.")


class GoalSpec(_Spec):
    name: str = Field(min_length=1, max_length=256)
    when: WhenSpec = Field(default_factory=WhenSpec)
    calendar: CalendarRef | None = Field(default=None, description="Default for its targets.")
    warnings: list[float] | None = None
    targets: dict[
        str,
        Annotated[
            GoalTargetSpec, BeforeValidator(lambda v: {"target": v} if isinstance(v, str) else v)
        ],
    ] = Field(default_factory=dict)

    @field_validator("warnings")
    @classmethod
    def _valid_warnings(cls, value: list[float] | None) -> list[float] | None:
        return None if value is None else warning_fractions(value)


def conditions_of(when: WhenSpec) -> tuple[tuple[str, frozenset[str]], ...]:
    found: list[tuple[str, frozenset[str]]] = []
    for name in ATTRIBUTES:
        values = getattr(when, name)
        if values is not None:
            found.append((name, frozenset(str(v) for v in values)))
    return tuple(found)
