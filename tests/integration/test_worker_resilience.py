"""Crashes, scale-out and shutdown: nothing lost, duplicates only as repeated ids."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.integration.test_worker_equivalence import FAST, expected, outputs


def created(n: int, ticket: str, priority: int = 2) -> bytes:
    return json.dumps(
        {
            "event_id": f"c-{n}",
            "type": "ticket-created",
            "ticket_id": ticket,
            "occurred_at": datetime.now(UTC).isoformat(),
            "plan": "fast",
            "priority": priority,
        }
    ).encode()


def replied(n: int, ticket: str) -> bytes:
    return json.dumps(
        {
            "event_id": f"r-{n}",
            "type": "reply-sent",
            "ticket_id": ticket,
            "occurred_at": datetime.now(UTC).isoformat(),
            "author": "agent",
        }
    ).encode()


async def eventually_found(worker: Any, path: str, timeout: float = 20) -> Any:
    """GET until 200 (a rebalance may still be settling)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        status, body = await asyncio.to_thread(worker.get, path)
        if status == 200 or loop.time() > deadline:
            assert status == 200, (path, status, body, worker.tail(15))
            return body
        await asyncio.sleep(0.5)


async def published(
    drain: Any, warnings: str, breaches: str, want: dict[str, Any], timeout: float = 150
) -> list[Any]:
    """Everything on both output topics, once at least what replay expects is there."""
    n_warnings = sum(1 for e in want.values() if e["type"] == "sla-warning")
    found = await drain(warnings, settle=1, at_least=n_warnings, timeout=timeout)
    return [
        *found,
        *await drain(breaches, settle=1, at_least=len(want) - n_warnings, timeout=timeout),
    ]


async def test_sigkill_with_running_timers_loses_nothing(
    create_topic: Any,
    produce_lines: Any,
    drain: Any,
    worker_factory: Any,
    record_property: Any,
) -> None:
    tickets = await create_topic(partitions=3)
    warnings, breaches = await create_topic(partitions=3), await create_topic(partitions=3)
    worker = worker_factory(
        input_topics=(tickets,), extra=("--warnings-topic", warnings, "--breaches-topic", breaches)
    )
    worker.start()
    await worker.ready()

    # 30 tickets with a 12-second target; every third answered; then SIGKILL while their
    # timers run, more traffic while the worker is down, and a restart.
    lines = [created(n, f"K-{n}") for n in range(30)]
    await produce_lines(tickets, lines)
    await asyncio.sleep(2)
    answers = [replied(n, f"K-{n}") for n in range(0, 30, 3)]
    await produce_lines(tickets, answers)
    lines += answers
    await asyncio.sleep(2)
    worker.kill()
    while_down = [created(n, f"K-{n}") for n in range(30, 40)]
    await produce_lines(tickets, while_down)
    lines += while_down
    await asyncio.sleep(1)
    worker.start()
    recovery = await worker.ready()
    await asyncio.sleep(13)  # past every deadline

    want = expected(lines, FAST, datetime.now(UTC))
    records = await published(drain, warnings, breaches, want)
    got = outputs(records)
    assert got == want
    duplicates = len(records) - len(got)
    record_property("published", len(records))
    record_property("duplicates", duplicates)
    record_property("restart_to_ready_seconds", round(recovery, 2))
    print(
        f"\ncrash test: {len(records)} published, {len(got)} distinct, {duplicates} duplicates;"
        f" restart to ready {recovery:.1f} s"
    )


async def test_a_survivor_takes_over_a_killed_workers_partitions(
    create_topic: Any, produce_lines: Any, drain: Any, worker_factory: Any
) -> None:
    tickets = await create_topic(partitions=6)
    warnings, breaches = await create_topic(partitions=6), await create_topic(partitions=6)
    options = {
        "input_topics": (tickets,),
        "partitions": 6,
        "extra": (
            "--warnings-topic",
            warnings,
            "--breaches-topic",
            breaches,
            "--session-timeout-seconds",
            "8",
        ),
    }
    first, second = worker_factory(**options), worker_factory(**options)
    first.start()
    await first.ready()
    second.start()
    await second.ready()
    await first.ready()  # after the rebalance that gave `second` its share

    lines = [created(n, f"S-{n}") for n in range(60)]
    await produce_lines(tickets, lines)
    await asyncio.sleep(2)  # the timeline: the kill below comes 2 s after the creations

    # Each worker answers for every ticket: requests are forwarded to the owner.
    for worker in (first, second):
        for ticket in ("S-7", "S-8", "S-9"):
            body = await eventually_found(worker, f"/tickets/{ticket}")
            assert body["ticket_id"] == ticket and body["timers"][0]["target"] == "PT12S"
    status, _ = await asyncio.to_thread(first.get, "/tickets/NOPE")
    assert status == 404

    second.kill()
    await asyncio.sleep(11)  # every deadline has passed

    # The survivor needs the session timeout, a rebalance and a recovery first.
    want = expected(lines, FAST, datetime.now(UTC))
    got = outputs(await published(drain, warnings, breaches, want))
    assert got == want
    assert {e["ticket_id"] for e in want.values() if e["type"] == "sla-breach"} == {
        f"S-{n}" for n in range(60)
    }


@pytest.mark.parametrize("signal_name", ["SIGTERM"])
async def test_sigterm_finishes_and_exits_zero(
    create_topic: Any, produce_lines: Any, worker_factory: Any, signal_name: str
) -> None:
    tickets = await create_topic(partitions=3)
    worker = worker_factory(input_topics=(tickets,))
    worker.start()
    await worker.ready()
    await produce_lines(tickets, [created(n, f"G-{n}") for n in range(20)])
    await eventually_found(worker, "/tickets/G-19")  # it is working, not idle
    assert await asyncio.to_thread(worker.terminate) == 0, worker.tail()


async def test_a_worker_without_partitions_is_a_ready_spare(
    create_topic: Any, worker_factory: Any
) -> None:
    """More workers than partitions: the extra one is ready (a rollout must not wait for
    it) and holds nothing; when the owner leaves, it takes the partition over."""
    tickets = await create_topic(partitions=1)
    options = {"input_topics": (tickets,), "partitions": 1}
    first, second = worker_factory(**options), worker_factory(**options)
    first.start()
    await first.ready()
    second.start()
    await second.ready()
    held: dict[int, Any] = {}
    for _ in range(60):  # until the rebalance that `second` caused has settled on both
        answers = [await asyncio.to_thread(w.get, "/readyz") for w in (first, second)]
        held = {w.port: body for w, (status, body) in zip((first, second), answers, strict=True)}
        if all(status == 200 for status, _ in answers):
            break
        await asyncio.sleep(0.5)
    assert all(body["ready"] for body in held.values()), held
    held = {port: body["partitions"] for port, body in held.items()}
    assert sorted(held.values()) == [[], [0]]
    owner, spare = (first, second) if held[first.port] == [0] else (second, first)
    assert await asyncio.to_thread(owner.terminate) == 0
    for _ in range(60):
        status, body = await asyncio.to_thread(spare.get, "/readyz")
        if body["partitions"] == [0]:
            break
        await asyncio.sleep(0.5)
    assert status == 200 and body["partitions"] == [0]
