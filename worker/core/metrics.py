"""Metric definitions: what starts, pauses, stops and restarts an SLA timer, as data.

A metric is a timer described by conditions on inbound events (JSM's start / pause /
stop conditions, ServiceNow's start / pause / stop / reset):

- `start`: events that start a new cycle when the metric is not running;
- `stop`: events that stop the running cycle (it is *met*, unless it breached first);
- `reset`: events that stop the running cycle and start the next one at once (Zendesk's
  periodic update: every public agent reply ends one interval and opens the next);
- `pause`: the statuses in which the timer does not run; it resumes when the ticket
  leaves them (the policy's `pause_statuses` when absent);
- `after`: another metric that must have been met once before this one can start
  (follow-up waits for the first response);
- `reopens`: whether the metric can start again once the ticket was solved (a reopened
  ticket gets a new resolution cycle; first response and follow-up stop for good).

Conditions are compiled, when the policy is built, into sets of *signals*: short strings
the engine derives once per event (`reply:agent:public`, `status:solved>open`,
`updated:group`), so that applying an event is a set lookup per metric, never a walk over
condition objects. `closed` is final for every metric: it stops all timers, and nothing
starts after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from worker.core.events import Status

STATUSES: tuple[Status, ...] = ("open", "pending", "on-hold", "solved", "closed")
UPDATABLE: tuple[str, ...] = ("group", "tags", "channel", "customer", "fields")
EventName = Literal[
    "ticket-created", "reply-sent", "status-changed", "priority-changed", "ticket-updated"
]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _one_or_many(value: Any, every: tuple[str, ...]) -> tuple[str, ...]:
    if value is None:
        return every
    return tuple(value) if isinstance(value, list) else (value,)


class ConditionSpec(_Spec):
    """One event pattern; absent fields match any value."""

    event: EventName
    author: Literal["agent", "customer"] | list[Literal["agent", "customer"]] | None = None
    public: bool | None = Field(default=None, description="reply-sent: public or internal.")
    status: Status | list[Status] | None = Field(
        default=None, description="status-changed: the new status."
    )
    from_: Status | list[Status] | None = Field(
        default=None, alias="from", description="status-changed: the previous status."
    )
    field: str | list[str] | None = Field(
        default=None, description=f"ticket-updated: the attribute changed ({UPDATABLE})."
    )

    def signals(self) -> frozenset[str]:
        """Every signal this condition matches (see module docstring)."""
        if self.event == "ticket-created":
            return frozenset({"created"})
        if self.event == "priority-changed":
            return frozenset({"priority"})
        if self.event == "reply-sent":
            authors = _one_or_many(self.author, ("agent", "customer"))
            kinds = (
                ("public", "internal")
                if self.public is None
                else (("public",) if self.public else ("internal",))
            )
            return frozenset(f"reply:{a}:{k}" for a, k in product(authors, kinds))
        if self.event == "status-changed":
            to = _one_or_many(self.status, STATUSES)
            before = _one_or_many(self.from_, STATUSES)
            return frozenset(f"status:{b}>{t}" for b, t in product(before, to))
        return frozenset(f"updated:{f}" for f in _one_or_many(self.field, UPDATABLE))


class MetricSpec(_Spec):
    """A metric as a policy file writes it under `metrics:`."""

    start: list[ConditionSpec] = Field(min_length=1)
    stop: list[ConditionSpec] = Field(default_factory=list)
    reset: list[ConditionSpec] = Field(default_factory=list)
    pause: list[Status] | None = Field(
        default=None, description="Statuses in which it does not run; the policy's when absent."
    )
    after: str | None = Field(default=None, description="A metric that must be met first.")
    reopens: bool = Field(default=True, description="Can start again after `solved`.")


@dataclass(frozen=True, slots=True)
class MetricDef:
    """A metric compiled for the engine: signal sets, looked up once per event."""

    name: str
    start: frozenset[str]
    stop: frozenset[str]
    reset: frozenset[str]
    pause: frozenset[Status]
    after: str | None
    reopens: bool


def compile_metric(name: str, spec: MetricSpec, default_pause: frozenset[Status]) -> MetricDef:
    def signals(conditions: list[ConditionSpec]) -> frozenset[str]:
        return frozenset().union(*(c.signals() for c in conditions))

    return MetricDef(
        name,
        signals(spec.start),
        signals(spec.stop),
        signals(spec.reset),
        default_pause if spec.pause is None else frozenset(spec.pause),
        spec.after,
        spec.reopens,
    )


def index_signals(metrics: tuple[MetricDef, ...]) -> dict[str, tuple[MetricDef, ...]]:
    """Each signal, and the metrics (in order) whose start, stop or reset names it."""
    index: dict[str, list[MetricDef]] = {}
    for metric in metrics:
        for signal in metric.start | metric.stop | metric.reset:
            index.setdefault(signal, []).append(metric)
    return {signal: tuple(found) for signal, found in index.items()}


def _c(**fields: object) -> ConditionSpec:
    return ConditionSpec.model_validate(fields)


_AGENT_REPLY = _c(event="reply-sent", author="agent", public=True)
_CUSTOMER_REPLY = _c(event="reply-sent", author="customer", public=True)
_SOLVED = _c(event="status-changed", status=["solved", "closed"])
_CREATED = _c(event="ticket-created")
_REOPENED = _c(event="status-changed", status=["open", "pending", "on-hold"], **{"from": "solved"})

BUILTIN_METRICS: dict[str, MetricSpec] = {
    # Today's two metrics, as data (docs/semantics.md, "Metrics and cycles").
    "first_response": MetricSpec(start=[_CREATED], stop=[_AGENT_REPLY, _SOLVED], reopens=False),
    "follow_up": MetricSpec(
        start=[_CUSTOMER_REPLY],
        stop=[_AGENT_REPLY, _SOLVED],
        after="first_response",
        reopens=False,
    ),
    # Time to resolution (JSM's default SLA, Zendesk's full resolution time): from
    # creation to solved; a reopen starts a new cycle with nothing carried over (JSM).
    "resolution": MetricSpec(start=[_CREATED, _REOPENED], stop=[_SOLVED]),
    # Zendesk's periodic update: from one public agent reply to the next, while open.
    "periodic_update": MetricSpec(start=[_AGENT_REPLY], reset=[_AGENT_REPLY], stop=[_SOLVED]),
    # Zendesk's requester wait (new, open, on-hold) and agent work (new, open) time.
    "requester_wait": MetricSpec(start=[_CREATED, _REOPENED], stop=[_SOLVED], pause=["pending"]),
    "agent_work": MetricSpec(
        start=[_CREATED, _REOPENED], stop=[_SOLVED], pause=["pending", "on-hold"]
    ),
}
