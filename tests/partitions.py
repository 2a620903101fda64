"""One partition fed event by event, without Kafka, and input events as producers write
them: for the at-risk, standby and stored-state tests."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from worker.core.engine import Engine
from worker.core.policy import Policy
from worker.presets import load_presets
from worker.tasks.partition import Message, Partition, Topics
from worker.tasks.processor import TicketProcessor

TOPICS = Topics("warnings", "breaches", "dead", "changelog")
PRESETS = load_presets()


def new_partition(policy: Policy = PRESETS) -> Partition:
    return Partition(0, TicketProcessor(Engine(policy), None), TOPICS, timedelta(0))


def body(n: int, kind: str, ticket: str, at: datetime, **fields: Any) -> bytes:
    """Event `n` of `ticket` as its producer writes it (event id `e<n>-<ticket>`)."""
    event = {
        "event_id": f"e{n}-{ticket}",
        "type": kind,
        "ticket_id": ticket,
        "occurred_at": at.isoformat(),
        **fields,
    }
    return json.dumps(event).encode()


def created(n: int, ticket: str, at: datetime) -> bytes:
    """A vip, priority 1 ticket's creation."""
    return body(n, "ticket-created", ticket, at, plan="vip", priority=1)


class Feed:
    """Input messages for one partition, with increasing offsets and event ids."""

    def __init__(self, partition: Partition) -> None:
        self.partition = partition
        self.n = 0

    def send(self, kind: str, ticket: str, at: datetime, **fields: Any) -> None:
        self.n += 1
        body = {
            "event_id": f"e{self.n}",
            "type": kind,
            "ticket_id": ticket,
            "occurred_at": at.isoformat().replace("+00:00", "Z"),
            **fields,
        }
        message = Message("tickets", 0, self.n, ticket.encode(), json.dumps(body).encode())
        batch = self.partition.step([message], at, read_through=at)
        assert not batch.dead_letters, batch.dead_letters

    def tick(self, now: datetime) -> None:
        """Fire what is due by `now` (the wall clock reached it, everything read)."""
        self.partition.step([], now, read_through=now)
