"""Faults at the worst moments, each run compared with `sla-worker replay` of the same log.

Every test produces the adversarial log of `fault_log` (hostile lines included), injects
its fault with SIGKILL, and then requires of what a read_committed consumer sees:

- warnings and breaches: exactly the `event_id`s replay emits for the log, nothing
  missing, nothing invented, each with replay's content (repeats are counted);
- dead letters: every hostile line exactly once.

Each test runs with local snapshots (`--state-dir`) and without (changelog only).
`SLA_FAULT_RUNS=N` repeats every test N times (the closing notes report pass rates).
"""

from __future__ import annotations

import asyncio
import os
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from devtools.harness import WorkerProcess
from tests.integration.fault_log import (
    Line,
    Setup,
    check,
    fault_log,
    live_log,
    produce,
    wait_for_any,
)
from tests.integration.workers import FAST_GOALS_POLICY, FAST_POLICY

RUNS = int(os.environ.get("SLA_FAULT_RUNS", "1"))
runs = pytest.mark.parametrize("run", range(RUNS))


@pytest.fixture(params=["changelog-only", "snapshots"])
def worker_factory(request: pytest.FixtureRequest, worker_factory: Any) -> Any:
    """Every fault test runs without local snapshots (every restore reads the
    whole changelog) and with them (`--state-dir`, one per worker, kept across its
    restarts: a kill may fall between a commit and its snapshot write)."""
    if request.param == "changelog-only":
        return worker_factory

    def make(**options: Any) -> WorkerProcess:
        worker: WorkerProcess = worker_factory(**options)
        worker.settings = {
            **worker.settings,
            "state_dir": worker.directory / f"state-{worker.port}",
        }
        return worker

    return make


@pytest.fixture(params=[FAST_POLICY, FAST_GOALS_POLICY], ids=["plans", "goals"])
def setup_topics(create_topic: Any, kafka_bootstrap: str, request: pytest.FixtureRequest) -> Any:
    """Every fault test also runs on two policies (so four times in all, with the store
    variants above): on the plan x priority policy, and on the same
    timings as a goal policy measuring every built-in metric (resolution, periodic
    update, requester wait and agent work beside first response and follow-up)."""

    async def make(partitions: int) -> Setup:
        names = [await create_topic(partitions=partitions) for _ in range(4)]
        return Setup(kafka_bootstrap, *names, partitions=partitions, policy=request.param)

    return make


def backlog_log(seed: int) -> list[Line]:
    """Ten minutes old: every deadline has long passed when the worker reads it."""
    return fault_log(seed, datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10))


async def start_ready(worker: WorkerProcess) -> None:
    worker.start()
    await worker.ready()


async def wait_for_log(worker: WorkerProcess, text: str, count: int, timeout: float = 60) -> None:
    """Until `text` occurs `count` times in the worker's log (all its starts)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if worker.log_path.exists() and worker.log_path.read_text().count(text) >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{text!r} not logged {count} times:\n{worker.tail()}")


async def owns_all(worker: WorkerProcess, partitions: int, timeout: float = 30) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        status, body = await asyncio.to_thread(worker.get, "/readyz")
        if status == 200 and body["partitions"] == list(range(partitions)):
            return
        assert loop.time() < deadline, (status, body)
        await asyncio.sleep(0.5)


@runs
@pytest.mark.parametrize("timing", ["backlog", "live"])
async def test_a_kill_at_the_first_publication_then_a_restart(
    setup_topics: Any,
    worker_factory: Any,
    tmp_path: Path,
    record_property: Any,
    timing: str,
    run: int,
) -> None:
    setup = await setup_topics(3)
    worker = worker_factory(**setup.options())
    lines = backlog_log(run) if timing == "backlog" else live_log(run)
    producing = None
    if timing == "backlog":
        await produce(setup.bootstrap, setup.tickets, lines)
        worker.start()
    else:
        await start_ready(worker)
        producing = asyncio.create_task(produce(setup.bootstrap, setup.tickets, lines, live=True))
    await wait_for_any(setup.bootstrap, setup.outputs)
    worker.kill()  # the first transaction is open: its records are written, not committed
    worker.start()
    if producing is not None:
        await producing
    await check(setup, [worker], lines, tmp_path, record_property, f"first publication ({timing})")


@runs
@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_kills_at_random_points_then_restarts(
    setup_topics: Any,
    worker_factory: Any,
    tmp_path: Path,
    record_property: Any,
    seed: int,
    run: int,
) -> None:
    rng = random.Random(seed * 1000 + run)
    live = rng.random() < 0.5
    setup = await setup_topics(3)
    worker = worker_factory(**setup.options())
    lines = live_log(seed) if live else backlog_log(seed)
    producing = None
    if live:
        producing = asyncio.create_task(produce(setup.bootstrap, setup.tickets, lines, live=True))
    else:
        await produce(setup.bootstrap, setup.tickets, lines)
    worker.start()
    kills = rng.choice([1, 2])
    for _ in range(kills):
        await asyncio.sleep(rng.uniform(0.5, 8))
        worker.kill()
        worker.start()
    if producing is not None:
        await producing
    what = f"{kills} random kill(s), seed {seed}, {'live' if live else 'backlog'}"
    await check(setup, [worker], lines, tmp_path, record_property, what)


async def backlog_and_worker(
    setup_topics: Any, worker_factory: Any, seed: int
) -> tuple[Setup, WorkerProcess, list[Line]]:
    """A 3-partition backlog log, produced; a worker started on it."""
    setup = await setup_topics(3)
    worker = worker_factory(**setup.options())
    lines = backlog_log(seed)
    await produce(setup.bootstrap, setup.tickets, lines)
    worker.start()
    return setup, worker, lines


@runs
async def test_a_kill_during_state_recovery(
    setup_topics: Any, worker_factory: Any, tmp_path: Path, record_property: Any, run: int
) -> None:
    setup, worker, lines = await backlog_and_worker(setup_topics, worker_factory, 100 + run)
    await wait_for_any(setup.bootstrap, setup.outputs)
    worker.kill()
    worker.start()
    await wait_for_log(worker, "restoring partitions", 2)
    worker.kill()  # while it reads the changelog and the committed offsets
    worker.start()
    await check(setup, [worker], lines, tmp_path, record_property, "kill during recovery")


@runs
async def test_a_kill_before_the_first_commit(
    setup_topics: Any, worker_factory: Any, tmp_path: Path, record_property: Any, run: int
) -> None:
    setup, worker, lines = await backlog_and_worker(setup_topics, worker_factory, 200 + run)
    await wait_for_log(worker, "restored partitions", 1)
    worker.kill()  # state restored (empty), the first step not yet committed
    worker.start()
    await check(setup, [worker], lines, tmp_path, record_property, "kill before the first commit")


@runs
@pytest.mark.parametrize("timing", ["backlog", "live"])
async def test_a_survivor_takes_over_at_the_first_publication(
    setup_topics: Any,
    worker_factory: Any,
    tmp_path: Path,
    record_property: Any,
    timing: str,
    run: int,
) -> None:
    setup = await setup_topics(6)
    first, second = worker_factory(**setup.options()), worker_factory(**setup.options())
    if timing == "backlog":
        # A backlog must be in the topic before anyone reads it: events produced after
        # their deadlines passed on a caught-up worker's wall clock cannot un-fire them.
        lines = backlog_log(300 + run)
        await produce(setup.bootstrap, setup.tickets, lines)
        first.start()
        second.start()
        producing = None
    else:
        await start_ready(first)
        await start_ready(second)
        await first.ready()  # after the rebalance that gave `second` its share
        lines = live_log(300 + run)
        producing = asyncio.create_task(produce(setup.bootstrap, setup.tickets, lines, live=True))
    await wait_for_any(setup.bootstrap, setup.outputs)
    second.kill()  # `first`, which never held second's partitions, must take them over
    if producing is not None:
        await producing
    await check(setup, [first], lines, tmp_path, record_property, f"takeover ({timing})")
    await owns_all(first, 6)


@runs
async def test_a_newcomer_takes_over_from_a_killed_worker(
    setup_topics: Any, worker_factory: Any, tmp_path: Path, record_property: Any, run: int
) -> None:
    setup = await setup_topics(6)
    lines = backlog_log(400 + run)
    await produce(setup.bootstrap, setup.tickets, lines)
    old = worker_factory(**setup.options())
    old.start()
    await wait_for_any(setup.bootstrap, setup.outputs)
    old.kill()
    newcomer = worker_factory(**setup.options())  # another port, never held a partition
    newcomer.start()
    await check(setup, [newcomer], lines, tmp_path, record_property, "takeover by a newcomer")
