"""The ticket timer state machine: events in, warnings and breaches out.

Pure and deterministic. `Engine.apply(ticket, event)` folds one event into a ticket's
state; `Engine.advance(ticket, now)` fires what has come due by `now`; `Engine.next_due`
says when to call `advance` next. Replay and the Kafka worker drive these same three
functions, so they agree by construction. See docs/semantics.md for every rule.

This module is the entry: it checks an event against the ticket (`Rejected`), chooses
the policy version that judges the ticket, fires what was due before the event, and
hands the event to the path the ticket runs on:

- `worker.core.plan_path`: a plan x priority policy's two clocks, first response and
  follow-up, measured again from their start whenever asked;
- `worker.core.goal_path` (events) and `worker.core.goal_deadlines` (due instants and
  firing): a policy with `goals:`, whose metrics are data and whose timers bank
  business time per stretch.

The ticket's state is `worker.core.ticket`; what the engine emits, `worker.core.emissions`.
Their names are re-exported here, so importers need only this module.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from worker.core import goal_deadlines, goal_path, plan_path
from worker.core.emissions import (
    Applied,
    Emission,
    TimerFinished,
    TimerView,
    finished_record,
)
from worker.core.errors import SlaWorkerError
from worker.core.events import InboundEvent, PriorityChanged, TicketCreated
from worker.core.policy import Plan, Policy
from worker.core.reasons import Reason
from worker.core.ticket import SEEN_LIMIT, Clock, Pause, Ticket, due_before, remember

DUE_RULES_VERSION = 1
"""The version of the engine's deadline arithmetic (`next_due`, the calendars' business
time, the goal paths' bounds): bump it with any change that can move a due instant of
an unchanged state under an unchanged policy (a DST or business-hours fix, a new bound).
Timer indexes kept in a local store (`worker.kafka.stored_index.fingerprint`) were
computed with one version: under another they are rebuilt at the next start, never
trusted (a due instant the new rules put earlier would fire late).
"""

__all__ = [
    "SEEN_LIMIT",
    "Applied",
    "Clock",
    "Emission",
    "Engine",
    "Pause",
    "Rejected",
    "Ticket",
    "TimerFinished",
    "TimerView",
    "finished_record",
]


class Rejected(SlaWorkerError, ValueError):
    """An event that is well-formed but cannot be applied to the ticket it names.

    `reason` is a short, stable code (safe as a metric label); `str(exc)` explains.
    """

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


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

    # --- the entry points ---------------------------------------------------------------

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
            policy = self.policy.at(at)
            if self._goals_at(at):
                ticket, created = goal_path.create(policy, event, at, self.measure)
                return Applied(ticket, created)
            plan, priority = self._plan_and_priority(event)
            ticket = plan_path.create(event, plan, priority, policy.version)
            ticket.due = plan_path.next_due(self.policy_of(ticket), ticket)
            return Applied(ticket, [])
        if duplicate:
            return Applied(ticket, [], duplicate=True)
        # What was due strictly before the event fires first, judged by the policy of
        # the ticket as it was (`policy_of` reads its last event when its version is
        # unknown); the event then applies under the policy of the ticket as it is.
        goals = ticket.timers is not None  # created under a goal policy
        emissions: list[Emission] = []
        if due_before(ticket.due, at):
            policy = self.policy_of(ticket)
            if goals:
                emissions = goal_deadlines.fire(policy, ticket, at, False)
            else:
                emissions = plan_path.fire(policy, ticket, at, inclusive=False)
        remember(ticket, event.event_id)
        ticket.last_event_at = at
        if goals:
            goal_path.apply(self.policy_of(ticket), ticket, event, at, self.measure, emissions)
        else:
            plan_path.apply(self.policy_of(ticket), ticket, event, at, self.measure, emissions)
        return Applied(ticket, emissions)

    def advance(self, ticket: Ticket, now: datetime) -> list[Emission]:
        """Fire every warning and breach of `ticket` due at or before `now`."""
        now = now.astimezone(UTC)
        if ticket.due is None or ticket.due > now:
            return []
        policy = self.policy_of(ticket)
        if ticket.timers is not None:
            return goal_deadlines.fire(policy, ticket, now, True)
        return plan_path.fire(policy, ticket, now, inclusive=True)

    def next_due(self, ticket: Ticket) -> datetime | None:
        """The next instant at which `advance` would emit something, if any."""
        return ticket.due

    def refresh(self, ticket: Ticket, exact: bool = False) -> Ticket:
        """Recompute the cached due instant of a ticket loaded from storage (the policy
        may have changed since it was stored). A ticket whose policy version this policy
        file does not have (stored before versions were recorded, or a version since
        removed) is judged from now on by the version in force at its last event.

        `exact`: a goal policy's running timers get their exact due instants, not the
        lower bounds the event path caches (`goal_deadlines.timer_due`). A restore asks
        for them: the bounds of tickets stored hours ago are mostly past (a
        business-hours timer stored on Friday afternoon has its bound that evening), so
        the first step after the restore would take every such ticket at once, only to
        find nothing due. The rebuild pays that arithmetic instead, in the chunks it
        runs in beside the loop."""
        if ticket.policy_version not in self._versions:
            ticket.policy_version = self.policy.at(ticket.last_event_at).version
        policy = self.policy_of(ticket)
        if ticket.timers is not None:
            # The policy may have changed since: the goal is matched again, and a running
            # timer whose calendar changed with it runs on the new one from its last event.
            ticket.goal = policy.matcher.match(ticket)
            goal_path.resegment(policy, ticket, ticket.last_event_at)
            ticket.due = goal_deadlines.refresh_dues(policy, ticket, exact)
        else:
            ticket.due = plan_path.next_due(policy, ticket)
        return ticket

    def timers(self, ticket: Ticket, now: datetime) -> list[TimerView]:
        """The ticket's measured timers as of `now` (for the API and summaries)."""
        policy = self.policy_of(ticket)
        if ticket.timers is not None:
            return goal_deadlines.views(policy, ticket, now.astimezone(UTC))
        return plan_path.views(policy, ticket, now.astimezone(UTC))

    def goal_of(self, ticket: Ticket) -> str | None:
        """The name of the goal that judges `ticket` now (None: a plan x priority policy,
        an unnamed goal, or no goal matches)."""
        if ticket.timers is None:
            return None
        return goal_deadlines.goal_name(self.policy_of(ticket), ticket)

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
