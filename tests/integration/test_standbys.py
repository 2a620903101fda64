"""A warm standby takes over a killed owner's partitions by reading only the tail.

Two workers with `--standby-replicas 1` share six partitions: each keeps the other's
partitions warm, tailing their changelogs. Under live traffic, the owner of half the
partitions is killed (SIGKILL). When the group gives its partitions to the survivor, the
survivor promotes its standbys: it reads only the changelog records its standbys had not
applied yet (logged per promotion), not the changelogs. What was published equals replay
of the log, as exact sets of `event_id`s (`fault_log.check`), as in the fault suite;
with local snapshots (`--state-dir`) and without.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from devtools.harness import WorkerProcess
from tests.integration.fault_log import Setup, check, live_log, produce, wait_for_any
from tests.integration.workers import FAST_POLICY


async def readyz(worker: WorkerProcess) -> dict[str, Any]:
    status, body = await asyncio.to_thread(worker.get, "/readyz")
    assert status in (200, 503), body
    return dict(body)


async def warm(worker: WorkerProcess, partitions: list[int], timeout: float = 60) -> None:
    """Until `worker` keeps exactly these partitions as standbys, each caught up."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        body = await readyz(worker)
        rows = body.get("standbys", [])
        if [r["partition"] for r in rows] == partitions and all(r["lag"] == 0 for r in rows):
            return
        assert loop.time() < deadline, body
        await asyncio.sleep(0.2)


def promotions(worker: WorkerProcess) -> dict[int, tuple[int, int]]:
    """Partition -> (changelog offset its standby had reached, records read after it),
    from the worker's log."""
    found = {}
    for line in worker.log_path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        message = str(entry.get("message", ""))
        if "promoting its standby" in message:
            # "partition 3: promoting its standby (5 tickets, changelog offset 40); reading
            # the changelog's 0 records after it"
            number = int(message.split(":")[0].split()[-1])
            offset = int(message.split("changelog offset ")[1].split(")")[0])
            tail = int(message.split("reading the changelog's ")[1].split()[0])
            found[number] = (offset, tail)
    return found


@pytest.mark.parametrize("snapshots", [False, True], ids=["changelog-only", "snapshots"])
async def test_a_survivor_promotes_its_standbys_and_reads_only_the_tail(
    create_topic: Any,
    kafka_bootstrap: str,
    worker_factory: Any,
    tmp_path: Path,
    record_property: Any,
    snapshots: bool,
) -> None:
    names = [await create_topic(partitions=6) for _ in range(4)]
    setup = Setup(kafka_bootstrap, *names, partitions=6, policy=FAST_POLICY)

    def worker(name: str) -> WorkerProcess:
        settings: dict[str, Any] = {"standby_replicas": 1}
        if snapshots:  # each worker its own --state-dir, as the fault suite does
            settings["state_dir"] = tmp_path / f"state-{name}"
        made: WorkerProcess = worker_factory(**setup.options(), settings=settings)
        return made

    first, second = worker("first"), worker("second")
    first.start()
    await first.ready()
    second.start()
    await second.ready()
    while not (await readyz(first))["partitions"] or not (await readyz(second))["partitions"]:
        await asyncio.sleep(0.2)  # until the group has spread the partitions over both
    owned = (await readyz(first))["partitions"]
    await warm(second, owned)  # the survivor-to-be keeps the victim's partitions warm

    lines = live_log(23)
    producing = asyncio.create_task(produce(setup.bootstrap, setup.tickets, lines, live=True))
    await wait_for_any(setup.bootstrap, setup.outputs)
    await asyncio.sleep(2)  # changelogs grow; the standbys follow
    first.kill()
    await producing

    await check(setup, [second], lines, tmp_path, record_property, "standby takeover")
    promoted = promotions(second)
    assert sorted(promoted) == owned, second.tail()
    size = sum(offset for offset, _ in promoted.values())
    tail = sum(read for _, read in promoted.values())
    record_property("changelog_records", size)
    record_property("tail_records_read", tail)
    print(f"\nstandby takeover: {tail} changelog records read after the standbys' {size}")
    assert size > 0 and tail * 10 <= size  # the tail, not the changelog
