"""When is a table recovery stuck, and where must it read again? (No Kafka needed.)"""

from __future__ import annotations

from worker.kafka.recovery_watch import RecoveryWatch


def test_a_progressing_recovery_is_left_alone() -> None:
    watch = RecoveryWatch(stall_seconds=15)
    for second in range(0, 100, 5):
        offsets = {"changelog-0": second}  # one more record applied every 5 s
        assert watch.observe(second, offsets, {"changelog-0": 100 - second}) == {}


def test_a_recovery_without_progress_is_sent_back_to_the_offsets_it_needs() -> None:
    watch = RecoveryWatch(stall_seconds=15)
    offsets = {"changelog-0": -1, "changelog-1": 7, "changelog-2": 12}
    remaining = {"changelog-0": 12, "changelog-1": 3, "changelog-2": 0}
    assert watch.observe(0.0, offsets, remaining) == {}
    assert watch.observe(14.9, offsets, remaining) == {}
    # Nothing applied yet -> offset 0; otherwise the last applied one, as recovery does.
    # A partition with nothing left to apply is not touched.
    assert watch.observe(15.0, offsets, remaining) == {"changelog-0": 0, "changelog-1": 7}
    # The next attempt waits another full period.
    assert watch.observe(20.0, offsets, remaining) == {}
    assert watch.observe(30.0, offsets, remaining) == {"changelog-0": 0, "changelog-1": 7}


def test_progress_on_any_partition_restarts_the_wait() -> None:
    watch = RecoveryWatch(stall_seconds=15)
    remaining = {"a": 5, "b": 5}
    watch.observe(0.0, {"a": 1, "b": 1}, remaining)
    assert watch.observe(10.0, {"a": 2, "b": 1}, remaining) == {}
    assert watch.observe(24.0, {"a": 2, "b": 1}, remaining) == {}
    assert watch.observe(25.0, {"a": 2, "b": 1}, remaining) == {"a": 2, "b": 1}


def test_a_finished_or_idle_recovery_resets_the_watch() -> None:
    watch = RecoveryWatch(stall_seconds=15)
    watch.observe(0.0, {"a": 1}, {"a": 5})
    assert watch.observe(20.0, {"a": 1}, {"a": 0}) == {}  # done: nothing behind
    watch.idle()
    assert watch.observe(100.0, {"a": 1}, {"a": 5}) == {}  # a new recovery: a fresh wait
    assert watch.observe(114.0, {"a": 1}, {"a": 5}) == {}
    assert watch.observe(115.0, {"a": 1}, {"a": 5}) == {"a": 1}
