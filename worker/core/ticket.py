"""What the engine remembers about one ticket: its `Ticket`, and on the plan path its clocks.

A ticket's state is all the engine needs to judge the next event: the attributes goals
and calendar maps read, the status, the ids of its latest events (to recognise a
redelivery), and the timers. A plan x priority policy's ticket keeps two `Clock`s (first
response, follow-up) and the ticket's pauses, and measures them again from their start
whenever asked (`worker.core.plan_path`); a goal policy's ticket keeps `Timer`s instead,
which bank business time per stretch (`worker.core.timers`, `worker.core.goal_path`).
`worker.core.state_codec` stores and restores it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from worker.core.events import Metric, Status, TicketUpdated
from worker.core.timers import Timer

SEEN_LIMIT: Final = 1000
"""Event ids a ticket remembers for deduplication: its latest 1,000 applied events."""


# The value classes below (and those of `worker.core.emissions`) are dataclasses for their
# `__eq__` and `__repr__`, with hand-written `__init__`s (`init=False`): mypyc compiles a
# hand-written one, while the one `@dataclass` generates is interpreted Python at every
# construction (a third of the cost of creating a ticket, and one `Applied` is made per
# event). Measured again with mypyc 2.4.1 (issue #15, BENCHMARKS.md): the plain forms,
# generated `__init__`s and `frozen=True` for `TimerFinished`, cost the compiled replay
# 11 % of its throughput (best of 3 per process, 4 alternating rounds: 224,200 against
# 248,800 events/s); pure Python runs both forms at the same speed.


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


def due_before(due: datetime | None, at: datetime) -> bool:
    """Is the ticket's cached due instant `due` strictly before `at` (something to fire)?"""
    return due is not None and due < at


def remember(ticket: Ticket, event_id: str) -> None:
    """Note an applied event's id, forgetting the oldest beyond SEEN_LIMIT. An older
    redelivery still never applies twice: its occurred_at precedes the ticket's last
    event, so it is rejected as out-of-order instead."""
    seen = ticket.seen
    seen[event_id] = None
    if len(seen) > SEEN_LIMIT:
        del seen[next(iter(seen))]


def update_attributes(ticket: Ticket, event: TicketUpdated) -> list[str]:
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
