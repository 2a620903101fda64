"""The live worker's one promise, without a broker: a step's outputs, its state changes
and its input offsets go into one Kafka transaction, committed last, or the partition is
forgotten and restored from Kafka.

The worker is given fake clients (`worker.kafka.clients`: the calls it makes on a
consumer, a changelog reader and a producer), as the composition root gives it real
ones; everything else is the real worker, driven through what its main loop calls
(`on_assigned`, `turn`). The broker tests (tests/integration/test_faults.py) show the
same under SIGKILL.
"""

from __future__ import annotations

import asyncio
import gc
import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka.errors import ProducerFenced
from aiokafka.structs import TopicPartition

from tests.kafka_fakes import FakeChangelogs, FakeConsumer, Record, RecordingProducer
from worker.core.policy import Policy
from worker.kafka import committer
from worker.kafka.clients import Clients
from worker.kafka.service import CommitsFailing, LiveWorker
from worker.kafka.task_manager import TaskState
from worker.metrics import Metrics
from worker.settings import WorkerSettings
from worker.tasks.partition import Message

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
INPUT = TopicPartition("tickets", 0)


def created(offset: int, ticket: str, at: datetime = NOW - timedelta(days=1)) -> Record:
    body = {
        "event_id": f"c-{ticket}",
        "type": "ticket-created",
        "ticket_id": ticket,
        "occurred_at": at.isoformat(),
        "plan": "vip",
        "priority": 1,
    }
    return Record("tickets", 0, offset, ticket.encode(), json.dumps(body).encode())


@pytest.fixture(autouse=True)
def restore_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A partition whose step failed is restored at the next turn (not 2 s later)."""
    monkeypatch.setattr(committer, "RESTORE_RETRY_SECONDS", 0.0)


def new_worker(
    producer: RecordingProducer, presets: Policy, changelogs: FakeChangelogs | None = None
) -> LiveWorker:
    settings = WorkerSettings(partitions=1, app_id="unit")
    clients = Clients(FakeConsumer(), changelogs or FakeChangelogs(), lambda number: producer)
    return LiveWorker(settings, presets, Metrics(presets), clients)  # type: ignore[arg-type]


async def assigned(worker: LiveWorker, *numbers: int) -> None:
    """As a rebalance hands the worker these partitions, and its loop restores them."""
    await worker.on_assigned([TopicPartition("tickets", n) for n in numbers or (0,)])
    await worker.turn({})  # starts the restore
    await worker.tasks.restored()
    await worker.turn({})  # the restored partitions start


async def worker_with(producer: RecordingProducer, presets: Policy) -> LiveWorker:
    """A worker running partition 0, given a ticket created a day ago: its state, and its
    warnings and breach, all in one step (committed, or not, on `producer`)."""
    worker = new_worker(producer, presets)
    await assigned(worker)
    # Two fetches seen, the last 0.1 s ago: the partition has read everything as of
    # 0.2 s ago (`InputWatch.caught_up`), so HD-1's timers, due long ago, fire.
    consumer_of(worker).fetched_ms = int(time.time() * 1000) - 200
    await worker.turn({})
    consumer_of(worker).fetched_ms += 100
    await worker.turn({INPUT: [created(7, "HD-1")]})
    return worker


def consumer_of(worker: LiveWorker) -> FakeConsumer:
    consumer = worker.clients.consumer
    assert isinstance(consumer, FakeConsumer)
    return consumer


async def restore_again(worker: LiveWorker) -> None:
    """The loop's next turns: the lost partition is restored and starts again."""
    await worker.turn({})
    await worker.tasks.restored()
    await worker.turn({})


async def test_a_partition_is_restored_from_the_changelog_before_it_runs(
    presets: Policy,
) -> None:
    """Assigned: the producer starts first (fencing an earlier owner), then the state
    is read, then the inputs are seeked to the recorded offsets and resumed."""
    clock = json.dumps({"event_time_us": None, "offsets": {"tickets": 42}}).encode()
    ticket = {"ticket_id": "HD-9"}  # unreadable by this version: still restored as bytes
    changelogs = FakeChangelogs({0: [(b"HD-9", json.dumps(ticket).encode()), (b"", clock)]})
    producer = RecordingProducer()
    worker = new_worker(producer, presets, changelogs)

    await worker.on_assigned([INPUT])
    assert worker.restoring == [0] and not worker.ready
    assert INPUT in consumer_of(worker).paused
    await worker.turn({})
    await worker.tasks.restored()
    assert producer.calls[0] == ("start",)
    assert worker.tasks.state_of(0) is TaskState.RESTORING  # restored, not started yet
    await worker.turn({})

    assert worker.ready and worker.restoring == []
    assert consumer_of(worker).seeks == {INPUT: 42} and not consumer_of(worker).paused
    assert set(worker.partitions[0].tickets) == {"HD-9"}


async def test_a_revoked_partition_is_kept_and_runs_again_at_once_if_nobody_wrote(
    presets: Policy,
) -> None:
    producer = RecordingProducer()
    changelogs = FakeChangelogs()
    worker = new_worker(producer, presets, changelogs)
    await assigned(worker)
    await worker.turn({INPUT: [created(7, "HD-1")]})
    changelogs.records[0] = [(b"x", None)] * worker.partitions[0].changelog_end
    reads = changelogs.reads

    await worker.on_revoked()
    assert worker.tasks.state_of(0) is TaskState.SUSPENDED and worker.tasks.held() == [0]
    await assigned(worker)

    assert "HD-1" in worker.partitions[0].tickets  # kept, not read again
    assert changelogs.reads == reads


async def test_outputs_state_and_offsets_go_in_one_transaction_committed_last(
    presets: Policy,
) -> None:
    producer = RecordingProducer()
    worker = await worker_with(producer, presets)

    [names] = producer.transactions()
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
    worker = await worker_with(producer, presets)

    [names] = producer.transactions()
    assert names[-1] == "abort"
    assert "commit" not in names or fail_on == "commit"
    # Nothing that was not committed is believed: memory is dropped, the input paused,
    # and the partition waits for a restore from the changelog.
    assert 0 not in worker.partitions and worker.restoring == [0] and not worker.ready
    assert INPUT in consumer_of(worker).paused

    producer.fail_on = None
    await restore_again(worker)
    assert worker.ready and worker.partitions[0].tickets == {}  # HD-1 was never committed
    assert consumer_of(worker).seeks[INPUT] == 0  # so its event is read again


async def test_a_fenced_worker_gives_the_partition_time_to_settle(presets: Policy) -> None:
    producer = RecordingProducer(fail_on="commit", error=ProducerFenced())
    worker = await worker_with(producer, presets)

    assert 0 not in worker.partitions and worker.restoring == [0]
    assert 0 not in worker.committer.producers and producer.calls[-1] == ("stop",)
    retry_in = worker.tasks.tasks[0].retry_at - time.monotonic()
    assert retry_in >= committer.FENCED_RETRY_SECONDS - 1
    await worker.turn({})
    assert producer.calls[-1] == ("stop",)  # not restored before then


async def test_while_the_brokers_are_unreachable_the_worker_is_not_ready(
    presets: Policy,
) -> None:
    producer = RecordingProducer()
    worker = await worker_with(producer, presets)
    assert worker.ready

    await worker.brokers.lost("KafkaConnectionError: refused")
    assert not worker.ready and INPUT in consumer_of(worker).paused
    await worker.turn({INPUT: [created(8, "HD-2")]})  # given back, not stepped
    assert consumer_of(worker).seeks[INPUT] == 8 and len(producer.transactions()) == 1

    await worker.brokers.back()
    assert worker.ready and INPUT not in consumer_of(worker).paused


async def test_a_partition_counts_as_read_as_of_its_previous_fetch(presets: Policy) -> None:
    """The latest response's stamp is taken when the client processes it, after the
    broker's snapshot; the one before it cannot be later than that snapshot."""
    worker = new_worker(RecordingProducer(), presets)
    await assigned(worker)  # its first turn saw one fetch, stamped 1.0 s
    view = consumer_of(worker)

    assert await worker.inputs.caught_up(0) is None  # one fetch seen: wait for the next
    view.fetched_ms = 1_100
    assert await worker.inputs.caught_up(0) == datetime.fromtimestamp(1.0, UTC)
    view.fetched_ms = 1_200
    assert await worker.inputs.caught_up(0) == datetime.fromtimestamp(1.1, UTC)
    view.end = 12  # records the position has not reached: behind
    assert await worker.inputs.caught_up(0) is None


async def test_readyz_shows_each_partitions_next_timer_and_whether_a_step_is_under_way(
    presets: Policy,
) -> None:
    """What a test harness (devtools.harness.settled) waits on: nothing under way, and no
    timer left unfired up to an instant."""
    worker = await worker_with(RecordingProducer(), presets)
    [row] = worker.diagnostics()
    assert row["next_due"] is None  # HD-1, a day old, has fired all it ever will
    assert row["held_until"] is None  # nothing waits for its ticket
    assert row["committed"] == 8
    now = datetime.now(UTC)
    await worker.turn({INPUT: [created(8, "HD-2", at=now)]})
    [row] = worker.diagnostics()
    assert row["next_due"] is not None and row["next_due"].endswith("Z")
    assert datetime.fromisoformat(row["next_due"]) > now  # HD-2's first warning
    assert worker.busy is False
    async with worker.tasks.lock:  # what a step, rebalance or reload holds
        assert worker.busy is True


class Broken(Exception):
    """A failure no Kafka client knows: nothing says it will pass."""


async def test_commits_that_keep_failing_for_a_new_reason_stop_the_worker(
    presets: Policy,
) -> None:
    """Counted by reason; after `max_commit_attempts` failures in a row, each followed by
    a restore, the worker gives up with one sentence (the command exits 1)."""
    producer = RecordingProducer(fail_on="commit", error=Broken("disk on fire"))
    worker = await worker_with(producer, presets)  # the first failure
    limit = worker.settings.max_commit_attempts
    for _ in range(limit - 2):
        await restore_again(worker)
        await worker.turn({INPUT: [created(7, "HD-1")]})
    await restore_again(worker)
    with pytest.raises(CommitsFailing, match=f"{limit} steps of partition 0 in a row"):
        await worker.turn({INPUT: [created(7, "HD-1")]})
    scrape = worker.metrics.render().decode()
    assert f'sla_commit_failures_total{{reason="Broken"}} {float(limit)}' in scrape


async def test_an_outage_or_a_success_never_counts_towards_giving_up(presets: Policy) -> None:
    """Retriable errors (an outage) are ridden out however long; a commit that succeeds
    starts the count again."""
    producer = RecordingProducer(fail_on="commit")  # KafkaTimeoutError: retriable
    worker = await worker_with(producer, presets)
    limit = worker.settings.max_commit_attempts

    async def attempt() -> None:
        await restore_again(worker)
        await worker.turn({INPUT: [created(7, "HD-1")]})

    for _ in range(3 * limit):
        await attempt()
    producer.error = Broken("once")
    for _ in range(limit - 1):
        await attempt()
    producer.fail_on = None
    await attempt()  # succeeds: the count starts again
    producer.fail_on = "commit"
    await worker.turn({INPUT: [created(8, "HD-2")]})  # one failure: far from the limit
    assert worker.committer.failures == {0: 1}


async def test_a_long_restore_never_stalls_the_running_partitions(presets: Policy) -> None:
    """Partition 1 reads a changelog of 20,000 tickets while partition 0 runs: the loop
    goes on stepping and committing partition 0 all along (the restore works in bounded
    chunks beside it, `worker.kafka.restorer`)."""
    template = new_worker(RecordingProducer(), presets).new_partition(1)
    record = created(1, "HD-0", at=NOW)
    message = Message(record.topic, 1, 1, record.key, record.value)
    template.step([message], NOW, read_through=NOW)
    state = template.tickets["HD-0"]
    changelogs = FakeChangelogs({1: [(f"T-{i}".encode(), state) for i in range(20_000)]})
    producer = RecordingProducer()
    worker = new_worker(producer, presets, changelogs)
    await assigned(worker, 0)
    await worker.on_revoked()  # a rebalance gives it partition 1 as well
    await worker.on_assigned([INPUT, TopicPartition("tickets", 1)])

    async def fetch_and_turn(records: dict[TopicPartition, list[Record]]) -> None:
        await asyncio.sleep(0)  # the consumer's fetch gives the event loop to others
        await worker.turn(records)  # type: ignore[arg-type]

    await fetch_and_turn({})  # starts the restore, which keeps partition 0 (nobody
    for _ in range(10):  # wrote its changelog): it runs again after a few turns
        await fetch_and_turn({})
    assert worker.restoring == [1]

    turns = 0
    while worker.restoring:
        assert 0 in worker.partitions
        await fetch_and_turn({INPUT: [created(100 + turns, f"HD-{turns}")]})
        turns += 1
    await worker.turn({})

    assert len(worker.partitions[1].tickets) == 20_000
    # 10 chunks of changelog records and 40 of tickets rebuilt: the loop had its turns.
    assert turns >= 5 and len(producer.transactions()) >= turns - 1


async def test_a_rebalance_during_a_restore_cancels_it_and_keeps_nothing_half_read(
    presets: Policy,
) -> None:
    """Revoked while partition 1 reads its changelog: the restore stops, the half-read
    state is not kept (a suspended task keeps only state that was whole), and the next
    assignment reads it again from the beginning."""
    template = new_worker(RecordingProducer(), presets).new_partition(1)
    record = created(1, "HD-0", at=NOW)
    template.step([Message(record.topic, 1, 1, record.key, record.value)], NOW, NOW)
    state = template.tickets["HD-0"]
    changelogs = FakeChangelogs({1: [(f"T-{i}".encode(), state) for i in range(20_000)]})
    worker = new_worker(RecordingProducer(), presets, changelogs)
    await worker.on_assigned([TopicPartition("tickets", 1)])
    await worker.turn({})
    for _ in range(100):  # until the restore has read a chunk or two
        if changelogs.reads >= 2:
            break
        await asyncio.sleep(0)
    assert worker.restoring == [1] and changelogs.reads >= 2

    await worker.on_revoked()
    assert worker.tasks.state_of(1) is None and worker.tasks.held() == []
    await assigned(worker, 1)

    assert len(worker.partitions[1].tickets) == 20_000 and worker.ready


async def test_a_policy_reload_during_a_restore_starts_it_again(presets: Policy) -> None:
    """The state being rebuilt was scheduled under the old policy: the restore is
    cancelled and runs again under the new one; running partitions are rescheduled."""
    changelogs = FakeChangelogs({1: [(b"T-1", b"{}")] * 5_000})
    worker = new_worker(RecordingProducer(), presets, changelogs)
    await assigned(worker, 0)
    await worker.on_revoked()
    await worker.on_assigned([INPUT, TopicPartition("tickets", 1)])
    await worker.turn({})
    await asyncio.sleep(0)

    await worker.reload_policy(presets)
    assert 1 in worker.restoring and worker.tasks.tasks[1].partition is None
    await worker.turn({})
    await worker.tasks.restored()
    await worker.turn({})

    assert worker.ready and sorted(worker.partitions) == [0, 1]


async def test_a_restore_that_fails_after_one_partition_was_restored_keeps_that_one(
    presets: Policy,
) -> None:
    """Partition 0 (nothing to read) is restored at once; partition 1's long changelog read
    then fails while the loop seeks 0's inputs. 0 still starts, with its state; 1 alone
    restores again (the worker neither crashes nor runs 0 without state)."""

    class SlowCommitted(FakeConsumer):
        async def committed(self, tp: TopicPartition) -> int | None:
            for _ in range(5):
                await asyncio.sleep(0)
            return None

    class FailingOnce(FakeChangelogs):
        async def getmany(self, *tps: TopicPartition, **options: object) -> object:
            if self.reads >= 1:
                self.reads += 1
                await asyncio.sleep(0)
                raise RuntimeError("broker hiccup")
            return await super().getmany(*tps, **options)  # type: ignore[arg-type]

    changelogs = FailingOnce({1: [(f"T-{i}".encode(), b"{}") for i in range(10_000)]})
    settings = WorkerSettings(partitions=2, app_id="unit")
    clients = Clients(SlowCommitted(), changelogs, lambda number: RecordingProducer())
    worker = LiveWorker(settings, presets, Metrics(presets), clients)  # type: ignore[arg-type]
    await worker.on_assigned([TopicPartition("tickets", 0), TopicPartition("tickets", 1)])
    await worker.turn({})
    for _ in range(50):
        if worker.tasks.tasks[0].restored:
            break
        await asyncio.sleep(0)
    assert worker.tasks.tasks[0].restored
    await worker.turn({})  # seeks 0's inputs while 1's read fails
    await worker.tasks.restored()
    assert list(worker.partitions) == [0] and worker.tasks.tasks[0].partition is not None
    assert worker.tasks.tasks[1].state is TaskState.RESTORING


async def test_the_loop_runs_with_the_cycle_collector_tuned_as_replay_does(
    presets: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fewer collections of the long-lived state while the loop runs; the thresholds
    are given back when it stops."""

    class Idle:  # a consumer with nothing to read (group member and changelogs alike)
        async def start(self) -> None: ...
        async def stop(self) -> None: ...
        def subscribe(self, topics: list[str], listener: object) -> None: ...
        async def getmany(self, *tps: object, **options: object) -> dict[object, object]:
            await asyncio.sleep(0)
            return {}

        async def topics(self) -> set[str]:
            return set()

    settings = WorkerSettings(partitions=1, app_id="unit")
    producer = RecordingProducer()
    clients = Clients(Idle(), Idle(), lambda number: producer)  # type: ignore[arg-type]
    worker = LiveWorker(settings, presets, Metrics(presets), clients)
    stop = asyncio.Event()
    seen = []

    async def turn(records: dict[TopicPartition, list[Record]]) -> None:
        seen.append(gc.get_threshold())
        stop.set()

    monkeypatch.setattr(worker, "turn", turn)
    before = gc.get_threshold()
    await worker.run(stop)
    assert seen == [(10_000, 10, 10)] and gc.get_threshold() == before
