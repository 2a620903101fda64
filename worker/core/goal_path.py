"""The goal path: events applied to the ticket of a policy with `goals:`.

Metrics are data (`worker.core.metrics`): each event becomes one or more *signals*
(`created`, `reply:agent:public`, `status:open>solved`, `updated:group` ...), and each
metric's start / stop / reset sets say what they do to its timer. Targets come from the
first goal the ticket's attributes match; timers bank business time per stretch
(`worker.core.timers`), so a goal or calendar change keeps what ran. When the timers
come due and what they emit: `worker.core.goal_deadlines`.

Every function takes `policy`, the version that judges the ticket (`Engine.policy_of`);
the engine fires what was due before an event and records the event
(`worker.core.engine`) before it calls `apply`.
"""

from __future__ import annotations

from datetime import datetime

from worker.core.emissions import Emission, TimerFinished
from worker.core.events import (
    InboundEvent,
    PriorityChanged,
    ReplySent,
    StatusChanged,
    TicketCreated,
    TicketUpdated,
)
from worker.core.goal_deadlines import (
    calendar_name,
    earliest_due,
    fire,
    goal_name,
    refresh_dues,
    target_of,
    timer_due,
)
from worker.core.metrics import MetricDef
from worker.core.policy import Policy
from worker.core.ticket import Ticket, due_before, update_attributes
from worker.core.timers import Timer


def create(
    policy: Policy, event: TicketCreated, at: datetime, measure: bool
) -> tuple[Ticket, list[Emission]]:
    """A new ticket under `policy` (the version in force at `at`), its `created`
    signal applied."""
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
    _signal(policy, ticket, "created", "ticket-created", at, measure, emissions)
    ticket.due = earliest_due(ticket)
    return ticket, emissions


def apply(
    policy: Policy,
    ticket: Ticket,
    event: InboundEvent,
    at: datetime,
    measure: bool,
    emissions: list[Emission],
) -> None:
    """Apply a checked, new event (already recorded as seen); append what it emits."""
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
        changed = update_attributes(ticket, event)
        if changed:
            signals += [f"updated:{name}" for name in changed]
            attributes = not policy.matcher.reads.isdisjoint(changed)
    if attributes:
        ticket.goal = policy.matcher.match(ticket)
        if not closed:
            resegment(policy, ticket, at)
            # Points the new goal puts in the past fire before this event's own
            # signals apply: a metric this very event stops must not hide its breach.
            ticket.due = refresh_dues(policy, ticket)
            if due_before(ticket.due, at):
                emissions.extend(fire(policy, ticket, at, False))
    if not closed:
        for signal in signals:
            _signal(policy, ticket, signal, by, at, measure, emissions)
        if type(event) is StatusChanged:
            # After the stops: a timer stopped by this status is not resumed first.
            _pause_or_resume(policy, ticket, at)
        if ticket.status == "closed":
            for timer in list(ticket.timers or ()):
                _stop_timer(policy, ticket, timer, at, "closed", measure, emissions)
    # A new goal may change every timer's points; otherwise each change above
    # refreshed the due instant of the timer it changed.
    ticket.due = refresh_dues(policy, ticket) if attributes else earliest_due(ticket)
    if due_before(ticket.due, at):  # a new goal's target already elapsed: fire at once
        emissions.extend(fire(policy, ticket, at, False))


def _signal(
    policy: Policy,
    ticket: Ticket,
    signal: str,
    by: str,
    at: datetime,
    measure: bool,
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
                _stop_timer(policy, ticket, running, at, by, measure, emissions)
            elif signal in metric.reset:
                _stop_timer(policy, ticket, running, at, by, measure, emissions)
                if _may_start(ticket, metric):  # not while the ticket is solved
                    _start_timer(policy, ticket, metric, at)
        elif signal in metric.start and _may_start(ticket, metric):
            _start_timer(policy, ticket, metric, at)


def _may_start(ticket: Ticket, metric: MetricDef) -> bool:
    """Whether `metric` may start a timer (a cycle) on `ticket` now."""
    return (
        ticket.status != "closed"
        and ticket.status != "solved"  # a comment on a solved ticket starts nothing
        and (metric.reopens or not ticket.finished)
        and (metric.after is None or metric.after in (ticket.met or ()))
    )


def _start_timer(policy: Policy, ticket: Ticket, metric: MetricDef, at: datetime) -> None:
    cycles = ticket.cycles
    if cycles is None:
        cycles = ticket.cycles = {}
    name = metric.name
    cycle = cycles.get(name, 0) + 1
    cycles[name] = cycle
    timer = Timer(name, cycle, at)
    if ticket.status not in metric.pause:
        timer.run(at, calendar_name(policy, ticket, name))
    timer_due(policy, ticket, timer)
    assert ticket.timers is not None
    ticket.timers.append(timer)


def _stop_timer(
    policy: Policy,
    ticket: Ticket,
    timer: Timer,
    at: datetime,
    by: str,
    measure: bool,
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
    target = target_of(policy, ticket, timer.metric)
    if target is None:
        return  # not measured: no goal's target applies now
    calendars = policy.calendars
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
            goal_name(policy, ticket),
        )
    )


def _pause_or_resume(policy: Policy, ticket: Ticket, at: datetime) -> None:
    """After a status change: pause the timers whose metric pauses in it, resume the
    others (one pausing status to another stays one pause)."""
    for timer in ticket.timers or ():
        paused = ticket.status in policy.pauses.get(timer.metric, policy.pause_statuses)
        if timer.running and paused:
            timer.halt(at, policy.calendars)
            timer_due(policy, ticket, timer)
        elif not timer.running and not paused:
            timer.run(at, calendar_name(policy, ticket, timer.metric))
            timer_due(policy, ticket, timer)


def resegment(policy: Policy, ticket: Ticket, at: datetime) -> None:
    """A running timer whose calendar changed (a new goal, a group in another time
    zone) banks what ran on the old one and runs on the new one from `at`."""
    calendars = policy.calendars
    for timer in ticket.timers or ():
        name = calendar_name(policy, ticket, timer.metric)
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
