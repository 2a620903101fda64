"""One message in, one decision out: the worker's processor without Kafka."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from worker.core.engine import Engine
from worker.core.limits import InputLimits
from worker.core.policy import Policy
from worker.tasks.processor import (
    MAX_HELD_EVENTS,
    Source,
    TicketProcessor,
)

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)


def source(body: dict[str, Any] | bytes, key: bytes | None = None, offset: int = 0) -> Source:
    value = body if isinstance(body, bytes) else json.dumps(body).encode()
    if key is None and isinstance(body, dict):
        key = body["ticket_id"].encode()
    return Source("tickets", 1, offset, key, value, (("trace", b"t-1"),))


def created(ticket: str = "T", at: str = "2026-11-24T10:00:00Z") -> dict[str, Any]:
    return {
        "event_id": f"c-{ticket}",
        "type": "ticket-created",
        "ticket_id": ticket,
        "occurred_at": at,
        "plan": "advanced",
        "priority": 1,
    }


def reply(ticket: str = "T", at: str = "2026-11-24T10:10:00Z") -> dict[str, Any]:
    return {
        "event_id": f"r-{ticket}",
        "type": "reply-sent",
        "ticket_id": ticket,
        "occurred_at": at,
        "author": "agent",
    }


@pytest.fixture
def processor(presets: Policy) -> TicketProcessor:
    return TicketProcessor(Engine(presets), hold_unknown=None)


def test_a_created_ticket_is_stored_with_its_partition_and_due_instant(
    processor: TicketProcessor,
) -> None:
    outcome = processor.on_event(source(created()), None, NOW)
    assert outcome.applied and outcome.event_type == "ticket-created"
    assert outcome.state is not None and outcome.state["p"] == 1
    assert outcome.due == datetime(2026, 11, 24, 10, 45, tzinfo=UTC)  # 75 % of 1 hour


def test_timer_command_fires_and_stores(processor: TicketProcessor) -> None:
    state = processor.on_event(source(created()), None, NOW).state
    outcome = processor.on_due(state, 1, datetime(2026, 11, 24, 11, tzinfo=UTC))
    assert [e.type for e in outcome.publish] == ["sla-warning", "sla-breach"]
    assert outcome.state is not None and outcome.due is None
    # The same command again (a redelivery) emits nothing more.
    assert processor.on_due(outcome.state, 1, NOW).publish == []


def test_redelivered_event_is_a_duplicate(processor: TicketProcessor) -> None:
    state = processor.on_event(source(created()), None, NOW).state
    again = processor.on_event(source(created()), state, NOW)
    assert again.duplicate and not again.applied and again.dead_letters == []


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (source(b"\xff\xfe", key=b"T"), "invalid-json"),
        (source({**created(), "occurred_at": "2026-11-24T10:00:00"}), "naive-timestamp"),
        (source(created(), key=b"OTHER"), "key-mismatch"),
        (source(reply()), "unknown-ticket"),
    ],
)
def test_bad_input_becomes_a_dead_letter_with_its_source(
    processor: TicketProcessor, message: Source, reason: str
) -> None:
    outcome = processor.on_event(message, None, NOW)
    assert [letter.reason for letter in outcome.dead_letters] == [reason]
    headers = dict(outcome.dead_letters[0].headers())
    assert headers["trace"] == b"t-1"  # the original headers are kept
    assert headers["sla-dlq-reason"] == reason.encode()
    assert headers["sla-dlq-source-partition"] == b"1"
    assert outcome.state is None


def test_events_before_their_ticket_are_held_then_applied_in_time_order(
    presets: Policy,
) -> None:
    processor = TicketProcessor(Engine(presets), hold_unknown=timedelta(minutes=5))
    held = processor.on_event(source(reply(at="2026-11-24T10:10:00Z")), None, NOW)
    assert held.held and held.hold_until == NOW + timedelta(minutes=5)
    outcome = processor.on_event(source(created()), held.state, NOW)
    assert outcome.state is not None and "held" not in outcome.state
    assert [m.metric for m in outcome.finished if m.met] == [
        "first_response"
    ]  # the held reply met it
    assert outcome.due is None


def test_held_events_expire_into_dead_letters(presets: Policy) -> None:
    processor = TicketProcessor(Engine(presets), hold_unknown=timedelta(minutes=5))
    held = processor.on_event(source(reply()), None, NOW).state
    assert processor.expire_held(held, 1, NOW).dead_letters == []
    outcome = processor.expire_held(held, 1, NOW + timedelta(minutes=5))
    assert [letter.reason for letter in outcome.dead_letters] == ["unknown-ticket"]
    assert outcome.dead_letters[0].headers()[0] == ("trace", b"t-1")  # the original's
    assert outcome.state == {}  # delete


def test_describe_reports_each_timer(processor: TicketProcessor) -> None:
    state = processor.on_event(source(created()), None, NOW).state
    assert state is not None
    body = processor.describe("T", state, datetime(2026, 11, 24, 10, 20, tzinfo=UTC))
    (timer,) = body["timers"]
    assert timer["elapsed"] == "PT20M" and timer["remaining"] == "PT40M"
    assert timer["deadline"] == "2026-11-24T11:00:00Z" and timer["paused"] is False


def test_a_rejected_event_leaves_the_tickets_timers_alone(processor: TicketProcessor) -> None:
    """A dead-lettered event for a known ticket must not reschedule (or cancel) its timer."""
    outcome = processor.on_event(source(created()), None, NOW)
    stored = outcome.state
    bad = {**reply(), "occurred_at": "not a time"}
    for rejected in (
        processor.on_event(source(bad), stored, NOW),
        processor.on_event(source(reply(at="2026-11-24T09:00:00Z")), stored, NOW),  # out of order
        processor.on_event(source(reply(), key=b"other"), stored, NOW),  # key mismatch
    ):
        assert rejected.dead_letters and not rejected.rescheduled and rejected.state is None


def test_a_duplicate_writes_nothing(processor: TicketProcessor) -> None:
    stored = processor.on_event(source(created()), None, NOW).state
    stored = processor.on_event(source(reply()), stored, NOW).state
    again = processor.on_event(source(reply()), stored, NOW)
    assert again.duplicate and again.state is None and not again.rescheduled


def test_a_future_timestamp_is_dead_lettered_and_applies_nothing(
    processor: TicketProcessor,
) -> None:
    stored = processor.on_event(source(created()), None, NOW).state
    ahead = reply(at="2026-11-24T12:05:01Z")  # 5 min 1 s ahead of the wall clock
    outcome = processor.on_event(source(ahead), stored, NOW)
    assert [letter.reason for letter in outcome.dead_letters] == ["future-timestamp"]
    assert not outcome.applied and outcome.state is None and outcome.occurred_at is None
    within = processor.on_event(source(reply(at="2026-11-24T12:05:00Z")), stored, NOW)
    assert within.applied


def test_a_too_large_message_is_dead_lettered_unparsed(presets: Policy) -> None:
    processor = TicketProcessor(Engine(presets), None, InputLimits(max_bytes=100))
    outcome = processor.on_event(source(b"[" * 101, key=b"T"), None, NOW)
    assert [letter.reason for letter in outcome.dead_letters] == ["too-large"]
    assert "101 bytes; the limit is 100" in outcome.dead_letters[0].detail


def test_events_held_for_one_ticket_are_bounded(presets: Policy) -> None:
    processor = TicketProcessor(Engine(presets), hold_unknown=timedelta(minutes=5))
    stored = None
    for n in range(MAX_HELD_EVENTS):
        outcome = processor.on_event(source({**reply(), "event_id": f"r-{n}"}), stored, NOW)
        assert outcome.held
        stored = outcome.state
    over = processor.on_event(source({**reply(), "event_id": "r-over"}), stored, NOW)
    assert [letter.reason for letter in over.dead_letters] == ["unknown-ticket"]
    assert over.state is None and "held for this ticket already" in over.dead_letters[0].detail
