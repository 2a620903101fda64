"""The live worker publishes exactly what replay emits for the same log, ids included.

Two ways of reading the log: all of it as a backlog (a new consumer group reading from the
beginning, every deadline long past), and live, with events produced as they happen and
timers firing on the wall clock.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from devtools.harness import settled
from tests.integration.expected import expected
from tests.integration.fault_log import published
from worker.presets import load_presets
from worker.traffic import synthetic_stream


async def test_a_backlog_read_from_the_beginning_equals_replay(
    create_topic: Any, produce_lines: Any, kafka_bootstrap: str, worker_factory: Any
) -> None:
    # A month of traffic that ended weeks ago: every deadline is in the past, so a worker
    # that fired on the wall clock before applying the backlog would publish breaches
    # the backlog's replies prevent.
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=45)
    lines, _ = synthetic_stream(3_000, 300, seed=11, start=start)
    tickets = await create_topic(partitions=3)
    warnings, breaches = await create_topic(partitions=3), await create_topic(partitions=3)
    await produce_lines(tickets, lines)
    until = datetime.now(UTC)
    want = expected(lines, until, load_presets())
    assert len(want) > 150

    worker = worker_factory(
        input_topics=(tickets,),
        policy=None,  # the built-in presets
        extra=("--warnings-topic", warnings, "--breaches-topic", breaches),
    )
    worker.start()
    await worker.ready()
    await settled([worker], until)
    got = await published(kafka_bootstrap, [warnings, breaches])
    assert got.events == want
    assert not got.repeats


async def test_live_traffic_equals_replay(
    create_topic: Any, produce_lines: Any, kafka_bootstrap: str, worker_factory: Any
) -> None:
    tickets = await create_topic(partitions=3)
    warnings, breaches = await create_topic(partitions=3), await create_topic(partitions=3)
    worker = worker_factory(
        input_topics=(tickets,),
        extra=(
            "--warnings-topic",
            warnings,
            "--breaches-topic",
            breaches,
            "--allowed-lateness-seconds",
            "0.5",
        ),
    )
    worker.start()
    await worker.ready()

    # (seconds from start, ticket, fields). fast plan: P1 first response 6 s, follow-up
    # 8 s; P2 first response 12 s; warnings at 50 %. Nothing happens within 1 s of a
    # deadline, so produce-to-apply latency cannot decide an outcome.
    script: list[tuple[float, str, dict[str, Any]]] = [
        (0.0, "L-1", {"type": "ticket-created", "plan": "fast", "priority": 1}),  # breaches
        (0.0, "L-2", {"type": "ticket-created", "plan": "fast", "priority": 1}),
        (1.0, "L-2", {"type": "reply-sent", "author": "agent"}),  # met, nothing
        (1.0, "L-3", {"type": "ticket-created", "plan": "fast"}),  # P2: 12 s
        (1.5, "L-4", {"type": "ticket-created", "plan": "fast", "priority": 1}),
        (2.0, "L-4", {"type": "status-changed", "status": "pending"}),
        (6.0, "L-4", {"type": "status-changed", "status": "open"}),  # deadline at 11.5 s
        (2.0, "L-5", {"type": "ticket-created", "plan": "fast", "priority": 1}),
        (3.0, "L-5", {"type": "reply-sent", "author": "agent"}),
        (4.0, "L-5", {"type": "reply-sent", "author": "customer"}),  # follow-up: 12 s
        (5.0, "L-3", {"type": "priority-changed", "priority": 3}),  # no target: suspended
        (7.5, "L-6", {"type": "ticket-created", "plan": "fast"}),
        (9.5, "L-6", {"type": "priority-changed", "priority": 1}),  # warning point past
    ]
    script.sort(key=lambda item: item[0])
    loop = asyncio.get_running_loop()
    began = loop.time()
    until = datetime.now(UTC) + timedelta(seconds=18)  # past every deadline of the script
    lines: list[bytes] = []
    for n, (offset, ticket, fields) in enumerate(script):
        await asyncio.sleep(max(0.0, began + offset - loop.time()))
        body = {
            "event_id": f"live-{n}",
            "ticket_id": ticket,
            "occurred_at": datetime.now(UTC).isoformat(),
            **fields,
        }
        line = json.dumps(body).encode()
        lines.append(line)
        await produce_lines(tickets, [line])
    await settled([worker], until)

    want = expected(lines, until)
    assert {(e["ticket_id"], e["type"]) for e in want.values()} >= {
        ("L-1", "sla-breach"),
        ("L-4", "sla-breach"),
        ("L-5", "sla-breach"),
        ("L-6", "sla-warning"),
    }
    got = await published(kafka_bootstrap, [warnings, breaches])
    assert got.events == want
    assert not got.repeats
