"""`GET /at-risk` across a group of three workers and a real broker (issue #24).

Every worker gives the same rows in the same order, equal to what replay's state at the
instant of the answer implies; a worker killed makes the others' answers `partial`, its
partitions named, until the survivors have taken them over.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from devtools.harness import WorkerProcess, settled
from tests.integration.workers import FAST
from worker.core.engine import Engine
from worker.replay import Replay

TOKEN = "at-risk-test-token"
PARTITIONS = 6


def event(kind: str, ticket: str, n: int, **fields: Any) -> bytes:
    return json.dumps(
        {
            "event_id": f"{kind}-{n}",
            "type": kind,
            "ticket_id": ticket,
            "occurred_at": datetime.now(UTC).isoformat(),
            **fields,
        }
    ).encode()


async def at_risk(worker: WorkerProcess, query: str = "") -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
        session.get(f"{worker.url}/at-risk?limit=10000{query}", headers=headers) as response,
    ):
        assert response.status == 200, await response.text()
        body: dict[str, Any] = await response.json()
        return body


def key(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row["ticket_id"], row["metric"], row["cycle"], row["deadline"], row["breached"])


def replayed(lines: list[bytes], as_of: str) -> list[tuple[Any, ...]]:
    """The rows replay's state implies at `as_of`: every timer of every ticket, with a
    deadline within the hour or breached, ordered by remaining business time."""
    now = datetime.fromisoformat(as_of)
    replay = Replay(Engine(FAST), on_event=lambda e: None, on_reject=lambda r: None)
    replay.feed(lines)
    replay.finish(until=now)
    rows = []
    for ticket in replay.tickets.values():
        for view in replay.engine.timers(ticket, now):
            if view.deadline is None:
                continue
            if not view.breached and view.deadline > now + timedelta(hours=1):
                continue
            remaining = view.target.duration - view.elapsed
            deadline = view.deadline.isoformat().replace("+00:00", "Z")
            row = (ticket.ticket_id, view.metric, view.cycle, deadline, view.breached)
            rows.append(((remaining, view.deadline, ticket.ticket_id), row))
    return [row for _, row in sorted(rows)]


async def test_every_worker_gives_the_groups_rows_and_names_what_is_missing(
    create_topic: Any, produce_lines: Any, worker_factory: Any
) -> None:
    tickets = await create_topic(partitions=PARTITIONS)
    options = {
        "input_topics": (tickets,),
        "partitions": PARTITIONS,
        "env": {"SLA_API_TOKEN": TOKEN},
        "extra": ("--session-timeout-seconds", "8"),
    }
    workers = [worker_factory(**options) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        await worker.ready()
    for worker in workers:
        await worker.ready()  # after the rebalances that spread the partitions

    # The timeline: 30 tickets with a 6-second first response, every third answered at
    # once; 7 s later, when the others have breached, 40 tickets with 12 seconds.
    lines = [event("ticket-created", f"B-{n}", n, plan="fast", priority=1) for n in range(30)]
    lines += [event("reply-sent", f"B-{n}", n, author="agent") for n in range(0, 30, 3)]
    await produce_lines(tickets, lines)
    await asyncio.sleep(7)
    soon = [event("ticket-created", f"R-{n}", 100 + n, plan="fast", priority=2) for n in range(40)]
    await produce_lines(tickets, soon)
    lines += soon
    await settled(workers, datetime.now(UTC))

    answers = [await at_risk(worker) for worker in workers]
    for body in answers:
        assert body["partial"] is False and body["missing_partitions"] == []
        assert [key(row) for row in body["rows"]] == replayed(lines, body["as_of"])
    assert len({tuple(key(row) for row in body["rows"]) for body in answers}) == 1
    rows = answers[0]["rows"]
    assert len(rows) == 20 + 40 and answers[0]["counts"]["breached"] == 20
    assert {row["partition"] for row in rows} == set(range(PARTITIONS))
    assert all(row["breached"] for row in rows[:20]) and rows[0]["remaining_seconds"] < 0

    # Kill one worker: the others still answer at once, naming its partitions.
    victim, survivors = workers[2], workers[:2]
    _, ready = await asyncio.to_thread(victim.get, "/readyz")
    lost = sorted(ready["partitions"])
    assert lost
    victim.kill()
    for worker in survivors:
        body = await at_risk(worker)
        assert body["partial"] is True and body["missing_partitions"] == lost
        assert {row["partition"] for row in body["rows"]}.isdisjoint(lost)
        assert [e["worker"] for e in body["errors"]] == [victim.url]

    # After the session timeout the survivors take the partitions over: complete again.
    deadline = asyncio.get_running_loop().time() + 90
    while True:
        body = await at_risk(survivors[0])
        if not body["partial"] or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.5)
    assert body["partial"] is False, body["missing_partitions"]
    # The 12-second deadlines pass about now: a breach may fire between the answer and
    # replay's instant, so only which timers, and their order, are compared here.
    assert [key(row)[:4] for row in body["rows"]] == [
        row[:4] for row in replayed(lines, body["as_of"])
    ]
    other = await at_risk(survivors[1])
    assert [key(row)[:4] for row in other["rows"]] == [key(row)[:4] for row in body["rows"]]
