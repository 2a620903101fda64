"""A consumer built on the CloudEvents SDK reads the worker's outputs as events.

The live worker publishes a warning, a breach and a finished timer; each record, read
`read_committed` off the real broker, goes through the CloudEvents Python SDK's Kafka
binding (binary content mode) unchanged. Every attribute is checked, and the event's data
is the payload every other consumer gets: replay's output for the same log, byte for byte.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from cloudevents.core.bindings.kafka import KafkaMessage, from_binary
from cloudevents.core.formats.json import JSONFormat

from devtools.harness import Record, read_all, settled
from tests.integration.workers import FAST
from tests.replaying import run_replay

P1_TARGET = timedelta(seconds=6)  # the fast plan's first response at priority 1


def line(n: int, type_: str, ticket: str, at: datetime, **fields: Any) -> bytes:
    iso = at.isoformat()
    body = {"event_id": f"ce-{n}", "type": type_, "ticket_id": ticket, "occurred_at": iso}
    return json.dumps({**body, **fields}).encode()


def compact(payload: dict[str, Any]) -> bytes:
    """A payload as the worker's models write it (compact, fields in order)."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


async def test_every_output_is_a_cloudevent_whose_data_is_the_payload(
    create_topic: Any, produce_lines: Any, kafka_bootstrap: str, worker_factory: Any
) -> None:
    tickets = await create_topic(partitions=3)
    warnings, breaches = await create_topic(partitions=3), await create_topic(partitions=3)
    finished, dead = await create_topic(partitions=3), await create_topic(partitions=3)
    worker = worker_factory(
        input_topics=(tickets,),
        app_id="sla-ce-test",
        settings={
            "warnings_topic": warnings,
            "breaches_topic": breaches,
            "finished_timers_topic": finished,
            "dead_letter_topic": dead,
        },
    )
    worker.start()
    await worker.ready()

    t0 = datetime.now(UTC)
    lines = [
        # CE-1 warns at 3 s and breaches at 6 s; CE-2 is answered at once: met.
        line(1, "ticket-created", "CE-1", t0, plan="fast", priority=1, customer_id="acme"),
        line(2, "ticket-created", "CE-2", t0, plan="fast", priority=1),
        line(3, "reply-sent", "CE-2", t0 + timedelta(milliseconds=500), author="agent"),
    ]
    bad = b"{not json"
    await produce_lines(tickets, [*lines, bad], keys=[b"CE-1", b"CE-2", b"CE-2", b"CE-9"])
    until = t0 + P1_TARGET
    await settled([worker], until)

    replay = run_replay([raw.decode() for raw in lines], FAST, until.isoformat())
    wanted = {p["event_id"]: p for p in [*replay.events, *replay.finished]}
    records: list[Record] = []
    for topic in (warnings, breaches, finished):
        records += await read_all(kafka_bootstrap, topic)
    assert sorted(json.loads(r.value)["type"] for r in records) == [
        "sla-breach",
        "sla-timer-finished",
        "sla-warning",
    ]

    for record in records:
        assert record.key is not None
        event = from_binary(
            KafkaMessage(dict(record.headers), record.key, record.value), JSONFormat()
        )
        payload = wanted[event.get_id()]
        assert record.value == compact(payload)  # the bytes every consumer reads
        assert event.get_data() == payload
        assert event.get_specversion() == "1.0"
        assert event.get_id() == payload["event_id"]
        assert event.get_type() == f"dev.sla-worker.{payload['type']}.v1"
        assert event.get_source() == "urn:sla-worker:app:sla-ce-test"
        occurred = payload["finished_at" if payload["type"] == "sla-timer-finished" else "due_at"]
        assert event.get_time() == datetime.fromisoformat(occurred)
        assert dict(record.headers)["ce_time"] == occurred.encode()
        assert event.get_subject() == payload["ticket_id"] == record.key.decode()
        assert event.get_dataschema() == f"urn:sla-worker:schemas:out.{payload['type']}.json"
        assert event.get_datacontenttype() == "application/json"
        assert event.get_extension("partitionkey") == payload["ticket_id"]
        assert len(record.headers) == 8  # nothing else

    # The dead letter is the input message as it came, with our sla-dlq-* headers only.
    (letter,) = await read_all(kafka_bootstrap, dead)
    assert (letter.key, letter.value) == (b"CE-9", bad)
    assert {name for name, _ in letter.headers if not name.startswith("sla-dlq-")} == set()
