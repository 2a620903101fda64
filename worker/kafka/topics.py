"""Create the worker's topics if missing; refuse to start on a partition mismatch.

The inputs, outputs, dead letters and the state changelog (compacted) are created here,
with the configured partition count. Co-partitioning is what keeps a ticket's events and
its state on one worker, so a topic that exists with another partition count stops the
worker with a message that says what to change, instead of failing later in a rebalance.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.partitioner import murmur2

from worker.core.errors import SlaWorkerError
from worker.settings import KafkaConnection, WorkerSettings

log = logging.getLogger("sla_worker")


class TopicMismatch(SlaWorkerError, RuntimeError):
    """An existing topic's partition count differs from the worker's: it must not start."""


def default_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (Java's and aiokafka's alike: murmur2 of
    the key) gives a keyed record among `partitions`: where a ticket's events and state
    live when producers key by ticket id."""
    hashed: int = murmur2(key)
    return (hashed & 0x7FFFFFFF) % partitions


def client_options(settings: KafkaConnection) -> dict[str, Any]:
    """aiokafka connection options for these settings (admin, producers, consumers)."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "security_protocol": settings.security_protocol,
    }
    context = settings.ssl_context()
    if context is not None:
        options["ssl_context"] = context
    if settings.security_protocol.startswith("SASL"):
        assert settings.sasl_password is not None
        options.update(
            sasl_mechanism=settings.sasl_mechanism,
            sasl_plain_username=settings.sasl_username,
            sasl_plain_password=settings.sasl_password.get_secret_value(),
        )
    return options


def changelog_topic_name(settings: WorkerSettings) -> str:
    return f"{settings.app_id}-tickets-changelog"


async def ensure_topics(settings: WorkerSettings) -> list[str]:
    """Create missing topics; return their names. Raise `TopicMismatch` on a mismatch."""
    changelog = changelog_topic_name(settings)
    co_partitioned = [*settings.input_topics, changelog]
    wanted = [
        *co_partitioned,
        settings.warnings_topic,
        settings.breaches_topic,
        settings.dead_letter_topic,
    ]
    if settings.finished_timers_topic is not None:
        wanted.append(settings.finished_timers_topic)
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        present = [t for t in co_partitioned if t in existing]
        if present:
            for description in await admin.describe_topics(present):
                count = len(description["partitions"])
                if count != settings.partitions:
                    raise TopicMismatch(
                        f"topic {description['topic']!r} has {count} partitions but the "
                        f"worker is configured for {settings.partitions} (SLA_PARTITIONS / "
                        "--partitions). Inputs and the state changelog must have the "
                        "same count: set --partitions to match, or repartition."
                    )
        missing = [t for t in wanted if t not in existing]
        if missing:
            await admin.create_topics(
                [
                    NewTopic(
                        t,
                        settings.partitions,
                        settings.replication_factor,
                        # Compact only: retention or deletion would lose tickets' state.
                        topic_configs={"cleanup.policy": "compact"} if t == changelog else {},
                    )
                    for t in missing
                ]
            )
        return missing
    finally:
        await admin.close()


UNKNOWN_TOPIC_OR_PARTITION = 3
UNKNOWN_TOPIC_TRIES = 8
"""About 6 s of asking again for a changelog just created (its metadata on its way)."""

DEFAULT_DELETE_RETENTION_MS = 86_400_000
"""Kafka's default `delete.retention.ms` (24 h): how long compaction keeps a tombstone."""


async def tombstone_retention_ms(settings: WorkerSettings) -> int:
    """The changelog's `delete.retention.ms`, as the broker applies it (the topic's
    override, else the broker's default): a local snapshot older than it is discarded
    (`worker.kafka.snapshot`), and so is a warm standby last caught up longer ago
    (`worker.kafka.standby`). When the broker refuses to say (no DescribeConfigs right
    on the topic), 0: no snapshot is ever used, since assuming a longer retention than
    the real one could bring deleted tickets back."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        resource = ConfigResource(ConfigResourceType.TOPIC, changelog_topic_name(settings))
        for attempt in range(UNKNOWN_TOPIC_TRIES):
            [response] = await admin.describe_configs([resource])
            codes = [r[0] for r in response.resources]
            # A changelog `ensure_topics` just created may not be known to the broker
            # that answers yet (UNKNOWN_TOPIC_OR_PARTITION): ask again, shortly.
            if UNKNOWN_TOPIC_OR_PARTITION not in codes or attempt == UNKNOWN_TOPIC_TRIES - 1:
                break
            await asyncio.sleep(0.2 * (attempt + 1))
    finally:
        await admin.close()
    for error_code, error_message, _type, _name, entries in response.resources:
        if error_code:
            log.warning(
                "cannot read the changelog's delete.retention.ms (error %d: %s): local "
                "snapshots and warm standbys will not be used; allow DescribeConfigs on "
                "the topic",
                error_code,
                error_message,
            )
            return 0
        for entry in entries:  # (name, value, read_only, default, sensitive, ...)
            if entry[0] == "delete.retention.ms" and entry[1] is not None:
                return int(entry[1])
    return DEFAULT_DELETE_RETENTION_MS
