"""Timer indexes kept in the partition's local store (`StoredDueIndex`): whatever is
scheduled, taken or settled, they answer what the in-memory `DueIndex` answers, and the
store holds, once settled, exactly what the overlay said.

A real RocksDB (rocksdict) in a temporary directory.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from worker.core.due_index import DueIndex
from worker.core.engine import Engine
from worker.kafka.snapshot import Store, keep_in
from worker.kafka.stored_index import DUE, StoredDueIndex, fingerprint
from worker.tasks.partition import Message, Partition, StateUnavailable, Topics
from worker.tasks.processor import TicketProcessor

T0 = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
TOPICS = Topics("warnings", "breaches", "dead", "changelog")
TICKETS = [f"T{n}" for n in range(6)]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store(tmp_path / "0", "unit", 0)
    yield opened
    opened.close()


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def settle(index: StoredDueIndex, store: Store) -> None:
    store.write([], None, 0, index.ops())
    index.settled()


def test_the_earliest_is_read_from_the_store_and_what_changed_from_the_overlay(
    store: Store,
) -> None:
    index = StoredDueIndex(store.db, DUE)
    index.schedule("A", at(10))
    index.schedule("B", at(5))
    settle(index, store)
    again = StoredDueIndex(store.db, DUE)  # as a restart opens it: nothing in RAM

    assert len(again) == 2 and again.peek() == at(5) and again.get("A") == at(10)
    again.schedule("B", at(20))  # not settled: the store still says 5
    assert again.peek() == at(10)
    assert list(again.pop_due(at(15))) == [("A", at(10))]
    assert again.peek() == at(20) and again.get("A") is None and len(again) == 1
    assert sorted(again.until(at(30))) == [("B", at(20))]


# --- the same answers as DueIndex ----------------------------------------------------------------

operations = st.lists(
    st.one_of(
        st.tuples(st.just("schedule"), st.sampled_from(TICKETS), st.none() | st.integers(0, 30)),
        st.tuples(st.just("pop"), st.integers(0, 30), st.booleans()),
        st.tuples(st.just("peek")),
        st.tuples(st.just("until"), st.integers(0, 30)),
        st.tuples(st.just("settle")),
        st.tuples(st.just("reopen")),
    ),
    max_size=60,
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=operations)
def test_a_stored_index_answers_what_an_index_in_memory_answers(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[Any, ...]]
) -> None:
    """Reopening drops what was not settled from the stored one, as a failed commit
    throws a partition away: the in-memory one goes back to the last settled state."""
    store = Store(tmp_path_factory.mktemp("index"), "unit", 0)
    try:
        stored = StoredDueIndex(store.db, DUE)
        memory, committed = DueIndex(), DueIndex()
        for op in ops:
            if op[0] == "schedule":
                due = None if op[2] is None else at(op[2])
                stored.schedule(op[1], due)
                memory.schedule(op[1], due)
            elif op[0] == "pop":
                taken = list(stored.pop_due(at(op[1]), inclusive=op[2]))
                expected = list(memory.pop_due(at(op[1]), inclusive=op[2]))
                assert taken == expected
            elif op[0] == "peek":
                assert stored.peek() == memory.peek()
            elif op[0] == "until":
                # As sets: DueIndex may yield one entry twice (pushed twice, both live);
                # its callers take sets.
                assert set(stored.until(at(op[1]))) == set(memory.until(at(op[1])))
            elif op[0] == "settle":
                settle(stored, store)
                committed = DueIndex()
                for ticket_id, due in memory._due.items():
                    committed.schedule(ticket_id, due)
            else:  # reopen: what was not settled is gone
                stored = StoredDueIndex(store.db, DUE)
                memory = DueIndex()
                for ticket_id, due in committed._due.items():
                    memory.schedule(ticket_id, due)
            assert len(stored) == len(memory)
            assert dict(stored.items()) == memory._due
    finally:
        store.close()


@pytest.mark.parametrize("messages", ["an event", "none: only timers"])
def test_an_index_read_that_fails_fails_the_step_as_state_unavailable(
    presets: Any, tmp_path: Path, messages: str
) -> None:
    """A damaged block or a vanished file under the indexes fails the step as a failed
    state read does (the service gives the store up and restores the partition from the
    changelog), never with a raw RocksDB error that would stop the worker: with or
    without messages, a step reads the due index (the earliest entry, a ticket's due)."""
    partition = Partition(0, TicketProcessor(Engine(presets), None), TOPICS, timedelta(0))
    store = Store(tmp_path / "0", "unit", 0)
    keep_in(partition, store, count=0)
    store.db.close()  # every read fails from now on
    body = (
        b'{"event_id": "e1", "type": "ticket-created", "ticket_id": "A", "plan": "vip", '
        b'"priority": 1, "occurred_at": "2026-12-03T11:59:00+00:00"}'
    )
    inputs = [Message("tickets", 0, 0, b"A", body)] if messages == "an event" else []

    with pytest.raises(StateUnavailable, match="timer index"):
        partition.step(inputs, T0, T0)


def test_the_fingerprint_follows_the_policy_and_the_retention(presets: Any) -> None:
    day = timedelta(days=1)
    assert fingerprint(Engine(presets, day)) == fingerprint(Engine(presets, day))
    assert fingerprint(Engine(presets, day)) is not None
    assert fingerprint(Engine(presets, day)) != fingerprint(Engine(presets, 2 * day))


def test_the_fingerprint_follows_the_due_rules_and_the_calendar_data(
    presets: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An upgrade of the engine's due arithmetic (`DUE_RULES_VERSION`), of the holiday
    tables or of the time-zone data changes it; time-zone data of no known version
    makes it None: the stored indexes are then never trusted, always rebuilt."""
    from worker.kafka import stored_index

    engine = Engine(presets, timedelta(days=1))
    before = fingerprint(engine)
    monkeypatch.setattr(stored_index, "DUE_RULES_VERSION", stored_index.DUE_RULES_VERSION + 1)
    assert fingerprint(engine) not in (before, None)
    monkeypatch.undo()
    monkeypatch.setattr(stored_index.holidays, "__version__", "0.0-older")
    assert fingerprint(engine) not in (before, None)
    monkeypatch.undo()
    monkeypatch.setattr(stored_index, "tz_data_version", lambda: "1999a")
    assert fingerprint(engine) not in (before, None)
    monkeypatch.setattr(stored_index, "tz_data_version", lambda: None)
    assert fingerprint(engine) is None


def test_the_time_zone_data_version_is_the_one_zoneinfo_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """zoneinfo searches TZPATH in order: the first directory with zones gives the
    version (its tzdata.zi); one with zones and no tzdata.zi gives none (unknown)."""
    import zoneinfo

    from worker.kafka.stored_index import tz_data_version

    empty, versioned, bare = tmp_path / "empty", tmp_path / "versioned", tmp_path / "bare"
    for directory in (empty, versioned, bare):
        directory.mkdir()
    (versioned / "UTC").write_bytes(b"TZif")
    (versioned / "tzdata.zi").write_text("# version 2031c\n# ...\n")
    (bare / "UTC").write_bytes(b"TZif")
    try:
        monkeypatch.setattr(zoneinfo, "TZPATH", (str(empty), str(versioned), str(bare)))
        tz_data_version.cache_clear()
        assert tz_data_version() == "2031c"
        monkeypatch.setattr(zoneinfo, "TZPATH", (str(empty), str(bare), str(versioned)))
        tz_data_version.cache_clear()
        assert tz_data_version() is None
    finally:
        tz_data_version.cache_clear()
