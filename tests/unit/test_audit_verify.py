"""`verify`: published warnings and breaches against the replay, by event_id."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiokafka.structs import TopicPartition

from worker.audit import parse_bound, verify
from worker.kafka.history import Record, _Cursor

UNTIL = datetime(2026, 12, 1, tzinfo=UTC)


def event(
    event_id: str, ticket: str = "T1", due: str = "2026-11-30T10:00:00+00:00"
) -> dict[str, Any]:
    return {"event_id": event_id, "ticket_id": ticket, "type": "sla-breach", "due_at": due}


def test_missing_unexpected_and_different_are_told_apart() -> None:
    expected = {e["event_id"]: e for e in (event("a"), event("b"), event("c"))}
    published = [
        event("a"),
        event("a"),  # a repeat is the same event
        {**event("b"), "plan": "vip"},
        event("x"),
        event("y", ticket="OLD"),  # created before the window: not judged
        event("z", due="2026-12-02T00:00:00+00:00"),  # due after the window
    ]
    result = verify(expected, published, {"T1"}, UNTIL)
    assert [e["event_id"] for e in result.missing] == ["c"]
    assert [e["event_id"] for e in result.unexpected] == ["x"]
    assert [(w["event_id"], p["plan"]) for w, p in result.different] == [("b", "vip")]
    assert (result.compared, result.outside, result.clean) == (4, 2, False)
    assert [row["kind"] for row in result.records()] == ["missing", "unexpected", "different"]


def test_a_truthful_output_is_clean() -> None:
    expected = {"a": event("a")}
    assert verify(expected, [event("a")], {"T1"}, None).clean


def test_window_bounds() -> None:
    assert parse_bound("beginning", "beginning") is None
    assert parse_bound("2026-11-30T10:00:00+01:00", "end") == datetime(2026, 11, 30, 9, tzinfo=UTC)


def test_a_partitions_merge_key_never_goes_back() -> None:
    """A record without a readable occurred_at (or dated before its predecessor) sorts at
    its partition's event time so far: it never holds back the records after it."""

    def record(offset: int, value: bytes) -> Record:
        return Record("tickets", 0, offset, 1_700_000_000_000, b"T", value)

    cursor = _Cursor(TopicPartition("tickets", 0), end=4)
    cursor.buffer.extend(
        [
            record(0, b'{"occurred_at": "2026-11-30T10:00:00Z"}'),
            record(1, b"not json"),
            record(2, b'{"occurred_at": "2026-11-30T09:00:00Z"}'),
            record(3, b'{"occurred_at": "2026-11-30T11:00:00+01:00"}'),
        ]
    )
    keys = [cursor.take()[0][0] for _ in range(4)]
    assert keys == [datetime(2026, 11, 30, 10, tzinfo=UTC)] * 4


def test_finished_timer_records_are_judged_by_when_they_stopped() -> None:
    finished = {"event_id": "f", "ticket_id": "T1", "type": "sla-timer-finished"}
    inside = {**finished, "finished_at": "2026-11-30T10:00:00+00:00"}
    later = {**finished, "event_id": "g", "finished_at": "2026-12-02T10:00:00+00:00"}
    result = verify({"f": inside}, [inside, later], {"T1"}, UNTIL)
    assert (result.compared, result.outside, result.clean) == (1, 1, True)
