"""The tests' worker: `worker.harness.WorkerProcess` with the tests' defaults.

The seconds-scale policy (tests/data/fast-policy.yaml: plan "fast", priority 1 first
response PT6S, priority 2 PT12S, priority 3 none, follow-up PT8S, warnings at half), and
timers checked every 0.1 s, so that a test's timeline is seconds long.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from devtools.harness import WorkerProcess
from worker.core.policy import Policy

FAST_POLICY = Path(__file__).resolve().parents[1] / "data" / "fast-policy.yaml"
FAST = Policy.from_mapping(yaml.safe_load(FAST_POLICY.read_text()))
# The same timings as a goal policy measuring every built-in metric.
FAST_GOALS_POLICY = FAST_POLICY.with_name("fast-goals-policy.yaml")


def fast_worker(bootstrap: str, directory: Path, **options: Any) -> WorkerProcess:
    """A worker on the fast policy (`policy=None`: the built-in presets), timers checked
    every 0.1 s; `options` as `WorkerProcess` takes them."""
    options.setdefault("policy", FAST_POLICY)
    options["settings"] = {"timer_interval_seconds": 0.1, **options.get("settings", {})}
    return WorkerProcess(bootstrap, directory=directory, **options)
