"""The live worker's one promise, without a broker: a step's outputs, its state changes
and its input offsets go into one Kafka transaction, committed last, or the partition is
forgotten and restored from Kafka.

The Kafka producer is replaced by a recorder (the port `LiveWorker._commit` uses:
begin, send, send the offsets, commit or abort); everything else is the real worker.
The broker tests (tests/integration/test_faults.py) show the same under SIGKILL.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError, ProducerFenced

from worker.core.policy import Policy
from worker.kafka import service
from worker.kafka.service import LiveWorker
from worker.metrics import Metrics
from worker.settings import WorkerSettings
from worker.tasks.partition import Batch, Message

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


class Sent:
    def __init__(self, offset: int) -> None:
        self.offset = offset


class RecordingProducer:
    """Records the transaction's calls in order; `fail_on` makes that call raise."""

    def __init__(self, fail_on: str | None = None, error: Exception | None = None) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.fail_on = fail_on
        self.error = error or KafkaTimeoutError()
        self.offset = 100

    def _call(self, *call: Any) -> None:
        self.calls.append(call)
        if call[0] == self.fail_on:
            raise self.error

    async def begin_transaction(self) -> None:
        self._call("begin")

    async def send(self, topic: str, value: bytes | None, **options: Any) -> asyncio.Future[Sent]:
        self._call("send", topic)
        self.offset += 1
        future: asyncio.Future[Sent] = asyncio.get_running_loop().create_future()
        future.set_result(Sent(self.offset))
        return future

    async def send_offsets_to_transaction(self, offsets: dict[Any, int], group: str) -> None:
        self._call("offsets", {(tp.topic, tp.partition): o for tp, o in offsets.items()}, group)

    async def commit_transaction(self) -> None:
        self._call("commit")

    async def abort_transaction(self) -> None:
        self._call("abort")

    async def stop(self) -> None:
        self._call("stop")


def created(offset: int, ticket: str, at: datetime = NOW - timedelta(days=1)) -> Message:
    body = {
        "event_id": f"c-{ticket}",
        "type": "ticket-created",
        "ticket_id": ticket,
        "occurred_at": at.isoformat(),
        "plan": "vip",
        "priority": 1,
    }
    return Message("tickets", 0, offset, ticket.encode(), json.dumps(body).encode())


OPENED: list[LiveWorker] = []


@pytest.fixture(autouse=True)
async def close_clients() -> AsyncIterator[None]:
    """The worker's consumers are made (never started); closing them keeps GC quiet."""
    yield
    while OPENED:
        worker = OPENED.pop()
        await worker.consumer.stop()
        await worker.restorer.stop()


async def worker_with(producer: RecordingProducer, presets: Policy) -> tuple[LiveWorker, Batch]:
    settings = WorkerSettings(partitions=1, app_id="unit")
    worker = LiveWorker(settings, presets, Metrics(presets))
    OPENED.append(worker)
    worker.partitions[0] = worker._new_partition(0)
    worker._producers[0] = producer  # type: ignore[assignment]
    # A ticket created a day ago: its state, and its warnings and breach, all in one step.
    batch = worker.partitions[0].step([created(7, "HD-1")], NOW, read_through=NOW)
    return worker, batch


async def test_outputs_state_and_offsets_go_in_one_transaction_committed_last(
    presets: Policy,
) -> None:
    producer = RecordingProducer()
    worker, batch = await worker_with(producer, presets)

    await worker._commit(batch, 0.0)

    names = [call[0] for call in producer.calls]
    assert names[0] == "begin" and names[-2:] == ["offsets", "commit"]
    sent = {call[1] for call in producer.calls if call[0] == "send"}
    assert sent == {"sla-warnings", "sla-breaches", "unit-tickets-changelog"}
    assert producer.calls[-2][1:] == ({("tickets", 0): 8}, "unit")  # the next offset to read
    assert 0 in worker.partitions and worker.partitions[0].changelog_end > 0


@pytest.mark.parametrize("fail_on", ["begin", "send", "offsets", "commit"])
async def test_a_failed_step_is_aborted_and_its_partition_restored_from_kafka(
    presets: Policy, fail_on: str
) -> None:
    producer = RecordingProducer(fail_on=fail_on)
    worker, batch = await worker_with(producer, presets)

    await worker._commit(batch, 0.0)

    assert producer.calls[-1] == ("abort",)
    assert "commit" not in [c[0] for c in producer.calls] or fail_on == "commit"
    # Nothing that was not committed is believed: memory is dropped, the input paused,
    # and the partition waits for a restore from the changelog.
    assert 0 not in worker.partitions
    assert worker._unrestored == {0}


async def test_a_fenced_worker_gives_the_partition_time_to_settle(presets: Policy) -> None:
    producer = RecordingProducer(fail_on="commit", error=ProducerFenced())
    worker, batch = await worker_with(producer, presets)

    await worker._commit(batch, 0.0)

    assert 0 not in worker.partitions and worker._unrestored == {0}
    assert 0 not in worker._producers and producer.calls[-1] == ("stop",)
    assert worker._next_restore - time.monotonic() >= service.FENCED_RETRY_SECONDS - 1


async def test_while_the_brokers_are_unreachable_the_worker_is_not_ready(
    presets: Policy,
) -> None:
    worker, _ = await worker_with(RecordingProducer(), presets)
    worker.joined = True
    assert worker.ready

    await worker._brokers_lost("KafkaConnectionError: refused")
    assert not worker.ready

    await worker._brokers_back()
    assert worker.ready


class FetchView:
    """What the consumer knows of an input partition after its fetches."""

    def __init__(self) -> None:
        self.end, self.position, self.fetched_ms = 10, 10, 1_000

    def last_stable_offset(self, tp: Any) -> int:
        return self.end

    async def position_of(self, tp: Any) -> int:
        return self.position

    def last_poll_timestamp(self, tp: Any) -> int:
        return self.fetched_ms


async def test_a_partition_counts_as_read_as_of_its_previous_fetch(presets: Policy) -> None:
    """The latest response's stamp is taken when the client processes it, after the
    broker's snapshot; the one before it cannot be later than that snapshot."""
    worker, _ = await worker_with(RecordingProducer(), presets)
    view = FetchView()
    worker.consumer.last_stable_offset = view.last_stable_offset  # type: ignore[method-assign]
    worker.consumer.position = view.position_of  # type: ignore[method-assign]
    worker.consumer.last_poll_timestamp = view.last_poll_timestamp  # type: ignore[method-assign]

    assert await worker._caught_up(0) is None  # one fetch seen: wait for the next
    view.fetched_ms = 1_100
    assert await worker._caught_up(0) == datetime.fromtimestamp(1.0, UTC)
    view.fetched_ms = 1_200
    assert await worker._caught_up(0) == datetime.fromtimestamp(1.1, UTC)
    view.end = 12  # records the position has not reached: behind
    assert await worker._caught_up(0) is None


async def test_readyz_shows_each_partitions_next_timer_and_whether_a_step_is_under_way(
    presets: Policy,
) -> None:
    """What a test harness (devtools.harness.settled) waits on: nothing under way, and no
    timer left unfired up to an instant."""
    worker, _ = await worker_with(RecordingProducer(), presets)
    [row] = worker.diagnostics()
    assert row["next_due"] is None  # HD-1, a day old, has fired all it ever will
    assert row["held_until"] is None  # nothing waits for its ticket
    worker.partitions[0].step([created(8, "HD-2", at=NOW)], NOW, read_through=NOW)
    [row] = worker.diagnostics()
    assert row["next_due"] is not None and row["next_due"].endswith("Z")
    assert datetime.fromisoformat(row["next_due"]) > NOW  # HD-2's first warning
    assert worker.busy is False
    async with worker._lock:  # what a step, restore or rebalance holds
        assert worker.busy is True


class Broken(Exception):
    """A failure no Kafka client knows: nothing says it will pass."""


async def test_commits_that_keep_failing_for_a_new_reason_stop_the_worker(
    presets: Policy,
) -> None:
    """Counted by reason; after `max_commit_attempts` failures in a row, each followed by
    a restore, the worker gives up with one sentence (the command exits 1)."""
    producer = RecordingProducer(fail_on="commit", error=Broken("disk on fire"))
    worker, batch = await worker_with(producer, presets)
    limit = worker.settings.max_commit_attempts
    for _ in range(limit - 1):
        worker.partitions[0] = worker._new_partition(0)  # as a restore would
        await worker._commit(batch, 0.0)
    worker.partitions[0] = worker._new_partition(0)
    with pytest.raises(service.CommitsFailing, match=f"{limit} steps of partition 0 in a row"):
        await worker._commit(batch, 0.0)
    scrape = worker.metrics.render().decode()
    assert f'sla_commit_failures_total{{reason="Broken"}} {float(limit)}' in scrape


async def test_an_outage_or_a_success_never_counts_towards_giving_up(presets: Policy) -> None:
    """Retriable errors (an outage) are ridden out however long; a commit that succeeds
    starts the count again."""
    producer = RecordingProducer(fail_on="commit")  # KafkaTimeoutError: retriable
    worker, batch = await worker_with(producer, presets)
    for _ in range(3 * worker.settings.max_commit_attempts):
        worker.partitions[0] = worker._new_partition(0)
        await worker._commit(batch, 0.0)
    producer.error = Broken("once")
    for _ in range(worker.settings.max_commit_attempts - 1):
        worker.partitions[0] = worker._new_partition(0)
        await worker._commit(batch, 0.0)
    producer.fail_on = None
    worker.partitions[0] = worker._new_partition(0)
    await worker._commit(batch, 0.0)  # succeeds: the count starts again
    producer.fail_on = "commit"
    worker.partitions[0] = worker._new_partition(0)
    await worker._commit(batch, 0.0)  # one failure: far from the limit
    assert worker._failed_commits == {0: 1}
