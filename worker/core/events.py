"""The events sla-worker reads and writes, as pydantic models.

Inbound events describe what happened to a ticket; outbound events are the warnings and
breaches the engine derives from them. `schemas/` holds the JSON Schemas generated from
these models (`sla-worker schemas export`); `tests/unit/test_schemas.py` fails when they
are stale.

Timestamps must be RFC 3339 with an offset: a naive timestamp says nothing about *when*
something happened, so it is rejected rather than guessed. Unknown extra fields on inbound
events are ignored, so producers can add fields without breaking the worker.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from hashlib import sha1
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    field_serializer,
)
from pydantic.dataclasses import dataclass
from pydantic_core import ErrorDetails

from worker.core.durations import format_duration
from worker.core.errors import SlaWorkerError
from worker.core.reasons import Reason

Metric = Literal["first_response", "follow_up"]
METRICS: tuple[Metric, ...] = ("first_response", "follow_up")

Status = Literal["open", "pending", "on-hold", "solved", "closed"]
ProductStage = Literal["ga", "beta", "preview"]

_Identifier = Annotated[str, Field(min_length=1, max_length=256)]
# Normalised to UTC on the way in: the engine compares instants constantly, and
# datetimes that share one tzinfo compare without calling utcoffset().
_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def _to_utc(t: datetime) -> datetime:
    """UTC, within the years 1970-8999: a deadline computed from an instant near year 1
    or 9999 would not fit in a datetime, and no help desk event dates from then."""
    try:
        utc = t.astimezone(UTC)
    except OverflowError:  # e.g. year 1 at +23:59: before 0001-01-01 in UTC
        raise ValueError("instant out of range (years 1970 to 8999 UTC)") from None
    if not _EARLIEST <= utc < _LATEST:
        raise ValueError("instant out of range (years 1970 to 8999 UTC)")
    return utc


_Instant = Annotated[AwareDatetime, AfterValidator(_to_utc)]


# Inbound events are frozen pydantic *dataclasses*, not BaseModels: validated the same
# way (the same JSON Schemas), but a quarter cheaper to create and twice as fast to read
# an attribute from (a class that defines `__getattr__`, as BaseModel does, loses
# Python's fast path for every attribute read). Replay creates and reads one per line.
_INBOUND_CONFIG = ConfigDict(extra="ignore", strict=True)


@dataclass(frozen=True, slots=True, kw_only=True, config=_INBOUND_CONFIG)
class _Inbound:
    event_id: _Identifier = Field(description="Unique id of this event; redeliveries repeat it.")
    ticket_id: _Identifier = Field(description="The ticket; also the Kafka message key.")
    occurred_at: _Instant = Field(
        description="When it happened (RFC 3339 with an offset), between 1970 and 8999 UTC "
        "and at most the allowed clock skew ahead of the reader's clock. All SLA math uses "
        "this time."
    )


@dataclass(frozen=True, slots=True, kw_only=True, config=_INBOUND_CONFIG)
class TicketCreated(_Inbound):
    """A ticket was opened: starts its first-response timer."""

    type: Literal["ticket-created"]
    plan: _Identifier = Field(description="Support plan name, e.g. 'professional'.")
    priority: int | None = Field(
        default=None, ge=1, description="Priority; the plan's default priority when absent."
    )
    product_stage: ProductStage = Field(
        default="ga", description="Stage of the product asked about; some plans exempt beta."
    )
    customer_id: _Identifier | None = Field(
        default=None,
        description="The customer (account or organisation) the ticket belongs to; carried "
        "into every warning, breach and finished-timer record of the ticket.",
    )
    group: _Identifier | None = Field(
        default=None, description="The team the ticket is assigned to (goal conditions)."
    )
    channel: _Identifier | None = Field(
        default=None, description="Where the ticket came from, e.g. 'email' (goal conditions)."
    )
    tags: list[_Identifier] = Field(default_factory=list, description="The ticket's tags.")
    fields: dict[str, str] = Field(
        default_factory=dict, description="Custom fields, name to value (goal conditions)."
    )


@dataclass(frozen=True, slots=True, kw_only=True, config=_INBOUND_CONFIG)
class ReplySent(_Inbound):
    """A public reply (or, with `public: false`, an internal note that changes no timer)."""

    type: Literal["reply-sent"]
    author: Literal["agent", "customer"]
    public: bool = True


@dataclass(frozen=True, slots=True, kw_only=True, config=_INBOUND_CONFIG)
class PriorityChanged(_Inbound):
    """The ticket was reclassified; running timers switch to the new priority's targets."""

    type: Literal["priority-changed"]
    priority: int = Field(ge=1)


@dataclass(frozen=True, slots=True, kw_only=True, config=_INBOUND_CONFIG)
class StatusChanged(_Inbound):
    """Pending/on-hold pause timers, open resumes them, solved/closed stop them for good."""

    type: Literal["status-changed"]
    status: Status


@dataclass(frozen=True, slots=True, kw_only=True, config=_INBOUND_CONFIG)
class TicketUpdated(_Inbound):
    """Attributes that choose the ticket's goal or calendar changed (absent: unchanged).

    Running timers keep their start and elapsed business time and are judged by the goal
    the new attributes match from then on (docs/semantics.md, "Goals").
    """

    type: Literal["ticket-updated"]
    group: _Identifier | None = Field(default=None, description="The new group.")
    channel: _Identifier | None = Field(default=None, description="The new channel.")
    customer_id: _Identifier | None = Field(default=None, description="The new customer.")
    tags: list[_Identifier] | None = Field(
        default=None, description="The ticket's tags, all of them (replaces the old set)."
    )
    fields: dict[str, str | None] | None = Field(
        default=None, description="Custom fields that changed; null removes one."
    )


InboundEvent = Annotated[
    TicketCreated | ReplySent | PriorityChanged | StatusChanged | TicketUpdated,
    Field(discriminator="type"),
]
INBOUND_TYPES: tuple[str, ...] = (
    "ticket-created",
    "reply-sent",
    "priority-changed",
    "status-changed",
    "ticket-updated",
)

# String values (event and ticket ids, mostly unique) are not interned while parsing:
# the lookups in pydantic's string cache cost more than they save (keys still are).
_inbound_adapter: TypeAdapter[InboundEvent] = TypeAdapter(
    InboundEvent, config=ConfigDict(cache_strings="keys")
)
_inbound_validator = _inbound_adapter.validator


class InvalidEvent(SlaWorkerError, ValueError):
    """An inbound message that cannot be decoded into an event.

    `reason` is a short, stable code (safe as a metric label); `str(exc)` is the detail
    a human needs to fix the producer.
    """

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def parse_event(raw: bytes | str) -> InboundEvent:
    """Decode and validate one JSON-encoded inbound event, or raise `InvalidEvent`."""
    try:
        # The adapter's compiled validator, called directly: `TypeAdapter.validate_json`
        # only forwards its (default) options to it, at a cost of ~0.4 us per event.
        event: InboundEvent = _inbound_validator.validate_json(raw)
        return event
    except ValidationError as exc:
        raise _invalid(exc) from None


def _invalid(exc: ValidationError) -> InvalidEvent:
    errors = exc.errors(include_url=False)
    first = errors[0]
    if first["type"] == "json_invalid":
        return InvalidEvent(Reason.INVALID_JSON, f"not valid JSON: {first['msg']}")
    not_an_object = first["type"] == "dict_type" and not first["loc"]
    if not_an_object or first["type"] in ("union_tag_invalid", "union_tag_not_found"):
        return InvalidEvent(Reason.UNKNOWN_TYPE, _describe(errors))
    if any(e["type"] == "timezone_aware" for e in errors):
        return InvalidEvent(Reason.NAIVE_TIMESTAMP, _describe(errors))
    return InvalidEvent(Reason.INVALID_FIELD, _describe(errors))


def _describe(errors: list[ErrorDetails]) -> str:
    parts = []
    for error in errors:
        # The first location element of a tagged union is the tag itself: drop it.
        loc = [str(p) for p in error["loc"] if str(p) not in INBOUND_TYPES]
        where = ".".join(loc) or "event"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


# --- outbound ---------------------------------------------------------------------------

# Fixed namespace for the deterministic ids of warnings and breaches. Never change it:
# consumers deduplicate on these ids across releases.
EVENT_ID_NAMESPACE = uuid.UUID("6b1f7a1e-57a0-4c52-9d43-7b7a3f0c2e11")
_NAMESPACE_BYTES = EVENT_ID_NAMESPACE.bytes


def emission_id(ticket_id: str, metric: str, cycle: int, kind: str) -> str:
    """The deterministic id of a warning or breach: the same timer point, the same id.

    `kind` is `breach` or `warning@<threshold>`. The id deliberately ignores the
    priority, target and policy version: a timer breaches at most once, whatever was
    reconfigured in between, so a redelivered breach always carries the same id.
    """
    # `str(uuid.uuid5(EVENT_ID_NAMESPACE, name))`, spelled out (a quarter of its cost):
    # the first 16 bytes of SHA-1(namespace + name), with the version (5) in the high
    # nibble of byte 6 and the RFC 4122 variant (0b10) in the top bits of byte 8.
    name = f"{ticket_id}\x1f{metric}\x1f{cycle}\x1f{kind}".encode()
    digest = bytearray(sha1(_NAMESPACE_BYTES + name).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _absent(value: object) -> bool:
    return value is None


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)  # absent, never null


# Written only when the ticket has one: the output of a ticket without a customer stays
# byte for byte what it was before the field existed.
_CustomerId = Annotated[
    str | None,
    Field(
        default=None,
        exclude_if=_absent,
        description="The ticket's customer_id; absent when its ticket-created had none.",
        json_schema_extra=_no_default,
    ),
    WithJsonSchema({"type": "string"}),
]


# Written only when the policy names goals (like `customer_id`): outputs under a plan x
# priority policy stay byte for byte what they were before goals existed.
_GoalName = Annotated[
    str | None,
    Field(
        default=None,
        exclude_if=_absent,
        description="The goal that judged the timer; absent under a plan x priority policy.",
        json_schema_extra=_no_default,
    ),
    WithJsonSchema({"type": "string"}),
]
_MetricName = Annotated[
    str,
    Field(
        description="first_response, follow_up, resolution, periodic_update, "
        "requester_wait, agent_work, or a metric the policy defines."
    ),
]


class _Outbound(BaseModel):
    # Every field is always present in the JSON we write, defaults included.
    model_config = ConfigDict(
        frozen=True, extra="forbid", json_schema_serialization_defaults_required=True
    )

    event_id: str = Field(description="Deterministic (UUIDv5): deduplicate on it.")
    type: str
    ticket_id: str
    customer_id: _CustomerId = None
    plan: str
    priority: int
    goal: _GoalName = None
    metric: _MetricName
    cycle: int = Field(ge=1, description="Counts the metric's timers of the ticket from 1.")
    started_at: datetime = Field(description="When the timer started (UTC).")
    due_at: datetime = Field(
        description="The instant the warning point or deadline was reached (UTC), even when "
        "published later."
    )
    deadline: datetime | None = Field(
        description="The timer's deadline when this was emitted (UTC); null while paused "
        "before the deadline could be known."
    )
    target: timedelta = Field(description="Target duration, ISO 8601 (e.g. PT2H).")
    calendar: str = Field(description="Name of the business calendar the target runs on.")
    policy_version: str

    @field_serializer("target")
    def _iso_target(self, target: timedelta) -> str:
        return format_duration(target)


class SlaWarning(_Outbound):
    """A configured fraction of the target has elapsed on a running timer."""

    type: Literal["sla-warning"] = "sla-warning"
    threshold: float = Field(gt=0, lt=1)


class SlaBreach(_Outbound):
    """The timer's deadline passed while it was still running. At most one per timer."""

    type: Literal["sla-breach"] = "sla-breach"


SlaEvent = SlaWarning | SlaBreach


class SlaTimerFinished(BaseModel):
    """A measured timer stopped for good (a public agent reply, `solved` or `closed`):
    met, or breached. One per timer; for compliance reports, not alerting."""

    model_config = _Outbound.model_config

    event_id: str = Field(
        description="Deterministic (UUIDv5 of ticket, metric, cycle and 'finished'): "
        "deduplicate on it."
    )
    type: Literal["sla-timer-finished"] = "sla-timer-finished"
    ticket_id: str
    customer_id: _CustomerId = None
    plan: str
    priority: int = Field(description="The ticket's priority when the timer finished.")
    goal: _GoalName = None
    metric: _MetricName
    cycle: int = Field(ge=1, description="Counts the metric's timers of the ticket from 1.")
    result: Literal["met", "breached"] = Field(
        description="met: stopped before its deadline (a reply exactly at it meets it); "
        "breached: a breach was emitted for this timer before it stopped."
    )
    started_at: datetime = Field(description="When the timer started (UTC).")
    finished_at: datetime = Field(description="When it stopped (UTC).")
    finished_by: str = Field(
        description="What stopped it: 'reply' (a reply), a status ('solved', 'closed', ...), "
        "'ticket-created', 'priority-changed' or 'ticket-updated'."
    )
    business_time: timedelta = Field(
        description="Time the timer ran, on its calendar and without paused time, ISO 8601."
    )
    target: timedelta = Field(description="Target duration when it stopped, ISO 8601.")
    calendar: str = Field(description="Name of the business calendar the target runs on.")
    deadline: datetime | None = Field(
        description="The deadline under the target in force when it stopped (UTC); null "
        "when the ticket was paused before reaching it."
    )
    policy_version: str

    @field_serializer("business_time", "target")
    def _iso_duration(self, value: timedelta) -> str:
        return format_duration(value)
