"""Random hostile ticket logs over several partitions, for the tests that prove the audit
judges every partition as the worker that owned it did (unit: `Partition.step` against
the audit's replay; integration: a real worker and `sla-worker audit` on a real broker).
"""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta

from worker.kafka.topics import default_partition
from worker.traffic import START, synthetic_stream

RETENTION = timedelta(days=2)
"""Shorter than the logs' month: finished tickets leave state and `too-old` applies."""

Record = tuple[int, bytes | None, bytes]
"""(partition, key, value) as produced."""


def hostile_log(seed: int, partitions: int, start: datetime = START) -> list[Record]:
    """A month of tickets, made hostile: local disorder across tickets, lines that cannot
    be applied (some dated far ahead, which must move no clock), keyless and mis-keyed
    records, redelivered creations weeks later, and a quiet gap longer than the
    retention. It spans up to 40 days from `start`."""
    rng = random.Random(seed)
    lines, _ = synthetic_stream(500, 50, seed, start)
    events = [json.loads(line) for line in lines]
    gap = timedelta(days=rng.choice([0, 3, 10]))
    for event in events[len(events) // 2 :]:  # the second half comes after a quiet gap
        at = datetime.fromisoformat(event["occurred_at"]) + gap
        event["occurred_at"] = at.isoformat()
    for _ in range(len(events) // 10):  # local disorder: an event jumps ahead of others
        i = rng.randrange(len(events))
        j = min(len(events) - 1, i + rng.randrange(1, 8))
        events.insert(j, events.pop(i))

    records: list[Record] = []

    def place(key: bytes | None, value: bytes, ticket: str | None = None) -> None:
        target = ticket.encode() if ticket else key or b"?"
        records.append((default_partition(target, partitions), key, value))

    for n, event in enumerate(events):
        ticket = event["ticket_id"]
        place(ticket.encode(), json.dumps(event).encode())
        roll = rng.random()
        if roll < 0.03:  # a line without a ticket id, dated far ahead
            ahead = {**event, "occurred_at": "2029-06-01T00:00:00+00:00"}
            del ahead["ticket_id"]
            place(ticket.encode(), json.dumps(ahead).encode())
        elif roll < 0.05:
            place(ticket.encode(), b"{not json")
        elif roll < 0.07:  # a valid event without a key: the worker cannot store it
            place(None, json.dumps({**event, "event_id": f"k{n}"}).encode(), ticket)
        elif roll < 0.09:  # keyed by another ticket
            place(b"OTHER", json.dumps({**event, "event_id": f"m{n}"}).encode(), ticket)
        elif roll < 0.12 and n > 50:  # an old creation redelivered (duplicate or too-old)
            old = events[rng.randrange(n)]
            if old["type"] == "ticket-created":
                place(old["ticket_id"].encode(), json.dumps(old).encode())
    return records
