"""`verify`: published warnings and breaches against the replay, by event_id."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiokafka.structs import TopicPartition

from worker.audit import Window, parse_bound, verify
from worker.kafka.history import Record, _Cursor

UNTIL = datetime(2026, 12, 1, tzinfo=UTC)
WINDOW = Window(None, UNTIL)


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
        event("y", ticket="OLD"),  # its ticket-created is not in the log: not judged
        event("z", due="2026-12-02T00:00:00+00:00"),  # due after the window
    ]
    result = verify(expected, published, {"T1"}, WINDOW)
    assert [e["event_id"] for e in result.missing] == ["c"]
    assert [e["event_id"] for e in result.unexpected] == ["x"]
    assert [(w["event_id"], p["plan"]) for w, p in result.different] == [("b", "vip")]
    assert (result.compared, result.outside, result.clean) == (4, 2, False)
    assert [row["kind"] for row in result.records()] == ["missing", "unexpected", "different"]


def test_a_truthful_output_is_clean() -> None:
    expected = {"a": event("a")}
    assert verify(expected, [event("a")], {"T1"}, WINDOW).clean


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
    result = verify({"f": inside}, [inside, later], {"T1"}, WINDOW)
    assert (result.compared, result.outside, result.clean) == (1, 1, True)


def test_only_what_the_clock_reached_is_judged() -> None:
    """With `--to end` the audit's clock stops at the last applied event: a record the
    worker fired on the wall clock after it is outside, neither expected nor accused."""
    after = event("late", due="2026-11-30T12:00:00+00:00")
    window = Window(None, UNTIL, clock=datetime(2026, 11, 30, 11, tzinfo=UTC))
    result = verify({"a": event("a")}, [event("a"), after], {"T1"}, window)
    assert (result.compared, result.outside, result.clean) == (1, 1, True)


def test_the_window_start_bounds_both_sides() -> None:
    """Before `--from`: neither a published record nor an expected one is judged."""
    window = Window(datetime(2026, 11, 30, 11, tzinfo=UTC), UNTIL)
    early = event("early")  # due 10:00
    result = verify({"early": early}, [], {"T1"}, window)
    assert result.clean and not result.missing
    result = verify({}, [early], {"T1"}, window)
    assert result.clean and result.outside == 1


def test_a_window_describes_the_instants_it_judges() -> None:
    window = Window(None, UNTIL, clock=datetime(2026, 11, 30, tzinfo=UTC))
    assert str(window) == "due from the beginning through 2026-11-30T00:00:00+00:00"
    assert window.contains(datetime(2026, 11, 30, tzinfo=UTC))  # bounds are inclusive
    assert not window.contains(datetime(2026, 11, 30, 0, 0, 1, tzinfo=UTC))


def test_a_repeat_with_other_content_is_a_difference() -> None:
    """A redelivery is the same event byte for byte; an id published twice with
    different content is not, whichever copy comes first."""
    altered = {**event("a"), "deadline": "2026-11-30T11:00:00+00:00"}
    result = verify({"a": event("a")}, [event("a"), altered], {"T1"}, WINDOW)
    assert [p["deadline"] for _, p in result.different] == ["2026-11-30T11:00:00+00:00"]
    assert not result.missing and not result.unexpected
