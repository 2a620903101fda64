"""The committer: one Kafka transaction per partition step (Kafka Streams' record
collector and the task's commit).

**A step's outputs, its state changes and its input offsets are committed in one Kafka
transaction, or none of them is.** `commit` sends the step's writes (warnings, breaches,
dead letters, finished timers, changelog records), then the consumed input offsets, and
commits; if anything fails it aborts and says so, and the task manager forgets the
partition and restores it from the changelog.

**One transactional producer per partition.** Each partition has its own transactional
id (`<app-id>-state-<p>`); whoever is assigned the partition starts a producer with that
id first (`open`), which fences any earlier owner (a crashed or paused worker) and aborts
its open transaction. Kafka Streams' exactly-once v2 (KIP-447) fences with the consumer
group's metadata instead and needs one producer per thread, but aiokafka sends offsets
with a group id only (TxnOffsetCommit v0): with aiokafka, a producer per input partition
is the only design that fences a zombie. Its cost (a producer, its connections and
buffers, per partition) is measured in BENCHMARKS.md ("Producers per partition").

**Giving up.** A broker outage, a retriable error or fencing are ridden out however long
they last; any other failure, `max_commit_attempts` times in a row on one partition (with
a restore in between each time), will not mend itself in this process: `CommitsFailing`,
and the command exits 1 so that the orchestrator starts a fresh one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiokafka.errors import (
    ConcurrentTransactions,
    InvalidProducerEpoch,
    KafkaError,
    KafkaTimeoutError,
    ProducerFenced,
    TransactionCoordinatorFenced,
)
from aiokafka.structs import TopicPartition

from worker.core.errors import SlaWorkerError
from worker.kafka.clients import TransactionalProducer
from worker.kafka.topics import default_partition
from worker.metrics import Metrics
from worker.tasks.partition import Batch, Write

log = logging.getLogger("sla_worker")

RESTORE_RETRY_SECONDS = 2.0
FENCED_RETRY_SECONDS = 10.0
"""After being fenced: give the group time to settle before fencing back."""
PASSING_COMMIT_ERRORS = (
    KafkaTimeoutError,
    ConcurrentTransactions,
    InvalidProducerEpoch,
    TransactionCoordinatorFenced,
)
"""Commit failures that pass by themselves though aiokafka does not mark them retriable:
a request that timed out (the brokers slow or away), a transaction the coordinator is
still completing (Java's client retries it), and the forms of fencing aiokafka does not
turn into `ProducerFenced` (a new owner took the partition)."""


class CommitsFailing(SlaWorkerError, RuntimeError):
    """A partition's steps failed to commit `max_commit_attempts` times in a row, for a
    reason that is neither an outage nor a new owner: the worker exits 1, to be restarted."""


@dataclass(frozen=True, slots=True)
class Committed:
    """A committed step. `changelog_end`: the changelog's committed end after it (our
    last record, then the commit marker), None when the step wrote no changelog record."""

    changelog_end: int | None
    began_ms: int = 0
    """Wall clock (ms) before the transaction began: every record the changelog gets
    after this step was written later (what a local snapshot's age is judged by)."""


@dataclass(frozen=True, slots=True)
class Failed:
    """A step that was not committed: restore the partition in `retry_in` seconds."""

    why: str
    retry_in: float


class Committer:
    """The partitions' transactional producers, and one transaction per step."""

    def __init__(
        self,
        producer_for: Callable[[int], TransactionalProducer],
        group_id: str,
        changelog: str,
        metrics: Metrics,
        max_attempts: int,
        reachable: Callable[[], bool],
    ) -> None:
        self.producer_for = producer_for
        self.group_id = group_id
        self.changelog = changelog
        self.metrics = metrics
        self.max_attempts = max_attempts
        self.reachable = reachable
        self.producers: dict[int, TransactionalProducer] = {}
        self.failures: dict[int, int] = {}  # partition -> failed commits in a row

    async def open(self, number: int) -> None:
        """Start the partition's producer: InitProducerId fences the previous owner and
        aborts (or waits for the completion of) its open transaction."""
        await self.close(number)
        producer = self.producers[number] = self.producer_for(number)
        await producer.start()

    async def close(self, number: int) -> None:
        producer = self.producers.pop(number, None)
        if producer is not None:
            with contextlib.suppress(Exception):
                await producer.stop()

    async def close_all(self, keep: set[int] | None = None) -> None:
        """Close every producer (but those of `keep`)."""
        for number in list(self.producers):
            if keep is None or number not in keep:
                await self.close(number)

    async def commit(self, batch: Batch, started: float) -> Committed | Failed:
        """One transaction with everything the step decided (`started`: when the step
        began, `time.perf_counter`, for the processing-time histogram); raises
        `CommitsFailing` when the partition's steps keep failing for a reason that does
        not pass."""
        producer = self.producers.get(batch.partition)
        if producer is None:
            return Failed("no producer for the partition", RESTORE_RETRY_SECONDS)
        sent: list[asyncio.Future[Any]] = []
        began_ms = int(time.time() * 1000)
        try:
            await producer.begin_transaction()
            counts = await self._send(producer, batch.writes, sent)
            acknowledged = await asyncio.gather(*sent)
            if batch.offsets:
                offsets = {TopicPartition(t, p): o for (t, p), o in batch.offsets.items()}
                await producer.send_offsets_to_transaction(offsets, self.group_id)
            await producer.commit_transaction()
        except ProducerFenced:
            _forget(sent)
            # Another producer with this partition's transactional id started: a worker
            # that was given the partition (we missed the session timeout). Stop; restore
            # later, by when the group has settled who owns it.
            await self.close(batch.partition)
            return Failed("fenced by another owner", FENCED_RETRY_SECONDS)
        except Exception as exc:
            _forget(sent)
            with contextlib.suppress(Exception):
                await producer.abort_transaction()
            self._count_failure(batch.partition, exc)
            return Failed(f"{type(exc).__name__}: {exc}", RESTORE_RETRY_SECONDS)
        self.failures.pop(batch.partition, None)
        # The last changelog record's offset: a record batch's metadata gives its first.
        changelog = [
            meta.offset + count - 1
            for (topic, count), meta in zip(counts, acknowledged, strict=True)
            if topic == self.changelog
        ]
        self.metrics.step(batch, time.perf_counter() - started)
        return Committed(max(changelog) + 2 if changelog else None, began_ms)

    @staticmethod
    async def _send(
        producer: TransactionalProducer, writes: list[Write], sent: list[asyncio.Future[Any]]
    ) -> list[tuple[str, int]]:
        """Send `writes` in record batches, one per topic partition (as many as its bytes
        need), each record as `send` would have written it; their futures go into `sent`,
        and the result says, for each, its topic and how many records it holds.

        Why batches: `send` costs a future, a lookup and a callback per record, and the
        futures' completions one loop callback each; a step writes a few thousand
        records. Records keep their order within each partition (the changelog's order
        is the state's); a write without a partition goes where the default partitioner
        puts its key (murmur2, as `send` would choose), and one without a key either
        (never written by the worker) is sent on its own."""
        groups: dict[tuple[str, int], list[Write]] = {}
        counts: list[tuple[str, int]] = []
        partitions: dict[str, int] = {}
        for w in writes:
            number = w.partition
            if number is None:
                if w.key is None:
                    sent.append(
                        await producer.send(w.topic, w.value, key=None, headers=list(w.headers))
                    )
                    counts.append((w.topic, 1))
                    continue
                if w.topic not in partitions:
                    partitions[w.topic] = len(await producer.partitions_for(w.topic))
                number = default_partition(w.key, partitions[w.topic])
            groups.setdefault((w.topic, number), []).append(w)
        for (topic, number), group in groups.items():
            builder, count = producer.create_batch(), 0
            for w in group:
                while (
                    builder.append(
                        timestamp=None, key=w.key, value=w.value, headers=list(w.headers)
                    )
                    is None
                ):
                    if count == 0:  # never: aiokafka takes a batch's first record, any size
                        raise ValueError(f"a record for {topic} does not fit in a record batch")
                    builder.close()
                    sent.append(await producer.send_batch(builder, topic, partition=number))
                    counts.append((topic, count))
                    builder, count = producer.create_batch(), 0
                count += 1
            builder.close()
            sent.append(await producer.send_batch(builder, topic, partition=number))
            counts.append((topic, count))
        return counts

    def _count_failure(self, number: int, exc: Exception) -> None:
        """Count a failed commit; raise `CommitsFailing` once a partition's steps failed
        `max_attempts` times in a row for a reason that is not passing (module docstring)."""
        self.metrics.commit_failed(type(exc).__name__)
        passing = (
            not self.reachable()
            or isinstance(exc, PASSING_COMMIT_ERRORS)
            or (isinstance(exc, KafkaError) and exc.retriable)
        )
        if passing:
            return
        failures = self.failures[number] = self.failures.get(number, 0) + 1
        if failures >= self.max_attempts:
            raise CommitsFailing(
                f"giving up: {failures} steps of partition {number} in a row could not be "
                f"committed (last: {type(exc).__name__}: {exc}); exiting so that the "
                "worker is restarted"
            )


def _forget(sent: list[asyncio.Future[Any]]) -> None:
    """The sends of a failed transaction fail with it: mark their outcomes as seen, so
    asyncio does not log each as "Future exception was never retrieved"."""
    for future in sent:
        future.add_done_callback(lambda f: None if f.cancelled() else f.exception())
