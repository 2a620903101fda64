"""Policy files: the presets, and errors that name the file, the path and the problem."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from worker.core.policy import Policy, PolicyError
from worker.policy_file import load_policy
from worker.presets import presets_text

MINIMAL: dict[str, Any] = {
    "version": "v1",
    "calendars": {"clock": {"always_open": True}},
    "plans": {
        "gold": {
            "default_priority": 1,
            "priorities": {1: {"first_response": {"target": "PT1H", "calendar": "clock"}}},
        }
    },
}


def with_change(path: str, value: Any) -> dict[str, Any]:
    """MINIMAL with one value replaced, addressed like an error path."""
    data = yaml.safe_load(yaml.safe_dump(MINIMAL))
    *parents, leaf = [int(p) if p.isdigit() else p for p in path.split(".")]
    node = data
    for part in parents:
        node = node[part]
    node[leaf] = value
    return data


def issues(data: Any) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        Policy.from_mapping(data, "policies.yaml")
    return caught.value.issues


def test_presets_reproduce_the_reference_tables(presets: Policy) -> None:
    assert sorted(presets.plans) == ["advanced", "basic", "professional", "vip"]
    vip = presets.plans["vip"]
    sev3 = vip.target(3, "first_response")
    assert sev3 is not None and sev3.duration == timedelta(hours=2)
    assert sev3.calendar.name == "cet-business"
    assert vip.target(3, "follow_up").duration == timedelta(hours=16)  # type: ignore[union-attr]
    assert vip.target(4, "follow_up") is None
    assert vip.target(1, "first_response").calendar.name == "24x7"  # type: ignore[union-attr]
    assert all(not t for t in presets.plans["basic"].targets.values())
    professional = presets.plans["professional"]
    assert [professional.target(p, "first_response").duration for p in (1, 2, 3)] == [  # type: ignore[union-attr]
        timedelta(hours=3),
        timedelta(hours=6),
        timedelta(hours=9),
    ]
    assert professional.exempt_stages == {"beta", "preview"}
    assert presets.plans["advanced"].target(1, "first_response").calendar.name == "24x7"  # type: ignore[union-attr]
    assert all(plan.default_priority == 3 for plan in presets.plans.values())
    assert presets.pause_statuses == {"pending", "on-hold"}


def test_minimal_policy_builds() -> None:
    policy = Policy.from_mapping(MINIMAL)
    assert policy.version == "v1"
    target = policy.plans["gold"].target(1, "first_response")
    assert target is not None and target.warnings == (0.75,)


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (
            "plans.gold.priorities.1.first_response.target",
            "PT",
            "plans.gold.priorities.1.first_response.target: invalid duration 'PT'",
        ),
        (
            "plans.gold.priorities.1.first_response.target",
            "P1D",
            "plans.gold.priorities.1.first_response.target: invalid duration 'P1D': use hours",
        ),
        (
            "plans.gold.priorities.1.first_response.calendar",
            "office",
            "plans.gold.priorities.1.first_response.calendar: unknown calendar 'office'",
        ),
        ("plans.gold.default_priority", 2, "plans.gold.default_priority: 2 is not one of"),
        ("plans.gold.exempt_stages", ["alpha"], "plans.gold.exempt_stages.0: Input should be"),
        ("plans.gold.warnings", [0.5, 1.2], "plans.gold.warnings: warning fraction 1.2"),
        ("warnings", [0.5, 0.5], "warnings: warning fractions must not repeat"),
        ("pause_statuses", ["solved"], "pause_statuses.0: Input should be"),
        ("plans.gold.priorities.1.first_reply", {}, "plans.gold.priorities.1.first_reply: unknown"),
        ("version", "", "version: String should have at least 1 character"),
        ("calendars.clock", {"timezone": "Mars/Olympus"}, "calendars.clock"),
    ],
)
def test_errors_name_the_path_and_the_problem(path: str, value: Any, expected: str) -> None:
    found = issues(with_change(path, value))
    assert any(issue.startswith(expected) for issue in found), found


def test_every_problem_is_reported_at_once() -> None:
    data = with_change("plans.gold.default_priority", 7)
    data["plans"]["gold"]["priorities"][1]["first_response"]["calendar"] = "nowhere"
    assert len(issues(data)) == 2


def test_missing_required_fields() -> None:
    assert issues({"calendars": {}}) == ["version: required", "plans: required"]


def test_load_policy_reports_the_file(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("version: v1\nplans: {gold: {default_priority: 1, priorities: {1: {}}}}\n")
    assert load_policy(path).plans["gold"].targets == {1: {}}

    path.write_text("version: [unclosed\n")
    with pytest.raises(PolicyError, match=r"p\.yaml: not valid YAML"):
        load_policy(path)
    with pytest.raises(PolicyError, match=r"missing\.yaml: cannot read"):
        load_policy(tmp_path / "missing.yaml")

    path.write_text(
        yaml.safe_dump(with_change("plans.gold.priorities.1.first_response.target", "PT"))
    )
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert str(caught.value) == (
        f"{path}: plans.gold.priorities.1.first_response.target: invalid duration 'PT'"
    )


def test_presets_text_is_the_file_the_presets_load_from(presets: Policy) -> None:
    assert Policy.from_mapping(yaml.safe_load(presets_text())).version == presets.version


# --- policy history ------------------------------------------------------------------------


def history(*versions: dict[str, Any]) -> dict[str, Any]:
    return {"versions": list(versions)}


def version(name: str, target: str, effective_from: str | None = None) -> dict[str, Any]:
    data = with_change("plans.gold.priorities.1.first_response.target", target)
    data["version"] = name
    if effective_from is not None:
        data["effective_from"] = effective_from
    return data


def test_a_history_picks_the_version_in_force() -> None:
    policy = Policy.from_mapping(
        history(
            version("v1", "PT1H"),
            version("v2", "PT2H", "2026-12-01T00:00:00+01:00"),
            version("v3", "PT3H", "2027-01-01T00:00:00Z"),
        )
    )
    assert policy.version == "v3" and [v.version for v in policy.history()] == ["v1", "v2", "v3"]
    at = datetime.fromisoformat
    assert policy.at(at("2020-01-01T00:00:00Z")).version == "v1"
    assert policy.at(at("2026-11-30T22:59:59Z")).version == "v1"
    assert policy.at(at("2026-11-30T23:00:00Z")).version == "v2"  # its effective instant
    assert policy.at(at("2027-06-01T00:00:00Z")).version == "v3"
    target = policy.at(at("2026-12-15T00:00:00Z")).plans["gold"].target(1, "first_response")
    assert target is not None and target.duration == timedelta(hours=2)
    assert policy.describe() == (
        "v1, v2 from 2026-11-30T23:00:00+00:00, v3 from 2027-01-01T00:00:00+00:00"
    )
    single = Policy.from_mapping(MINIMAL)
    assert single.at(at("2027-01-01T00:00:00Z")) is single and single.history() == (single,)


def test_history_errors_name_the_version() -> None:
    assert issues(history(version("v1", "PT1H"), version("v2", "PT"))) == [
        "versions.1.plans.gold.priorities.1.first_response.target: invalid duration 'PT'"
    ]
    assert issues(
        history(
            version("v1", "PT1H"),
            version("v1", "PT2H"),
            version("v3", "PT2H", "2026-12-01T00:00:00Z"),
            version("v4", "PT2H", "2026-11-01T00:00:00Z"),
        )
    ) == [
        "versions.1.effective_from: required after the first version",
        "versions: version 'v1' appears more than once",
        "versions.3.effective_from: 2026-11-01T00:00:00+00:00 is not after the previous "
        "version's 2026-12-01T00:00:00+00:00",
    ]
    assert issues(history(version("v1", "PT1H", "2026-12-01T00:00:00"))) == [
        "versions.0.effective_from: Input should have timezone info"
    ]
    assert issues({"versions": []}) == [
        "versions: List should have at least 1 item after validation, not 0"
    ]
