"""Policy history in the live worker: SIGHUP reloads the file, a bad file is refused and
the old policy stays, and worker and replay agree across a version change."""

from __future__ import annotations

import asyncio
import copy
import json
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from aiokafka import AIOKafkaProducer

from devtools.harness import WorkerProcess
from tests.integration.fault_log import Line, fault_log, produce, settled_outputs
from tests.integration.workers import FAST_POLICY


def versions(change: datetime | None) -> dict[str, Any]:
    """The fast test policy as version v1; with `change`, a v2 from then on whose
    priority-1 first response is 10 s instead of 6 s."""
    v1 = {**yaml.safe_load(FAST_POLICY.read_text()), "version": "fast-v1"}
    if change is None:
        return {"versions": [v1]}
    v2 = copy.deepcopy(v1)
    v2["version"], v2["effective_from"] = "fast-v2", change.isoformat()
    v2["plans"]["fast"]["priorities"][1]["first_response"]["target"] = "PT10S"
    return {"versions": [v1, v2]}


def replayed(lines: list[Line], policy: Path, until: datetime, workdir: Path) -> dict[str, Any]:
    """`sla-worker replay --finished-timers` of the log with this policy file."""
    events = workdir / f"log-{len(lines)}.jsonl"
    events.write_bytes(b"".join(line.value + b"\n" for line in lines))
    done = subprocess.run(
        [sys.executable, "-m", "worker", "replay", str(events), "--policies", str(policy),
         "--until", until.isoformat(), "--finished-timers"],
        capture_output=True, check=True,
    )  # fmt: skip
    return {e["event_id"]: e for e in map(json.loads, done.stdout.splitlines())}


def differences(want: dict[str, Any], got: dict[str, Any]) -> list[Any]:
    """(id, field, wanted, published) of what differs; ids on one side only."""
    rows: list[Any] = [(i, "missing") for i in want.keys() - got.keys()]
    rows += [(i, "unexpected") for i in got.keys() - want.keys()]
    for i in want.keys() & got.keys():
        rows += [
            (i, k, want[i].get(k), got[i].get(k)) for k in want[i] if want[i][k] != got[i].get(k)
        ]
    return rows


async def produce_atomically(bootstrap: str, topic: str, lines: list[Line]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, transactional_id=f"reload-test-{topic}", acks="all"
    )
    await producer.start()
    try:
        async with producer.transaction():
            for line in lines:
                await producer.send(topic, line.value, key=line.key)
    finally:
        await producer.stop()


async def logged(worker: WorkerProcess, message: str, count: int = 1, timeout: float = 30) -> None:
    for _ in range(int(timeout * 10)):
        if worker.log_path.read_text().count(f'"message": "{message}') >= count:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"no {message!r} in the worker's log:\n{worker.tail()}")


async def test_sighup_reload_and_a_version_change_agree_with_replay(
    create_topic: Any, kafka_bootstrap: str, worker_factory: Any, tmp_path: Path
) -> None:
    names = {n: await create_topic(partitions=3) for n in ("in", "w", "b", "dead", "fin")}
    outputs = [names["w"], names["b"], names["fin"]]
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    change = start + timedelta(minutes=5)
    before = fault_log(3, start)  # every ticket created before the change: v1
    after = fault_log(4, start + timedelta(minutes=6))  # every one after it: v2
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump(versions(None)))

    await produce(kafka_bootstrap, names["in"], before)
    worker = worker_factory(
        input_topics=(names["in"],),
        policy=policy,
        extra=(
            *("--warnings-topic", names["w"], "--breaches-topic", names["b"]),
            *("--finished-timers-topic", names["fin"], "--dead-letter-topic", names["dead"]),
        ),
    )
    worker.start()
    until = before[-1].at + timedelta(seconds=15)
    want = replayed(before, policy, until, tmp_path)
    got = await settled_outputs([worker], outputs, until)
    assert got.events == want

    # A file that cannot be used is refused, with the reason; the old policy stays.
    policy.write_text(yaml.safe_dump(versions(None)).replace("PT6S", "PT"))
    worker.process.send_signal(signal.SIGHUP)
    await logged(worker, "policy reload refused")
    assert "invalid duration 'PT'" in worker.log_path.read_text()
    assert worker.process.poll() is None

    policy.write_text(yaml.safe_dump(versions(change)))
    worker.process.send_signal(signal.SIGHUP)
    await logged(worker, "policy reloaded")

    # In one transaction: the worker, caught up and long past these (old) deadlines on the
    # wall clock, must see the whole batch at once, as replay does, or it would rightly
    # fire deadlines that replies further down the batch meet (a late producer).
    await produce_atomically(kafka_bootstrap, names["in"], after)
    until = after[-1].at + timedelta(seconds=15)
    want = replayed(before + after, policy, until, tmp_path)
    got = await settled_outputs([worker], outputs, until)
    assert got.events == want and not got.conflicts, differences(want, got.events)
    by_version = {(e["ticket_id"][:2], e["policy_version"]) for e in want.values()}
    assert by_version == {("F3", "fast-v1"), ("F4", "fast-v2")}
    assert {e["target"] for e in want.values() if e["ticket_id"].startswith("F4")} >= {"PT10S"}
