"""A local snapshot is judged by the changelog's own `delete.retention.ms`, read from the
broker at start (`worker.kafka.topics.tombstone_retention_ms`; docs/worker.md, "Local
snapshots")."""

from __future__ import annotations

import uuid

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from worker.kafka.topics import DEFAULT_DELETE_RETENTION_MS, tombstone_retention_ms
from worker.settings import WorkerSettings


async def test_the_changelogs_tombstone_retention_is_read_from_the_topic(
    kafka_bootstrap: str,
) -> None:
    app_id = f"retention-{uuid.uuid4().hex[:8]}"
    settings = WorkerSettings(bootstrap_servers=kafka_bootstrap, app_id=app_id)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        config = {"cleanup.policy": "compact", "delete.retention.ms": "3600000"}
        topic = NewTopic(f"{app_id}-tickets-changelog", 1, 1, topic_configs=config)
        await admin.create_topics([topic])
    finally:
        await admin.close()

    assert await tombstone_retention_ms(settings) == 3_600_000


async def test_without_an_override_it_is_the_brokers_default(kafka_bootstrap: str) -> None:
    app_id = f"retention-{uuid.uuid4().hex[:8]}"
    settings = WorkerSettings(bootstrap_servers=kafka_bootstrap, app_id=app_id)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        config = {"cleanup.policy": "compact"}
        topic = NewTopic(f"{app_id}-tickets-changelog", 1, 1, topic_configs=config)
        await admin.create_topics([topic])
    finally:
        await admin.close()

    assert await tombstone_retention_ms(settings) == DEFAULT_DELETE_RETENTION_MS
