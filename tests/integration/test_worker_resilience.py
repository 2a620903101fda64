"""Crashes, scale-out and shutdown: nothing lost, duplicates only as repeated ids."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devtools.harness import settled
from tests.integration.expected import expected
from tests.integration.fault_log import Published, published

LAST_DEADLINE = timedelta(seconds=12)  # the fast plan's longest target (priority 2)


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


async def published_equals_replay(
    bootstrap: str, warnings: str, breaches: str, lines: list[bytes], until: datetime
) -> Published:
    """What the worker published (read_committed) is exactly what replay emits for the
    lines with the clock at `until`, each id once, and records of aborted transactions
    (read_uncommitted) only repeat those, byte for byte; call when the workers settled."""
    want = expected(lines, until)
    got = await published(bootstrap, [warnings, breaches])
    assert got.events == want
    assert not got.repeats and not got.conflicts
    uncommitted = await published(bootstrap, [warnings, breaches], committed=False)
    assert set(uncommitted.events) == set(want) and not uncommitted.conflicts
    return got


async def test_sigkill_with_running_timers_loses_nothing(
    create_topic: Any,
    produce_lines: Any,
    kafka_bootstrap: str,
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

    # The timeline: 30 tickets with a 12-second target; 2 s later every third is
    # answered; 2 s after that SIGKILL while their timers run, 10 more tickets while the
    # worker is down, and a restart 1 s later.
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
    until = datetime.now(UTC) + LAST_DEADLINE  # every deadline
    await asyncio.sleep(1)
    worker.start()
    recovery = await worker.ready()

    await settled([worker], until)
    got = await published_equals_replay(kafka_bootstrap, warnings, breaches, lines, until)
    record_property("published", len(got.events))
    record_property("restart_to_ready_seconds", round(recovery, 2))
    print(
        f"\ncrash test: {len(got.events)} published, each once (read_committed);"
        f" restart to ready {recovery:.1f} s"
    )


async def test_a_survivor_takes_over_a_killed_workers_partitions(
    create_topic: Any, produce_lines: Any, kafka_bootstrap: str, worker_factory: Any
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
    until = datetime.now(UTC) + LAST_DEADLINE  # every deadline
    await asyncio.sleep(2)  # the timeline: the kill below comes 2 s after the creations

    # Each worker answers for every ticket: requests are forwarded to the owner.
    for worker in (first, second):
        for ticket in ("S-7", "S-8", "S-9"):
            body = await eventually_found(worker, f"/tickets/{ticket}")
            assert body["ticket_id"] == ticket and body["timers"][0]["target"] == "PT12S"
    status, _ = await asyncio.to_thread(first.get, "/tickets/NOPE")
    assert status == 404

    second.kill()

    # The survivor needs the session timeout, a rebalance and a recovery first: settled
    # waits until it reports all six partitions read and their timers fired.
    await settled([first], until)
    got = await published_equals_replay(kafka_bootstrap, warnings, breaches, lines, until)
    assert {e["ticket_id"] for e in got.events.values() if e["type"] == "sla-breach"} == {
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
