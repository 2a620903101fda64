"""Live worker throughput against the floor of its own design (#23), in the same run.

The worker's design: per partition, a transactional producer, and per step (what one
fetch returned for the partition) one transaction with the outputs, the changelog records
and the input offsets. The floor does exactly that with no processing at all: a
read_committed consumer in a group of its own, one transactional producer per partition
(`<run>-floor-<p>`), and per partition and fetch one transaction in which every input
record becomes one changelog record (its key and value, to partition p of a compacted
topic) and one output record, then the offsets, then the commit; partitions commit
concurrently, as the worker's do. What the worker does beyond that (JSON, the engine,
timers, dead letters, metrics) is the cost the ratio shows.

1. A broker: `--bootstrap`, else KAFKA_BOOTSTRAP_SERVERS, else a private one
   (scripts/kafka-local, stopped on exit).
2. An input topic (`--partitions`, default 6) gets `--events` (default 100,000) of
   `worker.traffic.synthetic_stream` (seed 7, 10 per ticket) from 33 days ago: every
   deadline has passed, so the worker publishes while it reads.
3. The floor reads them all: timed from its first record to its last commit.
4. A worker subprocess (fresh app id, default settings, `--worker-arg` extra flags) reads
   the same topic; events/s from /metrics, as bench/worker_bench.py measures it, and
   the worker process's CPU per event (/proc) over the same span: on a shared machine
   the rate moves with the load, the CPU per event much less (the floor prints its own
   client's CPU per record likewise).
5. The floor again (the machine is shared: the faster of the two floors is the floor).

    .venv/bin/python bench/eos_floor.py [--events 100000] [--bootstrap HOST:PORT]

Last line: `worker/eos-floor ratio: <R>`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import TopicPartition
from live import Cleanup, bench_worker, produce, say, start_run, timed_terminate, wait_consumed

from devtools.harness import create_topics
from worker.kafka.clients import PRODUCER_BATCH_BYTES
from worker.traffic import synthetic_stream

MAX_RECORDS = 2000  # as the worker's loop (worker/kafka/service.py)


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU seconds a process has used so far (Linux /proc; else None)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after the command name: state is field 3
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def floor(
    bootstrap: str, topic: str, partitions: int, expected: int, name: str
) -> tuple[int, float, int, float]:
    """The floor loop over `topic`; (records, seconds first record -> last commit,
    transactions, CPU seconds of this process over the same span)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    changelog, output = f"{name}-changelog", f"{name}-out"
    try:
        await admin.create_topics(
            [
                NewTopic(changelog, partitions, 1, topic_configs={"cleanup.policy": "compact"}),
                NewTopic(output, partitions, 1),
            ]
        )
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=name,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        fetch_max_wait_ms=100,
    )
    producers = [
        AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            transactional_id=f"{name}-{p}",
            enable_idempotence=True,
            acks="all",
            linger_ms=5,
            # As the worker's producers (worker/kafka/clients.py): the floor and the
            # worker batch their sends alike.
            max_batch_size=PRODUCER_BATCH_BYTES,
            transaction_timeout_ms=10_000,
        )
        for p in range(partitions)
    ]
    await asyncio.gather(*(producer.start() for producer in producers))
    await consumer.start()
    count = transactions = 0
    first: float | None = None
    first_cpu = 0.0

    async def step(p: int, records: list[Any]) -> None:
        producer = producers[p]
        await producer.begin_transaction()
        sent = []
        for record in records:
            sent.append(await producer.send(changelog, record.value, key=record.key, partition=p))
            sent.append(await producer.send(output, record.value, key=record.key))
        await asyncio.gather(*sent)
        offsets = {TopicPartition(topic, p): records[-1].offset + 1}
        await producer.send_offsets_to_transaction(offsets, name)
        await producer.commit_transaction()

    try:
        while count < expected:
            fetched = await consumer.getmany(timeout_ms=200, max_records=MAX_RECORDS)
            batches = [(tp.partition, records) for tp, records in fetched.items() if records]
            if not batches:
                continue
            if first is None:
                first, first_cpu = time.perf_counter(), time.process_time()
            await asyncio.gather(*(step(p, records) for p, records in batches))
            transactions += len(batches)
            count += sum(len(records) for _, records in batches)
        ended, cpu = time.perf_counter(), time.process_time() - first_cpu
    finally:
        await consumer.stop()
        await asyncio.gather(*(producer.stop() for producer in producers))
    assert first is not None
    return count, ended - first, transactions, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--per-ticket", type=int, default=10)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--bootstrap", help="default: KAFKA_BOOTSTRAP_SERVERS, else own broker")
    parser.add_argument("--timeout", type=float, default=1200)
    parser.add_argument("--worker-arg", action="append", default=[])
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    with Cleanup() as cleanup:
        this = start_run(cleanup, "eos", args.bootstrap, args.keep)
        start = (datetime.now(UTC) - timedelta(days=33)).replace(microsecond=0)
        tickets = max(1, args.events // args.per_ticket)
        lines, _ = synthetic_stream(args.events, tickets, args.seed, start=start)
        records = [(json.loads(line)["ticket_id"].encode(), line) for line in lines]
        n = len(records)
        asyncio.run(create_topics(this.bootstrap, [this.topic], args.partitions))
        produced, seconds = asyncio.run(produce(this.bootstrap, this.topic, records))
        say(f"produced {produced:,} events in {seconds:.1f} s")
        del lines, records

        floors: list[float] = []

        def run_floor(label: str) -> None:
            name = f"{this.run_id}-floor{len(floors)}"
            count, secs, txns, cpu = asyncio.run(
                floor(this.bootstrap, this.topic, args.partitions, n, name)
            )
            floors.append(count / secs)
            say(
                f"floor ({label}): {count:,} records in {secs:.2f} s = {count / secs:,.0f}/s, "
                f"{txns:,} transactions ({count / max(txns, 1):,.0f} records each), "
                f"client CPU {cpu / count * 1e6:.0f} us per record"
            )

        run_floor("before")
        worker = bench_worker(
            bootstrap=this.bootstrap,
            app_id=this.run_id,
            directory=this.directory / "worker",
            input_topic=this.topic,
            outputs_prefix=f"{this.run_id}-",
            partitions=args.partitions,
            extra=tuple(args.worker_arg),
        )
        cleanup.callback(worker.stop_quietly)
        worker.start()
        worker.wait_readyz(200, timeout=300, poll=0.1)
        # The worker's own CPU per event, which the machine's load changes far less than
        # its rate (other processes take turns on the cores, they do not add work).
        cpu_marks: list[tuple[int, float | None]] = []

        def on_poll(_: float, consumed: int, __: int) -> None:
            assert worker.process is not None
            cpu_marks.append((consumed, cpu_seconds(worker.process.pid)))

        progress = wait_consumed(worker, n, timeout=args.timeout, on_poll=on_poll)
        first = progress.first_consumed()
        assert first is not None
        t_end, c_end, _, _ = progress.polls[-1]
        rate = (c_end - first[1]) / max(t_end - first[0], 1e-3)
        started = next((mark for mark in cpu_marks if mark[0] > 0), None)
        timed_terminate(worker)
        say(f"worker: {c_end - first[1]:,} events in {t_end - first[0]:.2f} s = {rate:,.0f}/s")
        if started is not None and started[1] is not None and cpu_marks[-1][1] is not None:
            events, cpu = cpu_marks[-1][0] - started[0], cpu_marks[-1][1] - started[1]
            say(f"worker CPU: {cpu:.1f} s, {cpu / max(events, 1) * 1e6:.0f} us per event")
        run_floor("after")
        best = max(floors)
        say(f"eos floor events/s: {best:,.0f}; worker events/s: {rate:,.0f}")
        say(f"worker/eos-floor ratio: {rate / best:.3f}")


if __name__ == "__main__":
    main()
