"""`policies validate` of a policy with 1,000 goals, and replay with a goal policy.

Validation: a file of 1,000 goals (each on a customer, a group and a priority, with six
metrics' targets on a calendar mapped from the group), read and built as `sla-worker
policies validate` does (YAML parsing included), best of 5.

Replay: the replay benchmark's synthetic stream (`bench/replay_bench.py`), with a group
move beside every other priority change, under a policy of twenty goals that uses all six
built-in metrics; the peer in the same run is bare `json.loads` of the same lines, and the
presets (plan x priority path) on the stream without the group moves.

    python bench/goals_bench.py [--events 1000000] [--tickets 100000]
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from worker.compiled import describe
from worker.core.engine import Engine
from worker.core.events import SlaEvent
from worker.core.policy import Policy
from worker.policy_file import load_policy
from worker.presets import load_presets, presets_text
from worker.replay import Replay, relaxed_garbage_collection
from worker.traffic import synthetic_stream

METRICS = (
    "first_response",
    "follow_up",
    "resolution",
    "periodic_update",
    "requester_wait",
    "agent_work",
)
CALENDAR = {"by": "group", "map": {"a": "cet-business", "b": "24x7"}, "default": "sk-business"}


def goal_document(goals: int) -> dict[str, Any]:
    """The presets' calendars with `goals` goals; the last ones catch every plan."""
    presets = yaml.safe_load(presets_text())
    named: list[dict[str, Any]] = [
        {
            "name": f"goal-{n}",
            "when": {"customer": f"C-{n:04d}", "group": ["a", "b"], "priority": [1 + n % 5]},
            "calendar": CALENDAR,
            "targets": {m: f"PT{2 + (n + i) % 30}H" for i, m in enumerate(METRICS)},
        }
        for n in range(goals - 4)
    ]
    named += [
        {
            "name": f"plan-{plan}",
            "when": {"plan": plan},
            "calendar": CALENDAR,
            "targets": {m: f"PT{8 + i}H" for i, m in enumerate(METRICS)},
        }
        for plan in ("vip", "professional", "advanced", "basic")
    ]
    return {"version": "bench", "calendars": presets["calendars"], "goals": named}


def validate_seconds(goals: int) -> float:
    text = yaml.safe_dump(goal_document(goals), sort_keys=False)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "policies.yaml"
        path.write_text(text)
        best = float("inf")
        for _ in range(5):
            started = time.perf_counter()
            policy = load_policy(path)
            best = min(best, time.perf_counter() - started)
    assert len(policy.goals) == goals
    return best


def goal_stream(events: int, tickets: int, seed: int) -> tuple[list[bytes], list[bytes]]:
    """(the stream with group moves and customers, the plain stream)."""
    lines, _ = synthetic_stream(events, tickets, seed=seed, customers=2_000)
    plain, _ = synthetic_stream(events, tickets, seed=seed)
    out: list[bytes] = []
    for number, line in enumerate(lines):
        out.append(line)
        if b'"priority-changed"' in line and number % 2:
            event = json.loads(line)
            del event["priority"]
            moved = {
                **event,
                "event_id": event["event_id"] + "-g",
                "type": "ticket-updated",
                "group": "ab"[number % 4 // 2],
            }
            out.append(json.dumps(moved).encode())
    return out, plain


def replay_rate(policy: Policy, lines: list[bytes]) -> float:
    gc.collect()
    with relaxed_garbage_collection():
        # As `sla-worker replay` without --finished-timers (as bench/replay_bench.py).
        out = io.StringIO()

        def on_event(event: SlaEvent) -> None:
            out.write(event.model_dump_json())
            if out.tell() > 1 << 20:
                out.seek(0)
                out.truncate()

        replay = Replay(Engine(policy, measure=False), on_event, lambda r: None)
        started = time.perf_counter()
        replay.feed(lines)
        replay.finish()
        return len(lines) / (time.perf_counter() - started)


def loads_rate(lines: list[bytes]) -> float:
    started = time.perf_counter()
    for line in lines:
        json.loads(line)
    return len(lines) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    print(describe())
    print(f"policies validate, 1,000 goals: {validate_seconds(1_000):.3f} s (best of 5)")
    goals = Policy.from_mapping(goal_document(20))
    lines, plain = goal_stream(args.events, args.tickets, args.seed)
    best: dict[str, float] = {}
    for _ in range(3):  # best of 3, alternating
        for name, rate in (
            ("json.loads (goal stream)", loads_rate(lines)),
            ("replay, 20 goals x 6 metrics", replay_rate(goals, lines)),
            ("json.loads (plain stream)", loads_rate(plain)),
            ("replay, presets", replay_rate(load_presets(), plain)),
        ):
            best[name] = max(best.get(name, 0.0), rate)
    for name, rate in best.items():
        print(f"{name}: {rate:,.0f} lines/s")
    print(
        "json.loads / replay: "
        f"goals {best['json.loads (goal stream)'] / best['replay, 20 goals x 6 metrics']:.2f}x, "
        f"presets {best['json.loads (plain stream)'] / best['replay, presets']:.2f}x"
    )


if __name__ == "__main__":
    main()
