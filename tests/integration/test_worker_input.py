"""Bad input goes to the dead-letter topic with its reason; the stream never stops."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from devtools.harness import WorkerProcess, read_all, settled, wait_for_records

P1_TARGET = timedelta(seconds=6)  # the fast plan's first response at priority 1


def event(n: int, type_: str, ticket: str, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": f"in-{n}",
        "type": type_,
        "ticket_id": ticket,
        "occurred_at": datetime.now(UTC).isoformat(),
        **fields,
    }


def line(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


async def test_every_kind_of_bad_input_is_dead_lettered_with_its_reason(
    create_topic: Any, produce_lines: Any, kafka_bootstrap: str, worker_factory: Any
) -> None:
    tickets = await create_topic(partitions=3)
    dead, breaches = await create_topic(partitions=3), await create_topic(partitions=3)
    worker = worker_factory(
        input_topics=(tickets,),
        extra=("--dead-letter-topic", dead, "--breaches-topic", breaches),
    )
    worker.start()
    await worker.ready()

    good = event(0, "ticket-created", "D-1", plan="fast", priority=1)
    naive = {**event(4, "ticket-created", "D-4", plan="fast"), "occurred_at": "2026-11-24T10:00:00"}
    bad: list[tuple[bytes | None, bytes, str]] = [
        (b"D-9", b"\xff\xfe\x00garbage", "invalid-json"),
        (b"D-2", b"{not json", "invalid-json"),
        (b"D-3", line({**event(3, "ticket-created", "D-3"), "plan": None}), "invalid-field"),
        (b"D-4", line(naive), "naive-timestamp"),
        (b"D-5", line(event(5, "ticket-deleted", "D-5")), "unknown-type"),
        (b"D-6", line(event(6, "ticket-created", "D-6", plan="gold")), "unknown-plan"),
        (
            b"D-7",
            line(event(7, "ticket-created", "D-7", plan="fast", priority=9)),
            "unknown-priority",
        ),
        (b"D-8", line(event(8, "reply-sent", "D-8", author="agent")), "unknown-ticket"),
        (b"OTHER", line(event(10, "ticket-created", "D-10", plan="fast")), "key-mismatch"),
        (None, line(event(12, "ticket-created", "D-12", plan="fast")), "missing-key"),
    ]
    keys = [b"D-1", *(key for key, _, _ in bad), b"D-1"]
    values = [
        line(good),
        *(value for _, value, _ in bad),
        line(event(11, "status-changed", "D-1", status="open")),
    ]
    await produce_lines(tickets, values, keys=keys)

    await settled([worker], datetime.fromisoformat(good["occurred_at"]))
    letters = await read_all(kafka_bootstrap, dead)
    by_value = {letter.value: (letter.key, dict(letter.headers)) for letter in letters}
    for key, value, reason in bad:
        dead_key, headers = by_value[value]  # the original bytes, untouched
        assert dead_key == key
        assert headers["sla-dlq-reason"] == reason.encode(), (reason, headers)
        assert headers["sla-dlq-source-topic"] == tickets.encode()
        assert int(headers["sla-dlq-source-offset"]) >= 0
        assert headers["sla-dlq-detail"]
    assert len(letters) == len(bad)

    # The good ticket around the bad input was applied: it breaches on time.
    await settled([worker], datetime.fromisoformat(good["occurred_at"]) + P1_TARGET)
    breached = [json.loads(r.value)["ticket_id"] for r in await read_all(kafka_bootstrap, breaches)]
    assert breached == ["D-1"]
    status, body = await asyncio.to_thread(worker.get, "/tickets/D-1")
    assert status == 200 and body["timers"][0]["breached"] is True


async def test_events_before_their_ticket_are_held_on_multiple_input_topics(
    create_topic: Any, produce_lines: Any, kafka_bootstrap: str, worker_factory: Any
) -> None:
    created_topic, replies_topic = (
        await create_topic(partitions=3),
        await create_topic(partitions=3),
    )
    dead, breaches = await create_topic(partitions=3), await create_topic(partitions=3)
    worker: WorkerProcess = worker_factory(
        input_topics=(created_topic, replies_topic),
        extra=(
            "--dead-letter-topic",
            dead,
            "--breaches-topic",
            breaches,
            "--hold-unknown-seconds",
            "3",
        ),
    )
    worker.start()
    await worker.ready()

    # H-1: its agent reply arrives (on the replies topic) before its ticket-created; once
    # the ticket exists the reply is applied at its own time and meets the timer.
    reply = event(1, "reply-sent", "H-1", author="agent")
    await produce_lines(replies_topic, [line(reply)])
    await asyncio.sleep(1)  # the timeline: the reply comes a second before its ticket
    created = {
        **event(2, "ticket-created", "H-1", plan="fast", priority=1),
        "occurred_at": reply["occurred_at"],
    }
    await produce_lines(created_topic, [line(created)])
    # H-2: a reply whose ticket never comes is dead-lettered after the hold time.
    await produce_lines(replies_topic, [line(event(3, "reply-sent", "H-2", author="agent"))])

    await wait_for_records(kafka_bootstrap, dead, 1)  # after the 3 s hold
    deadline = datetime.fromisoformat(created["occurred_at"]) + P1_TARGET  # H-1's, had it run
    await settled([worker], deadline)
    letters = await read_all(kafka_bootstrap, dead)
    assert [
        (json.loads(r.value)["ticket_id"], dict(r.headers)["sla-dlq-reason"]) for r in letters
    ] == [("H-2", b"unknown-ticket")]
    assert await read_all(kafka_bootstrap, breaches) == []
    status, body = await asyncio.to_thread(worker.get, "/tickets/H-1")
    assert status == 200 and body["timers"] == []


async def test_a_partition_mismatch_stops_the_worker_with_a_clear_message(
    create_topic: Any, worker_factory: Any
) -> None:
    tickets = await create_topic(partitions=2)
    worker: WorkerProcess = worker_factory(input_topics=(tickets,), partitions=3)
    worker.start()
    assert worker.process is not None
    assert await asyncio.to_thread(worker.process.wait, 60) == 2
    assert f"topic '{tickets}' has 2 partitions but the worker is configured for 3" in (
        worker.tail()
    )
