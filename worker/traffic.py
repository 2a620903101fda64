"""Synthetic but realistic ticket traffic: for the demo, benchmarks and tests.

Each ticket is created on a random plan (80 % with an explicit priority, 5 % on a beta
product), then gets customer and agent replies, internal notes, pauses and resumes, and
reclassifications at random gaps, and is finally solved. Deterministic for a given seed.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

PLANS: dict[str, tuple[int, ...]] = {
    "vip": (1, 2, 3, 4, 5),
    "professional": (1, 2, 3),
    "advanced": (1, 2, 3),
    "basic": (1,),
}
START = datetime(2026, 11, 2, tzinfo=UTC)


def synthetic_stream(
    events: int, tickets: int, seed: int, start: datetime = START, customers: int = 0
) -> tuple[list[bytes], int]:
    """Return (JSON lines in time order, peak number of open tickets).

    `customers`: give ticket n the `customer_id` `C-<n mod customers>` (0: none). The
    random choices do not depend on it, so the stream is otherwise the same."""
    rng = random.Random(seed)
    per_ticket = events // tickets
    timeline: list[tuple[datetime, int, dict[str, object]]] = []
    seq = 0
    for n in range(tickets):
        ticket_id = f"T-{n:07d}"
        plan = rng.choice(list(PLANS))
        at = start + timedelta(seconds=rng.randrange(30 * 24 * 3600))
        created: dict[str, object] = {"type": "ticket-created", "plan": plan}
        if rng.random() < 0.8:
            created["priority"] = rng.choice(PLANS[plan])
        if rng.random() < 0.05:
            created["product_stage"] = "beta"
        if customers:
            created["customer_id"] = f"C-{n % customers:04d}"
        history = [created]
        paused = False
        for _ in range(per_ticket - 2):
            roll = rng.random()
            if roll < 0.35:
                history.append({"type": "reply-sent", "author": "customer"})
            elif roll < 0.65:
                history.append(
                    {"type": "reply-sent", "author": "agent", "public": rng.random() < 0.9}
                )
            elif roll < 0.85:
                paused = not paused
                status = rng.choice(["pending", "on-hold"]) if paused else "open"
                history.append({"type": "status-changed", "status": status})
            else:
                history.append({"type": "priority-changed", "priority": rng.choice(PLANS[plan])})
        history.append({"type": "status-changed", "status": "solved"})
        for event in history:
            at += timedelta(seconds=rng.randrange(60, 6 * 3600))
            seq += 1
            body = {
                "event_id": f"ev-{seq}",
                "ticket_id": ticket_id,
                "occurred_at": at.isoformat(),
                **event,
            }
            timeline.append((at, seq, body))
    timeline.sort(key=lambda item: (item[0], item[1]))

    open_now = peak = 0
    lines = []
    for _, _, body in timeline:
        if body["type"] == "ticket-created":
            open_now += 1
            peak = max(peak, open_now)
        elif body.get("status") == "solved":
            open_now -= 1
        lines.append(json.dumps(body).encode())
    return lines, peak


class LiveTraffic:
    """Ticket events as they happen now: a new ticket every few seconds, then replies,
    pauses and reclassifications at human-ish intervals (seconds, not hours)."""

    def __init__(self, seed: int | None = None) -> None:
        self._rng = random.Random(seed)
        self._open: dict[str, tuple[str, bool]] = {}  # ticket -> (plan, paused)
        self._count = 0
        self._seq = 0

    def next_events(self, now: datetime) -> list[dict[str, object]]:
        """Zero or more events occurring at `now` (call about once a second)."""
        rng = self._rng
        events: list[dict[str, object]] = []
        if rng.random() < 0.35 or not self._count:
            self._count += 1
            ticket = f"HD-{1000 + self._count}"
            # The first ticket is urgent and left unanswered, so the demo shows a warning
            # and a breach within a minute.
            first = self._count == 1
            plan = "vip" if first else rng.choice(list(PLANS))
            priority = 1 if first else rng.choice(PLANS[plan])
            self._open[ticket] = (plan, False)
            events.append(
                {"type": "ticket-created", "ticket_id": ticket, "plan": plan, "priority": priority}
            )
        for ticket, (plan, paused) in list(self._open.items()):
            roll = rng.random() if ticket != "HD-1001" else 1.0  # left to breach
            if roll < 0.04:
                events.append({"type": "reply-sent", "ticket_id": ticket, "author": "agent"})
            elif roll < 0.07:
                events.append({"type": "reply-sent", "ticket_id": ticket, "author": "customer"})
            elif roll < 0.085:
                self._open[ticket] = (plan, not paused)
                status = "open" if paused else "pending"
                events.append({"type": "status-changed", "ticket_id": ticket, "status": status})
            elif roll < 0.095:
                events.append(
                    {
                        "type": "priority-changed",
                        "ticket_id": ticket,
                        "priority": rng.choice(PLANS[plan]),
                    }
                )
            elif roll < 0.105:
                del self._open[ticket]
                events.append({"type": "status-changed", "ticket_id": ticket, "status": "solved"})
        for body in events:
            self._seq += 1
            body["event_id"] = f"demo-{self._seq}"
            body["occurred_at"] = now.isoformat()
        return events
