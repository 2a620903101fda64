"""The replay's collector tuning is scoped: settings come back, cycles still go away."""

from __future__ import annotations

import gc
import weakref

from worker.replay import relaxed_garbage_collection


class _Node:
    other: _Node | None = None


def test_thresholds_and_freeze_are_restored_afterwards() -> None:
    before = gc.get_threshold()
    with relaxed_garbage_collection():
        assert gc.get_threshold() == (10_000, 10, 10)
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_restored_even_when_the_run_fails() -> None:
    before = gc.get_threshold()
    try:
        with relaxed_garbage_collection():
            raise RuntimeError("replay failed")
    except RuntimeError:
        pass
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_reference_cycles_made_during_the_run_are_still_collected() -> None:
    with relaxed_garbage_collection():
        a, b = _Node(), _Node()
        a.other, b.other = b, a
        alive = weakref.ref(a)
        del a, b
        # More live allocations than the young generation's threshold: the collector
        # runs by itself, as it does on a long replay.
        kept = [_Node() for _ in range(20_000)]
        assert alive() is None
        assert len(kept) == 20_000


def test_a_freeze_made_by_the_caller_is_left_in_place() -> None:
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with relaxed_garbage_collection(), relaxed_garbage_collection():
            pass
        assert gc.get_freeze_count() >= frozen
    finally:
        gc.unfreeze()
