"""The goal path's deadlines: which target judges a timer, when it comes due, firing it.

A goal policy's ticket is judged by the first goal its attributes match (`Ticket.goal`,
an index into `Policy.goals`); each of its running timers (`worker.core.timers`) caches
when its first point not yet emitted (a warning, then the breach) may come due. While a
timer runs that cache is a lower bound (`Timer.due_bound`): `fire` computes the exact
instant only when the bound comes due, and fires the point or waits for it. So no point
fires early, and a timer that stops before its bound (most do) never needs the calendar
arithmetic of its due instant.

Every function takes `policy`, the version that judges the ticket (`Engine.policy_of`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from worker.core.emissions import Emission, TimerView, warning_or_breach
from worker.core.events import SlaEvent
from worker.core.goal_match import GoalTarget
from worker.core.policy import Policy
from worker.core.ticket import Ticket
from worker.core.timers import Timer


def target_of(policy: Policy, ticket: Ticket, metric: str) -> GoalTarget | None:
    """The target of `metric` under the ticket's goal; None: no goal's target applies."""
    goal = ticket.goal
    if goal < 0:
        return None
    goals = policy.goals
    if goal >= len(goals):
        return None  # stored state matched against an older policy: see Engine.refresh
    return goals[goal].targets.get(metric)


def goal_name(policy: Policy, ticket: Ticket) -> str | None:
    """The name of the ticket's goal (None: unnamed, or no goal matches)."""
    goal = ticket.goal
    goals = policy.goals
    return goals[goal].name if 0 <= goal < len(goals) else None


def calendar_name(policy: Policy, ticket: Ticket, metric: str) -> str:
    """The calendar `metric`'s timer runs on now ("": no target applies)."""
    target = target_of(policy, ticket, metric)
    return "" if target is None else target.calendar_for(ticket).name


def _points(
    policy: Policy, ticket: Ticket, timer: Timer
) -> list[tuple[float | None, timedelta, GoalTarget]]:
    """The timer's points not yet emitted, in order: (threshold or None for breach,
    amount of business time, target)."""
    target = target_of(policy, ticket, timer.metric)
    if target is None or timer.breached:
        return []
    points: list[tuple[float | None, timedelta, GoalTarget]] = [
        (fraction, amount, target)
        for fraction, amount in zip(target.warnings, target.warning_amounts, strict=True)
        if fraction not in timer.warned
    ]
    points.append((None, target.duration, target))
    return points


def timer_due(policy: Policy, ticket: Ticket, timer: Timer, exact: bool = False) -> None:
    """Refresh the timer's cached due instant: when its first point not yet emitted
    may come due, a lower bound of it while the timer runs (`exact`: the instant itself;
    see `Engine.refresh`)."""
    due: datetime | None = None
    target = target_of(policy, ticket, timer.metric)
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


def refresh_dues(policy: Policy, ticket: Ticket, exact: bool = False) -> datetime | None:
    """Refresh every timer's due instant (`exact`: see `timer_due`); the earliest."""
    for timer in ticket.timers or ():
        timer_due(policy, ticket, timer, exact)
    return earliest_due(ticket)


def earliest_due(ticket: Ticket) -> datetime | None:
    """The earliest of the timers' cached due instants."""
    due: datetime | None = None
    for timer in ticket.timers or ():
        instant = timer.due
        if instant is not None and (due is None or instant < due):
            due = instant
    return due


def fire(policy: Policy, ticket: Ticket, now: datetime, inclusive: bool) -> list[Emission]:
    """Emit each timer's points due by `now` (at `now` too if `inclusive`), and refresh
    `ticket.due`."""
    emissions: list[Emission] = []
    due: datetime | None = None
    for timer in ticket.timers or ():
        pending = timer.due
        if pending is None or pending > now or (pending == now and not inclusive):
            if pending is not None and (due is None or pending < due):
                due = pending
            continue  # its first point is not due: nothing later is either
        # Its cached instant may be a lower bound (`timer_due`): each point's exact
        # instant decides, unless the bound already says the point is not due.
        timer.due = None
        calendars = policy.calendars
        for threshold, amount, target in _points(policy, ticket, timer):
            instant = timer.due_bound(amount, calendars)
            if instant is not None and (instant < now or (instant == now and inclusive)):
                instant = timer.instant_at(amount, calendars)
            if instant is None or instant > now or (instant == now and not inclusive):
                timer.due = instant
                if instant is not None and (due is None or instant < due):
                    due = instant
                break
            emissions.append(_emit(policy, ticket, timer, target, threshold, instant))
    ticket.due = due
    return emissions


def _emit(
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
    goal = goal_name(policy, ticket)
    if goal is not None:
        common["goal"] = goal
    if threshold is None:
        timer.breached = True
    else:
        timer.warned.append(threshold)
    return warning_or_breach(ticket.ticket_id, timer.metric, timer.cycle, threshold, common)


def views(policy: Policy, ticket: Ticket, now: datetime) -> list[TimerView]:
    """The ticket's measured timers as of `now` (UTC)."""
    calendars = policy.calendars
    found = []
    for timer in ticket.timers or ():
        target = target_of(policy, ticket, timer.metric)
        if target is None:
            continue
        found.append(
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
                goal_name(policy, ticket),
            )
        )
    return found
