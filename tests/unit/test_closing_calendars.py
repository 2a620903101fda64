"""A calendar that never opens again is refused wherever a target can run on it.

A timer on such a calendar could never come due once the calendar has closed for good:
`Calendar.add` has no answer past that instant. Such a policy is refused when it is
loaded (`policies validate`, the worker, replay, the audit), with the path and the
YAML line of every target, goal calendar or calendar-map entry that names it, not at the
first ticket that reaches the closing (where the plan path used to stop replay with a
traceback, and the goal path, whose due instants are computed lazily, found out later
still). A calendar that no target uses may close: nothing runs on it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from worker.cli import main
from worker.core.calendar import Calendar
from worker.core.policy import Policy, PolicyError
from worker.policy_file import load_policy

# Mondays and Tuesdays until a version with no hours at all takes effect on 2026-12-10.
ENDING: dict[str, Any] = {
    "timezone": "Europe/Bratislava",
    "hours": {"mon": ["09:00-17:00"], "tue": ["09:00-17:00"]},
    "versions": [{"effective_from": "2026-12-10", "hours": {}}],
}
CALENDARS: dict[str, Any] = {"clock": {"always_open": True}, "ending": ENDING}
NEVER_OPENS = (
    "calendar 'ending' never opens again from 2026-12-13 on: a timer running on it then "
    "could never come due (give it hours from then on, in a version, or use another calendar)"
)


def issues(data: dict[str, Any]) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        Policy.from_mapping(data)
    return caught.value.issues


def test_a_calendar_knows_from_when_it_never_opens() -> None:
    # A safe bound: three days after the last dated fact of the spec, at UTC midnight.
    ending = Calendar.from_spec(ENDING, name="ending")
    assert ending.never_opens_from == datetime(2026, 12, 13, tzinfo=UTC)
    assert Calendar.from_spec(ENDING | {"versions": []}).never_opens_from is None
    assert Calendar.always_open().never_opens_from is None
    reopened = ENDING | {
        "versions": [*ENDING["versions"], {"effective_from": "2027-01-04", "hours": {"mon": []}}]
    }
    assert Calendar.from_spec(reopened).never_opens_from is not None  # still no hours
    reopened["versions"][-1]["hours"] = {"mon": ["10:00-12:00"]}
    assert Calendar.from_spec(reopened).never_opens_from is None


def test_a_plan_target_on_a_closing_calendar_is_refused() -> None:
    data = {
        "version": "v",
        "calendars": CALENDARS,
        "plans": {
            "gold": {
                "default_priority": 1,
                "priorities": {
                    1: {
                        "first_response": {"target": "PT1H", "calendar": "ending"},
                        "follow_up": {"target": "PT1H", "calendar": "clock"},
                    }
                },
            }
        },
    }
    assert issues(data) == [f"plans.gold.priorities.1.first_response.calendar: {NEVER_OPENS}"]


def test_a_closing_calendar_no_target_uses_is_accepted() -> None:
    policy = Policy.from_mapping(
        {
            "version": "v",
            "calendars": CALENDARS,
            "goals": [{"name": "all", "calendar": "clock", "targets": {"resolution": "PT1H"}}],
        }
    )
    assert policy.calendars["ending"].never_opens_from is not None


@pytest.mark.parametrize(
    ("goal", "path"),
    [
        ({"calendar": "ending", "targets": {"resolution": "PT1H"}}, "goals.0.calendar"),
        (
            {
                "calendar": "clock",
                "targets": {"resolution": {"target": "PT1H", "calendar": "ending"}},
            },
            "goals.0.targets.resolution.calendar",
        ),
        (
            {
                "calendar": {
                    "by": "group",
                    "map": {"eu": "clock", "us": "ending"},
                    "default": "clock",
                },
                "targets": {"resolution": "PT1H"},
            },
            "goals.0.calendar.map.us",
        ),
        (
            {
                "calendar": {"by": "customer", "map": {"C-1": "clock"}, "default": "ending"},
                "targets": {"resolution": "PT1H"},
            },
            "goals.0.calendar.default",
        ),
    ],
    ids=["goal-calendar", "target-calendar", "mapped-by-group", "map-default"],
)
def test_a_goal_that_can_run_on_a_closing_calendar_is_refused(
    goal: dict[str, Any], path: str
) -> None:
    data = {"version": "v", "calendars": CALENDARS, "goals": [{"name": "g"} | goal]}
    assert issues(data) == [f"{path}: {NEVER_OPENS}"]


def test_every_version_of_a_history_is_checked() -> None:
    data = {
        "versions": [
            {
                "version": "v1",
                "calendars": CALENDARS,
                "goals": [{"name": "g", "calendar": "clock"}],
            },
            {
                "version": "v2",
                "effective_from": "2026-12-01T00:00:00Z",
                "calendars": CALENDARS,
                "goals": [{"name": "g", "calendar": "ending", "targets": {"resolution": "PT1H"}}],
            },
        ]
    }
    assert issues(data) == [f"versions.1.goals.0.calendar: {NEVER_OPENS}"]


POLICY_YAML = """\
version: v
calendars:
  clock: {always_open: true}
  ending:
    timezone: Europe/Bratislava
    hours: {mon: ["09:00-17:00"]}
    versions:
      - {effective_from: 2026-12-10, hours: {}}
goals:
  - name: follow-the-sun
    when: {group: [eu, us]}
    calendar:
      by: group
      map:
        eu: clock
        us: ending
      default: clock
    targets:
      resolution: PT8H
  - name: rest
    calendar: ending
    targets:
      first_response: PT1H
"""


def test_policies_validate_and_every_load_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "policies.yaml"
    path.write_text(POLICY_YAML)
    with pytest.raises(PolicyError) as caught:
        load_policy(path)  # as the worker, replay and the audit load a policy file
    assert caught.value.lines == [16, 21]

    result = CliRunner().invoke(main, ["policies", "validate", str(path)])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"{path}: goals.0.calendar.map.us: {NEVER_OPENS} (line 16)",
        f"{path}: goals.1.calendar: {NEVER_OPENS} (line 21)",
    ]


def test_replay_refuses_the_policy_before_reading_an_event(tmp_path: Path) -> None:
    policy = tmp_path / "policies.yaml"
    policy.write_text(POLICY_YAML)
    events = tmp_path / "events.jsonl"
    events.write_text(
        '{"event_id": "e1", "type": "ticket-created", "ticket_id": "T1",'
        ' "occurred_at": "2026-12-14T10:00:00Z", "plan": "basic"}\n'
    )
    result = CliRunner().invoke(
        main, ["replay", str(events), "--policies", str(policy), "--now", "2027-01-01T00:00:00Z"]
    )
    assert result.exit_code != 0 and result.stdout == ""
    assert "never opens again from 2026-12-13 on" in result.stderr
    assert "Traceback" not in result.stderr
