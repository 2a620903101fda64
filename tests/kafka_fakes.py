"""Fake Kafka clients for the live worker's unit tests: exactly the calls the worker
makes (`worker.kafka.clients`), recorded, with offsets and fetch stamps a test sets.

`RecordingProducer` given a `FakeChangelogs` appends what a transaction sent to the
changelog there when it commits (then a commit marker, as Kafka does), so a restore
reads back exactly what was committed.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from aiokafka.errors import KafkaTimeoutError, OffsetOutOfRangeError
from aiokafka.structs import TopicPartition

MARKER: tuple[None, None] = (None, None)
"""A transaction's commit marker in a fake changelog: takes an offset, is never read."""


class Sent:
    def __init__(self, offset: int) -> None:
        self.offset = offset


class FakeBatch:
    """A record batch (aiokafka's `BatchBuilder`): `full_at` records fill it."""

    full_at = 1000

    def __init__(self) -> None:
        self.records: list[tuple[bytes | None, bytes | None, Any]] = []
        self.closed = False

    def append(
        self, *, timestamp: int | None, key: bytes | None, value: bytes | None, headers: Any
    ) -> object | None:
        if self.closed or len(self.records) >= self.full_at:
            return None
        self.records.append((key, value, headers))
        return object()

    def close(self) -> None:
        self.closed = True


class RecordingProducer:
    """Records the transaction's calls in order; `fail_on` makes that call raise."""

    def __init__(
        self,
        fail_on: str | None = None,
        error: Exception | None = None,
        changelogs: FakeChangelogs | None = None,
    ) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.fail_on = fail_on
        self.error = error or KafkaTimeoutError()
        self.offset = 100
        self.changelogs = changelogs
        """Where committed changelog records land (with their commit marker), if given."""
        self.pending: list[tuple[int, bytes, bytes | None]] = []
        self.partitions = 6
        """Partitions of every topic (`partitions_for`)."""
        self.batches: list[tuple[str, int, list[tuple[bytes | None, bytes | None, Any]]]] = []
        """(topic, partition, records (key, value, headers)) of each batch sent."""

    def _call(self, *call: Any) -> None:
        self.calls.append(call)
        if call[0] == self.fail_on:
            raise self.error

    async def start(self) -> None:
        self._call("start")

    async def begin_transaction(self) -> None:
        self._call("begin")

    async def send(self, topic: str, value: bytes | None, **options: Any) -> asyncio.Future[Sent]:
        self._call("send", topic)
        self.offset += 1
        offset = self.offset
        if self.changelogs is not None and topic.endswith("-changelog"):
            number = options["partition"]
            log = self.changelogs.records.setdefault(number, [])
            offset = len(log) + sum(1 for p, _, _ in self.pending if p == number)
            self.pending.append((number, options["key"], value))
        future: asyncio.Future[Sent] = asyncio.get_running_loop().create_future()
        future.set_result(Sent(offset))
        return future

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(self.partitions))

    def create_batch(self) -> FakeBatch:
        return FakeBatch()

    async def send_batch(
        self, batch: FakeBatch, topic: str, *, partition: int
    ) -> asyncio.Future[Sent]:
        """As `send` of each of the batch's records; the future gives its first offset."""
        self._call("send", topic)
        self.batches.append((topic, partition, list(batch.records)))
        first = self.offset + 1
        self.offset += len(batch.records)
        if self.changelogs is not None and topic.endswith("-changelog"):
            log = self.changelogs.records.setdefault(partition, [])
            first = len(log) + sum(1 for p, _, _ in self.pending if p == partition)
            self.pending.extend((partition, key, value) for key, value, _ in batch.records)
        future: asyncio.Future[Sent] = asyncio.get_running_loop().create_future()
        future.set_result(Sent(first))
        return future

    async def send_offsets_to_transaction(self, offsets: dict[Any, int], group: str) -> None:
        self._call("offsets", {(tp.topic, tp.partition): o for tp, o in offsets.items()}, group)

    async def commit_transaction(self) -> None:
        self._call("commit")
        if self.changelogs is not None:
            for number in sorted({p for p, _, _ in self.pending}):
                log = self.changelogs.records.setdefault(number, [])
                log.extend((k, v) for p, k, v in self.pending if p == number)
                log.append(MARKER)
        self.pending = []

    async def abort_transaction(self) -> None:
        self._call("abort")
        self.pending = []

    async def stop(self) -> None:
        self._call("stop")

    def transactions(self) -> list[list[str]]:
        """The calls from each begin on (a producer's start comes before its first)."""
        runs: list[list[str]] = []
        for call in self.calls:
            if call[0] == "begin":
                runs.append([])
            if runs:
                runs[-1].append(call[0])
        return runs


@dataclass
class Record:
    """A consumed record, as aiokafka gives it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp: int = -1


class FakeConsumer:
    """The group member: paused inputs, seeks, committed offsets, and what the fetches
    showed (end, position, stamp), as the test sets them."""

    def __init__(self) -> None:
        self.paused: set[TopicPartition] = set()
        self.seeks: dict[TopicPartition, int] = {}
        self.committed_offsets: dict[TopicPartition, int] = {}
        self.end, self.at, self.fetched_ms = 10, 10, 1_000

    def pause(self, *tps: TopicPartition) -> None:
        self.paused.update(tps)

    def resume(self, *tps: TopicPartition) -> None:
        self.paused.difference_update(tps)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks[tp] = offset

    async def seek_to_beginning(self, *tps: TopicPartition) -> None:
        for tp in tps:
            self.seeks[tp] = 0

    async def committed(self, tp: TopicPartition) -> int | None:
        return self.committed_offsets.get(tp)

    async def position(self, tp: TopicPartition) -> int:
        return self.at

    def last_stable_offset(self, tp: TopicPartition) -> int:
        return self.end

    def last_poll_timestamp(self, tp: TopicPartition) -> int:
        return self.fetched_ms


class FakeChangelogs:
    """A consumer without a group over the changelog records a test gives (partition ->
    (key, value) in order, `MARKER` for a transaction's commit marker); by default every
    changelog is empty and starts at offset 0.

    As aiokafka's, the last stable offset and the poll stamp a fetch reports are those of
    the last fetch that reached the broker; a test can make the broker unreachable
    (fetches return nothing and report nothing), move a changelog's first offset
    (`beginnings`: a fetch before it raises `OffsetOutOfRangeError`, as with
    auto_offset_reset="none"), cap the records per fetch (`limit`: a standby left behind)
    and hold fetches in flight (`gate`: a fetch waits for it; `fetching` is set once one
    waits)."""

    def __init__(self, records: dict[int, list[Any]] | None = None) -> None:
        self.records = records if records is not None else {}
        """Shared, not copied: a second `FakeChangelogs` over the same dict (a standby's
        consumer) sees what a `RecordingProducer` commits."""
        self.positions: dict[TopicPartition, int] = {}
        self.reads = 0
        self.read_from: dict[int, int] = {}
        """Partition -> the offset its first read in this test began at."""
        self.beginnings: dict[int, int] = {}
        self.unreachable = False
        self.limit: int | None = None
        self.gate: asyncio.Event | None = None
        self.fetching = asyncio.Event()
        self.stable: dict[int, int] = {}
        self.polled_ms: dict[int, int] = {}

    def assign(self, tps: list[TopicPartition]) -> None:
        self.positions = {tp: 0 for tp in tps}

    async def seek_to_beginning(self, *tps: TopicPartition) -> None:
        for tp in tps:
            self.positions[tp] = self.beginnings.get(tp.partition, 0)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp] = offset

    async def position(self, tp: TopicPartition) -> int:
        return self.positions[tp]

    async def beginning_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.beginnings.get(tp.partition, 0) for tp in tps}

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: len(self.records.get(tp.partition, [])) for tp in tps}

    async def getmany(
        self, *tps: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[Record]]:
        if self.gate is not None:
            self.fetching.set()
            await self.gate.wait()
        if self.unreachable:
            await asyncio.sleep(0)
            return {}
        self.reads += 1
        fetched = {}
        self.read_from = {tp.partition: self.positions[tp] for tp in tps} | self.read_from
        gone = {
            tp: self.positions[tp]
            for tp in tps
            if self.positions[tp] < self.beginnings.get(tp.partition, 0)
        }
        if gone:
            raise OffsetOutOfRangeError(gone)
        for tp in tps:
            at = self.positions[tp]
            most = min(max_records or 1, self.limit or max_records or 1)
            chunk = self.records.get(tp.partition, [])[at : at + most]
            fetched[tp] = [
                Record(tp.topic, tp.partition, at + i, k, v)
                for i, (k, v) in enumerate(chunk)
                if (k, v) != MARKER
            ]
            self.positions[tp] = at + len(chunk)
            self.stable[tp.partition] = len(self.records.get(tp.partition, []))
            self.polled_ms[tp.partition] = int(time.time() * 1000)
        await asyncio.sleep(0)
        return fetched

    def last_stable_offset(self, tp: TopicPartition) -> int | None:
        return self.stable.get(tp.partition)

    def last_poll_timestamp(self, tp: TopicPartition) -> int | None:
        return self.polled_ms.get(tp.partition)

    async def topics(self) -> set[str]:
        return set()
