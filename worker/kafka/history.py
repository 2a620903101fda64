"""Read topics' history read-only, in batches, merged into one event-time order.

For audits: no consumer group, no commits, partitions assigned by hand, `read_committed`.
The window is fixed when the run starts: its start is an offset per partition (the first
record at or after a timestamp, or the beginning), its end the offsets of the first
record at or after the end timestamp, or the partitions' ends at that moment. Records
produced later are not read, so a run is a snapshot.

Partitions are merged by their event time (`occurred_at`, never going back within a
partition), then topic, partition and offset: one partition's order is kept, as the
worker keeps it, and the order is the same on every run. The merge orders the audit's
output and its `--events` file; it decides nothing else, since the audit keeps an
event-time clock per partition, as the worker does.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition
from pydantic_core import from_json

BATCH = 10_000


class Record(NamedTuple):
    """One record as read (a tuple: made once per record, three times cheaper than a
    frozen dataclass)."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes


_NEVER = datetime.min.replace(tzinfo=UTC)

MergeKey = tuple[datetime, str, int, int]
"""(event time, topic, partition, offset)."""


@dataclass
class _Cursor:
    tp: TopicPartition
    end: int
    buffer: deque[Record] = field(default_factory=deque)
    position: int = 0
    time: datetime = _NEVER  # the partition's event time so far: the latest occurred_at

    def take(self) -> tuple[MergeKey, Record]:
        """The next record and its merge key. The key never goes back within a partition
        (a record without a readable `occurred_at`, or dated before an earlier one, sorts
        at the partition's event time so far), so the merge is a true merge: a hostile or
        late record never holds back the records after it, as in the worker, where such a
        record does not move its partition's event time either."""
        record = self.buffer.popleft()
        at = occurred_at(record)
        if at is not None and at > self.time:
            self.time = at
        return (self.time, self.tp.topic, self.tp.partition, record.offset), record


def occurred_at(record: Record) -> datetime | None:
    """The record's `occurred_at` in UTC, if it has a readable one.

    Parsed with pydantic-core's JSON parser (the one replay validates with; four times
    faster than `json.loads` on an event): the same object, a duplicate key's last value
    winning, invalid JSON refused. An instant already in UTC is used as parsed (UTC
    datetimes compare without calling `utcoffset`)."""
    try:
        data = from_json(record.value)
        raw = data.get("occurred_at") if isinstance(data, dict) else None
        if isinstance(raw, str):
            at = datetime.fromisoformat(raw)
            return at if at.tzinfo is UTC else at.astimezone(UTC)
    except (ValueError, TypeError, OverflowError, RecursionError):
        pass
    return None


async def merged_history(
    options: dict[str, Any],
    topics: list[str],
    start: datetime | None,
    end: datetime | None,
    on_progress: Callable[[int, int], None] | None = None,
) -> AsyncIterator[Record]:
    """Every record of `topics` in the window, merged by event time (see module doc).
    `on_progress(read, total)` is called after each fetched batch."""
    async for batch in merged_batches(options, topics, start, end, on_progress):
        for record in batch:
            yield record


async def merged_batches(
    options: dict[str, Any],
    topics: list[str],
    start: datetime | None,
    end: datetime | None,
    on_progress: Callable[[int, int], None] | None = None,
) -> AsyncIterator[list[Record]]:
    """`merged_history` in lists of consecutive records: one step of the async iterator
    per list, not per record (what an audit of a million records iterates over)."""
    partitions = await _partitions(options, topics)
    consumer = AIOKafkaConsumer(
        **options,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        cursors = await _open(consumer, partitions, start, end)
        total = sum(c.end - c.position for c in cursors)
        read = 0
        heap: list[tuple[MergeKey, int, Record]] = []
        for n, cursor in enumerate(cursors):
            read += await _fill(consumer, cursor)
            if cursor.buffer:
                key, record = cursor.take()
                heapq.heappush(heap, (key, n, record))
        if on_progress:
            on_progress(read, total)
        ready: list[Record] = []
        while heap:
            _, n, record = heapq.heappop(heap)
            ready.append(record)
            cursor = cursors[n]
            if not cursor.buffer and cursor.position < cursor.end:
                yield ready  # before waiting for the broker
                ready = []
                read += await _fill(consumer, cursor)
                if on_progress:
                    on_progress(read, total)
            if cursor.buffer:
                key, following = cursor.take()
                heapq.heappush(heap, (key, n, following))
        if ready:
            yield ready
    finally:
        await consumer.stop()


async def _open(
    consumer: AIOKafkaConsumer,
    partitions: dict[str, list[int]],
    start: datetime | None,
    end: datetime | None,
) -> list[_Cursor]:
    tps = [TopicPartition(topic, p) for topic, ps in partitions.items() for p in ps]
    consumer.assign(tps)
    firsts = await consumer.beginning_offsets(tps)
    lasts = await consumer.end_offsets(tps)
    starts = dict(firsts) if start is None else await _offsets_at(consumer, tps, start, lasts)
    ends = dict(lasts) if end is None else await _offsets_at(consumer, tps, end, lasts)
    cursors = []
    for tp in tps:
        cursor = _Cursor(tp, ends[tp], position=starts[tp])
        consumer.seek(tp, cursor.position)
        cursors.append(cursor)
    return cursors


async def partition_counts(options: dict[str, Any], topics: list[str]) -> dict[str, int]:
    """How many partitions each topic has (`ValueError` naming a topic that is missing)."""
    return {topic: len(numbers) for topic, numbers in (await _partitions(options, topics)).items()}


async def _partitions(options: dict[str, Any], topics: list[str]) -> dict[str, list[int]]:
    admin = AIOKafkaAdminClient(**options)
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    found = {
        d["topic"]: sorted(p["partition"] for p in d["partitions"])
        for d in described
        if not d["error_code"]
    }
    missing = [t for t in topics if not found.get(t)]
    if missing:
        raise ValueError(f"no such topic: {', '.join(missing)}")
    return found


async def _offsets_at(
    consumer: AIOKafkaConsumer,
    tps: list[TopicPartition],
    at: datetime,
    lasts: dict[TopicPartition, int],
) -> dict[TopicPartition, int]:
    """The first offset with a record time at or after `at` (the end when there is none)."""
    found = await consumer.offsets_for_times({tp: int(at.timestamp() * 1000) for tp in tps})
    return {tp: lasts[tp] if found.get(tp) is None else found[tp].offset for tp in tps}


async def _fill(consumer: AIOKafkaConsumer, cursor: _Cursor) -> int:
    """Fetch the cursor's next batch (up to its end); returns how many records came."""
    added = 0
    while not cursor.buffer and cursor.position < cursor.end:
        fetched = await consumer.getmany(cursor.tp, timeout_ms=1000, max_records=BATCH)
        for message in fetched.get(cursor.tp, []):
            if message.offset >= cursor.end:
                break
            cursor.buffer.append(
                Record(
                    message.topic,
                    message.partition,
                    message.offset,
                    message.timestamp,
                    message.key,
                    message.value or b"",
                )
            )
            added += 1
        cursor.position = await consumer.position(cursor.tp)
    return added
