"""A prototype peer: the worker's own decision code behind a batched aiokafka loop.

Not the worker. It shows what the same `TicketProcessor` and `TimerClocks` reach when the
per-message machinery of faust (stream, table, changelog producer) is replaced by
batches. Per `getmany` batch:

1. decide every message with its stored state (RocksDB via rocksdict, one database per
   partition, JSON values as the worker's table stores them; a batch-local cache so a
   ticket's second event in a batch sees its first);
2. fire what became due by event time inline (the worker sends itself a timer command
   through Kafka instead);
3. send publications and changelog records (acks=all, linger 5 ms) and await every ack;
4. only then write RocksDB (one WriteBatch per partition) and commit the offsets.

The same at-least-once order as the worker (publish, then state, then offsets). Left
out: recovery from the changelog, wall-clock timers once caught up, holding across
topics, dead-letter publication, the HTTP API. Prints
`batch-peer: <n> events in <s> s = <rate> events/s; <k> published`.

    .venv/bin/python bench/batch_peer.py --bootstrap HOST:PORT --topic T --events N
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import time
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from rocksdict import Options, Rdict, WriteBatch

from worker.core.engine import Engine
from worker.kafka.clocks import TimerClocks
from worker.kafka.processor import Outcome, Source, TicketProcessor, encode_event
from worker.presets import load_presets


async def run(bootstrap: str, topic: str, events: int, partitions: int, run_id: str) -> str:
    outputs = {kind: f"{run_id}-{kind}" for kind in ("warnings", "breaches", "changelog")}
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, partitions, 1) for t in outputs.values()])
    finally:
        await admin.close()
    directory = tempfile.mkdtemp(prefix="sla-batch-peer-")
    dbs = {p: Rdict(f"{directory}/p{p}", Options(raw_mode=True)) for p in range(partitions)}
    processor = TicketProcessor(Engine(load_presets()), None)
    clocks = TimerClocks()
    for p in range(partitions):
        clocks.assign(p)
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=run_id,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_records=2000,
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=1 << 20
    )
    await consumer.start()
    await producer.start()
    count = published = 0
    first = None
    try:
        while count < events:
            batches = await consumer.getmany(timeout_ms=1000, max_records=2000)
            if not batches:
                continue
            if first is None:
                first = time.perf_counter()
            now = datetime.now(UTC)
            cache: dict[bytes, Any] = {}
            sends: list[Any] = []
            writes: dict[int, dict[bytes, bytes]] = {p: {} for p in range(partitions)}

            def stored(partition: int, key: bytes, cache: dict[bytes, Any] = cache) -> Any:
                if key not in cache:
                    raw = dbs[partition].get(key)
                    cache[key] = None if raw is None else json.loads(raw)
                return cache[key]

            def carry(
                partition: int,
                key: bytes,
                outcome: Outcome,
                cache: dict[bytes, Any] = cache,
                sends: list[Any] = sends,
                writes: dict[int, dict[bytes, bytes]] = writes,
            ) -> int:
                for event in outcome.publish:
                    out = outputs["breaches" if event.type == "sla-breach" else "warnings"]
                    sends.append(
                        producer.send(out, key=key, value=encode_event(event), partition=partition)
                    )
                if outcome.state is not None:
                    cache[key] = outcome.state
                    raw = json.dumps(outcome.state).encode()
                    writes[partition][key] = raw
                    sends.append(
                        producer.send(outputs["changelog"], key=key, value=raw, partition=partition)
                    )
                clocks.schedule(partition, key.decode(), outcome.due)
                return len(outcome.publish)

            offsets = {}
            for tp, records in batches.items():
                p = tp.partition
                clock = clocks.clock(p)
                assert clock is not None
                for record in records:
                    key = record.key or b""
                    source = Source(tp.topic, p, record.offset, record.key, record.value or b"")
                    outcome = processor.on_event(source, stored(p, key), now)
                    published += carry(p, key, outcome)
                    if outcome.occurred_at is not None:
                        clock.observe(outcome.occurred_at)
                    horizon = clock.horizon(now, clocks.lateness)
                    if horizon is not None:
                        for ticket_id, _ in list(clock.due.pop_due(horizon)):
                            due_key = ticket_id.encode()
                            fired = processor.on_due(stored(p, due_key), p, horizon)
                            published += carry(p, due_key, fired)
                count += len(records)
                offsets[tp] = records[-1].offset + 1
            acks = await asyncio.gather(*sends)
            await asyncio.gather(*acks)
            for p, pending in writes.items():
                if pending:
                    batch = WriteBatch(raw_mode=True)
                    for key, value in pending.items():
                        batch.put(key, value)
                    dbs[p].write(batch)
            await consumer.commit(offsets)
        assert first is not None
        seconds = time.perf_counter() - first
        return (
            f"batch-peer: {count:,} events in {seconds:.2f} s = {count / seconds:,.0f} "
            f"events/s; {published:,} published"
        )
    finally:
        await consumer.stop()
        await producer.stop()
        for db in dbs.values():
            db.close()
        shutil.rmtree(directory, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--events", type=int, required=True, help="stop after this many")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument(
        "--run-id", default=f"batch-peer-{time.time_ns()}", help="prefix of its topics"
    )
    args = parser.parse_args()
    print(
        asyncio.run(
            asyncio.wait_for(
                run(args.bootstrap, args.topic, args.events, args.partitions, args.run_id),
                args.timeout,
            )
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
