"""Replay in process, for the engine's tests and for what the broker tests expect:
events in (dicts, or raw lines), warnings, breaches, rejections and finished timers
out, as plain data."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from worker.core.engine import Engine
from worker.core.policy import Policy
from worker.replay import Rejection, Replay, Summary


@dataclass
class ReplayResult:
    events: list[dict[str, Any]]
    rejections: list[Rejection]
    summary: Summary
    finished: list[dict[str, Any]]  # the sla-timer-finished records, in firing order

    def core(self) -> list[dict[str, Any]]:
        """Only the fields that decide correctness (as in the reference example)."""
        keys = ("type", "ticket_id", "metric", "cycle", "threshold", "due_at", "deadline")
        return [{k: e[k] for k in keys if k in e} for e in self.events]


ReplayFn = Callable[..., ReplayResult]


def run_replay(
    lines: list[dict[str, Any] | str], policy: Policy, until: str | None = None
) -> ReplayResult:
    events: list[dict[str, Any]] = []
    rejections: list[Rejection] = []
    finished: list[dict[str, Any]] = []
    replay = Replay(
        Engine(policy),
        lambda e: events.append(json.loads(e.model_dump_json())),
        rejections.append,
        on_finished=lambda f: finished.append(json.loads(f.model_dump_json())),
    )
    replay.feed(line if isinstance(line, str) else json.dumps(line) for line in lines)
    summary = replay.finish(datetime.fromisoformat(until) if until else None)
    return ReplayResult(events, rejections, summary, finished)


def ev(n: int, type_: str, ticket: str, at: str, **fields: Any) -> dict[str, Any]:
    """A compact way to write one inbound event in a scenario."""
    return {"event_id": f"e{n}", "type": type_, "ticket_id": ticket, "occurred_at": at, **fields}
