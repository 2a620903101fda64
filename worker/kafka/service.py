"""The live worker: Kafka in, one transaction per partition step out (Kafka Streams'
StreamThread: the main loop, and the parts it drives).

The decisions are the core's and `Partition`'s; the worker moves bytes and keeps one
promise: **a step's outputs, its state changes and its input offsets are committed in
one Kafka transaction, or none of them is.** So, per running partition and loop turn:

1. read what the consumer returned for the partition (read_committed);
2. `Partition.step`: apply the messages, fire what is due, collect the writes;
3. one transaction on the partition's own transactional producer (`Committer`):
   warnings, breaches, dead letters, changelog records, and the consumed input offsets;
4. if anything in 3 fails, forget the partition and restore it from the changelog
   (the last committed transaction's state, with its input offsets): nothing that was
   not committed is ever believed.

After a crash, a restart or a takeover, the new owner therefore starts from a state, an
event time and input offsets that belong to one and the same committed instant: it reads
again exactly the input whose effects were not committed, and publishes their warnings
and breaches once. Consumers reading the output topics with `isolation.level=
read_committed` see each warning and breach once; others may also see records of aborted
transactions, which carry the same `event_id`s as their committed repeats.

The parts, each with one job, built here from the clients the composition root passes in
(`worker.kafka.clients`):

- `TaskManager` (task_manager.py): each partition's state (restoring, running,
  suspended) and its transitions; restores run beside the loop and never stall it;
- `Standbys` (standby.py): with `--standby-replicas`, the partitions kept warm by
  tailing their changelogs, promoted to tasks without a restore;
- `Restorer` (restorer.py): reads a changelog back into a partition, in bounded chunks;
- `Committer` (committer.py): the per-partition producers and one transaction per step;
  fencing, and giving up on commits that keep failing;
- `BrokerWatch` (brokers.py): probes the brokers; while they are unreachable, `/readyz`
  turns 503, every input is paused and nothing is stepped, so no transaction is begun
  that cannot commit and no timer fires on a partition whose input cannot be read. A
  transaction in flight when the broker went away fails and its partition is restored;
- `InputWatch` (inputs.py): what was seen of the inputs, and as of when each partition
  has read everything (the instant its timers may fire up to);
- `WorkerView` (view.py): what the HTTP API and the metrics read.

**Rebalances** only take note (revoked partitions are suspended in memory, assigned ones
paused and restored in the background), so the consumer's heartbeats go on however long
a changelog takes to read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import ConsumerRebalanceListener
from aiokafka.structs import TopicPartition

from worker.core.engine import Engine
from worker.core.limits import InputLimits
from worker.core.policy import Policy
from worker.kafka.brokers import BrokerWatch
from worker.kafka.clients import Clients, Membership
from worker.kafka.committer import CommitsFailing, Committed, Committer
from worker.kafka.inputs import InputWatch
from worker.kafka.restorer import Restorer
from worker.kafka.snapshot import Snapshots
from worker.kafka.standby import Standbys
from worker.kafka.task_manager import TaskManager
from worker.kafka.topics import DEFAULT_DELETE_RETENTION_MS, changelog_topic_name
from worker.kafka.view import WorkerView
from worker.metrics import Metrics
from worker.replay import relaxed_garbage_collection
from worker.settings import WorkerSettings
from worker.tasks import cloudevents
from worker.tasks.partition import Batch, Message, Partition, StateUnavailable, Topics
from worker.tasks.processor import TicketProcessor

__all__ = ["CommitsFailing", "LiveWorker"]

log = logging.getLogger("sla_worker")

MAX_RECORDS = 2000
"""Most messages one loop turn takes from the consumer (over all partitions)."""


class LiveWorker:
    """The main loop, the rebalance callbacks and the policy; the public surface the
    HTTP API (`worker.kafka.web`) and the composition root use."""

    def __init__(
        self,
        settings: WorkerSettings,
        policy: Policy,
        metrics: Metrics,
        clients: Clients,
        membership: Membership | None = None,
        snapshots: Snapshots | None = None,
        tombstone_retention_ms: int | None = None,
    ) -> None:
        """`tombstone_retention_ms`: the changelog's delete.retention.ms (a warm standby
        that last caught up longer ago is not used; None: Kafka's default, 24 h)."""
        self.settings = settings
        self.metrics = metrics
        self.snapshots = snapshots
        self.clients = clients
        self.membership = membership or Membership()
        several_inputs = len(settings.input_topics) > 1
        self.processor = TicketProcessor(
            Engine(
                policy,
                timedelta(days=settings.finished_retention_days),
                # Business times only where finished timers are published.
                measure=settings.finished_timers_topic is not None,
            ),
            timedelta(seconds=settings.hold_unknown_seconds) if several_inputs else None,
            InputLimits(
                settings.max_message_bytes, timedelta(seconds=settings.max_clock_skew_seconds)
            ),
        )
        self.topics = Topics(
            settings.warnings_topic,
            settings.breaches_topic,
            settings.dead_letter_topic,
            changelog_topic_name(settings),
            settings.finished_timers_topic,
            cloudevents.source(settings.app_id),
        )
        self.lateness = timedelta(seconds=settings.allowed_lateness_seconds)
        self.joined = False  # a member of the group with a settled assignment
        self.brokers = BrokerWatch(
            clients.changelogs.topics, self._brokers_lost, self._brokers_back
        )
        self.inputs = InputWatch(clients.consumer, settings.input_topics, metrics)
        self.committer = Committer(
            clients.producer_for,
            settings.app_id,
            self.topics.changelog,
            metrics,
            settings.max_commit_attempts,
            lambda: self.brokers.reachable,
        )
        self.standbys = (
            None
            if clients.standbys is None
            else Standbys(
                clients.standbys,
                self.topics.changelog,
                self.new_partition,
                metrics,
                DEFAULT_DELETE_RETENTION_MS
                if tombstone_retention_ms is None
                else tombstone_retention_ms,
            )
        )
        self.tasks = TaskManager(
            clients.consumer,
            self.inputs,
            self.committer,
            Restorer(clients.changelogs, self.topics.changelog, metrics),
            metrics,
            self.new_partition,
            lambda: self.brokers.reachable,
            snapshots,
            self.standbys,
        )
        self.view = WorkerView(self.tasks, self.inputs, self.standbys)
        self.membership.held = self.tasks.held
        if self.standbys is not None:
            self.membership.standby_lags = self.standbys.lags

    def new_partition(self, number: int) -> Partition:
        return Partition(number, self.processor, self.topics, self.lateness)

    # --- what the web API and metrics ask -------------------------------------------------

    @property
    def ready(self) -> bool:
        """In the group, every assigned partition restored (none assigned counts), and the
        brokers reachable."""
        return self.joined and not self.tasks.restoring() and self.brokers.reachable

    @property
    def broker_reachable(self) -> bool:
        return self.brokers.reachable

    @property
    def partitions(self) -> dict[int, Partition]:
        """The running partitions (restored, stepped), by number."""
        return self.tasks.running()

    @property
    def restoring(self) -> list[int]:
        """Assigned partitions whose state is being restored."""
        return self.tasks.restoring()

    @property
    def busy(self) -> bool:
        """A step, rebalance, install of restored state or reload is under way at this
        instant: what `diagnostics` shows of a partition may not be committed yet."""
        return self.view.busy

    def liveness(self) -> list[tuple[int, bool, datetime | None]]:
        return self.view.liveness()

    def diagnostics(self) -> list[dict[str, Any]]:
        return self.view.diagnostics()

    def standby_diagnostics(self) -> list[dict[str, Any]]:
        return list(self.view.standby_diagnostics())

    def describe(self, partition: int, ticket_id: str) -> dict[str, Any] | None:
        return self.view.describe(partition, ticket_id)

    def owns(self, partition: int) -> bool:
        return self.view.owns(partition)

    @property
    def owners(self) -> dict[int, str]:
        """The group's map partition -> HTTP address, from the latest assignment."""
        return self.membership.owners

    def owner_of(self, partition: int) -> str | None:
        return self.membership.owners.get(partition)

    def at_risk_view(self) -> tuple[dict[int, Partition], set[int]]:
        return self.view.at_risk_view()

    # --- running --------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Process until `stop` is set; then commit nothing half-done and leave the group."""
        consumer = self.clients.consumer
        await self.clients.changelogs.start()
        standby_consumer = self.clients.standbys
        if standby_consumer is not None:
            await standby_consumer.start()
        await consumer.start()
        consumer.subscribe(self.settings.input_topics, listener=_Listener(self))
        interval_ms = max(int(self.settings.timer_interval_seconds * 1000), 1)
        probe = asyncio.create_task(self.brokers.run())
        follow = None if self.standbys is None else asyncio.create_task(self.standbys.run())
        try:
            # The cycle collector tuned as for a replay (see there): the tickets' state is
            # long-lived and cycle-free, and a step's thousands of short-lived objects made
            # the default thresholds run it every 700 allocations, a tenth of the loop's
            # time in the #23 profile (BENCHMARKS.md) for no garbage found.
            with relaxed_garbage_collection():
                while not stop.is_set():
                    records = await consumer.getmany(
                        timeout_ms=interval_ms, max_records=MAX_RECORDS
                    )
                    await self.turn(records)
        finally:
            probe.cancel()
            if follow is not None:
                follow.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await follow
            async with self.tasks.lock:
                self.joined = False
                await self.tasks.cancel_restore()
            try:
                # Each on its own: one that fails to stop does not keep the next open.
                # The group member first: it leaves the group, the others take over.
                for client in (consumer, self.clients.changelogs, standby_consumer):
                    if client is None:
                        continue
                    try:
                        await client.stop()
                    except Exception as exc:
                        log.warning(
                            "could not stop a Kafka client (%s: %s)", type(exc).__name__, exc
                        )
            finally:  # whatever the consumers did: producers and stores are closed
                try:
                    await self.committer.close_all()
                finally:
                    self.tasks.close_stores()

    async def turn(self, records: dict[TopicPartition, list[Any]]) -> None:
        """One turn of the loop, with what the consumer returned: start the restores that
        are due, and step every running partition."""
        async with self.tasks.lock:
            if not self.brokers.reachable:
                # Nothing can commit: fire nothing, and give back what was fetched
                # before the inputs were paused; it is read again on resume.
                self._give_back(records)
                return
            fresh = await self.tasks.start_restored()
            self.tasks.start_restores()
            await self._step(records, fresh)

    async def _brokers_lost(self) -> None:
        # Not ready at once; the pause waits for a step in flight (its commit may hang
        # until the client's request timeout, then fails and restores the partition).
        async with self.tasks.lock:
            self.tasks.pause_all()

    async def _brokers_back(self) -> None:
        async with self.tasks.lock:
            self.tasks.resume_running()

    def _give_back(self, records: dict[TopicPartition, list[Any]]) -> None:
        """Rewind the consumer to the first of these records: they were not applied."""
        for tp, fetched in records.items():
            if fetched:
                with contextlib.suppress(Exception):  # not assigned any more: nothing to do
                    self.clients.consumer.seek(tp, fetched[0].offset)

    async def _step(self, records: dict[TopicPartition, list[Any]], fresh: set[int]) -> None:
        """Step every running partition (under the lock); `fresh`: those started in this
        turn, whose records (if any came) were fetched before their inputs were seeked."""
        now = datetime.now(UTC)
        running = self.tasks.running()
        messages: dict[int, list[Message]] = {}
        for tp, fetched in records.items():
            if tp.partition not in running or tp.partition in fresh:
                # Not ours (any more), or fetched before the restore's seek: the
                # consumer reads them again from the restored position.
                continue
            messages.setdefault(tp.partition, []).extend(
                Message(
                    r.topic,
                    r.partition,
                    r.offset,
                    r.key,
                    r.value,
                    _headers(r.headers),
                    timestamp_ms=r.timestamp,
                )
                for r in fetched
            )
        batches = []
        for number, partition in running.items():
            read_through = await self.inputs.caught_up(number)
            started = time.perf_counter()
            try:
                batch = partition.step(messages.get(number, []), now, read_through)
            except StateUnavailable as exc:  # its local store failed: nothing to commit
                self.tasks.state_failed(number, str(exc))
                continue
            if batch:
                batches.append((batch, started))
            else:  # nothing to commit: index-only changes reach the store once many
                self.tasks.settle_indexes(number)
        if batches:
            await asyncio.gather(*(self._commit(batch, started) for batch, started in batches))

    async def _commit(self, batch: Batch, started: float) -> None:
        result = await self.committer.commit(batch, started)
        if isinstance(result, Committed):
            partition = self.tasks.running().get(batch.partition)
            if partition is not None and result.changelog_end is not None:
                partition.changelog_end = result.changelog_end
                if self.snapshots is not None:
                    # Only now, the transaction committed: the local snapshot follows it.
                    records = [
                        (w.key or b"", w.value)
                        for w in batch.writes
                        if w.topic == self.topics.changelog
                    ]
                    self.tasks.snapshot(
                        batch.partition, records, result.changelog_end, result.began_ms
                    )
            _log_batch(batch)
        else:
            self.tasks.lose(batch.partition, result.why, result.retry_in)

    # --- rebalances --------------------------------------------------------------------------

    async def on_revoked(self) -> None:
        async with self.tasks.lock:  # waits for the step in flight and its transaction
            self.joined = False
            self.metrics.rebalance_started()
            await self.tasks.revoke_all()

    async def on_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        """Only take note: the tasks restore beside the main loop (heartbeats stop during
        this callback)."""
        async with self.tasks.lock:
            # The assignor's `on_assignment` ran before this callback: the membership
            # holds this member's standbys of the new generation.
            await self.tasks.assign({tp.partition for tp in assigned}, self.membership.standbys)
            self.joined = True

    # --- a new policy (SIGHUP) ----------------------------------------------------------------

    @property
    def policy(self) -> Policy:
        return self.processor.engine.policy

    async def reload_policy(self, policy: Policy) -> int:
        """Judge with `policy` from the next step on; returns the tickets rescheduled.

        Between steps (under the lock): the engine is replaced, and every running
        partition's due-index is rebuilt from its state, since a changed version may move
        deadlines. Each ticket keeps the version it was created under (state records it),
        so a new version only judges tickets created from its `effective_from` on.
        Suspended partitions are dropped, and a restore under way starts again (read
        again from the changelog). A partition whose rebuild fails (its local store
        cannot be read or written) is handled as a step that failed so: restored from
        the changelog, without its store, under the new policy; the others go on.
        """
        async with self.tasks.lock:
            old = self.processor.engine
            await self.tasks.drop_state()
            self.processor.engine = Engine(policy, old.retention, old.measure)
            self.metrics.use_policy(policy)
            rows = 0
            for number, partition in self.tasks.running().items():
                try:
                    rows += await self.tasks.restorer.rebuild(partition)
                except Exception as exc:  # half rebuilt: never run on it
                    self.tasks.state_failed(number, f"{type(exc).__name__}: {exc}")
            return rows


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, worker: LiveWorker) -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.worker.on_revoked()

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self.worker.on_assigned(assigned)


def _headers(headers: Any) -> tuple[tuple[str, bytes], ...]:
    """Message headers as (name, bytes) pairs, whatever shape the client gave them."""
    if not headers:  # most inputs carry none: no generator per message
        return ()
    return tuple(
        (str(k), v if isinstance(v, bytes) else str(v or "").encode()) for k, v in headers or ()
    )


def _log_batch(batch: Batch) -> None:
    for ticket_id, error in batch.errors:
        log.error(
            "could not fire the timers of ticket %r on partition %d: %s (a bug: please "
            "report it; the ticket's next event reschedules them)",
            ticket_id,
            batch.partition,
            error,
        )
    for event in batch.published:
        log.info(
            "published %s",
            event.type,
            extra={
                "ticket_id": event.ticket_id,
                "metric": event.metric,
                "cycle": event.cycle,
                "due_at": event.due_at.isoformat(),
                "event_id": event.event_id,
            },
        )
    for letter in batch.dead_letters:
        log.warning(
            "dead-lettered: %s",
            letter.detail,
            extra={
                "reason": letter.reason,
                "ticket_key": None if letter.source.key is None else repr(letter.source.key),
                "topic": letter.source.topic,
                "partition": letter.source.partition,
                "offset": letter.source.offset,
            },
        )
