"""One message in, one decision out: decode, run the core, say what to store and send.

No Kafka and no I/O here: `worker.tasks.partition` gives it the stored state, and the
service (`worker.kafka.service`) carries out the `Outcome` (state write, publications,
dead letters) in one Kafka transaction. Every input ends as applied, duplicate, held,
or dead-lettered with a reason; nothing is dropped silently.

Stored values are JSON objects: a ticket's state (`worker.core.state_codec`) plus the
partition it lives on (`"p"`), or, before its `ticket-created` has arrived, a record of
held events (`{"held": [...], "p": ...}`).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from worker.core.durations import format_duration
from worker.core.engine import Engine, Rejected, Ticket, TimerFinished
from worker.core.events import InboundEvent, InvalidEvent, SlaEvent, parse_event
from worker.core.limits import InputLimits, check_key
from worker.core.reasons import Reason
from worker.core.state_codec import StateFormatError, dump_ticket, finished_since, load_ticket

MAX_HELD_EVENTS = 100
MAX_HELD_BYTES = 256 * 1024
"""Bounds on the events held for one ticket not yet created (several input topics)."""


@dataclass(frozen=True, slots=True)
class Source:
    """Where a message came from, carried into dead letters."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class DeadLetter:
    source: Source
    reason: Reason
    detail: str

    def headers(self) -> list[tuple[str, bytes]]:
        """Original headers first, then ours (prefixed, so they never collide)."""
        return [
            *self.source.headers,
            ("sla-dlq-reason", self.reason.encode()),
            ("sla-dlq-detail", self.detail.encode()[:4096]),
            ("sla-dlq-source-topic", self.source.topic.encode()),
            ("sla-dlq-source-partition", str(self.source.partition).encode()),
            ("sla-dlq-source-offset", str(self.source.offset).encode()),
        ]


class Verdict(StrEnum):
    """What became of one consumed message (the `outcome` label of
    `sla_events_consumed_total`)."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"
    HELD = "held"  # waiting for its ticket-created (several input topics)
    DEAD_LETTERED = "dead_lettered"


@dataclass(slots=True)
class Outcome:
    """What to do after one message. `state` None means: leave the stored value.

    `due` is the ticket's next due instant, and counts only where `rescheduled` is true
    (the ticket was stored or advanced): a rejected or duplicate message leaves the
    ticket's timers exactly as they were.
    """

    state: dict[str, Any] | None = None
    publish: list[SlaEvent] = field(default_factory=list)
    finished: list[TimerFinished] = field(default_factory=list)  # met or breached
    dead_letters: list[DeadLetter] = field(default_factory=list)
    due: datetime | None = None
    hold_until: datetime | None = None
    event_type: str | None = None  # for metrics; None when undecodable
    applied: bool = False
    duplicate: bool = False
    held: bool = False
    occurred_at: datetime | None = None
    rescheduled: bool = False
    known_at: datetime | None = None
    """When the worker could first know the deadlines this outcome publishes, if after
    them: the timestamp of the input record that set them (`Partition` fills it in, for
    the publication lateness metric). None: as soon as they were due."""

    @property
    def verdict(self) -> Verdict | None:
        """The message's own fate; None for a timer's outcome (no message). Dead letters
        next to an applied event belong to held events it released, not to it."""
        if self.duplicate:
            return Verdict.DUPLICATE
        if self.held:
            return Verdict.HELD
        if self.applied:
            return Verdict.APPLIED
        if self.dead_letters:
            return Verdict.DEAD_LETTERED
        return None


class TicketProcessor:
    def __init__(
        self,
        engine: Engine,
        hold_unknown: timedelta | None,
        limits: InputLimits | None = None,
    ) -> None:
        """`hold_unknown`: how long to hold events for tickets not yet created (several
        input topics); None dead-letters them at once (one topic keeps them in order).
        `limits`: size and clock-skew bounds on each message (defaults: 1,000,000 bytes, 5 min)."""
        self.engine = engine
        self.hold_unknown = hold_unknown
        self.limits = limits or InputLimits()

    # --- inbound events -------------------------------------------------------------------

    def on_event(
        self,
        source: Source,
        stored: dict[str, Any] | None,
        now: datetime,
        clock: datetime | None = None,
    ) -> Outcome:
        """Decide one message; `now` (the wall clock) bounds future timestamps and dates
        holds; `clock` (the partition's event time) judges events for unknown tickets
        against the retention (see `Engine.check`)."""
        try:
            self.limits.check_size(len(source.value))
            event = parse_event(source.value)
        except (InvalidEvent, Rejected) as exc:
            return Outcome(dead_letters=[DeadLetter(source, exc.reason, str(exc))])
        try:
            self.limits.check_time(event.occurred_at, now)
        except Rejected as exc:
            letter = DeadLetter(source, exc.reason, str(exc))
            return Outcome(dead_letters=[letter], event_type=event.type)
        try:
            check_key(source.key, event.ticket_id)
        except Rejected as exc:
            letter = DeadLetter(source, exc.reason, str(exc))
            return Outcome(dead_letters=[letter], event_type=event.type)

        held = stored.get("held") if stored is not None else None
        try:
            ticket = self._ticket(stored) if held is None else None
        except StateFormatError as exc:
            return Outcome(
                dead_letters=[DeadLetter(source, Reason.UNREADABLE_STATE, str(exc))],
                event_type=event.type,
            )
        if ticket is None and event.type != "ticket-created" and self.hold_unknown is not None:
            return self._hold(source, event, list(held or []), now)

        outcome = Outcome(occurred_at=event.occurred_at, event_type=event.type)
        ticket = self._apply(ticket, event, source, outcome, clock)
        if held and ticket is not None:
            ticket = self._release(ticket, held, outcome)
        if ticket is not None and (outcome.applied or held):
            outcome.state = self._store(ticket, source.partition)
            outcome.due = ticket.due
            outcome.rescheduled = True
        return outcome

    def _apply(
        self,
        ticket: Ticket | None,
        event: InboundEvent,
        source: Source,
        outcome: Outcome,
        clock: datetime | None = None,
    ) -> Ticket | None:
        try:
            result = self.engine.apply(ticket, event, clock)
        except Rejected as exc:
            outcome.dead_letters.append(DeadLetter(source, exc.reason, str(exc)))
            return ticket
        if result.duplicate:
            outcome.duplicate = True
        else:
            outcome.applied = True
            self._sort(result.emissions, outcome)
        return result.ticket

    # --- holding events that arrive before their ticket ----------------------------------

    def _hold(
        self, source: Source, event: InboundEvent, held: list[dict[str, Any]], now: datetime
    ) -> Outcome:
        assert self.hold_unknown is not None
        held_bytes = sum(len(h["value"]) for h in held) + len(source.value)
        if len(held) >= MAX_HELD_EVENTS or held_bytes > MAX_HELD_BYTES:
            # The held events live in the ticket's changelog record: keep it small.
            detail = (
                f"no ticket-created yet, and {len(held)} events ({held_bytes} bytes) are "
                f"held for this ticket already (at most {MAX_HELD_EVENTS}, {MAX_HELD_BYTES} B)"
            )
            letter = DeadLetter(source, Reason.UNKNOWN_TICKET, detail)
            return Outcome(dead_letters=[letter], event_type=event.type)
        held.append(
            {
                "topic": source.topic,
                "partition": source.partition,
                "offset": source.offset,
                "key": None if source.key is None else source.key.decode(),
                "value": source.value.decode(),
                # Kept for the dead letter should the hold expire (values may be binary).
                "headers": [[k, base64.b64encode(v).decode()] for k, v in source.headers],
                "until": (now + self.hold_unknown).isoformat(),
            }
        )
        first_expiry = min(datetime.fromisoformat(h["until"]) for h in held)
        return Outcome(
            state={"held": held, "p": source.partition},
            hold_until=first_expiry,
            held=True,
            occurred_at=event.occurred_at,
            event_type=event.type,
        )

    def _release(self, ticket: Ticket, held: list[dict[str, Any]], outcome: Outcome) -> Ticket:
        """Apply held events once their ticket exists, in event-time order."""
        events = []
        for record in held:
            source = _held_source(record)
            event = parse_event(source.value)  # it parsed when it was held
            events.append((event.occurred_at, source, event))
        for _, source, event in sorted(events, key=lambda item: item[0]):
            ticket = self._apply(ticket, event, source, outcome) or ticket
        return ticket

    def expire_held(self, stored: dict[str, Any] | None, partition: int, now: datetime) -> Outcome:
        """Dead-letter held events whose ticket did not arrive in time."""
        held = stored.get("held") if stored is not None else None
        if not held:
            return Outcome()
        keep = [h for h in held if datetime.fromisoformat(h["until"]) > now]
        outcome = Outcome(
            dead_letters=[
                DeadLetter(
                    _held_source(h),
                    Reason.UNKNOWN_TICKET,
                    "no ticket-created arrived for this ticket within the hold time",
                )
                for h in held
                if h not in keep
            ]
        )
        outcome.state = {"held": keep, "p": partition} if keep else {}
        if keep:
            outcome.hold_until = min(datetime.fromisoformat(h["until"]) for h in keep)
        return outcome

    # --- timers ---------------------------------------------------------------------------

    def on_due(self, stored: dict[str, Any] | None, partition: int, until: datetime) -> Outcome:
        """Fire what a ticket has due at or before `until` (the partition's horizon)."""
        try:
            ticket = self._ticket(stored)
        except StateFormatError:
            return Outcome()
        if ticket is None:
            return Outcome()
        outcome = Outcome()
        self._sort(self.engine.advance(ticket, until), outcome)
        if outcome.publish or outcome.finished:
            outcome.state = self._store(ticket, partition)
        outcome.due = ticket.due
        outcome.rescheduled = True
        return outcome

    # --- the HTTP API ---------------------------------------------------------------------

    def describe(self, ticket_id: str, stored: dict[str, Any], now: datetime) -> dict[str, Any]:
        """A ticket's SLA state as `GET /tickets/{id}` returns it."""
        if "held" in stored:
            return {"ticket_id": ticket_id, "held_events": len(stored["held"]), "timers": []}
        ticket = self._ticket(stored)
        assert ticket is not None
        timers = []
        for view in self.engine.timers(ticket, now):
            remaining = max(view.target.duration - view.elapsed, timedelta(0))
            timers.append(
                {
                    "metric": view.metric,
                    "cycle": view.cycle,
                    "started_at": iso(view.started_at),
                    "target": format_duration(view.target.duration),
                    "calendar": view.calendar,
                    "deadline": None if view.deadline is None else iso(view.deadline),
                    "elapsed": format_duration(view.elapsed),
                    "remaining": format_duration(remaining),
                    "paused": view.paused,
                    "breached": view.breached,
                }
            )
        body: dict[str, Any] = {
            "ticket_id": ticket.ticket_id,
            "plan": ticket.plan,
            "priority": ticket.priority,
            "status": ticket.status,
            "finished": ticket.finished,
            "as_of": iso(now),
            "timers": timers,
        }
        goal = self.engine.goal_of(ticket)
        if goal is not None:  # a goal policy's ticket: which goal judges it now
            body["goal"] = goal
        return body

    # --- state ----------------------------------------------------------------------------

    def restore(self, stored: dict[str, Any]) -> tuple[int, Ticket | None, datetime | None]:
        """(partition, ticket, hold expiry) of a stored value, for rebuilding indexes."""
        partition = int(stored.get("p", -1))
        if "held" in stored:
            held = stored["held"]
            expiry = min((datetime.fromisoformat(h["until"]) for h in held), default=None)
            return partition, None, expiry
        # Exact due instants: see `Engine.refresh`.
        return partition, self._ticket(stored, exact=True), None

    def retire_at(self, stored: dict[str, Any]) -> datetime | None:
        """When a stored ticket leaves state: `Engine.expired` holds strictly after this
        instant (finished tickets only; None for the others)."""
        retention = self.engine.retention
        since = finished_since(stored)
        return None if retention is None or since is None else since + retention

    def _ticket(self, stored: dict[str, Any] | None, exact: bool = False) -> Ticket | None:
        if not stored or "held" in stored:
            return None
        return self.engine.refresh(load_ticket(stored), exact)

    @staticmethod
    def _store(ticket: Ticket, partition: int) -> dict[str, Any]:
        return {**dump_ticket(ticket), "p": partition}

    @staticmethod
    def _sort(emissions: list[Any], outcome: Outcome) -> None:
        for emission in emissions:
            if isinstance(emission, TimerFinished):
                outcome.finished.append(emission)
            else:
                outcome.publish.append(emission)


def _held_source(record: dict[str, Any]) -> Source:
    return Source(
        record["topic"],
        record["partition"],
        record["offset"],
        None if record["key"] is None else record["key"].encode(),
        record["value"].encode(),
        tuple((k, base64.b64decode(v)) for k, v in record.get("headers", ())),
    )


def iso(t: datetime) -> str:
    """An instant as the API and the outputs write it: UTC, with `Z`."""
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def encode_event(event: SlaEvent) -> bytes:
    return event.model_dump_json().encode()
