"""The broker the integration tests run against is a real Kafka: partitions, keys, groups."""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # fixture types, for editors; conftest is never imported by name
    from tests.integration.conftest import ConsumeJson, CreateTopic, ProduceJson

pytestmark = pytest.mark.kafka

KEYS = 50
PER_KEY = 20  # 50 keys x 20 = 1,000 messages
PARTITIONS = 3


async def test_keyed_json_round_trip_through_a_consumer_group(
    create_topic: CreateTopic, produce_json: ProduceJson, consume_json: ConsumeJson
) -> None:
    topic = await create_topic(partitions=PARTITIONS)
    # Interleave the keys the way a ticket stream does: seq 0 of every key, then seq 1, ...
    messages = [
        (f"ticket-{k:02d}", {"ticket": f"ticket-{k:02d}", "seq": seq})
        for seq in range(PER_KEY)
        for k in range(KEYS)
    ]

    placed = await produce_json(topic, messages)

    assert len(placed) == KEYS * PER_KEY
    assert {partition for partition, _ in placed} == set(range(PARTITIONS))

    records = await consume_json(topic, KEYS * PER_KEY, timeout=60)

    assert len(records) == KEYS * PER_KEY
    assert len({(partition, offset) for _, _, partition, offset in records}) == len(records)
    sequences: dict[str, list[int]] = defaultdict(list)
    partitions_of_key: dict[str, set[int]] = defaultdict(set)
    for key, value, partition, _offset in records:
        assert value["ticket"] == key
        sequences[key].append(value["seq"])
        partitions_of_key[key].add(partition)
    assert len(sequences) == KEYS
    # Kafka orders per partition, so every key reads back in the order it was written ...
    assert all(seqs == list(range(PER_KEY)) for seqs in sequences.values()), sequences
    # ... because the default partitioner sends all messages of a key to one partition.
    assert all(len(parts) == 1 for parts in partitions_of_key.values()), partitions_of_key
    # And the keys do spread over all partitions (50 keys hashed onto 3).
    assert set().union(*partitions_of_key.values()) == set(range(PARTITIONS))


async def test_consumer_group_resumes_after_committed_records(
    create_topic: CreateTopic, produce_json: ProduceJson, consume_json: ConsumeJson
) -> None:
    topic = await create_topic()
    await produce_json(topic, [("k", {"n": n}) for n in range(10)])

    first = await consume_json(topic, 4, group_id=f"{topic}-group")
    rest = await consume_json(topic, 6, group_id=f"{topic}-group")

    assert [value["n"] for _, value, _, _ in first] == [0, 1, 2, 3]
    assert [value["n"] for _, value, _, _ in rest] == [4, 5, 6, 7, 8, 9]
