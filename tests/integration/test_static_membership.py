"""A rolling restart with static membership (`--instance-id`) moves no partition.

Two workers share three partitions. One is stopped (SIGTERM) and started again within
the session timeout, as a rolling update restarts a StatefulSet's pod under the same name.
With instance ids the other worker never rebalances: it recovers nothing, and keeps
exactly its partitions, while the restarted one gets its own back. Without them (the
control), the same restart makes the other worker give up and recover its partitions,
twice over. Either way, what was published equals replay of the log.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.integration.fault_log import TIMERS_OVER, live_log, produce, replay_expected
from tests.integration.fault_log import settled_outputs as settled_published
from worker.harness import WorkerProcess

SESSION = 30  # seconds: long enough for a restart, as a deployment would set it


def recoveries(worker: WorkerProcess) -> float:
    scrape = worker.scrape()
    assert scrape is not None
    return scrape.total("sla_table_recoveries_total")


async def owned(worker: WorkerProcess) -> list[int]:
    status, body = await asyncio.to_thread(worker.get, "/readyz")
    assert status == 200, body
    return list(body["partitions"])


@pytest.mark.parametrize("static", [True, False], ids=["static", "dynamic"])
async def test_a_restart_within_the_session_timeout_moves_nothing(
    static: bool, create_topic: Any, worker_factory: Any, tmp_path: Path
) -> None:
    names = {n: await create_topic(partitions=3) for n in ("in", "w", "b", "dead")}
    topics = (
        *("--warnings-topic", names["w"], "--breaches-topic", names["b"]),
        *("--dead-letter-topic", names["dead"]),
    )

    def worker(instance: str) -> WorkerProcess:
        settings: dict[str, object] = {"session_timeout_seconds": SESSION}
        if static:
            settings["instance_id"] = instance
        return worker_factory(input_topics=(names["in"],), settings=settings, extra=topics)

    first, second = worker("sla-a"), worker("sla-b")
    first.start()
    second.start()
    await asyncio.gather(first.ready(), second.ready())
    while len(await owned(first)) + len(await owned(second)) != 3 or not await owned(second):
        await asyncio.sleep(0.2)  # until the group has spread the partitions over both
    before = await owned(second), recoveries(second)
    first_owned = await owned(first)

    # The log happens live (a caught-up worker must never read an event after its
    # deadline passed); the restart falls in its middle.
    lines = live_log(17)
    producing = asyncio.create_task(produce(first.bootstrap, names["in"], lines, live=True))
    await asyncio.sleep((lines[len(lines) // 2].at - datetime.now(UTC)).total_seconds())
    assert await asyncio.to_thread(first.terminate) == 0
    first.start()  # the same instance id, as a pod restarted under its name
    await first.ready(timeout=SESSION * 3)
    await producing

    until = lines[-1].at + TIMERS_OVER
    got = await settled_published(
        [first, second], [names["w"], names["b"]], until, timeout=SESSION * 4
    )
    assert got.events == replay_expected(lines, until, tmp_path) and not got.conflicts
    after = await owned(second), recoveries(second)
    if static:
        assert after == before  # no rebalance reached the other worker
        assert await owned(first) == first_owned  # and the restarted one got its own back
    else:
        assert after[1] > before[1]  # the control: it gave up its partitions and recovered
