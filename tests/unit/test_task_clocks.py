"""When may a partition's timers fire? The catch-up rule and the wall-clock cap."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from worker.tasks.clocks import PartitionClock

T0 = datetime(2026, 11, 24, 10, tzinfo=UTC)
S = timedelta(seconds=1)
US = timedelta(microseconds=1)
NO_LATENESS = timedelta(0)


def clock_with(due: datetime, ticket: str = "A") -> PartitionClock:
    clock = PartitionClock()
    clock.due.schedule(ticket, due)
    return clock


def test_nothing_fires_before_the_partition_has_seen_an_event_or_caught_up() -> None:
    clock = clock_with(T0)
    assert clock.ready(T0 + 3600 * S, NO_LATENESS) == []


def test_event_time_past_the_due_instant_fires_it_even_while_behind() -> None:
    clock = clock_with(T0)
    clock.observe(T0)  # an event exactly at the due instant: not yet past it
    assert clock.ready(T0 + 3600 * S, NO_LATENESS) == []
    clock.observe(T0 + S)
    assert clock.ready(T0 + 3600 * S, NO_LATENESS) == [("A", T0 + S - US, "advance")]


def test_the_wall_clock_counts_only_once_caught_up_and_after_the_lateness() -> None:
    clock = clock_with(T0)
    assert clock.ready(T0 + 10 * S, 2 * S) == []  # behind: a backlog may still answer it
    clock.read_through = T0 + 10 * S
    assert clock.ready(T0 + S, 2 * S) == []  # within the allowed lateness
    assert clock.ready(T0 + 2 * S, 2 * S) == [("A", T0, "advance")]


def test_the_wall_clock_counts_only_as_far_as_the_last_fetch_has_shown() -> None:
    """After an outage the last fetch response is old: a reply produced just before the
    deadline may be in Kafka unread. The timer waits until a fetch after the deadline
    has shown that the input is read completely."""
    clock = clock_with(T0)
    clock.read_through = T0 - S  # the last fetch came back before the deadline
    assert clock.ready(T0 + 60 * S, NO_LATENESS) == []
    clock.read_through = T0  # a fetch at the deadline shows everything read
    assert clock.ready(T0 + 60 * S, NO_LATENESS) == [("A", T0, "advance")]


def test_event_time_ahead_of_the_wall_clock_never_fires_early() -> None:
    """A producer with a fast clock: its event is dated an hour ahead. The timer due in
    ten minutes must wait for the wall clock, or a reply could still meet it."""
    clock = clock_with(T0 + 600 * S)
    clock.observe(T0 + 3600 * S)
    assert clock.ready(T0, NO_LATENESS) == []
    assert clock.ready(T0 + 599 * S, NO_LATENESS) == []
    assert clock.ready(T0 + 600 * S, NO_LATENESS) == [("A", T0 + 600 * S, "advance")]


def test_taken_entries_leave_the_index() -> None:
    clock = clock_with(T0)
    clock.read_through = T0
    assert clock.ready(T0, NO_LATENESS) == [("A", T0, "advance")]
    assert clock.ready(T0, NO_LATENESS) == []
    assert len(clock.due) == 0


def test_held_events_expire_on_the_wall_clock() -> None:
    clock = PartitionClock()
    clock.holds.schedule("H", T0 + 5 * S)
    assert clock.ready(T0, NO_LATENESS) == []
    assert clock.ready(T0 + 5 * S, NO_LATENESS) == [("H", T0 + 5 * S, "expire")]
