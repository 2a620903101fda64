"""`devtools.harness.settled` decides from the workers' /readyz answers alone; here is when
it may, and when it must not, call them settled."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from devtools.harness.settle import unsettled

UNTIL = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
ENDS = {("tickets", 0): 10, ("tickets", 1): 0}


def row(partition: int, **fields: Any) -> dict[str, Any]:
    base = {"topic": "tickets", "partition": partition, "position": 10 if partition == 0 else 0}
    return base | {"caught_up": True, "next_due": None, "held_until": None} | fields


def answer(*rows: dict[str, Any], busy: bool = False) -> tuple[int, Any]:
    return 200, {"ready": True, "busy": busy, "inputs": list(rows)}


def test_everything_read_caught_up_and_nothing_due_is_settled() -> None:
    later = "2026-12-03T12:00:00.000001Z"  # due after `until`: not yet to fire
    assert unsettled([answer(row(0, next_due=later), row(1))], ENDS, UNTIL) == []
    assert unsettled([answer(row(0)), answer(row(1))], ENDS, UNTIL) == []  # two workers


def test_what_keeps_it_from_being_settled() -> None:
    cases = {
        "read to 9, not 10": [answer(row(0, position=9), row(1))],
        "read to None": [answer(row(0, position=None), row(1))],
        "not caught up": [answer(row(0, caught_up=False), row(1))],
        "a timer due": [answer(row(0, next_due="2026-12-03T12:00:00Z"), row(1))],  # at until
        "a hold ending": [answer(row(0), row(1, held_until="2026-12-03T11:59:59Z"))],
        "a worker is in a step": [answer(row(0), row(1), busy=True)],
        "answers /readyz 503": [answer(row(0), row(1)), (503, {"ready": False})],
        "answers /readyz 0": [answer(row(0), row(1)), (0, None)],  # not listening yet
        "0 ready workers own it": [answer(row(0))],
        "2 ready workers own it": [answer(row(0), row(1)), answer(row(1))],  # stale owner
    }
    for problem, answers in cases.items():
        found = unsettled(answers, ENDS, UNTIL)
        assert any(problem in text for text in found), (problem, found)
