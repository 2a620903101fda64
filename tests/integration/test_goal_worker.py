"""The live worker equals replay for a goal policy: every built-in metric, goals chosen by
attributes, `ticket-updated` group moves between calendars, read through a real broker
as a backlog; and `audit --verify` with the goal policy finds its output clean (the kill
and takeover fault tests run the goal policy too: tests/integration/test_faults.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from devtools.harness import settled
from tests.integration.expected import expected
from tests.integration.fault_log import published
from worker.core.policy import Policy
from worker.presets import presets_text
from worker.traffic import synthetic_stream

GOALS = {
    **yaml.safe_load(presets_text()),
    "goals": [
        {
            "name": "vip-team",
            "when": {"plan": "vip", "priority": [1, 2, 3]},
            "calendar": {
                "by": "group",
                "map": {"a": "cet-business", "b": "24x7"},
                "default": "sk-business",
            },
            "targets": {
                "first_response": "PT2H",
                "follow_up": "PT8H",
                "resolution": "PT10H",
                "periodic_update": "PT8H",
                "requester_wait": "PT16H",
                "agent_work": "PT8H",
            },
        }
    ],
}


def goal_stream(start: datetime) -> list[bytes]:
    """A month of synthetic traffic with a group move beside every other priority change."""
    lines, _ = synthetic_stream(3_000, 300, seed=11, start=start)
    out: list[bytes] = []
    for number, line in enumerate(lines):
        out.append(line)
        event = json.loads(line)
        if event["type"] == "priority-changed" and number % 2:
            moved = {**event, "event_id": f"{event['event_id']}-g", "type": "ticket-updated"}
            del moved["priority"]
            moved["group"] = "ab"[number % 4 // 2]
            out.append(json.dumps(moved).encode())
    return out


async def test_a_goal_policy_backlog_equals_replay(
    create_topic: Any,
    produce_lines: Any,
    kafka_bootstrap: str,
    worker_factory: Any,
    tmp_path: Path,
) -> None:
    policy_file = tmp_path / "goals.yaml"
    policy_file.write_text(yaml.safe_dump(GOALS))
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=45)
    lines = goal_stream(start)
    tickets = await create_topic(partitions=3)
    warnings, breaches = await create_topic(partitions=3), await create_topic(partitions=3)
    await produce_lines(tickets, lines)
    until = datetime.now(UTC)
    want = expected(lines, until, Policy.from_mapping(GOALS))
    metrics = {event["metric"] for event in want.values()}
    assert metrics >= {"first_response", "resolution", "periodic_update", "agent_work"}
    assert any("goal" in event for event in want.values())

    worker = worker_factory(
        input_topics=(tickets,),
        policy=policy_file,
        extra=("--warnings-topic", warnings, "--breaches-topic", breaches),
    )
    worker.start()
    await worker.ready()
    await settled([worker], until)
    got = await published(kafka_bootstrap, [warnings, breaches])
    assert got.events == want
    assert not got.repeats

    # The audit judges what the worker published with the same goal policy: clean.
    audited = subprocess.run(
        [
            *(sys.executable, "-m", "worker", "audit", "--verify"),
            *("--bootstrap-servers", kafka_bootstrap, "--input-topics", tickets),
            *("--warnings-topic", warnings, "--breaches-topic", breaches),
            *("--policies", str(policy_file), "--now", datetime.now(UTC).isoformat()),
        ],
        capture_output=True,
        check=False,
        timeout=300,
    )
    report = audited.stderr.decode()
    assert audited.returncode == 0, report
    assert "missing 0, unexpected 0, different 0" in report, report
