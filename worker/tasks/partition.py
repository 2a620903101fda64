"""One input partition's tickets and clock, and the writes of one step: the unit of work.

Pure: no Kafka, no wall clock. The service (`worker.kafka.service`) hands a `Partition`
the messages it consumed and the wall-clock instant; `step` decides everything with the
`TicketProcessor`, updates the partition in memory and returns a `Batch`: the warnings,
breaches and dead letters to publish, the state changes for the changelog, and the input
offsets to commit. The service sends the whole batch in one Kafka transaction. Should the
transaction fail, the service throws this object away and restores the partition from
the changelog, which holds exactly what the last committed transaction left: so memory
may run ahead of Kafka here without ever being trusted ahead of it.

The changelog of a partition holds one record per ticket (key: ticket id, value: the
stored JSON; a tombstone deletes) and one record under the empty key (no ticket id is
empty) with the partition's event time and the input offsets it has consumed, written in
the same transaction as the group's offset commit: a restored partition resumes with the
clock and the positions of one and the same committed step.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from worker.core.due_index import DueIndex
from worker.core.engine import finished_record
from worker.core.errors import SlaWorkerError
from worker.core.events import SlaEvent
from worker.core.reasons import Reason
from worker.core.state_codec import StateFormatError, from_us, to_us
from worker.tasks import cloudevents
from worker.tasks.at_risk import AtRiskIndex, TimerSummaries
from worker.tasks.clocks import PartitionClock, TimerIndex
from worker.tasks.processor import DeadLetter, Outcome, Source, TicketProcessor, encode_event


class StateUnavailable(SlaWorkerError, RuntimeError):
    """The tickets' states could not be read or written (a local store's I/O error, see
    `worker.kafka.snapshot.StoredStates`). Not the input's fault: `step` raises it
    rather than dead-letter anything, and the service restores the partition."""


CLOCK_KEY = b""
"""Changelog key of the partition's own record (event time, offsets); never a ticket id."""

DEAD_LETTER_PREFIX = 64 * 1024
"""Bytes of a too-large message kept in its dead letter."""


@dataclass(frozen=True, slots=True)
class Topics:
    """Where a partition's writes go."""

    warnings: str
    breaches: str
    dead_letters: str
    changelog: str
    finished: str | None = None
    """sla-timer-finished records; None: not published."""
    source: str = cloudevents.source("sla-worker")
    """`ce_source` of the published records (`cloudevents.source` of the app id)."""


@dataclass(frozen=True, slots=True)
class Write:
    """One record to produce. `partition` None: the producer's partitioner (murmur2 of
    the key, as for the inputs) chooses."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    partition: int | None = None


@dataclass(slots=True)
class Batch:
    """Everything one step of one partition must commit atomically."""

    partition: int
    writes: list[Write] = field(default_factory=list)
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    """Next offset to read, per input (topic, partition) consumed in this step."""
    inputs: list[Outcome] = field(default_factory=list)
    """Outcomes of consumed messages (counted as consumed in metrics)."""
    timers: list[Outcome] = field(default_factory=list)
    """Outcomes of due timers and expired holds (not consumed messages)."""
    state_changes: list[tuple[str, dict[str, Any] | None, dict[str, Any] | None]] = field(
        default_factory=list
    )
    """(ticket id, new stored value or None when deleted, previous value), for metrics."""
    errors: list[tuple[str, str]] = field(default_factory=list)
    """(ticket id, error) of timers that could not be fired (a bug; logged)."""

    def __bool__(self) -> bool:
        return bool(self.writes or self.offsets)

    @property
    def published(self) -> list[SlaEvent]:
        return [event for outcome in (*self.inputs, *self.timers) for event in outcome.publish]

    @property
    def dead_letters(self) -> list[DeadLetter]:
        return [
            letter for outcome in (*self.inputs, *self.timers) for letter in outcome.dead_letters
        ]


@dataclass(frozen=True, slots=True)
class Message:
    """A consumed input message, as the service read it from Kafka."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp_ms: int | None = None
    """The record's Kafka timestamp (its producer's send time, or the broker's append time
    on a LogAppendTime topic), in ms since the epoch; None or negative: none. The earliest
    the worker could know what the record says (see `Partition.known_since`)."""

    @property
    def timestamp(self) -> datetime | None:
        if self.timestamp_ms is None or self.timestamp_ms < 0:
            return None
        return datetime.fromtimestamp(self.timestamp_ms / 1000, UTC)


class Partition:
    """The tickets of one partition number (across all input topics) and its clock."""

    def __init__(
        self, number: int, processor: TicketProcessor, topics: Topics, lateness: timedelta
    ) -> None:
        self.number = number
        self.processor = processor
        self.topics = topics
        self.lateness = lateness
        # Ticket id -> stored JSON. A dict in memory; with a local store (`--state-dir`)
        # the task manager puts a store-backed mapping here instead
        # (`worker.kafka.snapshot.StoredStates`): this class only ever gets, sets and
        # deletes, and never decides where the bytes live.
        self.tickets: MutableMapping[str, bytes] = {}
        self.clock = PartitionClock()
        self.offsets: dict[str, int] = {}  # input topic -> next offset, as committed
        self.changelog_end = -1  # the changelog's committed end as of this state
        self.unreadable: list[str] = []  # tickets whose stored state this version cannot read
        self.retirements: TimerIndex = DueIndex()  # finished: at last event + retention
        # The at-risk timers in order (breached ones, which the due index no longer holds,
        # and those due soon) and the at-risk query's cache (`worker.tasks.at_risk`, #24).
        self.at_risk = AtRiskIndex()
        self.at_risk_summaries = TimerSummaries()
        # With a local store: which tickets joined (True) or left (False) the at-risk
        # index's breached ones since the store was last written, so that the store
        # keeps that set too (a restart then needs no decoding). None: not kept.
        self.breached_changes: dict[str, bool] | None = None
        # Tickets whose scheduled due instant had already passed when the input record that
        # set it was produced (a ticket created or reclassified late: a late upstream, a
        # backfill): ticket -> that record's timestamp. Breach publication lateness counts
        # from it rather than from the deadline (`Outcome.known_at`). An entry lives until
        # the ticket's timer fires or is rescheduled, so there are only ever a few; it is
        # not in the changelog (after a restore, such a breach counts from its deadline).
        self.known_since: dict[str, datetime] = {}

    # --- restoring from the changelog ------------------------------------------------------

    def load(self, key: bytes, value: bytes | None) -> None:
        """Apply one changelog record (in changelog order)."""
        if key == CLOCK_KEY:
            self.clock.event_time, self.offsets = _load_clock(value)
        elif value is None:
            self.tickets.pop(key.decode(), None)
        else:
            self.tickets[key.decode()] = value

    def rebuild(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """After loading: rebuild the due-index and holds; yields (ticket id, stored) of
        each readable ticket, for metrics, one at a time (a million decoded states held
        at once would cost a gigabyte). Ids of unreadable ones end up in `unreadable`.

        A value this version cannot read has no timer to rebuild; the service logs it,
        and the next message for that ticket is dead-lettered as `unreadable-state`.
        """
        self.unreadable = []
        self.at_risk.clear()
        for ticket_id, value in self.tickets.items():
            try:
                stored = json.loads(value)
                _, ticket, hold_until = self.processor.restore(stored)
            except (ValueError, KeyError, TypeError, StateFormatError):
                self.unreadable.append(ticket_id)
                continue
            if ticket is not None:
                self.clock.due.schedule(ticket_id, ticket.due)
            if hold_until is not None:
                self.clock.holds.schedule(ticket_id, hold_until)
            self.retirements.schedule(ticket_id, self.processor.retire_at(stored))
            self.at_risk.note(ticket_id, stored)
            if self.breached_changes is not None and ticket_id in self.at_risk:
                self.breached_changes[ticket_id] = True  # (a rebuild starts from none)
            yield ticket_id, stored

    def follow(self, key: bytes, value: bytes | None) -> dict[str, Any] | None:
        """Apply one changelog record and index its ticket at once, as `rebuild` would:
        how a warm standby (`worker.kafka.standby`) keeps a partition ready to run, so
        that its promotion needs no rebuild, and how the tail after a local snapshot is
        read. After any sequence of `follow`s the state and the due-index, holds,
        retirements and at-risk index equal what `load` of the same records and one
        `rebuild` make. Returns the ticket's decoded state (None: deleted, unreadable,
        or the clock record), for the timer gauges."""
        self.load(key, value)
        if key == CLOCK_KEY:
            return None
        ticket_id = key.decode()
        stored: dict[str, Any] | None = None
        ticket, hold_until = None, None
        if value is not None:
            try:
                stored = json.loads(value)
                _, ticket, hold_until = self.processor.restore(stored)
            except (ValueError, KeyError, TypeError, StateFormatError):
                stored = None
                if ticket_id not in self.unreadable:
                    self.unreadable.append(ticket_id)
            else:
                if self.unreadable and ticket_id in self.unreadable:
                    self.unreadable.remove(ticket_id)
        elif self.unreadable and ticket_id in self.unreadable:
            self.unreadable.remove(ticket_id)
        self.clock.due.schedule(ticket_id, None if ticket is None else ticket.due)
        self.clock.holds.schedule(ticket_id, hold_until)
        self.retirements.schedule(
            ticket_id, None if stored is None else self.processor.retire_at(stored)
        )
        self.at_risk.note(ticket_id, stored)
        if self.breached_changes is not None:
            self.breached_changes[ticket_id] = ticket_id in self.at_risk
        return stored

    # --- one step --------------------------------------------------------------------------

    def step(self, messages: list[Message], now: datetime, read_through: datetime | None) -> Batch:
        """Apply `messages` in order, then fire what is due; return what to commit.

        `read_through`: the instant as of which the service has read everything the
        partition's input topics held, or None while it is behind (see
        `PartitionClock.horizon`). `now` is the wall clock, only for the catch-up rule,
        the wall-clock cap and the expiry of held events.
        """
        batch = Batch(self.number)
        event_time = self.clock.event_time
        for message in messages:
            self._consume(message, now, batch)
            batch.offsets[(message.topic, message.partition)] = message.offset + 1
            self.offsets[message.topic] = message.offset + 1
        self.clock.read_through = read_through
        self._fire(now, batch)
        if messages or self.clock.event_time != event_time:
            value = _dump_clock(self.clock.event_time, self.offsets)
            batch.writes.append(
                Write(self.topics.changelog, CLOCK_KEY, value, partition=self.number)
            )
        return batch

    def _consume(self, message: Message, now: datetime, batch: Batch) -> None:
        source = Source(
            message.topic,
            message.partition,
            message.offset,
            message.key,
            message.value or b"",
            message.headers,
        )
        ticket_id = _ticket_key(message.key)
        prior = None if ticket_id is None else self.clock.due.get(ticket_id)
        try:
            stored = self._stored(ticket_id)
            outcome = self.processor.on_event(source, stored, now, self.clock.event_time)
        except StateUnavailable:
            raise  # not the message's fault: the step fails, nothing is dead-lettered
        except Exception as exc:  # a bug must not stop the stream: dead-letter the message
            letter = DeadLetter(source, Reason.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}")
            outcome = Outcome(dead_letters=[letter])
            stored = None
            ticket_id = None
        read_at = message.timestamp or outcome.occurred_at
        outcome.known_at = self._known_at(ticket_id, outcome, prior, read_at)
        self._record(outcome, ticket_id, stored, batch)
        self._remember(ticket_id, outcome)
        batch.inputs.append(outcome)
        # Only applied events move the partition's event time (rejected or held ones never),
        # and with it, as in replay, finished tickets whose retention ended leave state
        # and what is due before it fires (see `PartitionClock.overdue`).
        if outcome.applied and outcome.occurred_at is not None:
            self.clock.observe(outcome.occurred_at)
            self._retire(outcome.occurred_at, batch)
            self._act(self.clock.overdue(now), batch)

    def _fire(self, now: datetime, batch: Batch) -> None:
        self._act(self.clock.ready(now, self.lateness), batch)

    def _act(self, entries: list[tuple[str, datetime, str]], batch: Batch) -> None:
        """Advance (or expire the held events of) each (ticket, instant, kind) taken from
        the clock."""
        for ticket_id, until, kind in entries:
            try:
                stored = self._stored(ticket_id)
                if kind == "expire":
                    outcome = self.processor.expire_held(stored, self.number, until)
                else:
                    outcome = self.processor.on_due(stored, self.number, until)
            except StateUnavailable:
                raise
            except Exception as exc:  # a bug: report it, and keep the partition going
                batch.errors.append((ticket_id, f"{type(exc).__name__}: {exc}"))
                continue
            outcome.known_at = self.known_since.get(ticket_id)
            self._record(outcome, ticket_id, stored, batch)
            self._remember(ticket_id, outcome)
            batch.timers.append(outcome)

    def _known_at(
        self,
        ticket_id: str | None,
        outcome: Outcome,
        prior: datetime | None,
        read_at: datetime | None,
    ) -> datetime | None:
        """When could the worker first know the deadlines an input outcome publishes or
        schedules? At `read_at` (the record's timestamp, else its occurred_at) when the
        record set one ahead of what the ticket had scheduled (`prior`), or one where
        nothing was (a new ticket): a reclassification to a shorter target, a ticket
        created after its first deadline. Otherwise the deadlines were known before, and
        only an earlier record can have set them late (`known_since`)."""
        earlier = None if ticket_id is None else self.known_since.get(ticket_id)
        if read_at is None or ticket_id is None:
            return earlier
        deadlines = [event.due_at for event in outcome.publish if event.type == "sla-breach"]
        if outcome.rescheduled and outcome.due is not None:
            deadlines.append(outcome.due)
        if any(prior is None or deadline < prior for deadline in deadlines):
            return read_at if earlier is None else max(read_at, earlier)
        return earlier

    def _remember(self, ticket_id: str | None, outcome: Outcome) -> None:
        """Keep `known_since` for a ticket whose new due instant is already behind what
        the worker knew when (`outcome.known_at`); forget it otherwise."""
        if ticket_id is None or not outcome.rescheduled:
            return
        known, due = outcome.known_at, outcome.due
        if known is not None and due is not None and due < known:
            self.known_since[ticket_id] = known
        else:
            self.known_since.pop(ticket_id, None)

    def _retire(self, event_time: datetime, batch: Batch) -> None:
        """Remove finished tickets whose retention ended before the partition's event
        time: a tombstone in the changelog, so compaction reclaims them. Every state write
        reschedules its ticket here, so an entry that comes due is an expired ticket."""
        for ticket_id, _ in self.retirements.pop_due(event_time, inclusive=False):
            stored = self._stored(ticket_id)
            if stored is None:
                continue
            del self.tickets[ticket_id]
            self.clock.due.schedule(ticket_id, None)
            self.at_risk.note(ticket_id, None)
            if self.breached_changes is not None:
                self.breached_changes[ticket_id] = ticket_id in self.at_risk
            self.known_since.pop(ticket_id, None)
            key = ticket_id.encode()
            batch.writes.append(Write(self.topics.changelog, key, None, partition=self.number))
            batch.state_changes.append((ticket_id, None, stored))

    def _record(self, outcome: Outcome, ticket_id: str | None, previous: Any, batch: Batch) -> None:
        """Turn an outcome into writes, and update memory (state, due-index, holds)."""
        for event in outcome.publish:
            topic = self.topics.breaches if event.type == "sla-breach" else self.topics.warnings
            ce_headers = cloudevents.headers(event, self.topics.source)
            key = event.ticket_id.encode()
            batch.writes.append(Write(topic, key, encode_event(event), ce_headers))
        if self.topics.finished is not None:
            # In the same transaction as the step's other outputs and its state: a
            # finished timer is published exactly once, as its ticket's state says.
            for finished in outcome.finished:
                record = finished_record(finished)
                value = record.model_dump_json().encode()
                ce_headers = cloudevents.headers(record, self.topics.source)
                key = record.ticket_id.encode()
                batch.writes.append(Write(self.topics.finished, key, value, ce_headers))
        for letter in outcome.dead_letters:
            value, headers = letter.source.value, tuple(letter.headers())
            if len(value) > self.processor.limits.max_bytes:
                # A too-large input keeps a prefix: the dead letter must fit in a Kafka
                # message, or its transaction would fail again at every attempt.
                value = value[:DEAD_LETTER_PREFIX]
                headers += (("sla-dlq-truncated-from", str(len(letter.source.value)).encode()),)
            batch.writes.append(Write(self.topics.dead_letters, letter.source.key, value, headers))
        if ticket_id is None:
            return
        if outcome.state is not None:
            key = ticket_id.encode()
            if outcome.state:
                value = json.dumps(outcome.state, separators=(",", ":")).encode()
                self.tickets[ticket_id] = value
                batch.writes.append(Write(self.topics.changelog, key, value, partition=self.number))
            elif self.tickets.pop(ticket_id, None) is not None:
                batch.writes.append(Write(self.topics.changelog, key, None, partition=self.number))
            batch.state_changes.append((ticket_id, outcome.state or None, previous))
            self.at_risk.note(ticket_id, outcome.state or None)
            if self.breached_changes is not None:
                self.breached_changes[ticket_id] = ticket_id in self.at_risk
            if outcome.state:
                self.retirements.schedule(ticket_id, self.processor.retire_at(outcome.state))
        if outcome.rescheduled:
            self.clock.due.schedule(ticket_id, outcome.due)
        if outcome.hold_until is not None:
            self.clock.holds.schedule(ticket_id, outcome.hold_until)

    def _stored(self, ticket_id: str | None) -> dict[str, Any] | None:
        if ticket_id is None:
            return None
        value = self.tickets.get(ticket_id)
        return None if value is None else dict(json.loads(value))

    def describe(self, ticket_id: str, now: datetime) -> dict[str, Any] | None:
        """`GET /tickets/{id}`: the ticket's SLA state, or None when unknown here."""
        stored = self._stored(ticket_id)
        return None if stored is None else self.processor.describe(ticket_id, stored, now)


def _ticket_key(key: bytes | None) -> str | None:
    """The state key: the message key (the producer's ticket id), if it is text."""
    if not key:
        return None
    try:
        return key.decode()
    except UnicodeDecodeError:
        return None


def _dump_clock(event_time: datetime | None, offsets: dict[str, int]) -> bytes:
    us = None if event_time is None else to_us(event_time)
    return json.dumps({"event_time_us": us, "offsets": offsets}).encode()


def _load_clock(value: bytes | None) -> tuple[datetime | None, dict[str, int]]:
    if value is None:
        return None, {}
    data = json.loads(value)
    us = data.get("event_time_us")
    at = None if us is None else from_us(int(us))
    return at, {str(t): int(o) for t, o in data.get("offsets", {}).items()}
