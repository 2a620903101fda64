"""What one transactional producer per partition costs (#23), at `--partitions` (64).

aiokafka cannot fence with the consumer group's metadata (KIP-447: its
`send_offsets_to_transaction` takes a group id only, TxnOffsetCommit v0), so the worker
keeps one transactional producer per input partition, as Kafka Streams' first
exactly-once mode did (worker/kafka/committer.py). This measures, in one process against
one broker, what N such producers cost against one:

- start: N producers started at once (InitProducerId each: the fencing a takeover pays);
- memory: the process's RSS before and after starting them;
- connections: the process's TCP sockets after starting them;
- transactions per second: for `--seconds`, every producer runs transactions back to
  back (begin, one 200-byte record to its partition, offsets for one partition of a
  group, commit), all concurrently, as a worker's partitions commit their steps; against
  one producer doing the same alone, and one producer doing N partitions' worth of
  records in one transaction (what KIP-447's one producer per thread would commit).

    .venv/bin/python bench/producers_bench.py [--partitions 64] [--seconds 15]

Last line: `producers <N>: <rss MiB> MiB, <sockets> sockets, <tx/s> transactions/s
(one producer: <tx/s>)`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

from aiokafka import AIOKafkaProducer
from aiokafka.structs import TopicPartition
from live import Cleanup, say, start_run

from devtools.harness import create_topics


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def sockets() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                count += 1
        except OSError:
            continue
    return count


def producer(bootstrap: str, transactional_id: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        transactional_id=transactional_id,
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
        transaction_timeout_ms=10_000,
    )


async def transactions(
    producers: list[AIOKafkaProducer],
    topic: str,
    group: str,
    seconds: float,
    records_per_transaction: int = 1,
) -> int:
    """Transactions committed by all `producers`, each back to back, for `seconds`."""
    value = b"x" * 200
    deadline = time.perf_counter() + seconds
    done = [0]

    async def loop(p: int, producer: AIOKafkaProducer) -> None:
        offset = 0
        while time.perf_counter() < deadline:
            await producer.begin_transaction()
            sent = [
                await producer.send(topic, value, partition=(p + r) % 64)
                for r in range(records_per_transaction)
            ]
            await asyncio.gather(*sent)
            offset += 1
            await producer.send_offsets_to_transaction({TopicPartition(topic, p): offset}, group)
            await producer.commit_transaction()
            done[0] += 1

    await asyncio.gather(*(loop(p, producer) for p, producer in enumerate(producers)))
    return done[0]


async def measure(bootstrap: str, topic: str, run_id: str, n: int, seconds: float) -> str:
    rss0, sockets0 = rss_mib(), sockets()
    started = time.perf_counter()
    many = [producer(bootstrap, f"{run_id}-many-{p}") for p in range(n)]
    await asyncio.gather(*(p.start() for p in many))
    start_seconds = time.perf_counter() - started
    rss1, sockets1 = rss_mib(), sockets()
    say(
        f"{n} producers started in {start_seconds:.2f} s; RSS +{rss1 - rss0:.1f} MiB "
        f"({rss0:.0f} -> {rss1:.0f}); TCP sockets +{sockets1 - sockets0} ({sockets1})"
    )
    done = await transactions(many, topic, f"{run_id}-group", seconds)
    many_rate = done / seconds
    rss2 = rss_mib()
    say(
        f"{n} producers, concurrently: {done:,} transactions in {seconds:.0f} s = "
        f"{many_rate:,.0f}/s; RSS after {rss2:.0f} MiB"
    )
    await asyncio.gather(*(p.stop() for p in many))

    one = producer(bootstrap, f"{run_id}-one")
    await one.start()
    done_one = await transactions([one], topic, f"{run_id}-group", seconds)
    one_rate = done_one / seconds
    say(f"1 producer alone: {done_one:,} transactions in {seconds:.0f} s = {one_rate:,.0f}/s")
    done_wide = await transactions([one], topic, f"{run_id}-group", seconds, n)
    say(
        f"1 producer, {n} records per transaction (the KIP-447 shape): {done_wide:,} "
        f"transactions = {done_wide * n / seconds:,.0f} records/s "
        f"(against {many_rate:,.0f} records/s from {n} producers)"
    )
    await one.stop()
    return (
        f"producers {n}: {rss1 - rss0:.1f} MiB, {sockets1 - sockets0} sockets, "
        f"{many_rate:,.0f} transactions/s (one producer: {one_rate:,.0f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partitions", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--bootstrap", help="default: KAFKA_BOOTSTRAP_SERVERS, else own broker")
    args = parser.parse_args()
    with Cleanup() as cleanup:
        this = start_run(cleanup, "pb", args.bootstrap, keep=False)
        asyncio.run(create_topics(this.bootstrap, [this.topic], 64))
        line = asyncio.run(
            measure(this.bootstrap, this.topic, this.run_id, args.partitions, args.seconds)
        )
        say(line)


if __name__ == "__main__":
    main()
