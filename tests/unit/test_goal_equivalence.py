"""The built-in `first_response` and `follow_up`, as data on the goal path, are today's
semantics: the presets written as a goal policy give the very same output as the plan x
priority path, line for line, on a synthetic month of traffic.

One difference is by design (docs/semantics.md, "Calendars per goal, team or customer"):
a priority change that changes a running timer's *calendar* re-measures it from its
start on the plan path, while the goal path keeps the business time already run. So the
comparison runs the presets with one calendar for every target.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from tests.replaying import run_replay
from worker.core.policy import Policy
from worker.presets import presets_text
from worker.traffic import synthetic_stream


def one_calendar(document: dict[str, Any]) -> dict[str, Any]:
    changed = copy.deepcopy(document)
    for plan in changed["plans"].values():
        for targets in plan["priorities"].values():
            for target in targets.values():
                target["calendar"] = "sk-business"
    return changed


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_the_presets_as_goals_give_the_plan_paths_output_byte_for_byte(seed: int) -> None:
    document = one_calendar(yaml.safe_load(presets_text()))
    plans = Policy.from_mapping(document)
    # A goal policy whose only named goal never matches: every ticket falls through to
    # the (unnamed) goals the plans expand to.
    goals = Policy.from_mapping({**document, "goals": [{"name": "none", "when": {"plan": "-"}}]})
    assert goals.goals and not plans.goals

    lines, _ = synthetic_stream(20_000, 2_000, seed=seed, customers=50)
    text = [line.decode() if isinstance(line, bytes) else line for line in lines]
    on_plans = run_replay(list(text), plans, until="2027-01-01T00:00:00Z")
    on_goals = run_replay(list(text), goals, until="2027-01-01T00:00:00Z")
    assert len(on_plans.events) > 100
    assert on_goals.events == on_plans.events
    assert on_goals.finished == on_plans.finished
    assert on_goals.rejections == on_plans.rejections
