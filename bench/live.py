"""Shared pieces of the live-worker benchmarks (`worker_bench.py`, `timers_bench.py`,
`audit_bench.py`, `soak.py`).

What only benchmarks need: a run (a broker, given or private, a run id that prefixes its
topics, a temporary directory), a fast keyed producer, a bare aiokafka consumer as the
peer, and polls of the worker's progress. The worker process, the broker, /metrics and
topics come from `devtools.harness`, which the tests use too. Everything
started here is stopped by `Cleanup` on exit, also on Ctrl-C, SIGTERM and exceptions.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from devtools.harness import LocalBroker, WorkerProcess, delete_topics

ROOT = Path(__file__).resolve().parent.parent


class Cleanup(contextlib.ExitStack):
    """An exit stack that also runs on SIGTERM/SIGHUP (turned into KeyboardInterrupt)."""

    def __enter__(self) -> Cleanup:
        super().__enter__()

        def interrupt(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt(f"signal {signum}")

        for sig in (signal.SIGTERM, signal.SIGHUP):
            previous = signal.signal(sig, interrupt)
            self.callback(signal.signal, sig, previous)
        return self


def say(message: str) -> None:
    print(message, flush=True)


# --- broker -------------------------------------------------------------------------------


def broker(cleanup: Cleanup, bootstrap: str | None) -> str:
    """The bootstrap address: the given one, KAFKA_BOOTSTRAP_SERVERS, or a private broker
    (scripts/kafka-local in a temporary SLA_KAFKA_HOME, stopped on exit)."""
    bootstrap = bootstrap or os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if bootstrap:
        return bootstrap
    private = LocalBroker(
        Path(tempfile.mkdtemp(prefix="sla-bench-kafka-")), {"SLA_KAFKA_HEAP": "1g"}
    )
    cleanup.callback(shutil.rmtree, private.home, ignore_errors=True)
    cleanup.callback(private.stop)
    address = private.start()
    say(f"started a private broker at {address} (run dir {private.home})")
    return address


async def committed(bootstrap: str, group: str, topic: str) -> int:
    """Sum of the group's committed offsets on `topic` (= records consumed and committed,
    for a topic written from offset 0); read from Kafka, without touching the worker."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return sum(max(m.offset, 0) for tp, m in offsets.items() if tp.topic == topic)


def drop_topics_on_exit(cleanup: Cleanup, bootstrap: str, prefix: str) -> None:
    def drop() -> None:
        try:
            asyncio.run(asyncio.wait_for(delete_topics(bootstrap, prefix), 60))
        except Exception as exc:  # cleanup must not hide the run's own error
            say(f"(could not delete topics {prefix}*: {exc!r})")

    cleanup.callback(drop)


@dataclass(frozen=True)
class Run:
    """One benchmark run: its broker, id (the prefix of its topics), temp dir, input topic."""

    bootstrap: str
    run_id: str
    directory: Path
    topic: str


def start_run(cleanup: Cleanup, prefix: str, bootstrap: str | None, keep: bool) -> Run:
    """A broker, a fresh run id and temp dir; both removed on exit unless `keep`."""
    address = broker(cleanup, bootstrap)
    run_id = f"{prefix}-{uuid.uuid4().hex[:8]}"
    directory = Path(tempfile.mkdtemp(prefix=f"sla-{run_id}-"))
    if not keep:
        cleanup.callback(shutil.rmtree, directory, ignore_errors=True)
        drop_topics_on_exit(cleanup, address, run_id)
    say(f"run {run_id}: broker {address}, dir {directory}, python {sys.version.split()[0]}")
    return Run(address, run_id, directory, f"{run_id}-tickets")


async def produce(
    bootstrap: str, topic: str, records: Iterable[tuple[bytes, bytes]], window: int = 20_000
) -> tuple[int, float]:
    """Send keyed records (default murmur2 partitioner, acks=all); (count, seconds)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=20,
        max_batch_size=1 << 20,
        max_request_size=8 << 20,
    )
    await producer.start()
    started = time.perf_counter()
    count = 0
    try:
        pending = []
        for key, value in records:
            pending.append(await producer.send(topic, value=value, key=key))
            count += 1
            if len(pending) >= window:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
        await producer.flush()
    finally:
        await producer.stop()
    return count, time.perf_counter() - started


@dataclass
class RawResult:
    records: int
    seconds: float  # first record received -> last record received
    join_seconds: float  # consumer start -> first record
    decode: str

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else float("inf")


async def raw_consume(
    bootstrap: str, topic: str, expected: int, *, decode: bool = True, timeout: float = 300
) -> RawResult:
    """A bare AIOKafkaConsumer (fresh group, from earliest) reading `expected` records,
    each value decoded with json.loads when `decode`."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"raw-{topic}-{time.time_ns()}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    started = time.perf_counter()
    await consumer.start()
    first = None
    count = 0
    loads = json.loads
    try:
        while count < expected:
            if time.perf_counter() - started > timeout:
                raise TimeoutError(f"raw consumer read {count} of {expected} in {timeout} s")
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for records in batches.values():
                if first is None:
                    first = time.perf_counter()
                if decode:
                    for record in records:
                        loads(record.value)
                count += len(records)
        ended = time.perf_counter()
    finally:
        await consumer.stop()
    assert first is not None
    return RawResult(count, ended - first, first - started, "json.loads" if decode else "none")


# --- the worker subprocess ------------------------------------------------------------------


def bench_worker(
    bootstrap: str,
    app_id: str,
    directory: Path,
    input_topic: str,
    outputs_prefix: str,
    partitions: int = 6,
    policy: Path | None = None,
    extra: tuple[str, ...] = (),
) -> WorkerProcess:
    """A worker on one input topic, its outputs named `<outputs_prefix>warnings` (and
    `breaches`, `dead-letter`), so a run's topics share its prefix."""
    return WorkerProcess(
        bootstrap,
        app_id,
        directory,
        input_topics=(input_topic,),
        partitions=partitions,
        policy=policy,
        settings={
            "warnings_topic": f"{outputs_prefix}warnings",
            "breaches_topic": f"{outputs_prefix}breaches",
            "dead_letter_topic": f"{outputs_prefix}dead-letter",
        },
        extra=extra,
    )


def timed_terminate(worker: WorkerProcess) -> float:
    """SIGTERM and wait; the seconds until it exited."""
    started = time.perf_counter()
    worker.terminate(timeout=120)
    return time.perf_counter() - started


@dataclass
class Progress:
    """Polls of the worker's consumed count until it reaches a target."""

    polls: list[tuple[float, int, int, int]] = field(default_factory=list)  # t, consumed, lag, n

    def first_consumed(self) -> tuple[float, int] | None:
        for t, consumed, _, _ in self.polls:
            if consumed > 0:
                return t, consumed
        return None


def wait_consumed(
    worker: WorkerProcess,
    expected: int,
    *,
    timeout: float,
    poll: float = 0.5,
    on_poll: Callable[[float, int, int], None] | None = None,
) -> Progress:
    """Poll /metrics until `sla_events_consumed_total` (all outcomes) reaches `expected`,
    or (past 90 % of it) the consumer lag is 0 on every partition with nothing consumed
    for 5 s."""
    progress = Progress()
    deadline = time.perf_counter() + timeout
    stable_since = None
    last = -1
    while True:
        worker.check_alive()
        now = time.perf_counter()
        if now > deadline:
            raise TimeoutError(f"worker consumed {last} of {expected} in {timeout} s")
        metrics = worker.scrape()
        if metrics is not None:
            consumed = metrics.consumed()
            lag, reporting = metrics.lag()
            t = time.perf_counter()
            progress.polls.append((t, consumed, lag, reporting))
            if on_poll is not None:
                on_poll(t, consumed, lag)
            if consumed >= expected:
                return progress
            if consumed != last:
                stable_since = t
                last = consumed
            elif (
                consumed >= 0.9 * expected
                and reporting >= worker.partitions
                and lag == 0
                and stable_since is not None
                and t - stable_since > 5
            ):
                return progress
        time.sleep(max(0.0, poll - (time.perf_counter() - now)))
