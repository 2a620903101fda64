"""What the engine emits: warnings and breaches, finished timers, and views of timers.

Both paths (`worker.core.plan_path`, `worker.core.goal_path`) build their warnings and
breaches with `warning_or_breach` (the ids are deterministic: the same ticket, metric,
cycle and point always give the same id) and report a stopped timer as a `TimerFinished`.
The value classes are compiled with the engine; see `worker.core.ticket` for why they
have hand-written `__init__`s.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from worker.core.events import (
    Metric,
    SlaBreach,
    SlaEvent,
    SlaTimerFinished,
    SlaWarning,
    emission_id,
)
from worker.core.goal_match import GoalTarget
from worker.core.policy import Target
from worker.core.ticket import Ticket


# `Final` attributes instead of `frozen=True`: a frozen dataclass's `__init__` has to
# go through `object.__setattr__`; the compiled build makes `Final` attributes read-only
# at runtime instead (pure Python leaves them to mypy).
@dataclass(init=False, slots=True, unsafe_hash=True)
class TimerFinished:
    """A measured timer stopped for good: `met` before its deadline, or after its breach.

    Plain data, cheap to make: replay counts them, the worker's metrics count them, and
    `finished_record` turns one into the published `sla-timer-finished` record only where
    that output is wanted. A timer whose ticket's current priority has no target for its
    metric is not measured and finishes without one. From an engine made with
    `measure=False` (counting only), `business_time` is None.
    """

    ticket_id: Final[str]
    customer_id: Final[str | None]
    plan: Final[str]
    priority: Final[int]
    metric: Final[Metric]
    cycle: Final[int]
    started_at: Final[datetime]
    at: Final[datetime]
    by: Final[str]  # "reply" or the stopping status
    met: Final[bool]
    business_time: Final[timedelta | None]
    target: Final[timedelta]
    calendar: Final[str]
    deadline: Final[datetime | None]
    policy_version: Final[str]
    goal: Final[str | None]  # the goal's name where the policy names goals

    def __init__(
        self,
        ticket_id: str,
        customer_id: str | None,
        plan: str,
        priority: int,
        metric: Metric,
        cycle: int,
        started_at: datetime,
        at: datetime,
        by: str,
        met: bool,
        business_time: timedelta | None,
        target: timedelta,
        calendar: str,
        deadline: datetime | None,
        policy_version: str,
        goal: str | None = None,
    ) -> None:
        self.ticket_id = ticket_id
        self.customer_id = customer_id
        self.plan = plan
        self.priority = priority
        self.metric = metric
        self.cycle = cycle
        self.started_at = started_at
        self.at = at
        self.by = by
        self.met = met
        self.business_time = business_time
        self.target = target
        self.calendar = calendar
        self.deadline = deadline
        self.policy_version = policy_version
        self.goal = goal


def finished_record(finished: TimerFinished) -> SlaTimerFinished:
    """The `sla-timer-finished` record of a finished timer (id: UUIDv5 of ticket,
    metric, cycle and `finished`, as deterministic as a breach's)."""
    if finished.business_time is None:
        raise ValueError("a finished timer from an engine with measure=False has no record")
    fields: dict[str, Any] = {
        "event_id": emission_id(finished.ticket_id, finished.metric, finished.cycle, "finished"),
        "type": "sla-timer-finished",
        "ticket_id": finished.ticket_id,
        "plan": finished.plan,
        "priority": finished.priority,
        "metric": finished.metric,
        "cycle": finished.cycle,
        "result": "met" if finished.met else "breached",
        "started_at": finished.started_at,
        "finished_at": finished.at,
        "finished_by": finished.by,
        "business_time": finished.business_time,
        "target": finished.target,
        "calendar": finished.calendar,
        "deadline": finished.deadline,
        "policy_version": finished.policy_version,
    }
    if finished.customer_id is not None:
        fields["customer_id"] = finished.customer_id
    if finished.goal is not None:
        fields["goal"] = finished.goal
    return SlaTimerFinished(**fields)


Emission = SlaWarning | SlaBreach | TimerFinished


@dataclass(init=False, slots=True)
class Applied:
    ticket: Ticket
    emissions: list[Emission]
    duplicate: bool

    def __init__(self, ticket: Ticket, emissions: list[Emission], duplicate: bool = False) -> None:
        self.ticket = ticket
        self.emissions = emissions
        self.duplicate = duplicate


@dataclass(frozen=True, slots=True)
class TimerView:
    """A running timer as the HTTP API and the replay summary report it."""

    metric: str
    cycle: int
    started_at: datetime
    target: Target | GoalTarget
    deadline: datetime | None
    elapsed: timedelta
    paused: bool
    breached: bool
    calendar: str  # the calendar it runs on now (a goal's may follow the ticket's group)
    goal: str | None = None  # the goal judging it, where the policy names goals


def warning_or_breach(
    ticket_id: str, metric: str, cycle: int, threshold: float | None, common: dict[str, Any]
) -> SlaEvent:
    """The warning at `threshold` (None: the breach) of a timer, with its deterministic id;
    `common` holds the fields both kinds carry. Validated construction: pydantic-core's
    validator is about twice as fast as the pure-Python `model_construct` (and checks the
    values on the way)."""
    if threshold is None:
        return SlaBreach(
            event_id=emission_id(ticket_id, metric, cycle, "breach"), type="sla-breach", **common
        )
    return SlaWarning(
        event_id=emission_id(ticket_id, metric, cycle, f"warning@{threshold}"),
        type="sla-warning",
        threshold=threshold,
        **common,
    )
