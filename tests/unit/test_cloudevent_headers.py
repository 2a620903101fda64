"""The CloudEvents headers of the outputs, without Kafka: every attribute, read back with
the CloudEvents SDK's own Kafka binding, and which writes of a step carry them.
tests/integration/test_cloudevents.py reads them off the real broker."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from cloudevents.core.bindings.kafka import KafkaMessage, from_binary
from cloudevents.core.formats.json import JSONFormat

from worker.core.engine import Engine
from worker.core.events import SlaBreach, SlaTimerFinished, SlaWarning
from worker.core.policy import Policy
from worker.schemas import schemas
from worker.tasks import cloudevents
from worker.tasks.partition import Message, Partition, Topics
from worker.tasks.processor import TicketProcessor, encode_event

T0 = datetime(2026, 11, 24, 10, tzinfo=UTC)  # a Tuesday, 10:00 UTC
MIN = timedelta(minutes=1)
DUE = datetime(2026, 11, 24, 11, 0, 0, 250_000, tzinfo=UTC)


def message(offset: int, type_: str, ticket: str, at: datetime, **fields: Any) -> Message:
    """An input message keyed by its ticket (vip, priority 1: an hour, around the clock)."""
    iso = at.isoformat().replace("+00:00", "Z")
    body = {"event_id": f"e{offset}", "type": type_, "ticket_id": ticket, "occurred_at": iso}
    value = json.dumps({**body, **fields}).encode()
    return Message("tickets", 0, offset, ticket.encode(), value)


def breach() -> SlaBreach:
    return SlaBreach(
        event_id="5f0c1d2e-0000-5000-8000-000000000001",
        ticket_id="HD-1001",
        plan="vip",
        priority=1,
        metric="first_response",
        cycle=1,
        started_at=T0,
        due_at=DUE,
        deadline=DUE,
        target=timedelta(hours=1),
        calendar="clock",
        policy_version="1",
    )


def finished() -> SlaTimerFinished:
    return SlaTimerFinished(
        event_id="5f0c1d2e-0000-5000-8000-000000000002",
        ticket_id="HD-1002",
        customer_id="acme",
        plan="vip",
        priority=1,
        metric="first_response",
        cycle=1,
        result="met",
        started_at=T0,
        finished_at=T0 + 5 * MIN,
        finished_by="reply",
        business_time=5 * MIN,
        target=timedelta(hours=1),
        calendar="clock",
        deadline=T0 + 60 * MIN,
        policy_version="1",
    )


def test_a_breach_carries_every_attribute() -> None:
    headers = cloudevents.headers(breach(), cloudevents.source("helpdesk-eu"))
    assert headers == (
        ("ce_specversion", b"1.0"),
        ("ce_id", b"5f0c1d2e-0000-5000-8000-000000000001"),
        ("ce_type", b"dev.sla-worker.sla-breach.v1"),
        ("ce_source", b"urn:sla-worker:app:helpdesk-eu"),
        ("ce_time", b"2026-11-24T11:00:00.250000Z"),
        ("ce_subject", b"HD-1001"),
        ("ce_dataschema", b"urn:sla-worker:schemas:out.sla-breach.json"),
        ("content-type", b"application/json"),
    )
    assert [name for name, _ in headers] == list(cloudevents.HEADER_NAMES)


def test_the_time_is_the_payloads_own_instant() -> None:
    """`ce_time` is `due_at` (warning, breach) or `finished_at`, spelled as the payload
    spells it, with and without microseconds."""
    whole = breach().model_copy(update={"due_at": T0 + 60 * MIN})
    for event_, field in ((breach(), "due_at"), (whole, "due_at"), (finished(), "finished_at")):
        time = dict(cloudevents.headers(event_, "urn:x"))["ce_time"].decode()
        assert time == json.loads(event_.model_dump_json())[field]


def test_every_output_type_names_its_schema() -> None:
    published = {name for name in schemas() if name.startswith("out.")}
    for name in ("sla-warning", "sla-breach", "sla-timer-finished"):
        assert cloudevents.event_type(name) == f"dev.sla-worker.{name}.v1"
        assert cloudevents.data_schema(name) == f"urn:sla-worker:schemas:out.{name}.json"
        assert schemas()[f"out.{name}.json"]["$id"] == cloudevents.data_schema(name)
    assert len(published) == 3


def test_the_source_is_a_uri_for_any_app_id() -> None:
    assert cloudevents.source("sla-worker") == "urn:sla-worker:app:sla-worker"
    assert cloudevents.source("a b/c") == "urn:sla-worker:app:a%20b%2Fc"
    assert Topics("w", "b", "d", "c").source == cloudevents.source("sla-worker")


def test_the_sdk_reads_a_record_as_the_event() -> None:
    for record in (breach(), finished()):
        value = record.model_dump_json().encode()
        headers = cloudevents.headers(record, cloudevents.source("sla-worker"))
        message = KafkaMessage(dict(headers), record.ticket_id.encode(), value)
        ce = from_binary(message, JSONFormat())
        assert ce.get_specversion() == "1.0"
        assert ce.get_id() == record.event_id
        assert ce.get_type() == f"dev.sla-worker.{record.type}.v1"
        assert ce.get_source() == "urn:sla-worker:app:sla-worker"
        assert ce.get_time() == cloudevents.occurred_at(record)
        assert ce.get_subject() == record.ticket_id
        assert ce.get_dataschema() == f"urn:sla-worker:schemas:out.{record.type}.json"
        assert ce.get_datacontenttype() == "application/json"
        assert ce.get_extension("partitionkey") == record.ticket_id
        assert ce.get_data() == json.loads(value)


def test_warnings_breaches_and_finished_timers_carry_them_dead_letters_do_not(
    presets: Policy,
) -> None:
    topics = Topics("warnings", "breaches", "dead", "changelog", "finished", "urn:test")
    partition = Partition(0, TicketProcessor(Engine(presets), None), topics, timedelta(0))
    late = T0 + 90 * MIN
    batch = partition.step(
        [
            message(0, "ticket-created", "A", T0, plan="vip", priority=1),
            message(1, "reply-sent", "B", T0, author="agent"),  # an unknown ticket
            message(2, "status-changed", "A", late, status="solved"),
        ],
        now=late,
        read_through=late,
    )
    by_topic: dict[str, list[dict[str, bytes]]] = {}
    for write in batch.writes:
        by_topic.setdefault(write.topic, []).append(dict(write.headers))
    assert sorted(by_topic) == ["breaches", "changelog", "dead", "finished", "warnings"]
    published = [w for w in batch.writes if w.topic in ("warnings", "breaches", "finished")]
    for write in published:
        headers = dict(write.headers)
        payload = json.loads(write.value or b"")
        assert list(headers) == list(cloudevents.HEADER_NAMES)
        assert headers["ce_id"] == payload["event_id"].encode()
        assert headers["ce_subject"] == write.key == b"A"
        assert headers["ce_source"] == b"urn:test"
    assert all(headers == {} for headers in by_topic["changelog"])
    (dead,) = by_topic["dead"]
    assert not [name for name in dead if name.startswith("ce_") or name == "content-type"]
    # The payload is what it was: the model's JSON, unchanged by the headers.
    for event_ in batch.published:
        (write,) = [w for w in published if dict(w.headers)["ce_id"] == event_.event_id.encode()]
        assert write.value == encode_event(event_)


def test_warnings_are_typed_as_warnings() -> None:
    warning = SlaWarning(**{**breach().model_dump(exclude={"type"}), "threshold": 0.75})
    headers = dict(cloudevents.headers(warning, "urn:x"))
    assert headers["ce_type"] == b"dev.sla-worker.sla-warning.v1"
