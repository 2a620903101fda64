"""Fixtures for integration tests against a real Apache Kafka broker.

`kafka_bootstrap` is the broker: the one named by KAFKA_BOOTSTRAP_SERVERS when that is set,
otherwise a private single-node broker that `scripts/kafka-local start` runs for this pytest
session (in its own run dir under pytest's tmp dir, so parallel sessions and a broker you
started by hand never meet) and `scripts/kafka-local stop` ends. If it cannot start, every
test that needs it fails with the script's output; it is never skipped.

Factory fixtures, all awaitable:

    topic = await create_topic()                                  # unique name, 1 partition
    topic = await create_topic("orders", partitions=3, config={"retention.ms": "60000"})
    placed = await produce_json(topic, [("key-1", {"n": 1}), ("key-2", {"n": 2})])
    records = await consume_json(topic, 2)   # [(key, value, partition, offset), ...]

Topics made by `create_topic` are deleted after the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, for_code
from aiokafka.structs import OffsetAndMetadata, TopicPartition

from devtools.harness import BrokerError, LocalBroker, WorkerProcess
from tests.integration.workers import fast_worker

JsonRecord = tuple[str, dict[str, Any], int, int]
"""(key, value, partition, offset) as returned by `consume_json`."""


class CreateTopic(Protocol):
    async def __call__(
        self,
        name: str | None = None,
        partitions: int = 1,
        config: dict[str, str] | None = None,
    ) -> str: ...


class ProduceJson(Protocol):
    async def __call__(
        self, topic: str, messages: Iterable[tuple[str, dict[str, Any]]]
    ) -> list[tuple[int, int]]: ...


class ConsumeJson(Protocol):
    async def __call__(
        self,
        topic: str,
        count: int,
        timeout: float = 30,
        group_id: str | None = None,
    ) -> list[JsonRecord]: ...


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test that (directly or through another fixture) needs the broker is `kafka`."""
    for item in items:
        if "kafka_bootstrap" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.kafka)


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap address ("host:port") of a running Kafka broker."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if external:
        yield external
        return

    broker = LocalBroker(tmp_path_factory.mktemp("kafka-local"))
    try:
        yield broker.start()
    except (BrokerError, subprocess.TimeoutExpired) as exc:
        in_ci = os.environ.get("CI", "").lower() == "true"
        with contextlib.suppress(BrokerError, subprocess.TimeoutExpired):
            broker.stop()
        pytest.fail(
            f"could not start the local Kafka broker with scripts/kafka-local start"
            f"{' (CI)' if in_ci else ''}; set KAFKA_BOOTSTRAP_SERVERS to use another broker.\n"
            f"{exc}",
            pytrace=False,
        )
    else:
        try:
            broker.stop()
        except BrokerError as exc:
            pytest.fail(f"scripts/kafka-local stop failed:\n{exc}", pytrace=False)


@pytest.fixture(scope="session")
async def kafka_admin(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaAdminClient]:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="sla-worker-tests")
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


def _unique_name(prefix: str, request: pytest.FixtureRequest) -> str:
    test = re.sub(r"[^a-zA-Z0-9._-]+", "-", request.node.name)[:60].strip("-")
    return f"{prefix}-{test}-{uuid.uuid4().hex[:8]}"


async def _wait_for_leaders(admin: AIOKafkaAdminClient, topic: str, partitions: int) -> None:
    """Until every partition of a new topic has a leader (the metadata can lag creation)."""
    for _ in range(100):
        described = await admin.describe_topics([topic])
        parts = described[0]["partitions"] if described and not described[0]["error_code"] else []
        if len(parts) == partitions and all(p["leader"] >= 0 for p in parts):
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"topic {topic!r} has no leader for all {partitions} partitions after 10 s")


@pytest.fixture
async def create_topic(
    kafka_admin: AIOKafkaAdminClient, request: pytest.FixtureRequest
) -> AsyncIterator[CreateTopic]:
    """`await create_topic(name=None, partitions=1, config=None) -> name`; deleted afterwards."""
    created: list[str] = []

    async def create(
        name: str | None = None,
        partitions: int = 1,
        config: dict[str, str] | None = None,
    ) -> str:
        topic = name or _unique_name("t", request)
        response = await kafka_admin.create_topics(
            [NewTopic(topic, partitions, 1, topic_configs=dict(config or {}))]
        )
        for error in response.to_object()["topic_errors"]:
            if error["error_code"]:
                exc = for_code(error["error_code"])
                raise exc(f"creating topic {error['topic']!r}: {error['error_message']}")
        created.append(topic)
        await _wait_for_leaders(kafka_admin, topic, partitions)
        return topic

    yield create

    if created:
        # Best effort: an external broker may have delete.topic.enable=false.
        with contextlib.suppress(KafkaError):
            await kafka_admin.delete_topics(created)


@pytest.fixture
def produce_json(kafka_bootstrap: str) -> ProduceJson:
    """`await produce_json(topic, [(key, value_dict), ...]) -> [(partition, offset), ...]`.

    One idempotent producer (acks=all) per call; messages keep their order per key.
    """

    async def produce(
        topic: str, messages: Iterable[tuple[str, dict[str, Any]]]
    ) -> list[tuple[int, int]]:
        producer = AIOKafkaProducer(
            bootstrap_servers=kafka_bootstrap,
            client_id="sla-worker-tests",
            acks="all",
            enable_idempotence=True,
            key_serializer=str.encode,
            value_serializer=lambda value: json.dumps(value).encode(),
            linger_ms=5,
        )
        await producer.start()
        try:
            futures = [await producer.send(topic, value, key=key) for key, value in messages]
            metadata = await asyncio.gather(*futures)
        finally:
            await producer.stop()
        return [(record.partition, record.offset) for record in metadata]

    return produce


@pytest.fixture
def consume_json(kafka_bootstrap: str) -> ConsumeJson:
    """`await consume_json(topic, count, timeout=30, group_id=None) -> [(key, value, p, off)]`.

    Reads from the earliest uncommitted offset in consumer group `group_id` (a fresh group
    when None, i.e. from the beginning of the topic), read_committed, until `count` records
    arrived; commits exactly the returned records, so a later call with the same group_id
    goes on after them. Raises TimeoutError if fewer than `count` arrive within `timeout`
    seconds. A record without a key comes back with key "".
    """

    async def consume(
        topic: str,
        count: int,
        timeout: float = 30,
        group_id: str | None = None,
    ) -> list[JsonRecord]:
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=kafka_bootstrap,
            client_id="sla-worker-tests",
            group_id=group_id or f"test-group-{uuid.uuid4().hex[:12]}",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            isolation_level="read_committed",
        )
        records: list[JsonRecord] = []
        next_offsets: dict[TopicPartition, int] = {}
        await consumer.start()
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while len(records) < count:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise TimeoutError(
                        f"consumed {len(records)} of {count} records from {topic!r} in {timeout} s"
                    )
                batches = await consumer.getmany(
                    timeout_ms=int(min(remaining, 1.0) * 1000),
                    max_records=count - len(records),
                )
                for tp, messages in batches.items():
                    for message in messages:
                        key = message.key.decode() if message.key is not None else ""
                        value = json.loads(message.value) if message.value is not None else {}
                        records.append((key, value, message.partition, message.offset))
                        next_offsets[tp] = message.offset + 1
            if next_offsets:
                await consumer.commit(
                    {tp: OffsetAndMetadata(offset, "") for tp, offset in next_offsets.items()}
                )
        finally:
            await consumer.stop()
        return records

    return consume


# --- the live worker -----------------------------------------------------------------------


@pytest.fixture
def worker_factory(
    kafka_bootstrap: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., WorkerProcess]]:
    """Start `sla-worker worker` subprocesses; all are killed at teardown."""
    started: list[WorkerProcess] = []
    app_id = _unique_name("sla", request)

    def make(**options: Any) -> WorkerProcess:
        options.setdefault("app_id", app_id)
        worker = fast_worker(kafka_bootstrap, tmp_path, **options)
        started.append(worker)
        return worker

    yield make
    for worker in started:
        worker.stop_quietly()


@pytest.fixture
def produce_lines(kafka_bootstrap: str) -> Callable[..., Any]:
    """Produce raw event lines keyed by their ticket id (or an explicit key)."""

    async def produce(
        topic: str, lines: list[bytes], keys: list[bytes | None] | None = None
    ) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
        await producer.start()
        try:
            for n, line in enumerate(lines):
                key = keys[n] if keys is not None else json.loads(line)["ticket_id"].encode()
                await producer.send(topic, key=key, value=line)
            await producer.flush()
        finally:
            await producer.stop()

    return produce
