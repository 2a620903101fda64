"""What a topic holds, read from outside the worker: its records up to the current end,
its end offsets; and topics made and removed for a run."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import TopicPartition


@dataclass(frozen=True)
class Record:
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    timestamp_ms: int
    partition: int
    offset: int


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    partitions = consumer.partitions_for_topic(topic)
    if not partitions:  # a topic the client has not seen yet
        await consumer._client.force_metadata_update()
        partitions = consumer.partitions_for_topic(topic) or set()
    return [TopicPartition(topic, p) for p in sorted(partitions)]


MARKER_WAIT = 5.0
"""Seconds `read_all` waits for a committed transaction's markers (see there)."""


def _reader(bootstrap: str, committed: bool) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        isolation_level="read_committed" if committed else "read_uncommitted",
        fetch_max_wait_ms=100,
    )


async def read_all(bootstrap: str, topic: str, *, committed: bool = True) -> list[Record]:
    """Every record of `topic` up to its current end, partition by partition.

    `committed` (read_committed, what a consumer of the outputs should use): without
    records of aborted transactions, and up to the high watermark once the last stable
    offset has reached it. A producer's commit returns once the coordinator has decided
    it; the markers that let read_committed readers see its records follow a moment
    later. So a read right after a commit waits for them, up to `MARKER_WAIT` seconds (a
    transaction still open after that is not committed, and is not read). Otherwise
    (read_uncommitted) everything written, aborted or not.
    """
    consumer = _reader(bootstrap, committed)
    await consumer.start()
    try:
        tps = await _partitions(consumer, topic)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        records: list[Record] = []
        remaining = set(tps)
        deadline = time.monotonic() + MARKER_WAIT
        while remaining:
            fetched = await consumer.getmany(*remaining, timeout_ms=200)
            for messages in fetched.values():
                records.extend(
                    Record(
                        m.key,
                        m.value or b"",
                        list(m.headers or []),
                        m.timestamp,
                        m.partition,
                        m.offset,
                    )
                    for m in messages
                )
            for tp in list(remaining):
                position = await consumer.position(tp)
                if position < ends[tp]:
                    continue
                if committed and time.monotonic() < deadline:
                    stable, high = consumer.last_stable_offset(tp), consumer.highwater(tp)
                    if stable is None or high is None or position < high:
                        continue  # no fetch answered yet, or markers still to come
                remaining.discard(tp)
        return records
    finally:
        await consumer.stop()


async def end_offsets(
    bootstrap: str, topics: list[str], *, committed: bool = True
) -> dict[tuple[str, int], int]:
    """{(topic, partition): end offset}: the last stable offset (`committed`), before
    any open transaction, or the high watermark, after everything written."""
    consumer = _reader(bootstrap, committed)
    try:
        # Started inside: a start that fails (the broker is down) still closes the client.
        await consumer.start()
        tps = [tp for topic in topics for tp in await _partitions(consumer, topic)]
        ends = await consumer.end_offsets(tps)
        return {(tp.topic, tp.partition): offset for tp, offset in ends.items()}
    finally:
        await consumer.stop()


async def create_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, partitions, 1) for n in names])
    finally:
        await admin.close()


async def delete_topics(bootstrap: str, prefix: str) -> list[str]:
    """Delete every topic whose name starts with `prefix` (a run's topics)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if names:
            await admin.delete_topics(names)
        return names
    finally:
        await admin.close()


async def wait_for_records(
    bootstrap: str, topic: str, count: int, *, timeout: float = 60, poll: float = 0.25
) -> list[Record]:
    """Until `topic` holds at least `count` committed records; all it holds then."""
    deadline = time.monotonic() + timeout
    while True:
        records = await read_all(bootstrap, topic)
        if len(records) >= count:
            return records
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{topic} holds {len(records)} records, not {count}, after {timeout} s"
            )
        await asyncio.sleep(poll)
