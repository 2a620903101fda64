"""A restore never stalls the partitions that run (#23).

One worker, two partitions. Partition 1's changelog already holds 150,000 tickets' state
(a previous owner's); partition 0's is empty. Partition 0 is ready within moments and
runs while partition 1 is still reading its changelog: a ticket produced to partition 0
then gets its warning at once and its breach when it falls due, both published while
partition 1 has not finished restoring (the restore works in bounded chunks beside the
main loop). Kafka Streams does the same with its changelog reader / state updater.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from devtools.harness.topics import create_topics, read_all, wait_for_records
from tests.integration.workers import FAST
from worker.core.engine import Engine
from worker.kafka.topics import default_partition
from worker.tasks.partition import Message, Partition, Topics
from worker.tasks.processor import TicketProcessor

TICKETS = 150_000


def ticket_state() -> bytes:
    """A real ticket's stored state, as a partition keeps it (created an hour ago)."""
    partition = Partition(
        1,
        TicketProcessor(Engine(FAST, timedelta(days=7)), None),
        Topics("w", "b", "d", "c"),
        timedelta(0),
    )
    at = datetime.now(UTC) - timedelta(hours=1)
    body = {"event_id": "c-R", "type": "ticket-created", "ticket_id": "R", "plan": "fast"}
    value = json.dumps({**body, "occurred_at": at.isoformat(), "priority": 1}).encode()
    partition.step([Message("in", 1, 0, b"R", value)], datetime.now(UTC), None)
    return partition.tickets["R"]


async def fill_changelog(bootstrap: str, topic: str, partition: int, count: int) -> None:
    state = ticket_state()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, acks=1)
    await producer.start()
    try:
        sent = []
        for n in range(count):
            key = f"R-{n:07d}".encode()
            sent.append(await producer.send(topic, state, key=key, partition=partition))
            if len(sent) == 5000:
                await asyncio.gather(*sent)
                sent = []
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


def key_on(partition: int, partitions: int) -> str:
    return next(
        f"HD-{n}"
        for n in range(1000)
        if default_partition(f"HD-{n}".encode(), partitions) == partition
    )


async def test_a_running_partition_fires_on_time_while_another_restores(
    create_topic: Any, worker_factory: Any, kafka_bootstrap: str, tmp_path: Path
) -> None:
    names = {n: await create_topic(partitions=2) for n in ("in", "w", "b", "dead")}
    topics = (
        *("--warnings-topic", names["w"], "--breaches-topic", names["b"]),
        *("--dead-letter-topic", names["dead"]),
    )
    worker = worker_factory(input_topics=(names["in"],), partitions=2, extra=topics)
    changelog = f"{worker.app_id}-tickets-changelog"
    await create_topics(kafka_bootstrap, [changelog], 2)
    await fill_changelog(kafka_bootstrap, changelog, 1, TICKETS)

    worker.start()
    while True:  # until partition 0 runs (partition 1 restores: not ready yet)
        try:
            status, body = await asyncio.to_thread(worker.get, "/readyz")
        except OSError:  # not listening yet
            worker.check_alive()
            await asyncio.sleep(0.05)
            continue
        if body.get("partitions") == [0]:
            break
        assert body.get("partitions") != [0, 1], "partition 1 was restored too fast to tell"
        await asyncio.sleep(0.05)
    assert status == 503  # not ready: partition 1 is restoring

    # A ticket created 5.5 s ago on partition 0: its warning (3 s) is overdue at once,
    # its breach (6 s) falls due half a second from now.
    ticket = key_on(0, 2)
    at = datetime.now(UTC) - timedelta(seconds=5.5)
    event = {"event_id": f"c-{ticket}", "type": "ticket-created", "ticket_id": ticket}
    line = json.dumps({**event, "occurred_at": at.isoformat(), "plan": "fast", "priority": 1})
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    await producer.send_and_wait(names["in"], line.encode(), key=ticket.encode())
    await producer.stop()

    [breach] = await wait_for_records(kafka_bootstrap, names["b"], 1, poll=0.05)
    status, body = await asyncio.to_thread(worker.get, "/readyz")
    assert body["partitions"] == [0] and status == 503  # partition 1: still restoring
    assert len(await read_all(kafka_bootstrap, names["w"])) == 1
    assert json.loads(breach.value)["ticket_id"] == ticket

    await worker.ready(timeout=120)  # and partition 1 is restored in the end
    assert "restored partitions [1]: 150000 tickets read from the changelog" in (
        worker.log_path.read_text()
    )
