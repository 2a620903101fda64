"""The ticket timer state machine: events in, warnings and breaches out.

Pure and deterministic. `Engine.apply(ticket, event)` folds one event into a ticket's
state; `Engine.advance(ticket, now)` fires what has come due by `now`; `Engine.next_due`
says when to call `advance` next. Replay and the Kafka worker drive these same three
functions, so they agree by construction. See docs/semantics.md for every rule.

The model, in one paragraph: each metric has a *clock* (when it started, which cycle,
which warnings and breach it has already emitted). Which *target* applies is not stored:
it is looked up from the ticket's current plan and priority every time, so a priority
change needs no bookkeeping, and every deadline is recomputed from the clock's original
start and the ticket's pause history. A clock whose current priority has no target for
its metric is dormant: it emits nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from worker.core.errors import SlaWorkerError
from worker.core.events import (
    InboundEvent,
    Metric,
    PriorityChanged,
    ReplySent,
    SlaBreach,
    SlaEvent,
    SlaTimerFinished,
    SlaWarning,
    Status,
    StatusChanged,
    TicketCreated,
    TicketUpdated,
    emission_id,
)
from worker.core.goal_match import GoalTarget
from worker.core.metrics import MetricDef
from worker.core.policy import Plan, Policy, Target
from worker.core.reasons import Reason
from worker.core.timers import Timer

_STOP_STATUSES: frozenset[Status] = frozenset({"solved", "closed"})


def _before(due: datetime | None, at: datetime) -> bool:
    return due is not None and due < at


SEEN_LIMIT: Final = 1000
"""Event ids a ticket remembers for deduplication: its latest 1,000 applied events."""


class Rejected(SlaWorkerError, ValueError):
    """An event that is well-formed but cannot be applied to the ticket it names.

    `reason` is a short, stable code (safe as a metric label); `str(exc)` explains.
    """

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


# The value classes below are dataclasses for their `__eq__` and `__repr__`, with
# hand-written `__init__`s (`init=False`): mypyc compiles a hand-written one, while the
# one `@dataclass` generates is interpreted Python at every construction (a third of the
# cost of creating a ticket, and one `Applied` is made per event). Measured again with
# mypyc 2.4.1 (issue #15, BENCHMARKS.md): the plain forms, generated `__init__`s and
# `frozen=True` for `TimerFinished`, cost the compiled replay 11 % of its throughput
# (best of 3 per process, 4 alternating rounds: 224,200 against 248,800 events/s);
# pure Python runs both forms at the same speed.


@dataclass(init=False, slots=True)
class Clock:
    """How long one metric has been waiting, independent of the target that applies."""

    metric: Metric
    cycle: int
    started_at: datetime
    warned: list[float]
    breached: bool

    def __init__(
        self,
        metric: Metric,
        cycle: int,
        started_at: datetime,
        warned: list[float] | None = None,
        breached: bool = False,
    ) -> None:
        self.metric = metric
        self.cycle = cycle
        self.started_at = started_at
        self.warned = [] if warned is None else warned
        self.breached = breached


@dataclass(init=False, slots=True)
class Pause:
    """A stretch of time in a pausing status; `end` is None while it lasts."""

    start: datetime
    end: datetime | None

    def __init__(self, start: datetime, end: datetime | None = None) -> None:
        self.start = start
        self.end = end


@dataclass(init=False, slots=True)
class Ticket:
    """Everything the engine remembers about one ticket."""

    ticket_id: str
    plan: str
    priority: int
    exempt: bool
    last_event_at: datetime
    status: Status
    responded: bool
    finished: bool
    follow_up_cycles: int
    first_response: Clock | None
    follow_up: Clock | None
    pauses: list[Pause]
    # Ids of the ticket's latest applied events, oldest first, for recognising
    # redeliveries; at most SEEN_LIMIT (a dict: insertion-ordered, O(1) membership).
    seen: dict[str, None]
    # The next instant something is due: a cache the engine refreshes after every
    # change, so that most events need no calendar arithmetic to know nothing is due.
    due: datetime | None
    customer_id: str | None  # from ticket-created; None when it named none
    # The policy version in force when the ticket was created: it judges the ticket for
    # its whole life. "" when not known (state stored before versions were recorded).
    policy_version: str
    # Attributes that goals and calendar maps read (docs/semantics.md, "Goals"). Empty
    # containers are None: most tickets have none, and a ticket's size is replay's memory.
    stage: str
    group: str | None
    channel: str | None
    tags: tuple[str, ...]
    fields: dict[str, str] | None
    # A goal policy's state: the index of the goal the ticket matches (-1: none), its
    # running timers, the last cycle of each metric started, the metrics met once.
    goal: int
    timers: list[Timer] | None
    cycles: dict[str, int] | None
    met: dict[str, None] | None

    def __init__(
        self,
        ticket_id: str,
        plan: str,
        priority: int,
        exempt: bool,
        last_event_at: datetime,
        status: Status = "open",
        responded: bool = False,
        finished: bool = False,
        follow_up_cycles: int = 0,
        first_response: Clock | None = None,
        follow_up: Clock | None = None,
        pauses: list[Pause] | None = None,
        seen: dict[str, None] | None = None,
        due: datetime | None = None,
        customer_id: str | None = None,
        policy_version: str = "",
        stage: str = "ga",
        group: str | None = None,
        channel: str | None = None,
        tags: tuple[str, ...] = (),
        fields: dict[str, str] | None = None,
        goal: int = -1,
        timers: list[Timer] | None = None,
        cycles: dict[str, int] | None = None,
        met: dict[str, None] | None = None,
    ) -> None:
        self.ticket_id = ticket_id
        self.plan = plan
        self.priority = priority
        self.exempt = exempt
        self.last_event_at = last_event_at
        self.status = status
        self.responded = responded
        self.finished = finished
        self.follow_up_cycles = follow_up_cycles
        self.first_response = first_response
        self.follow_up = follow_up
        self.pauses = [] if pauses is None else pauses
        self.seen = {} if seen is None else seen
        self.due = due
        self.customer_id = customer_id
        self.policy_version = policy_version
        self.stage = stage
        self.group = group
        self.channel = channel
        self.tags = tags
        self.fields = fields
        self.goal = goal
        self.timers = timers
        self.cycles = cycles
        self.met = met

    @property
    def paused(self) -> bool:
        return bool(self.pauses) and self.pauses[-1].end is None

    def clocks(self) -> list[Clock]:
        if self.follow_up is None:
            return [] if self.first_response is None else [self.first_response]
        return (
            [self.follow_up]
            if self.first_response is None
            else [self.first_response, self.follow_up]
        )


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


class Engine:
    """Applies a `Policy` to tickets. Holds no ticket state of its own."""

    def __init__(
        self, policy: Policy, retention: timedelta | None = None, measure: bool = True
    ) -> None:
        """`policy`: a single policy or a history of versions (`Policy.versions`): a new
        ticket is judged by the version in force at its creation. `retention`: how long
        (event time) a finished ticket is kept after its last event; None keeps every
        ticket forever. `measure`: give each finished timer its business time and
        deadline (calendar arithmetic at every stop); False where they are only counted."""
        self.policy = policy
        self.retention = retention
        self.measure = measure
        self._versions: dict[str, Policy] = {v.version: v for v in policy.history()}
        # A single policy judges every ticket: no lookup on the hot path.
        self._single: Policy | None = None if policy.versions else policy
        self._single_goals = bool(policy.goals) and not policy.versions

    def _goals_at(self, at: datetime) -> bool:
        """Does the policy in force at `at` have goals (a ticket created then runs on the
        goal path, and carries `timers` for its life)?"""
        if self._single is not None:
            return self._single_goals
        return bool(self.policy.at(at).goals)

    def policy_of(self, ticket: Ticket) -> Policy:
        """The policy version that judges `ticket`: the one it was created under."""
        single = self._single
        if single is not None:
            return single
        found = self._versions.get(ticket.policy_version)
        if found is None:  # unknown to this policy file: see `refresh`
            return self.policy.at(ticket.last_event_at)
        return found

    def expired(self, ticket: Ticket, at: datetime) -> bool:
        """Is `ticket` gone at `at`? A finished (solved or closed) ticket is removed from
        state once event time passes its last event plus the retention: no timer of it
        can run again, and events for it are judged as for a ticket never seen."""
        retention = self.retention
        return (
            retention is not None
            and ticket.finished
            and at > ticket.last_event_at + retention
            and not ticket.timers  # a reopened ticket of a goal policy may run timers again
        )

    # --- the three entry points ---------------------------------------------------------

    def check(
        self, ticket: Ticket | None, event: InboundEvent, clock: datetime | None = None
    ) -> bool:
        """Raise `Rejected` if `event` cannot apply to `ticket`; True for a duplicate.

        Changes nothing. Replay asks before it moves its clock, so that a rejected or
        duplicate event (say, one dated 2099) never fires other tickets' timers. `clock`:
        the reader's event time; with a retention, an event for an unknown ticket dated
        more than the retention before it is `too-old` (a redelivered `ticket-created` of a
        ticket already removed must not start it again).
        """
        if ticket is not None and self.expired(ticket, event.occurred_at):
            ticket = None
        if ticket is None:
            retention = self.retention
            if (
                retention is not None
                and clock is not None
                and event.occurred_at < clock - retention
            ):
                raise Rejected(
                    Reason.TOO_OLD,
                    f"occurred_at {event.occurred_at.isoformat()} is more than the "
                    f"retention ({retention}) before the event time "
                    f"{clock.isoformat()}, and ticket {event.ticket_id!r} is not in state",
                )
            if type(event) is not TicketCreated:
                raise Rejected(
                    Reason.UNKNOWN_TICKET, f"ticket {event.ticket_id!r} has no ticket-created event"
                )
            if not self._goals_at(event.occurred_at):
                self._plan_and_priority(event)  # goals accept every plan and priority
            return False
        if event.event_id in ticket.seen:
            return True
        if type(event) is TicketCreated:
            raise Rejected(Reason.DUPLICATE_TICKET, f"ticket {event.ticket_id!r} already exists")
        at = event.occurred_at
        if at < ticket.last_event_at:
            raise Rejected(
                Reason.OUT_OF_ORDER,
                f"occurred_at {at.isoformat()} precedes this ticket's last event at "
                f"{ticket.last_event_at.isoformat()}",
            )
        if ticket.timers is not None:
            return False  # goals accept every plan and priority (none may match)
        plan = self.policy_of(ticket).plans.get(ticket.plan)
        if plan is None:
            raise Rejected(
                Reason.UNKNOWN_PLAN, f"ticket's plan {ticket.plan!r} is no longer in the policy"
            )
        if type(event) is PriorityChanged and event.priority not in plan.targets:
            raise Rejected(
                Reason.UNKNOWN_PRIORITY,
                f"plan {plan.name!r} has no priority {event.priority} (has {sorted(plan.targets)})",
            )
        return False

    def apply(
        self, ticket: Ticket | None, event: InboundEvent, clock: datetime | None = None
    ) -> Applied:
        """Fold `event` into `ticket` (None when the ticket is unknown).

        Everything the ticket had due strictly before the event fires first, so a reply
        exactly at the deadline meets it while a reply one microsecond later does not.
        Points that the event itself puts in the past (a priority raised after its new
        target already elapsed) fire at once. Raises `Rejected` (see `check`). An expired
        ticket counts as unknown: a `ticket-created` starts a new one.
        """
        return self.apply_checked(ticket, event, self.check(ticket, event, clock))

    def apply_checked(
        self, ticket: Ticket | None, event: InboundEvent, duplicate: bool = False
    ) -> Applied:
        """`apply`, once `check` has passed and said whether `event` is a `duplicate`.

        For replay, which checks before it moves its clock and so need not check twice.
        """
        at = event.occurred_at  # UTC: events normalise it
        if ticket is not None and self.expired(ticket, at):
            ticket = None
        if ticket is None:
            assert type(event) is TicketCreated
            if self._goals_at(at):
                ticket, created = self._create_on_goals(event, at)
                return Applied(ticket, created)
            ticket = self._create(event, at)
            ticket.due = self._next_due(ticket)
            return Applied(ticket, [])
        if duplicate:
            return Applied(ticket, [], duplicate=True)
        if ticket.timers is not None:  # created under a goal policy
            return Applied(ticket, self._apply_on_goals(ticket, event, at))

        emissions = self._fire(ticket, at, inclusive=False) if _before(ticket.due, at) else []
        seen = ticket.seen
        seen[event.event_id] = None
        if len(seen) > SEEN_LIMIT:
            # An older redelivery still never applies twice: its occurred_at precedes the
            # ticket's last event, so it is rejected as out-of-order instead.
            del seen[next(iter(seen))]
        ticket.last_event_at = at
        # `changed`: whether the event touched anything the due instant depends on
        # (the priority, a clock, a pause) since `ticket.due` was last refreshed. When
        # it is False the cached due instant is still right: most events (internal
        # notes, replies that start nothing) need no calendar arithmetic.
        changed = True
        if not ticket.finished and not ticket.exempt:
            if type(event) is ReplySent:
                changed = self._reply(ticket, event, at, emissions)
            elif type(event) is StatusChanged:
                changed = self._status(ticket, event.status, at, emissions)
            elif type(event) is PriorityChanged:
                ticket.priority = event.priority
                # Points the new target already put in the past fire at once. Only
                # if the new due instant is before the event is there any to fire.
                ticket.due = self._next_due(ticket)
                if _before(ticket.due, at):
                    emissions += self._fire(ticket, at, inclusive=False)
                changed = False
        elif type(event) is PriorityChanged:
            ticket.priority = event.priority
        if type(event) is TicketUpdated:
            _update_attributes(ticket, event)  # no plan x priority target depends on them
            changed = False  # so no calendar arithmetic: tag and group edits are frequent
        if changed:
            ticket.due = self._next_due(ticket)
        return Applied(ticket, emissions)

    def advance(self, ticket: Ticket, now: datetime) -> list[Emission]:
        """Fire every warning and breach of `ticket` due at or before `now`."""
        now = now.astimezone(UTC)
        if ticket.due is None or ticket.due > now:
            return []
        return self._fire(ticket, now, inclusive=True)

    def next_due(self, ticket: Ticket) -> datetime | None:
        """The next instant at which `advance` would emit something, if any."""
        return ticket.due

    def refresh(self, ticket: Ticket, exact: bool = False) -> Ticket:
        """Recompute the cached due instant of a ticket loaded from storage (the policy
        may have changed since it was stored). A ticket whose policy version this policy
        file does not have (stored before versions were recorded, or a version since
        removed) is judged from now on by the version in force at its last event.

        `exact`: a goal policy's running timers get their exact due instants, not the
        lower bounds the event path caches (`_timer_due`). A restore asks for them: the
        bounds of tickets stored hours ago are mostly past (a business-hours timer
        stored on Friday afternoon has its bound that evening), so the first step after
        the restore would take every such ticket at once, only to find nothing due.
        The rebuild pays that arithmetic instead, in the chunks it runs in beside the
        loop."""
        if ticket.policy_version not in self._versions:
            ticket.policy_version = self.policy.at(ticket.last_event_at).version
        if ticket.timers is not None:
            # The policy may have changed since: the goal is matched again, and a running
            # timer whose calendar changed with it runs on the new one from its last event.
            ticket.goal = self.policy_of(ticket).matcher.match(ticket)
            self._resegment(ticket, ticket.last_event_at)
            ticket.due = self._refresh_dues(ticket, exact)
        else:
            ticket.due = self._next_due(ticket)
        return ticket

    def _next_due(self, ticket: Ticket) -> datetime | None:
        """The earliest instant among each clock's first point not yet emitted.

        The same as the first element of `_pending` per clock, without building the
        list: this runs after most changes to a ticket.
        """
        if ticket.timers is not None:
            return self._refresh_dues(ticket)
        due: datetime | None = None
        for clock in (ticket.first_response, ticket.follow_up):
            if clock is None or clock.breached:
                continue
            target = self._target(ticket, clock.metric)
            if target is None:
                continue
            amount = target.duration
            for i, fraction in enumerate(target.warnings):
                if fraction not in clock.warned:
                    amount = target.warning_amounts[i]
                    break
            instant = self._instant_at(ticket, clock, target, amount)
            if instant is not None and (due is None or instant < due):
                due = instant
        return due

    def timers(self, ticket: Ticket, now: datetime) -> list[TimerView]:
        """The ticket's measured timers as of `now` (for the API and summaries)."""
        if ticket.timers is not None:
            return self._goal_views(ticket, now.astimezone(UTC))
        views = []
        for clock in ticket.clocks():
            target = self._target(ticket, clock.metric)
            if target is None:
                continue
            views.append(
                TimerView(
                    clock.metric,
                    clock.cycle,
                    clock.started_at,
                    target,
                    self._instant_at(ticket, clock, target, target.duration),
                    self._elapsed(ticket, clock, target, now.astimezone(UTC)),
                    ticket.paused,
                    clock.breached,
                    target.calendar.name,
                )
            )
        return views

    # --- event handlers -----------------------------------------------------------------

    def _plan_and_priority(self, event: TicketCreated) -> tuple[Plan, int]:
        policy = self.policy.at(event.occurred_at)
        plan = policy.plans.get(event.plan)
        if plan is None:
            raise Rejected(
                Reason.UNKNOWN_PLAN,
                f"unknown plan {event.plan!r} (known in policy {policy.version}: "
                f"{sorted(policy.plans)})",
            )
        priority = plan.default_priority if event.priority is None else event.priority
        if priority not in plan.targets:
            raise Rejected(
                Reason.UNKNOWN_PRIORITY,
                f"plan {plan.name!r} has no priority {priority} (has {sorted(plan.targets)})",
            )
        return plan, priority

    def _create(self, event: TicketCreated, at: datetime) -> Ticket:
        plan, priority = self._plan_and_priority(event)
        ticket = Ticket(
            ticket_id=event.ticket_id,
            plan=plan.name,
            priority=priority,
            exempt=event.product_stage in plan.exempt_stages,
            last_event_at=at,
            seen={event.event_id: None},
            customer_id=event.customer_id,
            policy_version=self.policy.at(at).version,
        )
        if not ticket.exempt:
            ticket.first_response = Clock("first_response", 1, at)
        return ticket

    def _reply(
        self, ticket: Ticket, event: ReplySent, at: datetime, emissions: list[Emission]
    ) -> bool:
        """Apply a reply; append what it emits. Returns whether any clock changed."""
        if not event.public:
            return False  # an internal note: the customer saw nothing
        if event.author == "customer":
            # A customer message after the first response starts a follow-up cycle,
            # unless the customer is already waiting for an answer.
            if ticket.responded and ticket.follow_up is None:
                ticket.follow_up_cycles += 1
                ticket.follow_up = Clock("follow_up", ticket.follow_up_cycles, at)
                return True
            return False
        ticket.responded = True
        for clock in ticket.clocks():
            self._stop(ticket, clock, at, "reply", emissions)
        ticket.first_response = ticket.follow_up = None
        if ticket.pauses:
            # No clock runs any more, and clocks to come start later: only a pause
            # still in progress matters to them (dropping the rest bounds memory).
            ticket.pauses = [p for p in ticket.pauses if p.end is None]
        return True

    def _status(
        self, ticket: Ticket, status: Status, at: datetime, emissions: list[Emission]
    ) -> bool:
        """Apply a status; append what it emits. Returns whether a clock or pause changed."""
        ticket.status = status
        if status in _STOP_STATUSES:
            for clock in ticket.clocks():
                self._stop(ticket, clock, at, status, emissions)
            ticket.first_response = ticket.follow_up = None
            ticket.finished = True
            ticket.pauses.clear()
            return True
        if status in self.policy_of(ticket).pause_statuses:
            if ticket.paused:
                return False  # one pausing status to another: one continuous pause
            ticket.pauses.append(Pause(at))
            return True
        if ticket.paused:
            ticket.pauses[-1].end = at
            return True
        return False

    def _stop(
        self, ticket: Ticket, clock: Clock, at: datetime, by: str, emissions: list[Emission]
    ) -> None:
        """A clock stops for good (before the ticket's pauses are trimmed or cleared, so
        that the business time taken excludes them)."""
        target = self._target(ticket, clock.metric)
        if target is None:
            return  # not measured: no SLA applies at the current priority
        measure = self.measure
        emissions.append(
            TimerFinished(
                ticket.ticket_id,
                ticket.customer_id,
                ticket.plan,
                ticket.priority,
                clock.metric,
                clock.cycle,
                clock.started_at,
                at,
                by,
                not clock.breached,
                self._elapsed(ticket, clock, target, at) if measure else None,
                target.duration,
                target.calendar.name,
                self._instant_at(ticket, clock, target, target.duration) if measure else None,
                self.policy_of(ticket).version,
            )
        )

    # --- timer arithmetic ---------------------------------------------------------------

    def _target(self, ticket: Ticket, metric: Metric) -> Target | None:
        plan = self.policy_of(ticket).plans.get(ticket.plan)
        if ticket.exempt or plan is None:
            return None
        targets = plan.targets.get(ticket.priority)  # `Plan.target`, without the call
        # None: no SLA, or a stored ticket whose plan/priority left the policy.
        return None if targets is None else targets.get(metric)

    def _pending(
        self, ticket: Ticket, clock: Clock
    ) -> list[tuple[float | None, timedelta, Target]]:
        """The clock's points not yet emitted, in order: (threshold or None for breach,
        amount of calendar time, target)."""
        target = self._target(ticket, clock.metric)
        if target is None or clock.breached:
            return []
        points: list[tuple[float | None, timedelta, Target]] = [
            (fraction, amount, target)
            for fraction, amount in zip(target.warnings, target.warning_amounts, strict=True)
            if fraction not in clock.warned
        ]
        points.append((None, target.duration, target))
        return points

    def _fire(self, ticket: Ticket, now: datetime, *, inclusive: bool) -> list[Emission]:
        """Emit each clock's points due by `now` (at `now` too if `inclusive`), and
        refresh `ticket.due`: the first point of each clock that is not due is what
        `_next_due` would compute, so the cache comes without a second calculation."""
        if ticket.timers is not None:
            return self._goal_fire(ticket, now, inclusive)
        emissions: list[Emission] = []
        due: datetime | None = None
        for clock in ticket.clocks():
            for threshold, amount, target in self._pending(ticket, clock):
                instant = self._instant_at(ticket, clock, target, amount)
                if instant is None or instant > now or (instant == now and not inclusive):
                    if instant is not None and (due is None or instant < due):
                        due = instant
                    break  # points are in time order: nothing later is due either
                emissions.append(self._emit(ticket, clock, target, threshold, instant))
        ticket.due = due
        return emissions

    def _emit(
        self,
        ticket: Ticket,
        clock: Clock,
        target: Target,
        threshold: float | None,
        due_at: datetime,
    ) -> SlaEvent:
        common: dict[str, Any] = {
            "ticket_id": ticket.ticket_id,
            "plan": ticket.plan,
            "priority": ticket.priority,
            "metric": clock.metric,
            "cycle": clock.cycle,
            "started_at": clock.started_at,
            "due_at": due_at,
            # A breach is due at the deadline itself: no need to compute it again.
            "deadline": due_at
            if threshold is None
            else self._instant_at(ticket, clock, target, target.duration),
            "target": target.duration,
            "calendar": target.calendar.name,
            "policy_version": self.policy_of(ticket).version,
        }
        if ticket.customer_id is not None:
            common["customer_id"] = ticket.customer_id
        if threshold is None:
            clock.breached = True
        else:
            clock.warned.append(threshold)
        return _emission(ticket.ticket_id, clock.metric, clock.cycle, threshold, common)

    def _instant_at(
        self, ticket: Ticket, clock: Clock, target: Target, amount: timedelta
    ) -> datetime | None:
        """The instant at which `amount` of calendar time had run on `clock`, skipping
        paused stretches; None when the clock is paused before reaching it."""
        calendar = target.calendar
        start = clock.started_at
        for pause in ticket.pauses:
            if pause.end is not None and pause.end <= start:
                continue
            if pause.start > start:
                running = calendar.elapsed(start, pause.start)
                if amount <= running:
                    return calendar.add(start, amount)
                amount -= running
            if pause.end is None:
                return None
            start = pause.end
        return calendar.add(start, amount)

    def _elapsed(self, ticket: Ticket, clock: Clock, target: Target, now: datetime) -> timedelta:
        """Calendar time run on `clock` up to `now`, excluding paused stretches."""
        calendar = target.calendar
        total = timedelta(0)
        start = clock.started_at
        for pause in ticket.pauses:
            if start >= now:
                break
            if pause.end is not None and pause.end <= start:
                continue
            if pause.start > start:
                total += calendar.elapsed(start, min(pause.start, now))
            if pause.end is None:
                return total
            start = max(start, pause.end)
        if start < now:
            total += calendar.elapsed(start, now)
        return total

    # --- the goal path (a policy with `goals:`) ------------------------------------------
    #
    # Metrics are data (`worker.core.metrics`): each event becomes one or more *signals*,
    # and each metric's start / stop / reset sets say what they do to its timer. Targets
    # come from the first goal the ticket's attributes match; timers bank business time
    # per stretch (`worker.core.timers`), so a goal or calendar change keeps what ran.

    def _create_on_goals(self, event: TicketCreated, at: datetime) -> tuple[Ticket, list[Emission]]:
        policy = self.policy.at(at)
        ticket = Ticket(
            ticket_id=event.ticket_id,
            plan=event.plan,
            priority=policy.default_priority if event.priority is None else event.priority,
            exempt=False,
            last_event_at=at,
            seen={event.event_id: None},
            customer_id=event.customer_id,
            policy_version=policy.version,
            stage=event.product_stage,
            group=event.group,
            channel=event.channel,
            tags=tuple(event.tags),
            fields=dict(event.fields) if event.fields else None,
            timers=[],
        )
        ticket.goal = policy.matcher.match(ticket)
        emissions: list[Emission] = []
        self._signal(policy, ticket, "created", "ticket-created", at, emissions)
        ticket.due = self._goal_due(ticket)
        return ticket, emissions

    def _apply_on_goals(self, ticket: Ticket, event: InboundEvent, at: datetime) -> list[Emission]:
        """Apply an event to a goal policy's ticket (checked, not a duplicate)."""
        emissions = self._goal_fire(ticket, at, False) if _before(ticket.due, at) else []
        seen = ticket.seen
        seen[event.event_id] = None
        if len(seen) > SEEN_LIMIT:
            del seen[next(iter(seen))]
        ticket.last_event_at = at
        policy = self.policy_of(ticket)
        closed = ticket.status == "closed"  # final: attributes still change, timers don't
        signals: list[str] = []
        by: str = event.type
        if type(event) is ReplySent:
            by = "reply"
            signals.append(f"reply:{event.author}:{'public' if event.public else 'internal'}")
        elif type(event) is StatusChanged and not closed:  # a closed ticket stays closed
            before, status = ticket.status, event.status
            ticket.status = by = status
            signals.append(f"status:{before}>{status}")
            if status == "solved" or status == "closed":
                ticket.finished = True
        # `attributes`: whether an attribute that goals or calendar maps read changed
        # (otherwise neither the goal nor any timer's calendar can have changed).
        attributes = False
        if type(event) is PriorityChanged:
            attributes = event.priority != ticket.priority and "priority" in policy.matcher.reads
            ticket.priority = event.priority
            signals.append("priority")
        elif type(event) is TicketUpdated:
            changed = _update_attributes(ticket, event)
            if changed:
                signals += [f"updated:{name}" for name in changed]
                attributes = not policy.matcher.reads.isdisjoint(changed)
        if attributes:
            ticket.goal = policy.matcher.match(ticket)
            if not closed:
                self._resegment(ticket, at)
                # Points the new goal puts in the past fire before this event's own
                # signals apply: a metric this very event stops must not hide its breach.
                ticket.due = self._refresh_dues(ticket)
                if _before(ticket.due, at):
                    emissions += self._goal_fire(ticket, at, False)
        if not closed:
            for signal in signals:
                self._signal(policy, ticket, signal, by, at, emissions)
            if type(event) is StatusChanged:
                # After the stops: a timer stopped by this status is not resumed first.
                self._pause_or_resume(policy, ticket, at)
            if ticket.status == "closed":
                for timer in list(ticket.timers or ()):
                    self._stop_timer(policy, ticket, timer, at, "closed", emissions)
        # A new goal may change every timer's points; otherwise each change above
        # refreshed the due instant of the timer it changed.
        ticket.due = self._refresh_dues(ticket) if attributes else self._goal_due(ticket)
        if _before(ticket.due, at):  # a new goal's target already elapsed: fire at once
            emissions += self._goal_fire(ticket, at, False)
        return emissions

    def _signal(
        self,
        policy: Policy,
        ticket: Ticket,
        signal: str,
        by: str,
        at: datetime,
        emissions: list[Emission],
    ) -> None:
        """What one signal does to each metric it concerns: stop, reset or start its timer."""
        timers = ticket.timers
        assert timers is not None
        for metric in policy.by_signal.get(signal, ()):
            running = None
            for timer in timers:
                if timer.metric == metric.name:
                    running = timer
                    break
            if running is not None:
                if signal in metric.stop:
                    self._stop_timer(policy, ticket, running, at, by, emissions)
                elif signal in metric.reset:
                    self._stop_timer(policy, ticket, running, at, by, emissions)
                    if _may_start(ticket, metric):  # not while the ticket is solved
                        self._start_timer(policy, ticket, metric, at)
            elif signal in metric.start and _may_start(ticket, metric):
                self._start_timer(policy, ticket, metric, at)

    def _start_timer(self, policy: Policy, ticket: Ticket, metric: MetricDef, at: datetime) -> None:
        cycles = ticket.cycles
        if cycles is None:
            cycles = ticket.cycles = {}
        name = metric.name
        cycle = cycles.get(name, 0) + 1
        cycles[name] = cycle
        timer = Timer(name, cycle, at)
        if ticket.status not in metric.pause:
            timer.run(at, self._calendar_name(ticket, name))
        self._timer_due(ticket, timer, policy)
        assert ticket.timers is not None
        ticket.timers.append(timer)

    def _stop_timer(
        self,
        policy: Policy,
        ticket: Ticket,
        timer: Timer,
        at: datetime,
        by: str,
        emissions: list[Emission],
    ) -> None:
        timers = ticket.timers
        assert timers is not None
        for i, running in enumerate(timers):
            if running is timer:  # by identity: `remove` would compare whole timers
                del timers[i]
                break
        met = ticket.met
        if met is None:
            met = ticket.met = {}
        met[timer.metric] = None
        target = self._goal_target(ticket, timer.metric)
        if target is None:
            return  # not measured: no goal's target applies now
        calendars = policy.calendars
        measure = self.measure
        emissions.append(
            TimerFinished(
                ticket.ticket_id,
                ticket.customer_id,
                ticket.plan,
                ticket.priority,
                timer.metric,  # type: ignore[arg-type]  # goal metrics are any name
                timer.cycle,
                timer.started_at,
                at,
                by,
                not timer.breached,
                timer.elapsed(at, calendars) if measure else None,
                target.duration,
                target.calendar_for(ticket).name,
                timer.instant_at(target.duration, calendars) if measure else None,
                policy.version,
                self._goal_name(ticket),
            )
        )

    def _pause_or_resume(self, policy: Policy, ticket: Ticket, at: datetime) -> None:
        """After a status change: pause the timers whose metric pauses in it, resume the
        others (one pausing status to another stays one pause)."""
        for timer in ticket.timers or ():
            paused = ticket.status in policy.pauses.get(timer.metric, policy.pause_statuses)
            if timer.running and paused:
                timer.halt(at, policy.calendars)
                self._timer_due(ticket, timer, policy)
            elif not timer.running and not paused:
                timer.run(at, self._calendar_name(ticket, timer.metric))
                self._timer_due(ticket, timer, policy)

    def _resegment(self, ticket: Ticket, at: datetime) -> None:
        """A running timer whose calendar changed (a new goal, a group in another time
        zone) banks what ran on the old one and runs on the new one from `at`."""
        calendars = self.policy_of(ticket).calendars
        for timer in ticket.timers or ():
            name = self._calendar_name(ticket, timer.metric)
            if name:
                timer.measure_on(name, calendars)  # stretches run while no target applied
            if not timer.running:
                continue
            last = timer.segments[-1]
            if last.calendar != name:
                if last.start == at:
                    last.calendar = name  # nothing ran yet: no empty stretch to keep
                else:
                    timer.halt(at, calendars)
                    timer.run(at, name)

    def _goal_target(self, ticket: Ticket, metric: str) -> GoalTarget | None:
        goal = ticket.goal
        if goal < 0:
            return None
        goals = self.policy_of(ticket).goals
        if goal >= len(goals):
            return None  # stored state matched against an older policy: see refresh
        return goals[goal].targets.get(metric)

    def goal_of(self, ticket: Ticket) -> str | None:
        """The name of the goal that judges `ticket` now (None: a plan x priority policy,
        an unnamed goal, or no goal matches)."""
        return None if ticket.timers is None else self._goal_name(ticket)

    def _goal_name(self, ticket: Ticket) -> str | None:
        goal = ticket.goal
        goals = self.policy_of(ticket).goals
        return goals[goal].name if 0 <= goal < len(goals) else None

    def _calendar_name(self, ticket: Ticket, metric: str) -> str:
        target = self._goal_target(ticket, metric)
        return "" if target is None else target.calendar_for(ticket).name

    def _goal_points(
        self, ticket: Ticket, timer: Timer
    ) -> list[tuple[float | None, timedelta, GoalTarget]]:
        target = self._goal_target(ticket, timer.metric)
        if target is None or timer.breached:
            return []
        points: list[tuple[float | None, timedelta, GoalTarget]] = [
            (fraction, amount, target)
            for fraction, amount in zip(target.warnings, target.warning_amounts, strict=True)
            if fraction not in timer.warned
        ]
        points.append((None, target.duration, target))
        return points

    def _timer_due(self, ticket: Ticket, timer: Timer, policy: Policy, exact: bool = False) -> None:
        """Refresh the timer's cached due instant: when its first point not yet emitted
        may come due, a lower bound of it while the timer runs (`Timer.due_bound`):
        `_goal_fire` computes the exact instant when the bound comes due, and fires it
        or waits for it. So no point fires early, and a timer that stops before its
        bound (most do) never needs the calendar arithmetic of its due instant."""
        due: datetime | None = None
        target = self._goal_target(ticket, timer.metric)
        if target is not None and not timer.breached:
            amount = target.duration
            for i, fraction in enumerate(target.warnings):
                if fraction not in timer.warned:
                    amount = target.warning_amounts[i]
                    break
            if exact:
                due = timer.instant_at(amount, policy.calendars)
            else:
                due = timer.due_bound(amount, policy.calendars)
        timer.due = due

    def _refresh_dues(self, ticket: Ticket, exact: bool = False) -> datetime | None:
        """Refresh every timer's due instant (`exact`: see `refresh`); the earliest."""
        policy = self.policy_of(ticket)
        for timer in ticket.timers or ():
            self._timer_due(ticket, timer, policy, exact)
        return self._goal_due(ticket)

    def _goal_due(self, ticket: Ticket) -> datetime | None:
        """The earliest of the timers' cached due instants."""
        due: datetime | None = None
        for timer in ticket.timers or ():
            instant = timer.due
            if instant is not None and (due is None or instant < due):
                due = instant
        return due

    def _goal_fire(self, ticket: Ticket, now: datetime, inclusive: bool) -> list[Emission]:
        policy = self.policy_of(ticket)
        emissions: list[Emission] = []
        due: datetime | None = None
        for timer in ticket.timers or ():
            pending = timer.due
            if pending is None or pending > now or (pending == now and not inclusive):
                if pending is not None and (due is None or pending < due):
                    due = pending
                continue  # its first point is not due: nothing later is either
            # Its cached instant may be a lower bound (`_timer_due`): each point's exact
            # instant decides, unless the bound already says the point is not due.
            timer.due = None
            calendars = policy.calendars
            for threshold, amount, target in self._goal_points(ticket, timer):
                instant = timer.due_bound(amount, calendars)
                if instant is not None and (instant < now or (instant == now and inclusive)):
                    instant = timer.instant_at(amount, calendars)
                if instant is None or instant > now or (instant == now and not inclusive):
                    timer.due = instant
                    if instant is not None and (due is None or instant < due):
                        due = instant
                    break
                emissions.append(self._goal_emit(policy, ticket, timer, target, threshold, instant))
        ticket.due = due
        return emissions

    def _goal_emit(
        self,
        policy: Policy,
        ticket: Ticket,
        timer: Timer,
        target: GoalTarget,
        threshold: float | None,
        due_at: datetime,
    ) -> SlaEvent:
        common: dict[str, Any] = {
            "ticket_id": ticket.ticket_id,
            "plan": ticket.plan,
            "priority": ticket.priority,
            "metric": timer.metric,
            "cycle": timer.cycle,
            "started_at": timer.started_at,
            "due_at": due_at,
            "deadline": due_at
            if threshold is None
            else timer.instant_at(target.duration, policy.calendars),
            "target": target.duration,
            "calendar": target.calendar_for(ticket).name,
            "policy_version": policy.version,
        }
        if ticket.customer_id is not None:
            common["customer_id"] = ticket.customer_id
        goal = self._goal_name(ticket)
        if goal is not None:
            common["goal"] = goal
        if threshold is None:
            timer.breached = True
        else:
            timer.warned.append(threshold)
        return _emission(ticket.ticket_id, timer.metric, timer.cycle, threshold, common)

    def _goal_views(self, ticket: Ticket, now: datetime) -> list[TimerView]:
        calendars = self.policy_of(ticket).calendars
        views = []
        for timer in ticket.timers or ():
            target = self._goal_target(ticket, timer.metric)
            if target is None:
                continue
            views.append(
                TimerView(
                    timer.metric,
                    timer.cycle,
                    timer.started_at,
                    target,
                    timer.instant_at(target.duration, calendars),
                    timer.elapsed(now, calendars),
                    not timer.running,
                    timer.breached,
                    target.calendar_for(ticket).name,
                    self._goal_name(ticket),
                )
            )
        return views


def _emission(
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


def _may_start(ticket: Ticket, metric: MetricDef) -> bool:
    """Whether `metric` may start a timer (a cycle) on `ticket` now."""
    return (
        ticket.status != "closed"
        and ticket.status != "solved"  # a comment on a solved ticket starts nothing
        and (metric.reopens or not ticket.finished)
        and (metric.after is None or metric.after in (ticket.met or ()))
    )


def _update_attributes(ticket: Ticket, event: TicketUpdated) -> list[str]:
    """Apply a `ticket-updated`; the names of the attributes that really changed."""
    changed: list[str] = []
    if event.group is not None and event.group != ticket.group:
        ticket.group = event.group
        changed.append("group")
    if event.tags is not None and tuple(event.tags) != ticket.tags:
        ticket.tags = tuple(event.tags)
        changed.append("tags")
    if event.channel is not None and event.channel != ticket.channel:
        ticket.channel = event.channel
        changed.append("channel")
    if event.customer_id is not None and event.customer_id != ticket.customer_id:
        ticket.customer_id = event.customer_id
        changed.append("customer")
    if event.fields:
        values = dict(ticket.fields or {})
        for name, value in event.fields.items():
            if value is None:
                values.pop(name, None)
            else:
                values[name] = value
        if values != (ticket.fields or {}):
            ticket.fields = values or None
            changed.append("fields")
    return changed
