"""One partition's step, without Kafka: what one transaction must carry, and what it
must leave alone. The service commits a step's `Batch` atomically or not at all."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from worker.core.engine import Engine
from worker.core.limits import InputLimits
from worker.core.policy import Policy
from worker.kafka.assignment import plan
from worker.tasks.partition import CLOCK_KEY, DEAD_LETTER_PREFIX, Batch, Message, Partition, Topics
from worker.tasks.processor import TicketProcessor

TOPICS = Topics("warnings", "breaches", "dead", "changelog")
T0 = datetime(2026, 11, 24, 10, tzinfo=UTC)  # a Tuesday, 10:00 UTC
MIN = timedelta(minutes=1)


def event(n: int, kind: str, ticket: str, at: datetime, **fields: Any) -> dict[str, Any]:
    iso = at.isoformat().replace("+00:00", "Z")
    return {"event_id": f"e{n}", "type": kind, "ticket_id": ticket, "occurred_at": iso, **fields}


def created(n: int, ticket: str, at: datetime) -> dict[str, Any]:
    # vip, priority 1: first response within an hour, around the clock.
    return event(n, "ticket-created", ticket, at, plan="vip", priority=1)


def message(
    body: dict[str, Any] | bytes,
    offset: int,
    key: bytes | None = None,
    produced: datetime | None = None,
) -> Message:
    """An input message; `produced`: its Kafka timestamp (None: the record has none)."""
    value = body if isinstance(body, bytes) else json.dumps(body).encode()
    if key is None and isinstance(body, dict):
        key = body["ticket_id"].encode()
    ms = None if produced is None else round(produced.timestamp() * 1000)
    return Message("tickets", 0, offset, key, value, timestamp_ms=ms)


@pytest.fixture
def partition(presets: Policy) -> Partition:
    return Partition(0, TicketProcessor(Engine(presets), None), TOPICS, timedelta(0))


def topics_of(batch: Batch) -> list[str]:
    return [write.topic for write in batch.writes]


def test_one_step_carries_outputs_state_and_offsets_together(partition: Partition) -> None:
    late = T0 + 90 * MIN
    batch = partition.step(
        [
            message(created(1, "A", T0), 7),
            message(event(2, "reply-sent", "B", T0, author="agent"), 8),
        ],
        now=late,
        read_through=late,
    )
    # Ticket A's state, the event time, B's dead letter (unknown ticket), then A's warning
    # and breach fired on the wall clock (caught up, 90 minutes later): one transaction.
    assert sorted(topics_of(batch)) == sorted(
        ["changelog", "dead", "warnings", "breaches", "changelog", "changelog"]
    )
    assert batch.offsets == {("tickets", 0): 9}
    assert [o.applied for o in batch.inputs] == [True, False]
    assert {e.type for e in batch.published} == {"sla-warning", "sla-breach"}
    assert [letter.reason for letter in batch.dead_letters] == ["unknown-ticket"]


def test_a_dead_lettered_event_keeps_its_tickets_timer(partition: Partition) -> None:
    """Issue #11, bug 1: a malformed event keyed by an existing ticket used to cancel the
    ticket's timer. Its warning and breach must still fire."""
    partition.step([message(created(1, "A", T0), 0)], T0, read_through=T0)
    bad = {**event(2, "reply-sent", "A", T0, author="agent"), "occurred_at": "not a time"}
    batch = partition.step([message(bad, 1)], T0 + MIN, read_through=T0 + MIN)
    assert [letter.reason for letter in batch.dead_letters] == ["invalid-field"]
    # The ticket's state is untouched: only the partition's own record (offsets) is written.
    assert [w.key for w in batch.writes if w.topic == "changelog"] == [CLOCK_KEY]
    fired = partition.step([], T0 + 61 * MIN, read_through=T0 + 61 * MIN)
    assert {e.type for e in fired.published} == {"sla-warning", "sla-breach"}


def test_rejected_input_never_moves_event_time(partition: Partition) -> None:
    """An event for an unknown ticket dated 2099 must not fire other tickets' timers."""
    partition.step([message(created(1, "A", T0), 0)], T0, read_through=None)
    far = event(2, "reply-sent", "NOPE", datetime(2099, 1, 1, tzinfo=UTC), author="agent")
    batch = partition.step([message(far, 1)], T0 + 90 * MIN, read_through=None)
    assert batch.published == [] and partition.clock.event_time == T0


def test_a_step_with_nothing_to_do_commits_nothing(partition: Partition) -> None:
    assert not partition.step([], T0, read_through=T0)


def test_a_restored_partition_continues_exactly(partition: Partition, presets: Policy) -> None:
    """What the changelog holds after a step is what a new owner needs: the tickets and
    the event time, so it fires the same warnings and breaches."""
    batch = partition.step([message(created(1, "A", T0), 0)], T0, read_through=None)
    restored = Partition(0, TicketProcessor(Engine(presets), None), TOPICS, timedelta(0))
    for write in batch.writes:
        if write.topic == "changelog":
            assert write.partition == 0
            restored.load(write.key or b"", write.value)
    assert len(list(restored.rebuild())) == 1
    assert restored.clock.event_time == T0 and restored.offsets == {"tickets": 1}
    later = event(2, "ticket-created", "B", T0 + 90 * MIN, plan="vip", priority=1)
    original = partition.step([message(later, 1)], T0 + 90 * MIN, read_through=None)
    again = restored.step([message(later, 1)], T0 + 90 * MIN, read_through=None)
    assert [e.event_id for e in original.published] == [e.event_id for e in again.published]
    assert len(again.published) == 2


def test_the_clock_record_uses_the_empty_key_no_ticket_can_have(partition: Partition) -> None:
    batch = partition.step([message(created(1, "A", T0), 0)], T0, read_through=None)
    clock = [w for w in batch.writes if w.key == CLOCK_KEY]
    assert len(clock) == 1 and json.loads(clock[0].value or b"") == {
        "event_time_us": (T0 - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1),
        "offsets": {"tickets": 1},  # committed with the group's offsets, in one transaction
    }
    keyless = partition.step([message(created(2, "B", T0), 1, key=b"")], T0, read_through=None)
    assert [letter.reason for letter in keyless.dead_letters] == ["missing-key"]
    assert keyless.state_changes == [] and "B" not in partition.tickets


def test_unreadable_state_is_skipped_on_restore_and_dead_letters_its_next_event(
    partition: Partition,
) -> None:
    partition.load(b"A", b'{"v": 99}')
    assert list(partition.rebuild()) == [] and partition.unreadable == ["A"]
    reply = event(1, "reply-sent", "A", T0, author="agent")
    batch = partition.step([message(reply, 0)], T0, read_through=T0)
    assert [letter.reason for letter in batch.dead_letters] == ["unreadable-state"]


# --- who owns which partition ---------------------------------------------------------------


def test_partitions_are_spread_evenly_and_owners_keep_theirs() -> None:
    assert plan(6, {"a": []}) == {"a": [0, 1, 2, 3, 4, 5]}
    assert plan(6, {"a": [0, 1, 2, 3, 4, 5], "b": []}) == {"a": [0, 1, 2], "b": [3, 4, 5]}
    # A newcomer takes only what it must; the others keep what they hold.
    assert plan(6, {"a": [1, 3, 5], "b": [0, 2, 4], "c": []}) == {
        "a": [1, 3],
        "b": [0, 2],
        "c": [4, 5],
    }
    # A partition claimed twice (after a split brain) goes to one member only.
    layout = plan(4, {"a": [0, 1], "b": [1, 2]})
    assert sorted(p for ps in layout.values() for p in ps) == [0, 1, 2, 3]
    assert plan(2, {"a": [], "b": [], "c": []}) == {"a": [0], "b": [1], "c": []}
    assert plan(3, {}) == {}


def test_a_too_large_message_keeps_a_prefix_in_its_dead_letter(presets: Policy) -> None:
    processor = TicketProcessor(Engine(presets), None, InputLimits(max_bytes=100_000))
    partition = Partition(0, processor, TOPICS, timedelta(0))
    huge = b"x" * 200_000
    batch = partition.step([message(huge, 0, key=b"A")], T0, read_through=T0)
    (write,) = [w for w in batch.writes if w.topic == "dead"]
    assert write.value == huge[:DEAD_LETTER_PREFIX]
    assert dict(write.headers)["sla-dlq-truncated-from"] == b"200000"
    assert dict(write.headers)["sla-dlq-reason"] == b"too-large"


def test_finished_timers_go_to_their_topic_in_the_same_step(presets: Policy) -> None:
    topics = Topics("warnings", "breaches", "dead", "changelog", finished="finished")
    partition = Partition(0, TicketProcessor(Engine(presets), None), topics, timedelta(0))
    partition.step([message(created(1, "A", T0), 0)], T0, read_through=T0)
    batch = partition.step(
        [message(event(2, "reply-sent", "A", T0 + 5 * MIN, author="agent"), 1)],
        T0 + 5 * MIN,
        read_through=T0 + 5 * MIN,
    )
    (write,) = [w for w in batch.writes if w.topic == "finished"]
    assert write.key == b"A" and "changelog" in topics_of(batch)
    record = json.loads(write.value or b"")
    assert (record["type"], record["result"], record["business_time"]) == (
        "sla-timer-finished",
        "met",
        "PT5M",
    )
    # Off by default: the same step without the topic writes no such record.
    plain = Partition(0, TicketProcessor(Engine(presets), None), TOPICS, timedelta(0))
    plain.step([message(created(1, "A", T0), 0)], T0, read_through=T0)
    again = plain.step(
        [message(event(2, "reply-sent", "A", T0 + 5 * MIN, author="agent"), 1)],
        T0 + 5 * MIN,
        read_through=T0 + 5 * MIN,
    )
    assert "finished" not in topics_of(again) and len(again.writes) == len(batch.writes) - 1


# --- when could the worker first know a deadline? (breach publication lateness) -------------


def breaches(batch: Batch) -> list[tuple[datetime, datetime | None]]:
    """(due_at, known_at) of each breach the step published."""
    return [
        (event.due_at, outcome.known_at)
        for outcome in (*batch.inputs, *batch.timers)
        for event in outcome.publish
        if event.type == "sla-breach"
    ]


def test_a_ticket_created_after_its_deadline_is_known_from_its_record(
    partition: Partition,
) -> None:
    """Issue #25: created an hour and five minutes ago (a late upstream, a backfill), its
    first response was due 5 minutes before the record was produced: the breach that fires
    at once counts from the record's timestamp, not from the deadline."""
    produced = T0 + 65 * MIN
    now = produced + timedelta(seconds=0.2)
    batch = partition.step([message(created(1, "A", T0), 0, produced=produced)], now, now)
    assert breaches(batch) == [(T0 + 60 * MIN, produced)]
    assert partition.known_since == {}  # fired: nothing left to remember


def test_a_late_ticket_remembers_its_record_until_its_timer_fires(presets: Policy) -> None:
    """Waiting for its allowed lateness, the late ticket's breach fires in a later step
    (no input record): it still counts from the record that made it known."""
    waiting = Partition(0, TicketProcessor(Engine(presets), None), TOPICS, timedelta(seconds=5))
    produced = T0 + 60 * MIN + timedelta(seconds=2)
    batch = waiting.step([message(created(1, "A", T0), 0, produced=produced)], produced, produced)
    assert breaches(batch) == []
    assert waiting.known_since == {"A": produced}
    later = produced + timedelta(seconds=10)
    batch = waiting.step([], later, later)
    assert breaches(batch) == [(T0 + 60 * MIN, produced)]
    assert waiting.known_since == {}


def test_a_deadline_known_in_time_counts_from_the_deadline(partition: Partition) -> None:
    """A ticket produced as it happened: its breach, fired by the clock, or published with
    a reply produced long after the deadline (the worker was behind), counts from the
    deadline: that lateness is the worker's."""
    partition.step([message(created(1, "A", T0), 0, produced=T0)], T0, T0)
    fired = partition.step([], T0 + 61 * MIN, T0 + 61 * MIN)
    assert breaches(fired) == [(T0 + 60 * MIN, None)]

    partition.step([message(created(2, "B", T0), 1, produced=T0)], T0, None)  # behind
    reply = event(3, "reply-sent", "B", T0 + 80 * MIN, author="agent")
    late = T0 + 90 * MIN
    batch = partition.step([message(reply, 2, produced=late)], late, None)
    assert breaches(batch) == [(T0 + 60 * MIN, None)]


def test_a_reclassification_past_its_new_deadline_is_known_from_its_record(
    partition: Partition,
) -> None:
    """advanced, priority 3 (6 business hours) reclassified to 1 (1 hour, 24/7) 70 minutes
    after creation: the new deadline passed 10 minutes before the record said so."""
    opened = event(1, "ticket-created", "A", T0, plan="advanced", priority=3)
    partition.step([message(opened, 0, produced=T0)], T0, T0)
    produced = T0 + 70 * MIN
    raised = event(2, "priority-changed", "A", produced, priority=1)
    batch = partition.step([message(raised, 1, produced=produced)], produced, produced)
    assert breaches(batch) == [(T0 + 60 * MIN, produced)]


def test_a_record_without_a_timestamp_falls_back_to_its_occurred_at(
    partition: Partition,
) -> None:
    """No Kafka timestamp (-1): the record's occurred_at is the best known instant, so a
    late-created ticket counts from its deadline as before, and a reclassification from
    the event."""
    now = T0 + 65 * MIN
    batch = partition.step([message(created(1, "A", T0), 0, produced=None)], now, now)
    assert breaches(batch) == [(T0 + 60 * MIN, None)]
    assert Message("tickets", 0, 0, None, None, timestamp_ms=-1).timestamp is None
    assert Message("tickets", 0, 0, None, None, timestamp_ms=1_000).timestamp == datetime(
        1970, 1, 1, 0, 0, 1, tzinfo=UTC
    )


def test_the_late_ticket_s_breach_is_not_late_in_the_metric(presets: Policy) -> None:
    """End to end on the wall clock, as the service does: Partition, then Metrics. Before
    issue #25 this observed the 5 minutes between deadline and record."""
    from worker.metrics import Metrics

    metrics = Metrics(presets)
    partition = Partition(0, TicketProcessor(Engine(presets), None), TOPICS, timedelta(0))
    now = datetime.now(UTC)
    produced = now - timedelta(seconds=0.2)
    record = message(created(1, "A", now - 65 * MIN), 0, produced=produced)
    batch = partition.step([record], now, now)
    metrics.step(batch, 0.01)
    get = metrics.registry.get_sample_value
    assert get("sla_breach_publication_lateness_seconds_count") == 1
    assert get("sla_breach_publication_lateness_seconds_bucket", {"le": "1.0"}) == 1


def test_a_restored_goal_ticket_is_filed_at_its_exact_due_instant() -> None:
    """Under a goal policy the event path files a running timer at a lower bound of its
    due instant (business time runs no faster than wall time) and computes the exact one
    when the bound comes due. A restore files the exact instant at once: the bounds of
    tickets stored on a Friday afternoon are past by Saturday, and a restore on Saturday
    must not take every such ticket in its first step only to find nothing due."""
    from worker.policy_file import load_policy

    goals = load_policy(Path(__file__).resolve().parents[1] / "data" / "goals-policy.yaml")
    friday = datetime(2026, 11, 27, 14, tzinfo=UTC)  # 15:00 in Berlin
    saturday = friday + timedelta(hours=20)
    # The enterprise goal (customer acme) on the eu calendar (group emea, Mon-Fri 9-17
    # Berlin): first response PT4H, warned at 75 %: 3 business hours, 2 of them on
    # Friday, the third on Monday 09:00-10:00 Berlin.
    warning = datetime(2026, 11, 30, 9, tzinfo=UTC)
    body = event(1, "ticket-created", "A", friday, plan="pro", priority=3,
                 customer_id="acme", group="emea")  # fmt: skip
    live = Partition(0, TicketProcessor(Engine(goals), None), TOPICS, timedelta(0))
    batch = live.step([message(body, 0)], friday, read_through=friday)
    bound = live.clock.due.get("A")
    assert bound is not None and friday < bound < warning  # the event path's lower bound

    restored = Partition(0, TicketProcessor(Engine(goals), None), TOPICS, timedelta(0))
    for write in batch.writes:
        if write.topic == "changelog":
            restored.load(write.key or b"", write.value)
    assert len(list(restored.rebuild())) == 1
    assert restored.clock.due.get("A") == warning

    # Saturday: nothing is due on either; the live partition takes the ticket at its bound,
    # finds nothing due and files it at the exact instant, without a write.
    for owner in (live, restored):
        assert not owner.step([], saturday, read_through=saturday)
        assert owner.clock.due.get("A") == warning
    # Monday 09:00 UTC: both warn, at the same instant, with the same id.
    monday = warning + timedelta(seconds=1)
    fired = [owner.step([], monday, read_through=monday).published for owner in (live, restored)]
    assert [e.event_id for e in fired[0]] == [e.event_id for e in fired[1]]
    assert [(e.type, e.due_at) for e in fired[0]] == [("sla-warning", warning)]
