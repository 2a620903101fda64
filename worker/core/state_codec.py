"""Ticket state <-> compact JSON-ready dicts, for tables, changelogs and snapshots.

The format is versioned because it outlives releases: a worker reads state that an older
worker wrote to its changelog. Format 1 is the plan x priority ticket; format 2 adds a
goal policy's ticket (attributes, timers with their segments, cycles, metrics met) and is
written only for such a ticket, so a plan x priority ticket's state stays byte for byte
format 1 and a worker of the previous release can still read it after a rollback.
Instants are stored as integer microseconds since the epoch (UTC): exact, compact, and
free of time zone parsing on recovery. The cached `due` instant is not stored; it is
recomputed on load (`Engine.refresh`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

from worker.core.errors import SlaWorkerError
from worker.core.events import Metric
from worker.core.ticket import Clock, Pause, Ticket
from worker.core.timers import Segment, Timer

FORMAT_VERSION = 1
GOALS_FORMAT_VERSION = 2
_READABLE = (FORMAT_VERSION, GOALS_FORMAT_VERSION)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


class StateFormatError(SlaWorkerError, ValueError):
    """Stored state this version cannot read."""


def to_us(t: datetime) -> int:
    """An instant as integer microseconds since the epoch (the stored form)."""
    return (t - _EPOCH) // _US


def from_us(us: int) -> datetime:
    """The instant of `to_us`."""
    return _EPOCH + timedelta(microseconds=us)


def _clock(clock: Clock | None) -> list[Any] | None:
    if clock is None:
        return None
    return [clock.metric, clock.cycle, to_us(clock.started_at), clock.warned, clock.breached]


def _load_clock(data: list[Any] | None) -> Clock | None:
    if data is None:
        return None
    metric, cycle, started, warned, breached = data
    return Clock(metric, cycle, from_us(started), list(warned), breached)


def dump_ticket(ticket: Ticket) -> dict[str, Any]:
    data: dict[str, Any] = {
        "v": FORMAT_VERSION,
        "id": ticket.ticket_id,
        "plan": ticket.plan,
        "priority": ticket.priority,
        "exempt": ticket.exempt,
        "last": to_us(ticket.last_event_at),
        "status": ticket.status,
        "responded": ticket.responded,
        "finished": ticket.finished,
        "cycles": ticket.follow_up_cycles,
        "fr": _clock(ticket.first_response),
        "fu": _clock(ticket.follow_up),
        "pauses": [
            [to_us(p.start), None if p.end is None else to_us(p.end)] for p in ticket.pauses
        ],
        "seen": list(ticket.seen),  # oldest first: the bound drops from the front
        "pv": ticket.policy_version,
    }
    # Added after format 1 was released, and optional: state written before it (or for
    # a ticket without a customer) has no "cust", and reads as None.
    if ticket.customer_id is not None:
        data["cust"] = ticket.customer_id
    if ticket.timers is not None:
        data["v"] = GOALS_FORMAT_VERSION
        data["stage"] = ticket.stage
        data["group"] = ticket.group
        data["chan"] = ticket.channel
        data["tags"] = list(ticket.tags)
        data["fields"] = ticket.fields
        data["timers"] = [_timer(t) for t in ticket.timers]
        data["tcycles"] = ticket.cycles
        data["met"] = None if ticket.met is None else list(ticket.met)
    return data


def _timer(timer: Timer) -> list[Any]:
    return [
        timer.metric,
        timer.cycle,
        to_us(timer.started_at),
        timer.warned,
        timer.breached,
        [
            [to_us(s.start), None if s.end is None else to_us(s.end), s.calendar]
            for s in timer.segments
        ],
        timer.banked // _US,
    ]


def _load_timer(data: list[Any]) -> Timer:
    metric, cycle, started, warned, breached, segments, banked = data
    return Timer(
        metric,
        cycle,
        from_us(started),
        list(warned),
        breached,
        [Segment(from_us(s), None if e is None else from_us(e), c) for s, e, c in segments],
        timedelta(microseconds=banked),
    )


def load_ticket(data: dict[str, Any]) -> Ticket:
    """Rebuild a ticket; its `due` cache is left empty for the engine to refresh."""
    version = data.get("v")
    if version not in _READABLE:
        raise StateFormatError(f"unsupported ticket state format {version!r}")
    ticket = Ticket(
        ticket_id=data["id"],
        plan=data["plan"],
        priority=data["priority"],
        exempt=data["exempt"],
        last_event_at=from_us(data["last"]),
        status=data["status"],
        responded=data["responded"],
        finished=data["finished"],
        follow_up_cycles=data["cycles"],
        first_response=_load_clock(data["fr"]),
        follow_up=_load_clock(data["fu"]),
        pauses=[Pause(from_us(s), None if e is None else from_us(e)) for s, e in data["pauses"]],
        seen=dict.fromkeys(data["seen"]),
        customer_id=data.get("cust"),
        # Absent in state stored before policy versions were recorded: the engine's
        # `refresh` then gives it the version in force at its last event.
        policy_version=data.get("pv", ""),
    )
    if version == GOALS_FORMAT_VERSION:
        ticket.stage = data["stage"]
        ticket.group = data["group"]
        ticket.channel = data["chan"]
        ticket.tags = tuple(data["tags"])
        ticket.fields = data["fields"]
        ticket.timers = [_load_timer(t) for t in data["timers"]]
        ticket.cycles = data["tcycles"]
        ticket.met = None if data["met"] is None else dict.fromkeys(data["met"])
        # `goal` is matched again by `Engine.refresh`, against the policy now loaded.
    return ticket


def finished_since(data: dict[str, Any]) -> datetime | None:
    """A stored ticket's last event if it is finished (solved or closed), else None; for
    the retention of finished tickets without decoding the whole state."""
    if data.get("v") not in _READABLE or not data.get("finished") or data.get("timers"):
        return None
    return from_us(int(data["last"]))


def running_timers(
    data: dict[str, Any],
) -> tuple[str, int, bool, list[tuple[Metric, bool]]] | None:
    """What the timer gauges need of a stored ticket, without decoding it: (plan,
    priority, paused, [(metric, breached) per running clock]); None for an exempt ticket
    or a value that is not ticket state (held events). Metrics read stored state only
    through here, so the format stays this module's alone."""
    if data.get("v") not in _READABLE or data.get("exempt"):
        return None
    if data.get("v") == GOALS_FORMAT_VERSION:
        timers = data.get("timers") or []
        # A goal ticket's timers pause one by one: "paused" when none of them runs.
        paused = bool(timers) and all(not t[5] or t[5][-1][1] is not None for t in timers)
        # Any metric name: callers look each up among their targets (Metric is the
        # plan x priority policy's two).
        named = [(cast(Metric, t[0]), bool(t[4])) for t in timers]
        return data["plan"], data["priority"], paused, named
    pauses = data.get("pauses") or []
    paused = bool(pauses) and pauses[-1][1] is None
    clocks: list[tuple[Metric, bool]] = [
        (clock[0], bool(clock[4])) for clock in (data.get("fr"), data.get("fu")) if clock
    ]
    return data["plan"], data["priority"], paused, clocks


def goal_ticket(data: dict[str, Any]) -> Ticket | None:
    """A goal policy's stored ticket (format 2), decoded; None for any other value. For the
    timer gauges, which must know the goal a ticket matches (not stored: matched again on
    reading) to count only measured timers."""
    if data.get("v") != GOALS_FORMAT_VERSION:
        return None
    return load_ticket(data)
