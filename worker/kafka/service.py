"""The live worker: Kafka in, one transaction per partition step out.

The decisions are the core's and `Partition`'s; this module moves bytes and keeps one
promise: **a step's outputs, its state changes and its input offsets are committed in
one Kafka transaction, or none of them is.** So, per owned partition and loop turn:

1. read what the consumer returned for the partition (read_committed);
2. `Partition.step`: apply the messages, fire what is due, collect the writes;
3. one transaction on the partition's own transactional producer: warnings, breaches,
   dead letters, changelog records, and the consumed input offsets;
4. if anything in 3 fails, forget the partition and restore it from the changelog
   (the last committed transaction's state, with its input offsets): nothing that was
   not committed is ever believed.

After a crash, a restart or a takeover, the new owner therefore starts from a state, an
event time and input offsets that belong to one and the same committed instant: it reads
again exactly the input whose effects were not committed, and publishes their warnings
and breaches once. Consumers reading the output topics with `isolation.level=
read_committed` see each warning and breach once; others may also see records of aborted
transactions, which carry the same `event_id`s as their committed repeats.

**Fencing.** Each partition has its own transactional id (`<app-id>-state-<p>`). Whoever
is assigned the partition creates a producer with that id first, which fences any
earlier owner (a crashed or paused worker) and aborts its open transaction, before it
reads the changelog and the committed offsets. A fenced worker's commit fails; it drops
the partition and tries to restore it only after the group has had time to settle. This
is Kafka's own fencing (as in Kafka Streams' per-task producers), not a mechanism of ours.

**Rebalances** only take note (revoked partitions are parked in memory, assigned ones
paused); restores run in the main loop, where heartbeats go on however long a changelog
takes to read.

**Broker outages** are ridden out. A probe asks the brokers for metadata every few
seconds; after two failures in a row the worker counts them unreachable: `/readyz` turns
503, every input is paused and nothing is stepped or restored, so no transaction is
begun that cannot commit and no timer fires on a partition whose input cannot be read.
The state in memory stays as the last committed transaction left it. When a probe
succeeds again, the inputs resume where they were. A transaction that was in flight when
the broker went away fails and its partition is restored from the changelog, as after
any failed commit. The process never exits for an outage: a restart could do nothing
better and would have to read the changelogs again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.errors import (
    ConcurrentTransactions,
    InvalidProducerEpoch,
    KafkaError,
    KafkaTimeoutError,
    ProducerFenced,
    TransactionCoordinatorFenced,
)
from aiokafka.structs import TopicPartition

from worker.core.engine import Engine
from worker.core.errors import SlaWorkerError
from worker.core.limits import InputLimits
from worker.core.policy import Policy
from worker.kafka.assignment import ticket_assignor
from worker.kafka.topics import changelog_topic_name, client_options
from worker.logs import BROKER_LOGGER
from worker.metrics import Metrics
from worker.settings import WorkerSettings
from worker.tasks import cloudevents
from worker.tasks.partition import Batch, Message, Partition, Topics
from worker.tasks.processor import TicketProcessor, iso

log = logging.getLogger("sla_worker")
# Failures that come in thousands while the broker is away: rate-limited (worker/logs.py).
broker_log = logging.getLogger(BROKER_LOGGER)

MAX_RECORDS = 2000
"""Most messages one loop turn takes from the consumer (over all partitions)."""
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
CHANGELOG_STALL_SECONDS = 60.0
"""A changelog read that gets no record for this long fails (and is retried)."""
FETCH_MAX_WAIT_MS = 100
PROBE_INTERVAL_SECONDS = 2.0
PROBE_TIMEOUT_SECONDS = 5.0
PROBE_FAILURES = 2
"""Consecutive failed metadata probes after which the brokers count as unreachable."""


class CommitsFailing(SlaWorkerError, RuntimeError):
    """A partition's steps failed to commit `max_commit_attempts` times in a row, for a
    reason that is neither an outage nor a new owner: the worker exits 1, to be restarted."""


@dataclass
class InputView:
    """What the worker last saw of one input partition: for `_caught_up`, and GET /readyz."""

    position: int | None = None  # the next offset to read
    end: int | None = None  # the last stable offset of the latest fetch response
    fetch_ms: int | None = None  # when the client processed that response
    previous_fetch_ms: int | None = None  # ... and the one before it

    def observe(self, position: int, end: int | None, fetch_ms: int | None) -> None:
        self.position, self.end = position, end
        if fetch_ms is not None and fetch_ms != self.fetch_ms:
            self.previous_fetch_ms, self.fetch_ms = self.fetch_ms, fetch_ms


class LiveWorker:
    """Owns the consumer, the per-partition producers and the partitions' state."""

    def __init__(self, settings: WorkerSettings, policy: Policy, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
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
        self.partitions: dict[int, Partition] = {}  # assigned and restored
        self.owners: dict[int, str] = {}  # the group's map partition -> HTTP address
        self.joined = False  # a member of the group with a settled assignment
        self._unrestored: set[int] = set()  # assigned, state not (yet) restored
        self._parked: dict[int, Partition] = {}  # revoked, kept in case it comes back
        self._producers: dict[int, AIOKafkaProducer] = {}
        self._lock = asyncio.Lock()  # one step, one restore or one rebalance at a time
        self._next_restore = 0.0
        self.broker_reachable = True
        self._seen: dict[TopicPartition, InputView] = {}  # per input partition
        self._probe_failures = 0
        self._failed_commits: dict[int, int] = {}  # partition -> failed commits in a row
        self._unreachable_since = 0.0  # monotonic, while unreachable
        assignor = ticket_assignor(settings.canonical_url, self._held, self._set_owners)
        options = self._options = client_options(settings)  # SSL context made once
        session_ms = int(settings.session_timeout_seconds * 1000)
        self.consumer = AIOKafkaConsumer(
            **options,
            client_id=f"{settings.app_id}-consumer",
            group_id=settings.app_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            # An idle fetch comes back after this long: how fresh the "read everything
            # up to" instant is that lets timers fire on the wall clock (clocks.py).
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
            session_timeout_ms=session_ms,
            heartbeat_interval_ms=max(session_ms // 10, 100),
            partition_assignment_strategy=(assignor,),
            # Static membership: a restart within the session timeout moves nothing (a
            # static member does not leave the group when it stops).
            group_instance_id=settings.instance_id,
        )
        self.restorer = AIOKafkaConsumer(
            **options,
            client_id=f"{settings.app_id}-restorer",
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
        )

    # --- what the web API and metrics ask -------------------------------------------------

    @property
    def ready(self) -> bool:
        """In the group, every assigned partition restored (none assigned counts), and the
        brokers reachable."""
        return self.joined and not self._unrestored and self.broker_reachable

    def liveness(self) -> list[tuple[int, bool, datetime | None]]:
        """(partition, caught up, earliest unfired due instant) per owned partition."""
        return [
            (number, partition.clock.caught_up, partition.clock.due.peek())
            for number, partition in sorted(self.partitions.items())
        ]

    @property
    def busy(self) -> bool:
        """A step, restore or rebalance is under way at this instant: what `diagnostics`
        shows of a partition may not be committed yet."""
        return self._lock.locked()

    def diagnostics(self) -> list[dict[str, Any]]:
        """Per owned input partition: the next offset to read and the partition's end
        (last stable offset) as last seen, the offset the partition's last step recorded
        (its state holds it; committed unless `busy`); and, for the partition (so the
        same on each of its inputs' rows), the earliest due instant of a timer that has
        not fired yet and the earliest wall-clock expiry of events held for a ticket not
        created yet."""
        rows = []
        for number, partition in sorted(self.partitions.items()):
            due, held = partition.clock.due.peek(), partition.clock.holds.peek()
            for tp in self._inputs(number):
                seen = self._seen.get(tp, InputView())
                rows.append(
                    {
                        "topic": tp.topic,
                        "partition": number,
                        "position": seen.position,
                        "end": seen.end,
                        "committed": partition.offsets.get(tp.topic),
                        "caught_up": partition.clock.caught_up,
                        "next_due": None if due is None else iso(due),
                        "held_until": None if held is None else iso(held),
                    }
                )
        return rows

    def owner_of(self, partition: int) -> str | None:
        return self.owners.get(partition)

    def _held(self) -> list[int]:
        """Partitions whose state this worker holds (announced when it joins)."""
        return sorted(set(self.partitions) | set(self._parked))

    def _set_owners(self, owners: dict[int, str]) -> None:
        self.owners = owners

    # --- running --------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Process until `stop` is set; then commit nothing half-done and leave the group."""
        await self.restorer.start()
        await self.consumer.start()
        self.consumer.subscribe(self.settings.input_topics, listener=_Listener(self))
        interval_ms = max(int(self.settings.timer_interval_seconds * 1000), 1)
        probe = asyncio.create_task(self._watch_brokers())
        try:
            while not stop.is_set():
                records = await self.consumer.getmany(
                    timeout_ms=interval_ms, max_records=MAX_RECORDS
                )
                async with self._lock:
                    if not self.broker_reachable:
                        # Nothing can commit: fire nothing, and give back what was fetched
                        # before the inputs were paused; it is read again on resume.
                        self._give_back(records)
                        continue
                    fresh = await self._restore_pending()
                    await self._step(records, fresh)
        finally:
            probe.cancel()
            async with self._lock:
                self.joined = False
            await self.consumer.stop()  # leaves the group: the others take over at once
            await self.restorer.stop()
            for producer in self._producers.values():
                with contextlib.suppress(Exception):
                    await producer.stop()

    async def _watch_brokers(self) -> None:
        """Probe the brokers with a metadata request every few seconds (see the module
        docstring, "Broker outages")."""
        while True:
            await asyncio.sleep(PROBE_INTERVAL_SECONDS)
            try:
                await asyncio.wait_for(self.restorer.topics(), PROBE_TIMEOUT_SECONDS)
            except Exception as exc:  # any failure is a failed probe
                self._probe_failures += 1
                if self._probe_failures == PROBE_FAILURES and self.broker_reachable:
                    await self._brokers_lost(f"{type(exc).__name__}: {exc}")
            else:
                self._probe_failures = 0
                if not self.broker_reachable:
                    await self._brokers_back()

    async def _brokers_lost(self, why: str) -> None:
        # Not ready at once; the pause waits for a step in flight (its commit may hang
        # until the client's request timeout, then fails and restores the partition).
        self.broker_reachable = False
        self._unreachable_since = time.monotonic()
        log.error(
            "the Kafka brokers are unreachable (%s): not ready; processing is paused and "
            "resumes by itself when they answer again",
            why,
        )
        async with self._lock:
            for number in set(self.partitions) | self._unrestored:
                self._pause(number)

    def _give_back(self, records: dict[TopicPartition, list[Any]]) -> None:
        """Rewind the consumer to the first of these records: they were not applied."""
        for tp, fetched in records.items():
            if fetched:
                with contextlib.suppress(Exception):  # not assigned any more: nothing to do
                    self.consumer.seek(tp, fetched[0].offset)

    async def _brokers_back(self) -> None:
        async with self._lock:
            self.broker_reachable = True
            for number in self.partitions:  # unrestored ones resume when restored
                with contextlib.suppress(Exception):
                    self.consumer.resume(*self._inputs(number))
        log.warning(
            "the Kafka brokers answer again after %.0f s: processing resumes",
            time.monotonic() - self._unreachable_since,
        )

    async def _step(self, records: dict[TopicPartition, list[Any]], fresh: set[int]) -> None:
        """Step every owned partition; `fresh`: partitions restored in this turn, whose
        records (if any came) were fetched before the restore seeked and are not used."""
        now = datetime.now(UTC)
        messages: dict[int, list[Message]] = {}
        for tp, fetched in records.items():
            if tp.partition not in self.partitions or tp.partition in fresh:
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
        for number, partition in list(self.partitions.items()):
            read_through = await self._caught_up(number)
            started = time.perf_counter()
            batch = partition.step(messages.get(number, []), now, read_through)
            if batch:
                batches.append((batch, started))
        if batches:
            await asyncio.gather(*(self._commit(batch, started) for batch, started in batches))

    async def _caught_up(self, number: int) -> datetime | None:
        """As of when has this worker read everything its input partitions held? None
        while any input is behind its last stable offset (clocks.py).

        The client stamps a fetch response when it processes it, after the broker took
        the response's last stable offset: the stamp can be later than what the
        response shows, by the network and by however long the loop was busy. The
        stamp of the response *before* it cannot: the client sends the next fetch only
        after processing the previous response, so the broker's later snapshot is newer
        than that. So each input counts as read as of its previous fetch's stamp (one
        idle fetch, 0.1 s, of extra lateness), and the partition as of the oldest."""
        read_through, behind = None, False
        for tp in self._inputs(number):
            try:
                end = self.consumer.last_stable_offset(tp)
                position = await self.consumer.position(tp)
                fetched_ms = self.consumer.last_poll_timestamp(tp)
            except Exception:  # not assigned any more (a rebalance is starting)
                return None
            seen = self._seen.setdefault(tp, InputView())
            seen.observe(position, end, fetched_ms)
            if end is None:
                behind = True
                continue
            self.metrics.consumer_lag_of(tp.topic, number, max(end - position, 0))
            behind = behind or position < end
            if seen.previous_fetch_ms is None:
                behind = True  # no two fetches seen since we took the partition
                continue
            fetched = datetime.fromtimestamp(seen.previous_fetch_ms / 1000, UTC)
            read_through = fetched if read_through is None else min(read_through, fetched)
        return None if behind else read_through

    async def _commit(self, batch: Batch, started: float) -> None:
        """Step 3: one transaction with everything the step decided."""
        producer = self._producers.get(batch.partition)
        if producer is None:
            self._lose(batch.partition, "no producer for the partition")
            return
        sent: list[asyncio.Future[Any]] = []
        try:
            await producer.begin_transaction()
            for w in batch.writes:
                sent.append(
                    await producer.send(
                        w.topic, w.value, key=w.key, partition=w.partition, headers=list(w.headers)
                    )
                )
            acknowledged = await asyncio.gather(*sent)
            if batch.offsets:
                offsets = {TopicPartition(t, p): o for (t, p), o in batch.offsets.items()}
                await producer.send_offsets_to_transaction(offsets, self.settings.app_id)
            await producer.commit_transaction()
        except ProducerFenced:
            _forget(sent)
            # Another producer with this partition's transactional id started: a worker
            # that was given the partition (we missed the session timeout). Stop; restore
            # later, by when the group has settled who owns it.
            self._lose(batch.partition, "fenced by another owner", FENCED_RETRY_SECONDS)
            await self._close_producer(batch.partition)
            return
        except Exception as exc:
            _forget(sent)
            with contextlib.suppress(Exception):
                await producer.abort_transaction()
            self._lose(batch.partition, f"{type(exc).__name__}: {exc}")
            self._count_failed_commit(batch.partition, exc)
            return
        self._failed_commits.pop(batch.partition, None)
        partition = self.partitions.get(batch.partition)
        changelog = [
            meta.offset
            for write, meta in zip(batch.writes, acknowledged, strict=True)
            if write.topic == self.topics.changelog
        ]
        if partition is not None and changelog:
            # The changelog's committed end: our last record, then the commit marker.
            partition.changelog_end = max(changelog) + 2
        self.metrics.step(batch, time.perf_counter() - started)
        _log_batch(batch)

    def _count_failed_commit(self, number: int, exc: Exception) -> None:
        """Count a failed commit; raise `CommitsFailing` once a partition's steps failed
        `max_commit_attempts` times in a row for a reason that is not passing.

        A broker outage (the brokers unreachable, or an error Kafka calls retriable) is
        ridden out however long it lasts, and a fenced producer means a new owner; any
        other failure, repeated with a restore in between each time, will not mend itself
        in this process: exit, so that the orchestrator starts a fresh one."""
        self.metrics.commit_failed(type(exc).__name__)
        passing = (
            not self.broker_reachable
            or isinstance(exc, PASSING_COMMIT_ERRORS)
            or (isinstance(exc, KafkaError) and exc.retriable)
        )
        if passing:
            return
        failures = self._failed_commits[number] = self._failed_commits.get(number, 0) + 1
        if failures >= self.settings.max_commit_attempts:
            raise CommitsFailing(
                f"giving up: {failures} steps of partition {number} in a row could not be "
                f"committed (last: {type(exc).__name__}: {exc}); exiting so that the "
                "worker is restarted"
            )

    def _lose(self, number: int, why: str, wait: float = RESTORE_RETRY_SECONDS) -> None:
        """A step could not be committed: forget what memory holds, stop reading the
        partition's inputs, and restore it from Kafka in `wait` seconds."""
        broker_log.warning(
            "could not commit a step of partition %d (%s); restoring it from the changelog",
            number,
            why,
        )
        self._drop(number)
        self._pause(number)
        self._unrestored.add(number)
        self._next_restore = time.monotonic() + wait

    def _inputs(self, number: int) -> list[TopicPartition]:
        return [TopicPartition(t, number) for t in self.settings.input_topics]

    def _pause(self, number: int) -> None:
        with contextlib.suppress(Exception):  # not assigned any more: nothing to pause
            self.consumer.pause(*self._inputs(number))

    def _drop(self, number: int) -> None:
        partition = self.partitions.pop(number, None)
        if partition is not None:
            self.metrics.forget(partition.tickets)

    # --- restoring partitions --------------------------------------------------------------

    async def _restore_pending(self) -> set[int]:
        """Restore the assigned partitions not restored yet (after an assignment, or a
        failure once its wait is over); returns those restored now."""
        if not self._unrestored or time.monotonic() < self._next_restore:
            return set()
        numbers = sorted(self._unrestored)
        try:
            await self._restore(numbers)
        except Exception as exc:
            broker_log.warning(
                "could not restore partitions %s (%s: %s); retrying in %.0f s",
                numbers,
                type(exc).__name__,
                exc,
                RESTORE_RETRY_SECONDS,
            )
            for number in numbers:
                self._drop(number)
            self._next_restore = time.monotonic() + RESTORE_RETRY_SECONDS
            return set()
        self._unrestored.difference_update(numbers)
        return set(numbers)

    async def _restore(self, numbers: list[int]) -> None:
        """Fence earlier owners, load the changelog, seek inputs to committed offsets.

        Runs in the main loop, not in the rebalance callback, so the consumer's heartbeats
        go on however long the changelog takes to read. The partitions' inputs stay paused
        until their position is the committed one.
        """
        started = time.monotonic()
        log.info("restoring partitions %s", numbers)
        inputs = [tp for p in numbers for tp in self._inputs(p)]
        self.consumer.pause(*inputs)
        # 1. Fence: our producer for the partition aborts whatever an earlier owner left
        #    open (and waits for the commit of one that is completing), so the changelog's
        #    and the offsets' committed ends are final below.
        await asyncio.gather(*(self._open_producer(p) for p in numbers))
        # 2. State: keep a partition we held before if nobody wrote its changelog since.
        changelog = {p: TopicPartition(self.topics.changelog, p) for p in numbers}
        ends: dict[TopicPartition, int] = await self.restorer.end_offsets(list(changelog.values()))
        restored: dict[int, Partition] = {}
        to_read: dict[int, Partition] = {}
        for p in numbers:
            parked = self._parked.pop(p, None)
            if parked is not None and parked.changelog_end == ends[changelog[p]]:
                restored[p] = parked
            else:
                if parked is not None:
                    self.metrics.forget(parked.tickets)
                to_read[p] = restored[p] = self._new_partition(p)
        await self._read_changelog(to_read, ends)
        rows = 0
        for partition in to_read.values():
            partition.changelog_end = ends[changelog[partition.number]]
            for ticket_id, stored in partition.rebuild():
                self.metrics.state(ticket_id, stored)
                rows += 1
                if rows % 5000 == 0:
                    await asyncio.sleep(0)  # a long rebuild must not starve the web API
            if partition.unreadable:
                log.warning(
                    "partition %d: %d tickets' state cannot be read by this version (their "
                    "next events are dead-lettered as unreadable-state), e.g. %s",
                    partition.number,
                    len(partition.unreadable),
                    partition.unreadable[:5],
                )
        # 3. Inputs: from the offsets the last committed transaction recorded (the group's
        #    committed offsets, or those the changelog's clock record holds, if later).
        for tp in inputs:
            committed = await self.consumer.committed(tp)
            recorded = restored[tp.partition].offsets.get(tp.topic)
            start = max((o for o in (committed, recorded) if o is not None), default=None)
            if start is None:
                await self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek(tp, start)
            # What was seen of it belongs to an earlier ownership: fetches count afresh.
            self._seen.pop(tp, None)
        self.partitions.update(restored)
        self.consumer.resume(*inputs)
        seconds = time.monotonic() - started
        tickets = sum(len(p.tickets) for p in self.partitions.values())
        self.metrics.recovered(tickets, seconds)
        log.info(
            "restored partitions %s: %d tickets read from the changelog, %d kept, in %.2f s",
            numbers,
            sum(len(p.tickets) for p in to_read.values()),
            sum(len(p.tickets) for n, p in restored.items() if n not in to_read),
            seconds,
        )

    async def _read_changelog(
        self, partitions: dict[int, Partition], ends: dict[TopicPartition, int]
    ) -> None:
        tps = {TopicPartition(self.topics.changelog, p): part for p, part in partitions.items()}
        if not tps:
            return
        self.restorer.assign(list(tps))
        try:
            for tp in tps:
                await self.restorer.seek_to_beginning(tp)
            remaining = {tp for tp in tps if await self.restorer.position(tp) < ends[tp]}
            progress = time.monotonic()
            while remaining:
                fetched = await self.restorer.getmany(*remaining, timeout_ms=500)
                for tp, records in fetched.items():
                    partition = tps[tp]
                    for record in records:
                        partition.load(record.key or b"", record.value)
                if fetched:
                    progress = time.monotonic()
                elif time.monotonic() - progress > CHANGELOG_STALL_SECONDS:
                    raise TimeoutError(
                        f"no changelog record for {CHANGELOG_STALL_SECONDS:.0f} s while "
                        f"reading {sorted(tp.partition for tp in remaining)}"
                    )
                for tp in list(remaining):
                    if await self.restorer.position(tp) >= ends[tp]:
                        remaining.discard(tp)
        finally:
            self.restorer.assign([])

    def _new_partition(self, number: int) -> Partition:
        return Partition(number, self.processor, self.topics, self.lateness)

    async def _open_producer(self, number: int) -> None:
        await self._close_producer(number)
        producer = AIOKafkaProducer(
            **self._options,
            client_id=f"{self.settings.app_id}-state-{number}",
            transactional_id=f"{self.settings.app_id}-state-{number}",
            enable_idempotence=True,
            acks="all",
            linger_ms=5,
            transaction_timeout_ms=int(self.settings.transaction_timeout_seconds * 1000),
        )
        await producer.start()  # InitProducerId: fences the previous owner
        self._producers[number] = producer

    async def _close_producer(self, number: int) -> None:
        producer = self._producers.pop(number, None)
        if producer is not None:
            with contextlib.suppress(Exception):
                await producer.stop()

    # --- rebalances --------------------------------------------------------------------------

    async def on_revoked(self) -> None:
        async with self._lock:  # waits for the step in flight and its transaction
            self.joined = False
            self.metrics.rebalance_started()
            self._parked.update(self.partitions)  # kept in case they come back
            self.partitions.clear()
            self._unrestored.clear()

    async def on_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        """Only take note: the main loop restores (heartbeats stop during this callback)."""
        async with self._lock:
            numbers = {tp.partition for tp in assigned}
            for p in list(self._parked):
                if p not in numbers:
                    self.metrics.forget(self._parked.pop(p).tickets)
            for p in list(self._producers):
                if p not in numbers:
                    await self._close_producer(p)
            for p in numbers:
                self._pause(p)
            self._unrestored = set(numbers)
            self._next_restore = 0.0
            self.joined = True

    # --- a new policy (SIGHUP) ----------------------------------------------------------------

    @property
    def policy(self) -> Policy:
        return self.processor.engine.policy

    async def reload_policy(self, policy: Policy) -> int:
        """Judge with `policy` from the next step on; returns the tickets rescheduled.

        Between steps (under the lock): the engine is replaced, and every owned
        partition's due-index is rebuilt from its state, since a changed version may move
        deadlines. Each ticket keeps the version it was created under (state records it),
        so a new version only judges tickets created from its `effective_from` on.
        Parked partitions are dropped (read again from the changelog if they come back).
        """
        async with self._lock:
            old = self.processor.engine
            self.processor.engine = Engine(policy, old.retention, old.measure)
            self.metrics.use_policy(policy)
            for number in list(self._parked):
                self.metrics.forget(self._parked.pop(number).tickets)
            rows = 0
            for partition in self.partitions.values():
                for _ in partition.rebuild():
                    rows += 1
                    if rows % 5000 == 0:
                        await asyncio.sleep(0)  # the web API goes on meanwhile
            return rows

    # --- the HTTP API ------------------------------------------------------------------------

    def describe(self, partition: int, ticket_id: str) -> dict[str, Any] | None:
        owned = self.partitions.get(partition)
        return None if owned is None else owned.describe(ticket_id, datetime.now(UTC))

    def owns(self, partition: int) -> bool:
        return partition in self.partitions

    def at_risk_view(self) -> tuple[dict[int, Partition], set[int]]:
        """For `GET /at-risk` (#24): the restored partitions, to read between steps (the
        query runs on the event loop, never during one), and those still restoring."""
        return dict(self.partitions), set(self._unrestored)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, worker: LiveWorker) -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.worker.on_revoked()

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self.worker.on_assigned(assigned)


def _forget(sent: list[asyncio.Future[Any]]) -> None:
    """The sends of a failed transaction fail with it: mark their outcomes as seen, so
    asyncio does not log each as "Future exception was never retrieved"."""
    for future in sent:
        future.add_done_callback(lambda f: None if f.cancelled() else f.exception())


def _headers(headers: Any) -> tuple[tuple[str, bytes], ...]:
    """Message headers as (name, bytes) pairs, whatever shape the client gave them."""
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
