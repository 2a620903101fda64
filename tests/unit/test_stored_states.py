"""Ticket states kept in the partition's local store (`StoredStates`, `--state-dir`): a
step's writes are seen at once through the overlay, reach the store only once settled
(after the step's transaction committed), and a partition run on them decides exactly
what a partition run on a dict decides.

A real RocksDB (rocksdict) in a temporary directory; no Kafka (the snapshot's Kafka
side is tests/unit/test_snapshot.py, the kills tests/integration/test_faults.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.partitions import body, created
from worker.core.engine import Engine
from worker.core.policy import Policy
from worker.kafka.restorer import Restorer
from worker.kafka.snapshot import Store, StoredStates, index_ops, keep_in, settled
from worker.kafka.stored_index import FINGERPRINT, StoredDueIndex, fingerprint
from worker.metrics import Metrics
from worker.tasks.partition import CLOCK_KEY, Message, Partition, StateUnavailable, Topics
from worker.tasks.processor import TicketProcessor

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
TOPICS = Topics("warnings", "breaches", "dead", "changelog")


def entries(index: Any) -> dict[str, datetime]:
    return dict(index.items()) if isinstance(index, StoredDueIndex) else dict(index._due)


def indexes(partition: Partition) -> tuple[Any, ...]:
    """The state and every index a restore rebuilds (as tests/unit/test_standby.py)."""
    return (
        dict(partition.tickets.items()),
        entries(partition.clock.due),
        entries(partition.clock.holds),
        entries(partition.retirements),
        set(partition.at_risk),
        sorted(partition.unreadable),
        partition.clock.event_time,
        partition.offsets,
    )


def three_created(at: datetime) -> list[Message]:
    """Tickets X, Y and Z created at `at`, at offsets 0-2."""
    return [Message("tickets", 0, n, t.encode(), created(n, t, at)) for n, t in enumerate("XYZ")]


def commit_step(
    owner: Partition,
    store: Store,
    messages: list[Message],
    now: datetime,
    offset: int | None = None,
) -> None:
    """Step `owner` and settle the step in its store as a committed transaction would:
    the changelog records, the offset (default: as many as the records) and the indexes
    in one write."""
    batch = owner.step(messages, now, None)
    records = [(w.key or b"", w.value) for w in batch.writes if w.topic == "changelog"]
    store.write(records, len(records) if offset is None else offset, 0, index_ops(owner))
    settled(owner, records)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store(tmp_path / "0", "unit", 0)
    yield opened
    with contextlib.suppress(Exception):  # closed by the test already
        opened.close()


def test_writes_are_seen_at_once_and_reach_the_store_only_when_settled(store: Store) -> None:
    store.write([(b"A", b"a0"), (b"B", b"b0")], 2, 0)
    states = StoredStates(store)
    assert len(states) == 2

    states["A"] = b"a1"
    states["C"] = b"c1"
    del states["B"]

    assert dict(states.items()) == {"A": b"a1", "C": b"c1"} and len(states) == 2
    assert sorted(states) == ["A", "C"]  # ids alone (no value read) see the overlay too
    assert "B" not in states and states.get("B") is None and states.pop("B", None) is None
    assert dict(store.records()) == {b"A": b"a0", b"B": b"b0"}  # nothing committed yet

    written = [(b"A", b"a1"), (b"C", b"c1"), (b"B", None)]
    store.write(written, 5, 0)
    states.settle(written)

    assert states.overlay == {}
    assert dict(store.records()) == {b"A": b"a1", b"C": b"c1"}
    assert dict(states.items()) == {"A": b"a1", "C": b"c1"} and len(states) == 2


def test_settling_keeps_a_write_made_after_what_reached_the_store(store: Store) -> None:
    states = StoredStates(store, count=0)
    states["A"] = b"a1"
    written = [(b"A", b"a1")]
    states["A"] = b"a2"  # written again before the first write was settled

    store.write(written, 1, 0)
    states.settle(written)

    assert states["A"] == b"a2" and states.overlay == {"A": b"a2"}


def test_the_clock_record_is_not_a_ticket(store: Store) -> None:
    store.write([(CLOCK_KEY, b'{"event_time_us": null, "offsets": {}}'), (b"A", b"a")], 2, 0)
    assert list(StoredStates(store)) == ["A"]


def test_a_store_that_fails_a_read_fails_the_step_and_dead_letters_nothing(
    presets: Policy, store: Store
) -> None:
    partition = Partition(0, TicketProcessor(Engine(presets), None), TOPICS, timedelta(0))
    partition.tickets = StoredStates(store, count=0)
    store.db.close()
    message = Message("tickets", 0, 0, b"A", created(1, "A", NOW - timedelta(minutes=1)))

    with pytest.raises(StateUnavailable, match="'A'"):
        partition.step([message], NOW, NOW)


# --- a partition on stored states decides as one on a dict --------------------------------------

TICKETS = ["A", "B", "C", "D"]


@st.composite
def histories(draw: st.DrawFn) -> list[list[tuple[str, str, int]]]:
    """Steps of (ticket, event kind, minutes after the start) messages."""
    step = st.lists(
        st.tuples(
            st.sampled_from(TICKETS),
            st.sampled_from(["ticket-created", "solved", "reopened"]),
            st.integers(0, 90 * 24 * 60),
        ),
        max_size=4,
    )
    return draw(st.lists(step, min_size=1, max_size=8))


def event(n: int, ticket: str, kind: str, at: datetime) -> bytes:
    if kind == "ticket-created":
        return created(n, ticket, at)
    status = "solved" if kind == "solved" else "open"
    return body(n, "status-changed", ticket, at, status=status)


def run(
    partition: Partition, history: list[list[tuple[str, str, int]]], store: Store | None
) -> list[Any]:
    """Step `partition` through `history` (the step's changelog records written to
    `store` and settled after each, as a commit does); returns what each step wrote."""
    start = NOW - timedelta(days=120)
    offset, outputs = 0, []
    for number, step in enumerate(history):
        messages = []
        for ticket, kind, minutes in sorted(step, key=lambda m: m[2]):
            at = start + timedelta(minutes=minutes)
            value = event(offset, ticket, kind, at)
            messages.append(Message("tickets", 0, offset, ticket.encode(), value))
            offset += 1
        batch = partition.step(messages, NOW + timedelta(minutes=number), None)
        outputs.append([(w.topic, w.key, w.value) for w in batch.writes])
        if store is not None:
            records = [(w.key or b"", w.value) for w in batch.writes if w.topic == "changelog"]
            store.write(records, offset, 0, index_ops(partition))
            settled(partition, records)
    return outputs


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(history=histories())
def test_a_partition_on_stored_states_decides_as_one_on_a_dict(
    presets: Policy, tmp_path_factory: pytest.TempPathFactory, history: list[list[Any]]
) -> None:
    """Same steps, same writes, same state and indexes; and the store, reopened and
    loaded as a restart's snapshot, rebuilds indexes equal to the running ones."""
    processor = TicketProcessor(Engine(presets, timedelta(days=30)), None)
    in_memory = Partition(0, processor, TOPICS, timedelta(0))
    path = tmp_path_factory.mktemp("store")
    store = Store(path, "unit", 0)
    try:
        stored = Partition(0, processor, TOPICS, timedelta(0))
        keep_in(stored, store, count=0)

        assert run(stored, history, store) == run(in_memory, history, None)
        assert indexes(stored) == indexes(in_memory)
        assert len(stored.tickets) == len(in_memory.tickets)
        assert stored.tickets.overlay == {}  # type: ignore[attr-defined]
        assert {k.decode(): v for k, v in store.records() if k} == in_memory.tickets

        # A restart: the snapshot loaded with its indexes as stored (this engine's
        # fingerprint), then once more with indexes rebuilt from the stored states.
        in_memory.clock.read_through = None
        restorer = Restorer(None, "changelog", Metrics(presets))  # type: ignore[arg-type]
        store.db.put(FINGERPRINT, fingerprint(processor.engine))
        for as_stored in (True, False):
            if not as_stored:
                store.db.delete(FINGERPRINT)
            restarted = Partition(0, processor, TOPICS, timedelta(0))
            assert asyncio.run(restorer.load(restarted, store)) is as_stored
            restarted.offsets = in_memory.offsets  # the offsets live in the clock record,
            assert indexes(restarted)[:6] == indexes(in_memory)[:6]  # written by commits
            assert len(restarted.tickets) == len(in_memory.tickets)
    finally:
        store.close()


def test_a_loaded_snapshot_is_the_clock_and_the_tickets_of_the_store(
    presets: Policy, store: Store
) -> None:
    processor = TicketProcessor(Engine(presets, timedelta(days=30)), None)
    owner = Partition(0, processor, TOPICS, timedelta(0))
    keep_in(owner, store, count=0)
    at = NOW - timedelta(hours=1)
    commit_step(owner, store, three_created(at), NOW)

    loaded = Partition(0, processor, TOPICS, timedelta(0))
    restorer = Restorer(None, "changelog", Metrics(presets))  # type: ignore[arg-type]
    assert asyncio.run(restorer.load(loaded, store)) is False  # no fingerprint: rebuilt

    assert len(loaded.tickets) == 3 and sorted(loaded.tickets) == ["X", "Y", "Z"]
    assert loaded.offsets == {"tickets": 3} and loaded.clock.event_time == at
    assert json.loads(loaded.tickets["X"])["id"] == "X"
    assert indexes(loaded) == indexes(owner)
    assert store.db.get(FINGERPRINT) == fingerprint(processor.engine)  # the next: as stored
    again = Partition(0, processor, TOPICS, timedelta(0))
    assert asyncio.run(restorer.load(again, store)) is True
    assert indexes(again) == indexes(owner)


def test_a_policy_that_changed_while_the_worker_was_down_rebuilds_the_indexes(
    presets: Policy, store: Store
) -> None:
    """Indexes computed under another policy or retention may hold deadlines later than
    this one's: they are never used, but rebuilt from the states."""
    day = timedelta(days=30)
    owner = Partition(0, TicketProcessor(Engine(presets, day), None), TOPICS, timedelta(0))
    keep_in(owner, store, count=0)
    message = Message("tickets", 0, 0, b"X", created(0, "X", NOW))
    commit_step(owner, store, [message], NOW, offset=1)
    store.db.put(FINGERPRINT, fingerprint(owner.processor.engine))

    other = TicketProcessor(Engine(presets, 2 * day), None)
    loaded = Partition(0, other, TOPICS, timedelta(0))
    restorer = Restorer(None, "changelog", Metrics(presets))  # type: ignore[arg-type]

    assert asyncio.run(restorer.load(loaded, store)) is False
    assert store.db.get(FINGERPRINT) == fingerprint(other.engine)
    assert entries(loaded.clock.due) == entries(owner.clock.due)


def test_a_restart_from_the_stored_indexes_files_the_exact_instants_of_past_bounds(
    tmp_path: Path,
) -> None:
    """The event path files a running goal timer at a lower bound (business time runs
    no faster than wall time), which the stored due index keeps. A restart after the
    weekend finds it past: it files the ticket's exact due instant before the partition
    runs, as a restore from the changelog does, rather than let the first step take
    every past bound at once. Bounds not yet due stay as they are."""
    from worker.policy_file import load_policy

    policy = load_policy(Path(__file__).parent.parent / "data" / "goals-policy.yaml")
    processor = TicketProcessor(Engine(policy, timedelta(days=30)), None)
    friday = datetime(2026, 12, 4, 15, 0, tzinfo=UTC)  # 16:00 in Berlin, an hour before close
    store = Store(tmp_path / "0", "unit", 0)
    owner = Partition(0, processor, TOPICS, timedelta(0))
    keep_in(owner, store, count=0)
    value = body(0, "ticket-created", "X", friday, customer_id="acme", group="emea", plan="pro")
    value = json.dumps({**json.loads(value), "priority": 3}).encode()
    commit_step(owner, store, [Message("tickets", 0, 0, b"X", value)], friday, offset=1)
    store.db.put(FINGERPRINT, fingerprint(processor.engine))
    bound = owner.clock.due.get("X")
    assert bound is not None and bound < datetime(2026, 12, 5, tzinfo=UTC)  # Friday evening
    restorer = Restorer(None, "changelog", Metrics(policy))  # type: ignore[arg-type]
    in_ram = Partition(0, processor, TOPICS, timedelta(0))  # a restore from the changelog
    for key, val in store.records():
        in_ram.load(key, val)
    list(in_ram.rebuild())
    exact = in_ram.clock.due.get("X")
    assert exact is not None and exact > bound

    on_friday = Partition(0, processor, TOPICS, timedelta(0))
    assert asyncio.run(restorer.load(on_friday, store, now=friday)) is True
    assert on_friday.clock.due.get("X") == bound  # not due yet: as stored

    on_monday = Partition(0, processor, TOPICS, timedelta(0))
    monday = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)
    try:
        assert asyncio.run(restorer.load(on_monday, store, now=monday)) is True
        assert on_monday.clock.due.get("X") == exact
    finally:
        store.close()


def test_an_upgrade_of_the_holiday_data_rebuilds_the_indexes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stored due instants depend on more than the policy: a calendar names a country,
    and its dates come from the `holidays` package (so, likewise, the time-zone data and
    the engine's own due rules). After an upgrade whose data dropped a holiday, the
    indexes are rebuilt, not trusted: the instant they held is a day late."""
    from worker.core import calendar as calendar_module
    from worker.policy_file import load_policy

    policy_file = Path(__file__).parent.parent / "data" / "goals-policy.yaml"
    real = calendar_module.holidays_lib.country_holidays

    def old_data(country: str, subdiv: Any = None) -> Any:  # the previous release's table
        table = real(country, subdiv=subdiv)
        table[date(2026, 12, 7)] = "a holiday the new data no longer has"
        return table

    monkeypatch.setattr(calendar_module.holidays_lib, "country_holidays", old_data)
    monkeypatch.setattr(calendar_module.holidays_lib, "__version__", "0.1")
    old = TicketProcessor(Engine(load_policy(policy_file), timedelta(days=30)), None)
    friday = datetime(2026, 12, 4, 15, 0, tzinfo=UTC)  # 16:00 in Berlin, an hour before close
    store = Store(tmp_path / "0", "unit", 0)
    owner = Partition(0, old, TOPICS, timedelta(0))
    keep_in(owner, store, count=0)
    value = body(0, "ticket-created", "X", friday, customer_id="acme", group="emea", plan="pro")
    value = json.dumps({**json.loads(value), "priority": 3}).encode()
    commit_step(owner, store, [Message("tickets", 0, 0, b"X", value)], friday, offset=3)
    restorer = Restorer(None, "changelog", Metrics(old.engine.policy))  # type: ignore[arg-type]
    asyncio.run(restorer.rebuild(owner))  # exact instants, and the fingerprint, stored
    assert owner.clock.due.get("X") == datetime(2026, 12, 8, 10, 0, tzinfo=UTC)  # Tuesday
    store.close()

    monkeypatch.setattr(calendar_module.holidays_lib, "country_holidays", real)  # upgraded
    monkeypatch.setattr(calendar_module.holidays_lib, "__version__", "0.2")
    new = TicketProcessor(Engine(load_policy(policy_file), timedelta(days=30)), None)
    store = Store(tmp_path / "0", "unit", 0)
    restarted = Partition(0, new, TOPICS, timedelta(0))
    try:
        assert asyncio.run(restorer.load(restarted, store)) is False  # rebuilt
        assert restarted.clock.due.get("X") == datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
    finally:
        store.close()


def test_counting_the_timers_holds_no_store_open_between_its_chunks(
    presets: Policy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The timer gauges of a partition loaded from its snapshot are filled in beside
    the loop, a chunk per turn. Between two chunks the partition may be revoked and its
    store closed, then opened again (it came back): no iterator of the counting is
    left to keep the closed store open (reopening it would fail)."""
    from worker.kafka import restorer as restorer_module

    monkeypatch.setattr(restorer_module, "GAUGE_CHUNK", 1)
    path = tmp_path / "0"
    store = Store(path, "unit", 0)
    processor = TicketProcessor(Engine(presets, timedelta(days=30)), None)
    owner = Partition(0, processor, TOPICS, timedelta(0))
    keep_in(owner, store, count=0)
    at = NOW - timedelta(hours=1)
    commit_step(owner, store, three_created(at), NOW)
    restorer = Restorer(None, "changelog", Metrics(presets))  # type: ignore[arg-type]
    held = [True]

    async def revoked_while_counting() -> int:
        counting = asyncio.create_task(restorer.count_timers(owner, lambda: held[0]))
        await asyncio.sleep(0)  # a chunk counted; the counting waits for the next turn
        held[0] = False
        store.close()  # revoked
        Store(path, "unit", 0).close()  # it came back: opened again
        return await counting

    assert asyncio.run(revoked_while_counting()) == 1


def test_a_rebuild_cut_short_leaves_indexes_the_next_start_does_not_trust(
    presets: Policy, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A policy reload (or a restore) rebuilds the stored indexes chunk by chunk, each
    chunk written as it goes: the fingerprint goes first and comes back only with the
    last chunk, so a crash in between makes the next start rebuild again."""
    from worker.kafka import restorer as restorer_module

    monkeypatch.setattr(restorer_module, "REBUILD_CHUNK", 1)
    processor = TicketProcessor(Engine(presets, timedelta(days=30)), None)
    owner = Partition(0, processor, TOPICS, timedelta(0))
    keep_in(owner, store, count=0)
    at = NOW - timedelta(hours=1)
    commit_step(owner, store, three_created(at), NOW)
    restorer = Restorer(None, "changelog", Metrics(presets))  # type: ignore[arg-type]
    asyncio.run(restorer.rebuild(owner))
    assert store.db.get(FINGERPRINT) == fingerprint(processor.engine)

    async def cut_short() -> None:
        rebuilding = asyncio.create_task(restorer.rebuild(owner))
        await asyncio.sleep(0)  # one chunk written
        rebuilding.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await rebuilding

    asyncio.run(cut_short())

    assert store.db.get(FINGERPRINT) is None
    again = Partition(0, processor, TOPICS, timedelta(0))
    assert asyncio.run(restorer.load(again, store)) is False  # rebuilt, not trusted
    assert indexes(again) == indexes(owner)
