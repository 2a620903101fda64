"""The committer sends a step's writes as record batches, one per topic partition: each
record where `send` would have put it, in order within its partition, and the changelog's
committed end read from the batches' first offsets."""

from __future__ import annotations

import pytest

from tests.kafka_fakes import FakeBatch, RecordingProducer
from worker.core.policy import Policy
from worker.kafka.committer import Committed, Committer
from worker.kafka.topics import default_partition
from worker.metrics import Metrics
from worker.tasks.partition import Batch, Write

CHANGELOG = "app-tickets-changelog"


async def commit(producer: RecordingProducer, presets: Policy, writes: list[Write]) -> Committed:
    committer = Committer(
        lambda number: producer, "app", CHANGELOG, Metrics(presets), 3, lambda: True
    )
    await committer.open(2)
    result = await committer.commit(Batch(2, writes=writes, offsets={("in", 2): 10}), 0.0)
    assert isinstance(result, Committed)
    return result


def output(key: bytes, value: bytes) -> Write:
    return Write("sla-breaches", key, value, (("ce_id", value),))


def state(key: bytes, value: bytes | None) -> Write:
    return Write(CHANGELOG, key, value, partition=2)


async def test_each_partition_gets_one_batch_in_order_keyed_records_by_murmur2(
    presets: Policy,
) -> None:
    producer = RecordingProducer()
    writes = [
        output(b"HD-1", b"b1"),
        state(b"HD-1", b"s1"),
        output(b"HD-2", b"b2"),
        state(b"HD-2", None),  # a tombstone
        output(b"HD-1", b"b3"),
        state(b"", b"clock"),
    ]
    await commit(producer, presets, writes)

    sent = {(topic, number): records for topic, number, records in producer.batches}
    assert sent[(CHANGELOG, 2)] == [(b"HD-1", b"s1", []), (b"HD-2", None, []), (b"", b"clock", [])]
    one, two = default_partition(b"HD-1", 6), default_partition(b"HD-2", 6)
    assert one != two  # the test means something
    assert sent[("sla-breaches", one)] == [
        (b"HD-1", b"b1", [("ce_id", b"b1")]),
        (b"HD-1", b"b3", [("ce_id", b"b3")]),
    ]
    assert sent[("sla-breaches", two)] == [(b"HD-2", b"b2", [("ce_id", b"b2")])]
    assert len(producer.batches) == 3
    [names] = producer.transactions()
    assert names == ["begin", "send", "send", "send", "offsets", "commit"]


async def test_a_full_batch_is_sent_and_the_next_one_started(
    presets: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The changelog's committed end counts every record of every batch (then the
    commit marker)."""
    monkeypatch.setattr(FakeBatch, "full_at", 2)
    producer = RecordingProducer()
    writes = [state(f"HD-{n}".encode(), b"s") for n in range(5)]

    result = await commit(producer, presets, writes)

    assert [len(records) for _, _, records in producer.batches] == [2, 2, 1]
    assert [key for *_, records in producer.batches for key, _, _ in records] == [
        w.key for w in writes
    ]
    # Offsets 101-105 (the fake's producer starts after 100): the end is 105 + 2.
    assert result.changelog_end == 107


async def test_a_record_without_key_or_partition_is_sent_on_its_own(presets: Policy) -> None:
    """The default partitioner picks a random partition for it, as `send` does."""
    producer = RecordingProducer()
    await commit(producer, presets, [Write("sla-dead-letters", None, b"x"), state(b"HD-1", b"s")])
    assert [call[:2] for call in producer.calls if call[0] == "send"] == [
        ("send", "sla-dead-letters"),
        ("send", CHANGELOG),
    ]
    assert [(topic, len(records)) for topic, _, records in producer.batches] == [(CHANGELOG, 1)]
