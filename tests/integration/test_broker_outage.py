"""The broker goes away and comes back: the worker rides it out, says it is not ready
meanwhile, keeps its log readable, and afterwards has published exactly what
`sla-worker replay` emits for the same log (docs/operations.md, "Broker outages").

These tests run their own broker (`devtools.harness.LocalBroker`) and stop it; the
session's shared broker is not touched.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from devtools.harness import LocalBroker, WorkerProcess
from tests.integration.fault_log import (
    Setup,
    check,
    live_log,
    produce,
    wait_for_any,
)
from tests.integration.workers import fast_worker

OUTAGE_SECONDS = 35
# The log's last agent reply that prevents a warning comes 9.7 s after its start
# (fault_log: 30 tickets 0.3 s apart, answered 1 s after creation); from then on every
# event produced late, after the outage, only starts or ends timers that have not fired.
OUTAGE_STARTS_AFTER = timedelta(seconds=11)
MAX_LOG_LINES_PER_OUTAGE = 60


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    local = LocalBroker(tmp_path_factory.mktemp("outage-broker"))
    local.start()
    try:
        yield local
    finally:
        local.stop()


@pytest.fixture
async def running(
    broker: LocalBroker, tmp_path: Path
) -> AsyncIterator[tuple[Setup, WorkerProcess]]:
    """A ready worker on this module's broker, with topics of its own."""
    tag = uuid.uuid4().hex[:8]
    names = (f"tickets-{tag}", f"warnings-{tag}", f"breaches-{tag}", f"dead-{tag}")
    setup = Setup(broker.bootstrap, *names, partitions=3)
    worker = fast_worker(broker.bootstrap, tmp_path, app_id=f"outage-{tag}", **setup.options())
    worker.start()
    try:
        await worker.ready()
        yield setup, worker
    finally:
        worker.stop_quietly()


def lines_logged(worker: WorkerProcess) -> list[dict[str, Any]]:
    return [json.loads(line) for line in worker.log_path.read_text().splitlines() if line]


async def test_a_broker_outage_during_traffic_loses_nothing(
    broker: LocalBroker,
    running: tuple[Setup, WorkerProcess],
    tmp_path: Path,
    record_property: Any,
) -> None:
    setup, worker = running
    lines = live_log(7)
    start = lines[0].at
    producing = asyncio.create_task(
        produce(broker.bootstrap, setup.tickets, lines, live=True, patient=True)
    )
    await wait_for_any(broker.bootstrap, setup.outputs)
    await asyncio.sleep(max((start + OUTAGE_STARTS_AFTER - datetime.now(UTC)).total_seconds(), 0))
    logged_before = len(lines_logged(worker))
    down_at = await asyncio.to_thread(broker.stop)  # timers are running
    unready_after = await worker.readyz(503, timeout=20)
    await asyncio.sleep(max(OUTAGE_SECONDS - (time.monotonic() - down_at), 0))
    during = lines_logged(worker)[logged_before:]
    await asyncio.to_thread(broker.resume)
    ready_after = await worker.readyz(200, timeout=90)
    await producing
    await check(setup, [worker], lines, tmp_path, record_property, "broker outage during traffic")
    record_property("unready_seconds_after_stop", round(unready_after, 1))
    record_property("ready_seconds_after_resume", round(ready_after, 1))
    record_property("log_lines_during_outage", len(during))
    print(
        f"not ready {unready_after:.1f} s after the stop; ready {ready_after:.1f} s after the "
        f"broker came back; {len(during)} log lines in {OUTAGE_SECONDS} s down"
    )
    assert len(during) <= MAX_LOG_LINES_PER_OUTAGE, "\n".join(map(str, during))
    assert any("unreachable" in line["message"] for line in during), during


async def test_a_broker_restart_while_idle(
    broker: LocalBroker,
    running: tuple[Setup, WorkerProcess],
    tmp_path: Path,
    record_property: Any,
) -> None:
    setup, worker = running
    earlier = live_log(8)
    await produce(broker.bootstrap, setup.tickets, earlier, live=True)
    await check(setup, [worker], earlier, tmp_path, record_property, "before the restart")
    await asyncio.to_thread(broker.stop)  # idle: nothing in flight, no timer due
    await worker.readyz(503, timeout=20)
    await asyncio.sleep(5)  # the timeline: five seconds of maintenance
    await asyncio.to_thread(broker.resume)
    await worker.readyz(200, timeout=90)
    later = live_log(9)
    await produce(broker.bootstrap, setup.tickets, later, live=True)
    await check(setup, [worker], earlier + later, tmp_path, record_property, "after the restart")
