"""The CloudEvents headers of every warning, breach and finished-timer record.

CloudEvents (CNCF) is the envelope event frameworks and their SDKs recognise. Its Kafka
protocol binding, in binary content mode, carries the event's attributes as headers
(`ce_<attribute>`, and `content-type` for `datacontenttype`) and the event's data as the
message value. So the value stays byte for byte what consumers read before, and a
consumer built on a CloudEvents SDK reads our records as events without glue.

Pure: the headers follow from the event and the deployment's source alone, never from the
clock, so a record an aborted transaction wrote and its committed repeat carry the same
headers, as they carry the same bytes and `event_id`. Dead letters get none: they are the
input's own key, bytes and headers (which may be CloudEvents headers of the producer's),
not events of ours. The changelog is internal and gets none either.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final
from urllib.parse import quote

from worker.core.events import SlaEvent, SlaTimerFinished
from worker.schemas import SCHEMA_BASE_URI

SPEC_VERSION: Final = "1.0"
CONTENT_TYPE: Final = "application/json"

TYPE_PREFIX: Final = "dev.sla-worker."
"""Reverse-DNS style, as the spec recommends: the project that defines the events."""

TYPE_VERSION: Final = "v1"
"""The payload's major version: raised only by a change a consumer of the JSON Schemas
would have to follow (a field removed or changed), never by an added optional field."""

SOURCE_PREFIX: Final = "urn:sla-worker:app:"

HEADER_NAMES: Final = (
    "ce_specversion",
    "ce_id",
    "ce_type",
    "ce_source",
    "ce_time",
    "ce_subject",
    "ce_dataschema",
    "content-type",
)
"""Every header `headers` writes, in its order."""


def event_type(name: str) -> str:
    """`ce_type` of an event type: `sla-breach` -> `dev.sla-worker.sla-breach.v1`."""
    return f"{TYPE_PREFIX}{name}.{TYPE_VERSION}"


def source(app_id: str) -> str:
    """`ce_source`: the deployment, named by its `--app-id` (the consumer group). The
    CloudEvents id is unique per source: two deployments reading the same tickets emit the
    same deterministic `event_id`s, and their sources tell them apart."""
    return SOURCE_PREFIX + quote(app_id, safe="")


def data_schema(name: str) -> str:
    """`ce_dataschema`: the `$id` of the payload's JSON Schema in `schemas/`."""
    return f"{SCHEMA_BASE_URI}out.{name}.json"


def rfc3339(instant: datetime) -> str:
    """The instant as the payload writes it: RFC 3339, `Z` for UTC, microseconds only
    when there are any."""
    text = instant.astimezone(UTC).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def occurred_at(event: SlaEvent | SlaTimerFinished) -> datetime:
    """`ce_time`, when the occurrence happened: a warning's or breach's `due_at` (the
    warning point or deadline, even when published later), a finished timer's
    `finished_at`. Both are in the payload, so a repeat carries the same time."""
    return event.finished_at if isinstance(event, SlaTimerFinished) else event.due_at


def headers(event: SlaEvent | SlaTimerFinished, event_source: str) -> tuple[tuple[str, bytes], ...]:
    """The record's headers: CloudEvents 1.0, Kafka protocol binding, binary content mode."""
    return (
        ("ce_specversion", SPEC_VERSION.encode()),
        ("ce_id", event.event_id.encode()),
        ("ce_type", event_type(event.type).encode()),
        ("ce_source", event_source.encode()),
        ("ce_time", rfc3339(occurred_at(event)).encode()),
        ("ce_subject", event.ticket_id.encode()),
        ("ce_dataschema", data_schema(event.type).encode()),
        ("content-type", CONTENT_TYPE.encode()),
    )
