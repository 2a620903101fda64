"""The Kafka clients the live worker works with, and how the composition root makes them.

As Kafka Streams' `KafkaClientSupplier`: the worker's parts never construct a client.
`worker.bootstrap.live` builds the real ones with `kafka_clients`; unit tests hand in
fakes that answer the same few calls (the `Protocol`s below are exactly what the worker
uses, so a fake needs nothing else).

- `consumer`: the group member, reading the inputs (read_committed, no auto-commit: the
  offsets go into each step's transaction);
- `changelogs`: a consumer without a group, for the changelogs (restores), their end
  offsets and the brokers' metadata (the broker watch's probe);
- `standbys`: another consumer without a group, for the changelogs of the warm standbys
  (`worker.kafka.standby`; with `--standby-replicas` only);
- `producer_for(p)`: a new, not yet started, transactional producer for partition p's
  transactional id, `<app-id>-state-<p>`. One per partition: see `worker.kafka.committer`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from worker.kafka.assignment import ticket_assignor
from worker.kafka.topics import client_options
from worker.settings import WorkerSettings

PRODUCER_BATCH_BYTES = 512 * 1024
"""Most bytes of one partition's record batch in a transactional producer (aiokafka's
default: 16 KiB). aiokafka keeps one produce request in flight per broker, and a send
into a full batch waits until the sender has drained it; with 16 KiB batches a step of
1,000 tickets (about 0.7 KiB of state and an output each) took some 100 round trips to
the broker one after another before its commit. 512 KiB makes that a handful, and stays
under the broker's default `message.max.bytes` (1 MiB) and the producer's
`max_request_size` (1 MiB). See BENCHMARKS.md (#23, exactly-once floor)."""

FETCH_MAX_WAIT_MS = 100
"""An idle fetch comes back after this long: how fresh the "read everything up to"
instant is that lets timers fire on the wall clock (worker/tasks/clocks.py)."""


class GroupConsumer(Protocol):
    """The calls the worker makes on the group member (an `AIOKafkaConsumer`)."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    def subscribe(self, topics: list[str], listener: Any) -> None: ...
    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[Any]]: ...
    def pause(self, *partitions: TopicPartition) -> None: ...
    def resume(self, *partitions: TopicPartition) -> None: ...
    def seek(self, partition: TopicPartition, offset: int) -> None: ...
    async def seek_to_beginning(self, *partitions: TopicPartition) -> Any: ...
    async def committed(self, partition: TopicPartition) -> int | None: ...
    async def position(self, partition: TopicPartition) -> int: ...
    def last_stable_offset(self, partition: TopicPartition) -> int | None: ...
    def last_poll_timestamp(self, partition: TopicPartition) -> int | None: ...


class ChangelogConsumer(Protocol):
    """The calls the worker makes on its consumer without a group."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    def assign(self, partitions: list[TopicPartition]) -> None: ...
    def seek(self, partition: TopicPartition, offset: int) -> None: ...
    async def seek_to_beginning(self, *partitions: TopicPartition) -> Any: ...
    async def position(self, partition: TopicPartition) -> int: ...
    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[Any]]: ...
    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]: ...
    async def beginning_offsets(
        self, partitions: list[TopicPartition]
    ) -> dict[TopicPartition, int]: ...
    async def topics(self) -> Any: ...
    def last_stable_offset(self, partition: TopicPartition) -> int | None: ...
    def last_poll_timestamp(self, partition: TopicPartition) -> int | None: ...


class RecordBatch(Protocol):
    """A record batch being filled (aiokafka's `BatchBuilder`)."""

    def append(
        self,
        *,
        timestamp: int | None,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]],
    ) -> Any:
        """The record's metadata; None when the batch is full (nothing was added)."""

    def close(self) -> None: ...


class TransactionalProducer(Protocol):
    """The calls the worker makes on a partition's transactional producer."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def begin_transaction(self) -> None: ...
    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[Any]: ...
    async def partitions_for(self, topic: str) -> set[int]: ...
    def create_batch(self) -> RecordBatch: ...
    async def send_batch(
        self, batch: RecordBatch, topic: str, *, partition: int
    ) -> asyncio.Future[Any]: ...
    async def send_offsets_to_transaction(
        self, offsets: dict[TopicPartition, int], group_id: str
    ) -> None: ...
    async def commit_transaction(self) -> None: ...
    async def abort_transaction(self) -> None: ...


@dataclass
class Clients:
    """Everything the live worker talks to Kafka with."""

    consumer: GroupConsumer
    changelogs: ChangelogConsumer
    producer_for: Callable[[int], TransactionalProducer]
    standbys: ChangelogConsumer | None = None


class Membership:
    """What this member tells the group's assignor (the partitions whose state it holds,
    and how far behind its standbys are) and learns from it (which member owns which
    partition: the HTTP API forwards; which partitions it keeps as standbys)."""

    def __init__(self) -> None:
        self.owners: dict[int, str] = {}
        self.standbys: list[int] = []
        self.held: Callable[[], Iterable[int]] = list
        self.standby_lags: Callable[[], dict[int, int]] = dict

    def held_now(self) -> list[int]:
        return sorted(self.held())

    def lags_now(self) -> dict[int, int]:
        return self.standby_lags()

    def set_owners(self, owners: dict[int, str]) -> None:
        self.owners = owners

    def set_standbys(self, standbys: list[int]) -> None:
        self.standbys = standbys


def kafka_clients(settings: WorkerSettings, membership: Membership) -> Clients:
    """The real clients (not started: the worker starts and stops them)."""
    options = client_options(settings)  # the SSL context made once, shared
    assignor = ticket_assignor(
        settings.canonical_url,
        membership.held_now,
        membership.set_owners,
        settings.standby_replicas,
        membership.lags_now,
        membership.set_standbys,
    )
    session_ms = int(settings.session_timeout_seconds * 1000)
    consumer = AIOKafkaConsumer(
        **options,
        client_id=f"{settings.app_id}-consumer",
        group_id=settings.app_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        session_timeout_ms=session_ms,
        heartbeat_interval_ms=max(session_ms // 10, 100),
        partition_assignment_strategy=(assignor,),
        # Static membership: a restart within the session timeout moves nothing (a
        # static member does not leave the group when it stops).
        group_instance_id=settings.instance_id,
    )
    changelogs = AIOKafkaConsumer(
        **options,
        client_id=f"{settings.app_id}-restorer",
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )

    standbys = (
        AIOKafkaConsumer(
            **options,
            client_id=f"{settings.app_id}-standby",
            group_id=None,
            enable_auto_commit=False,
            # A position the changelog no longer holds must not jump silently to the
            # beginning over the state already applied: the standby restarts empty.
            auto_offset_reset="none",
            isolation_level="read_committed",
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        )
        if settings.standby_replicas > 0
        else None
    )

    def producer_for(number: int) -> TransactionalProducer:
        producer: TransactionalProducer = AIOKafkaProducer(
            **options,
            client_id=f"{settings.app_id}-state-{number}",
            transactional_id=f"{settings.app_id}-state-{number}",
            enable_idempotence=True,
            acks="all",
            linger_ms=5,
            max_batch_size=PRODUCER_BATCH_BYTES,
            transaction_timeout_ms=int(settings.transaction_timeout_seconds * 1000),
        )
        return producer

    return Clients(consumer, changelogs, producer_for, standbys)
