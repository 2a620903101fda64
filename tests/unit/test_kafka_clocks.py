"""When may a partition's timers fire? The catch-up rule, without Kafka."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from worker.kafka.clocks import TimerClocks

T0 = datetime(2026, 11, 24, 10, tzinfo=UTC)
S = timedelta(seconds=1)


def test_nothing_fires_before_the_partition_has_seen_an_event_or_caught_up() -> None:
    clocks = TimerClocks()
    clocks.assign(0)
    clocks.schedule(0, "A", T0)
    assert clocks.ready(T0 + 3600 * S) == []


def test_event_time_past_the_due_instant_fires_it_even_while_behind() -> None:
    clocks = TimerClocks()
    clock = clocks.assign(0)
    clocks.schedule(0, "A", T0)
    clock.observe(T0)  # an event exactly at the due instant: not yet past it
    assert clocks.ready(T0) == []
    clock.observe(T0 + S)
    assert clocks.ready(T0) == [(0, "A", T0 + S - timedelta(microseconds=1), "advance")]


def test_the_wall_clock_counts_only_once_caught_up_and_after_the_lateness() -> None:
    clocks = TimerClocks(lateness=2 * S)
    clock = clocks.assign(0)
    clocks.schedule(0, "A", T0)
    assert clocks.ready(T0 + 10 * S) == []  # behind: a backlog may still answer it
    clock.caught_up = True
    assert clocks.ready(T0 + S) == []  # within the allowed lateness
    assert clocks.ready(T0 + 2 * S) == [(0, "A", T0, "advance")]


def test_taken_entries_leave_and_revoked_partitions_are_forgotten() -> None:
    clocks = TimerClocks()
    clocks.assign(0).caught_up = True
    clocks.assign(1).caught_up = True
    clocks.schedule(0, "A", T0)
    clocks.schedule(1, "B", T0)
    clocks.revoke(1)
    clocks.schedule(1, "B", T0)  # a late schedule for a revoked partition is ignored
    assert clocks.ready(T0) == [(0, "A", T0, "advance")]
    assert clocks.ready(T0) == []
    assert clocks.partitions() == [0] and clocks.running() == 0


def test_held_events_expire_on_the_wall_clock() -> None:
    clocks = TimerClocks()
    clocks.assign(2)
    clocks.hold(2, "H", T0 + 5 * S)
    assert clocks.ready(T0) == []
    assert clocks.ready(T0 + 5 * S) == [(2, "H", T0 + 5 * S, "expire")]
