from __future__ import annotations

from datetime import UTC, datetime, timedelta

from worker.core.due_index import DueIndex

T0 = datetime(2026, 11, 24, 10, tzinfo=UTC)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_pops_in_due_order_up_to_now() -> None:
    index = DueIndex()
    index.schedule("b", at(20))
    index.schedule("a", at(10))
    index.schedule("c", at(30))
    assert list(index.pop_due(at(20))) == [("a", at(10)), ("b", at(20))]
    assert index.peek() == at(30) and len(index) == 1


def test_strict_pop_leaves_what_is_due_exactly_now() -> None:
    index = DueIndex()
    index.schedule("a", at(10))
    assert list(index.pop_due(at(10), inclusive=False)) == []
    assert list(index.pop_due(at(10))) == [("a", at(10))]


def test_rescheduling_replaces_and_none_clears() -> None:
    index = DueIndex()
    index.schedule("a", at(10))
    index.schedule("a", at(40))
    index.schedule("b", at(20))
    index.schedule("b", None)
    assert index.peek() == at(40)
    assert list(index.pop_due(at(60))) == [("a", at(40))]
    assert index.peek() is None and len(index) == 0


def test_reschedule_back_to_an_earlier_instant() -> None:
    index = DueIndex()
    index.schedule("a", at(10))
    index.schedule("a", at(20))
    index.schedule("a", at(10))
    assert list(index.pop_due(at(60))) == [("a", at(10))]
    assert list(index.pop_due(at(60))) == []


def test_stale_entries_are_compacted() -> None:
    index = DueIndex()
    for i in range(10_000):
        index.schedule("a", at(i))
    assert len(index._heap) < 2_000
    assert list(index.pop_due(at(20_000))) == [("a", at(9_999))]
