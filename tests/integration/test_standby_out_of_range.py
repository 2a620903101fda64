"""A warm standby whose changelog position the broker no longer holds (here: DeleteRecords;
as well compact,delete retention, or the topic recreated) is read again from the
changelog's beginning, rather than jumping there silently over the state it has: the
standby consumer the worker builds has auto_offset_reset="none" (docs/worker.md, "Warm
standbys", "Stale standbys"). The unit tests (tests/unit/test_standby.py) cover the rest
with fakes; this one checks the real consumer raises where the fake does."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete
from aiokafka.structs import TopicPartition

from worker.core.engine import Engine
from worker.kafka.clients import Membership, kafka_clients
from worker.kafka.standby import Standbys
from worker.metrics import Metrics
from worker.presets import load_presets
from worker.settings import WorkerSettings
from worker.tasks.partition import Partition, Topics
from worker.tasks.processor import TicketProcessor


async def test_a_standby_whose_position_was_deleted_starts_again_from_the_beginning(
    kafka_bootstrap: str,
    kafka_admin: AIOKafkaAdminClient,
    create_topic: Callable[..., Awaitable[str]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "sla_worker")
    topic = await create_topic(config={"cleanup.policy": "compact,delete"})
    settings = WorkerSettings(bootstrap_servers=kafka_bootstrap, app_id="oor", standby_replicas=1)
    clients = kafka_clients(settings, Membership())
    consumer = clients.standbys  # the one under test; the others are not started
    assert consumer is not None
    presets = load_presets()
    processor = TicketProcessor(Engine(presets, timedelta(days=30)), None)

    def new_partition(number: int) -> Partition:
        return Partition(number, processor, Topics("w", "b", "d", topic), timedelta(0))

    standbys = Standbys(consumer, topic, new_partition, Metrics(presets), 86_400_000)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    await consumer.start()
    try:

        async def write(*keys: str) -> None:
            for key in keys:
                await producer.send_and_wait(topic, b'{"v": 99}', key=key.encode(), partition=0)

        async def until(position: int) -> None:
            for _ in range(100):
                await standbys.turn()
                standby = standbys.standbys[0]
                if standby.position >= position:
                    return
            raise AssertionError(f"standby at {standbys.standbys[0].position}, not {position}")

        await write("A", "B", "C")
        standbys.assign([0])
        await until(3)
        first = standbys.standbys[0]
        assert set(first.partition.tickets) == {"A", "B", "C"}

        # It stops following (the consumer would prefetch what comes next), and records
        # after its position are written and deleted: the changelog now starts at 4.
        kept = first.partition
        standbys.assign([])
        await standbys.turn()
        await write("D", "E")
        tp = TopicPartition(topic, 0)
        await kafka_admin.delete_records({tp: RecordsToDelete(before_offset=4)})
        # Kept again from the state it had (as a partition this worker ran, at offset 3).
        standbys.assign([0], adopt={0: kept})
        assert standbys.standbys[0].position == 3
        for _ in range(100):
            await standbys.turn()
            if standbys.standbys[0].partition is not kept:
                break
        else:
            raise AssertionError("the standby went on from a position the changelog lost")
        assert "which the changelog no longer holds" in caplog.text
        await until(5)
        assert set(standbys.standbys[0].partition.tickets) == {"E"}
    finally:
        standbys.close()
        await asyncio.gather(
            consumer.stop(),
            clients.consumer.stop(),
            clients.changelogs.stop(),
            producer.stop(),
            return_exceptions=True,
        )
