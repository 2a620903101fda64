"""The plan path: a plan x priority policy's two clocks, first response and follow-up.

A policy without `goals:` runs here, with the semantics it had before goals existed
(docs/semantics.md). Each metric has a *clock* (`worker.core.ticket.Clock`: when it
started, which cycle, which warnings and breach it has already emitted). Which *target*
applies is not stored: it is looked up from the ticket's current plan and priority every
time, so a priority change needs no bookkeeping, and every deadline is recomputed from
the clock's original start and the ticket's pause history. A clock whose current
priority has no target for its metric is dormant: it emits nothing.

Every function takes `policy`, the version that judges the ticket
(`Engine.policy_of`); the engine fires what was due before an event and records the
event (`worker.core.engine`) before it calls `apply`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from worker.core.emissions import Emission, TimerFinished, TimerView, warning_or_breach
from worker.core.events import (
    InboundEvent,
    Metric,
    PriorityChanged,
    ReplySent,
    SlaEvent,
    Status,
    StatusChanged,
    TicketCreated,
    TicketUpdated,
)
from worker.core.policy import Plan, Policy, Target
from worker.core.ticket import Clock, Pause, Ticket, due_before, update_attributes

_STOP_STATUSES: frozenset[Status] = frozenset({"solved", "closed"})


def create(event: TicketCreated, plan: Plan, priority: int, version: str) -> Ticket:
    """A new ticket on `plan` at `priority`, judged by policy `version` for its life."""
    at = event.occurred_at
    ticket = Ticket(
        ticket_id=event.ticket_id,
        plan=plan.name,
        priority=priority,
        exempt=event.product_stage in plan.exempt_stages,
        last_event_at=at,
        seen={event.event_id: None},
        customer_id=event.customer_id,
        policy_version=version,
    )
    if not ticket.exempt:
        ticket.first_response = Clock("first_response", 1, at)
    return ticket


def apply(
    policy: Policy,
    ticket: Ticket,
    event: InboundEvent,
    at: datetime,
    measure: bool,
    emissions: list[Emission],
) -> None:
    """Apply a checked, new event (already recorded as seen); append what it emits."""
    # `changed`: whether the event touched anything the due instant depends on
    # (the priority, a clock, a pause) since `ticket.due` was last refreshed. When
    # it is False the cached due instant is still right: most events (internal
    # notes, replies that start nothing) need no calendar arithmetic.
    changed = True
    if not ticket.finished and not ticket.exempt:
        if type(event) is ReplySent:
            changed = _reply(policy, ticket, event, at, measure, emissions)
        elif type(event) is StatusChanged:
            changed = _status(policy, ticket, event.status, at, measure, emissions)
        elif type(event) is PriorityChanged:
            ticket.priority = event.priority
            # Points the new target already put in the past fire at once. Only
            # if the new due instant is before the event is there any to fire.
            ticket.due = next_due(policy, ticket)
            if due_before(ticket.due, at):
                emissions.extend(fire(policy, ticket, at, inclusive=False))
            changed = False
    elif type(event) is PriorityChanged:
        ticket.priority = event.priority
    if type(event) is TicketUpdated:
        update_attributes(ticket, event)  # no plan x priority target depends on them
        changed = False  # so no calendar arithmetic: tag and group edits are frequent
    if changed:
        ticket.due = next_due(policy, ticket)


def _reply(
    policy: Policy,
    ticket: Ticket,
    event: ReplySent,
    at: datetime,
    measure: bool,
    emissions: list[Emission],
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
        _stop(policy, ticket, clock, at, "reply", measure, emissions)
    ticket.first_response = ticket.follow_up = None
    if ticket.pauses:
        # No clock runs any more, and clocks to come start later: only a pause
        # still in progress matters to them (dropping the rest bounds memory).
        ticket.pauses = [p for p in ticket.pauses if p.end is None]
    return True


def _status(
    policy: Policy,
    ticket: Ticket,
    status: Status,
    at: datetime,
    measure: bool,
    emissions: list[Emission],
) -> bool:
    """Apply a status; append what it emits. Returns whether a clock or pause changed."""
    ticket.status = status
    if status in _STOP_STATUSES:
        for clock in ticket.clocks():
            _stop(policy, ticket, clock, at, status, measure, emissions)
        ticket.first_response = ticket.follow_up = None
        ticket.finished = True
        ticket.pauses.clear()
        return True
    if status in policy.pause_statuses:
        if ticket.paused:
            return False  # one pausing status to another: one continuous pause
        ticket.pauses.append(Pause(at))
        return True
    if ticket.paused:
        ticket.pauses[-1].end = at
        return True
    return False


def _stop(
    policy: Policy,
    ticket: Ticket,
    clock: Clock,
    at: datetime,
    by: str,
    measure: bool,
    emissions: list[Emission],
) -> None:
    """A clock stops for good (before the ticket's pauses are trimmed or cleared, so
    that the business time taken excludes them)."""
    target = target_of(policy, ticket, clock.metric)
    if target is None:
        return  # not measured: no SLA applies at the current priority
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
            elapsed(ticket, clock, target, at) if measure else None,
            target.duration,
            target.calendar.name,
            instant_at(ticket, clock, target, target.duration) if measure else None,
            policy.version,
        )
    )


# --- deadlines ---------------------------------------------------------------------------


def target_of(policy: Policy, ticket: Ticket, metric: Metric) -> Target | None:
    """The target that judges the ticket's `metric` now; None: no SLA applies."""
    plan = policy.plans.get(ticket.plan)
    if ticket.exempt or plan is None:
        return None
    targets = plan.targets.get(ticket.priority)  # `Plan.target`, without the call
    # None: no SLA, or a stored ticket whose plan/priority left the policy.
    return None if targets is None else targets.get(metric)


def _pending(
    policy: Policy, ticket: Ticket, clock: Clock
) -> list[tuple[float | None, timedelta, Target]]:
    """The clock's points not yet emitted, in order: (threshold or None for breach,
    amount of calendar time, target)."""
    target = target_of(policy, ticket, clock.metric)
    if target is None or clock.breached:
        return []
    points: list[tuple[float | None, timedelta, Target]] = [
        (fraction, amount, target)
        for fraction, amount in zip(target.warnings, target.warning_amounts, strict=True)
        if fraction not in clock.warned
    ]
    points.append((None, target.duration, target))
    return points


def next_due(policy: Policy, ticket: Ticket) -> datetime | None:
    """The earliest instant among each clock's first point not yet emitted.

    The same as the first element of `_pending` per clock, without building the
    list: this runs after most changes to a ticket.
    """
    due: datetime | None = None
    for clock in (ticket.first_response, ticket.follow_up):
        if clock is None or clock.breached:
            continue
        target = target_of(policy, ticket, clock.metric)
        if target is None:
            continue
        amount = target.duration
        for i, fraction in enumerate(target.warnings):
            if fraction not in clock.warned:
                amount = target.warning_amounts[i]
                break
        instant = instant_at(ticket, clock, target, amount)
        if instant is not None and (due is None or instant < due):
            due = instant
    return due


def fire(policy: Policy, ticket: Ticket, now: datetime, *, inclusive: bool) -> list[Emission]:
    """Emit each clock's points due by `now` (at `now` too if `inclusive`), and
    refresh `ticket.due`: the first point of each clock that is not due is what
    `next_due` would compute, so the cache comes without a second calculation."""
    emissions: list[Emission] = []
    due: datetime | None = None
    for clock in ticket.clocks():
        for threshold, amount, target in _pending(policy, ticket, clock):
            instant = instant_at(ticket, clock, target, amount)
            if instant is None or instant > now or (instant == now and not inclusive):
                if instant is not None and (due is None or instant < due):
                    due = instant
                break  # points are in time order: nothing later is due either
            emissions.append(_emit(policy, ticket, clock, target, threshold, instant))
    ticket.due = due
    return emissions


def _emit(
    policy: Policy,
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
        else instant_at(ticket, clock, target, target.duration),
        "target": target.duration,
        "calendar": target.calendar.name,
        "policy_version": policy.version,
    }
    if ticket.customer_id is not None:
        common["customer_id"] = ticket.customer_id
    if threshold is None:
        clock.breached = True
    else:
        clock.warned.append(threshold)
    return warning_or_breach(ticket.ticket_id, clock.metric, clock.cycle, threshold, common)


def instant_at(ticket: Ticket, clock: Clock, target: Target, amount: timedelta) -> datetime | None:
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


def elapsed(ticket: Ticket, clock: Clock, target: Target, now: datetime) -> timedelta:
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


def views(policy: Policy, ticket: Ticket, now: datetime) -> list[TimerView]:
    """The ticket's measured clocks as of `now` (UTC)."""
    found = []
    for clock in ticket.clocks():
        target = target_of(policy, ticket, clock.metric)
        if target is None:
            continue
        found.append(
            TimerView(
                clock.metric,
                clock.cycle,
                clock.started_at,
                target,
                instant_at(ticket, clock, target, target.duration),
                elapsed(ticket, clock, target, now),
                ticket.paused,
                clock.breached,
                target.calendar.name,
            )
        )
    return found
