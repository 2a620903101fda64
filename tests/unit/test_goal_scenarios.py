"""The goal path, as scenarios with times worked out by hand: resolution, reopened
tickets, periodic updates, requester wait and agent work, goals chosen by conditions and
changed by ticket attributes, and a follow-the-sun handoff between time zones.

Policy: tests/data/goals-policy.yaml. 2026-03-02 is a Monday; Berlin is UTC+1 and New York
UTC-5 then (before either's summer time), so 09:00 in Berlin is 08:00Z and 09:00 in New
York is 14:00Z.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.replaying import ReplayResult, ev, run_replay
from worker.core.policy import Policy, PolicyError

GOALS = Policy.from_mapping(
    yaml.safe_load((Path(__file__).parent.parent / "data" / "goals-policy.yaml").read_text())
)


def replay(lines: list[dict[str, Any]], until: str) -> ReplayResult:
    return run_replay(lines, GOALS, until)


def points(result: ReplayResult, metric: str) -> list[tuple[Any, ...]]:
    return [
        (e["type"], e["cycle"], e.get("threshold"), e["due_at"], e["goal"])
        for e in result.events
        if e["metric"] == metric
    ]


VIP = {"plan": "vip", "priority": 1}


def test_resolution_is_paused_while_waiting_for_the_customer() -> None:
    # PT8H on the clock; 2h run, 3h pending (not counted), then 5h more: breach at 21:00.
    result = replay(
        [
            ev(1, "ticket-created", "T", "2026-03-02T10:00:00Z", **VIP),
            ev(2, "reply-sent", "T", "2026-03-02T10:30:00Z", author="agent"),
            ev(3, "status-changed", "T", "2026-03-02T12:00:00Z", status="pending"),
            ev(4, "status-changed", "T", "2026-03-02T15:00:00Z", status="open"),
        ],
        until="2026-03-03T00:00:00Z",
    )
    assert points(result, "resolution") == [
        ("sla-warning", 1, 0.75, "2026-03-02T19:00:00Z", "vip-urgent"),
        ("sla-breach", 1, None, "2026-03-02T21:00:00Z", "vip-urgent"),
    ]


def test_resolution_is_met_by_solved_with_the_paused_time_left_out() -> None:
    result = replay(
        [
            ev(1, "ticket-created", "T", "2026-03-02T10:00:00Z", **VIP),
            ev(2, "status-changed", "T", "2026-03-02T12:00:00Z", status="pending"),
            ev(3, "status-changed", "T", "2026-03-02T15:00:00Z", status="open"),
            ev(4, "status-changed", "T", "2026-03-02T17:00:00Z", status="solved"),
        ],
        until="2026-03-03T00:00:00Z",
    )
    resolution = [f for f in result.finished if f["metric"] == "resolution"]
    assert resolution == [
        {
            **resolution[0],
            "result": "met",
            "business_time": "PT4H",
            "finished_by": "solved",
            "deadline": "2026-03-02T21:00:00Z",
            "goal": "vip-urgent",
        }
    ]


def test_a_reopened_ticket_starts_a_new_resolution_cycle_from_zero() -> None:
    # Cycle 1: 10:00-15:00, met (5h of PT8H). Reopened at 20:00: cycle 2 counts from
    # there, nothing carried over (as JSM), and breaches at 04:00 with its own event id.
    result = replay(
        [
            ev(1, "ticket-created", "T", "2026-03-02T10:00:00Z", **VIP),
            ev(2, "reply-sent", "T", "2026-03-02T10:10:00Z", author="agent"),
            ev(3, "status-changed", "T", "2026-03-02T15:00:00Z", status="solved"),
            ev(4, "status-changed", "T", "2026-03-02T20:00:00Z", status="open"),
        ],
        until="2026-03-03T12:00:00Z",
    )
    assert points(result, "resolution") == [
        ("sla-warning", 2, 0.75, "2026-03-03T02:00:00Z", "vip-urgent"),
        ("sla-breach", 2, None, "2026-03-03T04:00:00Z", "vip-urgent"),
    ]
    # The reopen restarts neither first response nor follow-up (they stop for good).
    assert not [e for e in result.events if e["metric"] in ("first_response", "follow_up")]


def test_a_warning_due_exactly_at_solved_is_not_emitted() -> None:
    # 75 % of PT8H is 16:00: solved exactly then meets the point, as a reply does.
    result = replay(
        [
            ev(1, "ticket-created", "T", "2026-03-02T10:00:00Z", **VIP),
            ev(2, "reply-sent", "T", "2026-03-02T10:10:00Z", author="agent"),
            ev(3, "reply-sent", "T", "2026-03-02T14:00:00Z", author="agent"),
            ev(4, "status-changed", "T", "2026-03-02T16:00:00Z", status="solved"),
        ],
        until="2026-03-03T12:00:00Z",
    )
    assert points(result, "resolution") == []


def test_closed_is_final_even_for_metrics_that_reopen() -> None:
    result = replay(
        [
            ev(1, "ticket-created", "T", "2026-03-02T10:00:00Z", **VIP),
            ev(2, "status-changed", "T", "2026-03-02T10:30:00Z", status="closed"),
            ev(3, "status-changed", "T", "2026-03-02T12:00:00Z", status="open"),
        ],
        until="2026-03-04T00:00:00Z",
    )
    assert result.events == []
    assert {(f["metric"], f["finished_by"]) for f in result.finished} == {
        ("first_response", "closed"),
        ("resolution", "closed"),
    }


def test_periodic_update_runs_from_one_public_agent_reply_to_the_next() -> None:
    # PT4H on the clock: 10:00 reply starts cycle 1, 13:00 reply meets it and starts
    # cycle 2; an internal note changes nothing; cycle 2 breaches at 17:00.
    result = replay(
        [
            ev(1, "ticket-created", "T", "2026-03-02T09:30:00Z", **VIP),
            ev(2, "reply-sent", "T", "2026-03-02T10:00:00Z", author="agent"),
            ev(3, "reply-sent", "T", "2026-03-02T13:00:00Z", author="agent"),
            ev(4, "reply-sent", "T", "2026-03-02T14:00:00Z", author="agent", public=False),
            ev(5, "status-changed", "T", "2026-03-02T18:00:00Z", status="solved"),
        ],
        until="2026-03-03T00:00:00Z",
    )
    assert points(result, "periodic_update") == [
        ("sla-warning", 2, 0.75, "2026-03-02T16:00:00Z", "vip-urgent"),
        ("sla-breach", 2, None, "2026-03-02T17:00:00Z", "vip-urgent"),
    ]
    updates = [
        (f["cycle"], f["result"], f["business_time"])
        for f in result.finished
        if f["metric"] == "periodic_update"
    ]
    assert updates == [(1, "met", "PT3H"), (2, "breached", "PT5H")]


def test_requester_wait_counts_on_hold_and_agent_work_does_not() -> None:
    # Goal "standard" (pro plan), on the clock. open 10-12, on-hold 12-14, pending 14-15,
    # open 15-16, solved: requester wait 2+2+1 = 5h, agent work 2+1 = 3h (and first
    # response, paused in both like the policy's pause statuses, 3h too).
    result = replay(
        [
            ev(1, "ticket-created", "T", "2026-03-02T10:00:00Z", plan="pro"),
            ev(2, "status-changed", "T", "2026-03-02T12:00:00Z", status="on-hold"),
            ev(3, "status-changed", "T", "2026-03-02T14:00:00Z", status="pending"),
            ev(4, "status-changed", "T", "2026-03-02T15:00:00Z", status="open"),
            ev(5, "status-changed", "T", "2026-03-02T16:00:00Z", status="solved"),
        ],
        until="2026-03-03T00:00:00Z",
    )
    measured = {f["metric"]: f["business_time"] for f in result.finished}
    assert measured == {"first_response": "PT3H", "requester_wait": "PT5H", "agent_work": "PT3H"}
    assert all(f["goal"] == "standard" for f in result.finished)


def test_zendesk_priority_change_example_breaches_at_once_from_the_original_start() -> None:
    # Normal priority (goal standard, first reply PT8H); two hours in, raised to urgent
    # (goal vip-urgent, PT1H): the new target elapsed an hour ago, so the breach fires
    # at the change, due at 11:00; the timer keeps its start and cycle.
    result = replay(
        [
            ev(1, "ticket-created", "T", "2026-03-02T10:00:00Z", plan="vip", priority=3),
            ev(2, "priority-changed", "T", "2026-03-02T12:00:00Z", priority=1),
        ],
        until="2026-03-02T12:00:00Z",
    )
    assert points(result, "first_response") == [
        ("sla-warning", 1, 0.75, "2026-03-02T10:45:00Z", "vip-urgent"),
        ("sla-breach", 1, None, "2026-03-02T11:00:00Z", "vip-urgent"),
    ]


def test_a_goal_change_by_attribute_keeps_the_start_and_what_was_emitted() -> None:
    # Customer acme (enterprise goal, PT4H first response on the emea group's calendar).
    # At 13:00Z (5h in, breached at 12:00Z) the customer changes: goal standard (PT8H,
    # clock). The breach stays emitted; no second warning for the same threshold.
    created = ev(
        1,
        "ticket-created",
        "T",
        "2026-03-02T08:00:00Z",
        plan="pro",
        customer_id="acme",
        group="emea",
    )
    result = replay(
        [
            created,
            ev(2, "ticket-updated", "T", "2026-03-02T13:00:00Z", customer_id="other"),
        ],
        until="2026-03-03T00:00:00Z",
    )
    assert points(result, "first_response") == [
        ("sla-warning", 1, 0.75, "2026-03-02T11:00:00Z", "enterprise"),
        ("sla-breach", 1, None, "2026-03-02T12:00:00Z", "enterprise"),
    ]
    # Agent work had no target under "enterprise"; under "standard" (PT16H, clock) it is
    # measured from the ticket's creation, as a plan-path timer whose priority regains a
    # target: 75 % at 20:00, breach at midnight. Later outputs carry the new customer.
    assert points(result, "agent_work") == [
        ("sla-warning", 1, 0.75, "2026-03-02T20:00:00Z", "standard"),
        ("sla-breach", 1, None, "2026-03-03T00:00:00Z", "standard"),
    ]
    assert [e["customer_id"] for e in result.events] == ["acme", "acme", "other", "other"]


def test_follow_the_sun_hands_the_remaining_target_to_the_american_team() -> None:
    # Enterprise resolution PT16H on the group's calendar. Created 09:00 Berlin (08:00Z),
    # moved to amer at 14:00Z: 6h ran on eu and are kept. The remaining 10h run on New
    # York hours from 14:00Z (09:00 there): 8h on Monday, 2h on Tuesday -> 16:00Z.
    # The 75 % point (12h) is 6h after the handoff: 20:00Z Monday.
    result = replay(
        [
            ev(
                1,
                "ticket-created",
                "T",
                "2026-03-02T08:00:00Z",
                plan="pro",
                customer_id="acme",
                group="emea",
            ),
            ev(2, "reply-sent", "T", "2026-03-02T08:30:00Z", author="agent"),
            ev(3, "ticket-updated", "T", "2026-03-02T14:00:00Z", group="amer"),
        ],
        until="2026-03-04T00:00:00Z",
    )
    assert [(e["type"], e["due_at"], e["calendar"]) for e in result.events] == [
        ("sla-warning", "2026-03-02T20:00:00Z", "us"),
        ("sla-breach", "2026-03-03T16:00:00Z", "us"),
    ]


def test_a_ticket_matching_no_goal_has_no_sla_until_it_does() -> None:
    result = replay(
        [ev(1, "ticket-created", "T", "2026-03-02T08:00:00Z", plan="basic")],
        until="2026-03-10T00:00:00Z",
    )
    assert result.events == [] and result.rejections == []


def test_outputs_name_the_goal_only_where_the_policy_names_goals(presets: Policy) -> None:
    lines = [ev(1, "ticket-created", "T", "2026-11-24T16:00:00+01:00", plan="vip", priority=3)]
    assert all("goal" not in e for e in run_replay(lines, presets, "2026-11-26T00:00:00Z").events)


@pytest.mark.parametrize(
    ("goals", "issue"),
    [
        (
            [{"name": "a", "calendar": "clock", "targets": {"resolutoin": "PT1H"}}],
            "goals.0.targets.resolutoin: unknown metric 'resolutoin'",
        ),
        (
            [{"name": "a", "calendar": "nowhere", "targets": {"resolution": "PT1H"}}],
            "goals.0.calendar: unknown calendar 'nowhere'",
        ),
        (
            [{"name": "a", "when": {"group": []}, "calendar": "clock", "targets": {}}],
            "goals.0.when.group: an empty list can never match",
        ),
        (
            [
                {"name": "all", "calendar": "clock", "targets": {"resolution": "PT1H"}},
                {"name": "vip", "when": {"plan": "vip"}, "calendar": "clock", "targets": {}},
            ],
            "goals.1: can never match: every ticket it matches matches goal 'all' (goals.0) first",
        ),
        (
            [
                {"name": "vip", "when": {"plan": ["vip", "pro"]}, "calendar": "clock"},
                {"name": "vip-1", "when": {"plan": "vip", "priority": 1}, "calendar": "clock"},
            ],
            "goals.1: can never match: every ticket it matches matches goal 'vip' (goals.0) first",
        ),
        # A goal's own warning fractions are checked as a plan's are.
        (
            [{"name": "a", "calendar": "clock", "warnings": [0.5, 0.5], "targets": {}}],
            "goals.0.warnings: warning fractions must not repeat",
        ),
        (
            [{"name": "a", "calendar": "clock", "warnings": [0.0], "targets": {}}],
            "goals.0.warnings: warning fraction 0.0 must be between 0 and 1",
        ),
        (
            [{"name": "a", "calendar": "clock", "warnings": [1.5], "targets": {}}],
            "goals.0.warnings: warning fraction 1.5 must be between 0 and 1",
        ),
    ],
)
def test_goal_problems_are_named(goals: list[dict[str, Any]], issue: str) -> None:
    with pytest.raises(PolicyError) as caught:
        Policy.from_mapping(
            {"version": "v", "calendars": {"clock": {"always_open": True}}, "goals": goals}
        )
    assert any(found.startswith(issue) for found in caught.value.issues), caught.value.issues


def test_policies_validate_names_the_line_of_each_goal_problem(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from worker.cli import main

    bad = tmp_path / "goals.yaml"
    bad.write_text(
        "version: v\n"
        "calendars:\n"
        "  clock: {always_open: true}\n"
        "goals:\n"
        "  - name: a\n"
        "    calendar: clock\n"
        "    targets:\n"
        "      resolutoin: PT1H\n"
        "  - name: b\n"
        "    when:\n"
        "      group: []\n"
        "    calendar: nowhere\n"
    )
    result = CliRunner().invoke(main, ["policies", "validate", str(bad)])
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"{bad}: goals.0.targets.resolutoin: unknown metric")
    assert lines[0].endswith("(line 8)")
    assert lines[1] == f"{bad}: goals.1.when.group: an empty list can never match (line 11)"
    assert lines[2].startswith(f"{bad}: goals.1.calendar: unknown calendar 'nowhere'")
    assert lines[2].endswith("(line 12)")

    good = CliRunner().invoke(
        main, ["policies", "validate", str(Path(__file__).parent.parent / "data/goals-policy.yaml")]
    )
    assert (
        good.exit_code == 0
        and "goals: 3 named, 0 from plans; metrics: first_response" in good.stdout
    )


def test_the_report_groups_a_goal_policys_timers_by_metric_and_goal() -> None:
    import io
    import json

    from worker.report import build_report, read_records, write_csv

    result = replay(
        [
            ev(1, "ticket-created", "T", "2026-03-02T10:00:00Z", **VIP),
            ev(2, "reply-sent", "T", "2026-03-02T10:10:00Z", author="agent"),
            ev(3, "ticket-created", "U", "2026-03-02T10:00:00Z", plan="pro"),
            ev(4, "status-changed", "U", "2026-03-02T11:00:00Z", status="solved"),
        ],
        until="2026-03-03T00:00:00Z",
    )
    lines = [json.dumps(e) for e in result.events + result.finished]
    report = build_report(read_records(lines))
    rows = {(r["metric"], r["goal"]): (r["met"], r["breached"]) for r in report["by_metric_goal"]}
    assert rows == {
        ("first_response", "standard"): (1, 0),
        ("first_response", "vip-urgent"): (1, 0),
        ("periodic_update", "vip-urgent"): (0, 1),
        ("resolution", "vip-urgent"): (0, 1),
        ("requester_wait", "standard"): (1, 0),
        ("agent_work", "standard"): (1, 0),
    }
    out = io.StringIO()
    write_csv(report, out)
    assert out.getvalue().splitlines()[0].split(",")[1:7] == [
        "period",
        "plan",
        "priority",
        "metric",
        "customer_id",
        "goal",
    ]
    assert "metric+goal," in out.getvalue()


def test_a_history_moves_from_plans_to_goals_for_tickets_created_after() -> None:
    # Version 1: the plan x priority form; version 2 (from 12:00Z) the goal policy. A
    # ticket is judged for life by the version it was created under.
    plans = {
        "version": "plans-1",
        "calendars": {"clock": {"always_open": True}},
        "plans": {
            "vip": {
                "default_priority": 1,
                "priorities": {1: {"first_response": {"target": "PT1H", "calendar": "clock"}}},
            }
        },
    }
    document = yaml.safe_load(
        (Path(__file__).parent.parent / "data" / "goals-policy.yaml").read_text()
    )
    history = Policy.from_mapping(
        {"versions": [plans, {**document, "effective_from": "2026-03-02T12:00:00Z"}]}
    )
    result = run_replay(
        [
            ev(1, "ticket-created", "OLD", "2026-03-02T10:00:00Z", plan="vip", priority=1),
            ev(2, "ticket-created", "NEW", "2026-03-02T13:00:00Z", plan="vip", priority=1),
        ],
        history,
        "2026-03-02T15:00:00Z",
    )
    old = [e for e in result.events if e["ticket_id"] == "OLD"]
    new = [e for e in result.events if e["ticket_id"] == "NEW"]
    assert {(e["metric"], e["policy_version"]) for e in old} == {("first_response", "plans-1")}
    assert all("goal" not in e for e in old)
    assert {(e["metric"], e["goal"], e["policy_version"]) for e in new} >= {
        ("first_response", "vip-urgent", "goals-1")
    }


def test_a_metric_of_your_own_written_as_conditions() -> None:
    # The docs' example: triage runs from creation until the ticket is assigned a group.
    policy = Policy.from_mapping(
        {
            "version": "own-1",
            "calendars": {"clock": {"always_open": True}},
            "metrics": {
                "triage": {
                    "start": [{"event": "ticket-created"}],
                    "stop": [
                        {"event": "ticket-updated", "field": "group"},
                        {"event": "status-changed", "status": ["solved", "closed"]},
                    ],
                    "pause": ["pending"],
                }
            },
            "goals": [{"name": "all", "calendar": "clock", "targets": {"triage": "PT30M"}}],
        }
    )
    result = run_replay(
        [
            ev(1, "ticket-created", "A", "2026-03-02T10:00:00Z", plan="any"),
            ev(2, "ticket-updated", "A", "2026-03-02T10:20:00Z", group="emea"),
            ev(3, "ticket-created", "B", "2026-03-02T10:00:00Z", plan="any"),
            ev(4, "status-changed", "B", "2026-03-02T10:10:00Z", status="pending"),
            ev(5, "status-changed", "B", "2026-03-02T10:40:00Z", status="open"),
        ],
        policy,
        "2026-03-02T12:00:00Z",
    )
    assert [(e["ticket_id"], e["type"], e["due_at"]) for e in result.events] == [
        ("B", "sla-warning", "2026-03-02T10:52:30Z"),
        ("B", "sla-breach", "2026-03-02T11:00:00Z"),
    ]
    assert [(f["ticket_id"], f["result"], f["finished_by"]) for f in result.finished] == [
        ("A", "met", "ticket-updated")
    ]


def test_policies_show_metrics_prints_definitions_a_policy_accepts() -> None:
    from worker.core.metrics import MetricSpec
    from worker.policy_file import builtin_metrics_yaml

    shown = yaml.safe_load(builtin_metrics_yaml())["metrics"]
    assert list(shown) == [
        "first_response",
        "follow_up",
        "resolution",
        "periodic_update",
        "requester_wait",
        "agent_work",
    ]
    # Each reads back as the definition it was printed from (renamed: built-in names are
    # reserved).
    for name, definition in shown.items():
        Policy.from_mapping(
            {
                "version": "v",
                "calendars": {"clock": {"always_open": True}},
                "metrics": {f"my_{name}": definition},
                "goals": [{"name": "g", "calendar": "clock", "targets": {f"my_{name}": "PT1H"}}],
            }
        )
        assert MetricSpec.model_validate(definition)


TRIAGE = Policy.from_mapping(
    yaml.safe_load(
        """
version: triage-1
calendars: {clock: {always_open: true}}
warnings: []
metrics:
  triage:   # met when the ticket is assigned to a team
    start: [{event: ticket-created}]
    stop: [{event: ticket-updated, field: group}]
  touch:    # restarted by every agent reply; only closing ends it
    start: [{event: reply-sent, author: agent, public: true}]
    reset: [{event: reply-sent, author: agent}]
    stop: [{event: status-changed, status: closed}]
goals:
  - {name: fast, when: {group: l2}, calendar: clock, targets: {triage: PT1H}}
  - {name: slow, calendar: clock, targets: {triage: PT8H, touch: PT2H}}
"""
    )
)


def test_an_event_that_changes_the_goal_and_stops_the_timer_breaches_first() -> None:
    """The group move both matches `fast` (PT1H, already 3 hours gone) and meets triage:
    the new goal's breach fires (due 11:00) before the timer stops, as breached."""
    result = run_replay(
        [
            ev(1, "ticket-created", "T", "2026-03-02T10:00:00Z", plan="x", priority=3),
            ev(2, "ticket-updated", "T", "2026-03-02T13:00:00Z", group="l2"),
        ],
        TRIAGE,
        "2026-03-03T00:00:00Z",
    )
    assert [(e["type"], e["due_at"], e["goal"]) for e in result.events] == [
        ("sla-breach", "2026-03-02T11:00:00Z", "fast")
    ]
    (finished,) = result.finished
    assert (finished["result"], finished["business_time"]) == ("breached", "PT3H")


def test_a_reset_on_a_solved_ticket_starts_no_new_cycle() -> None:
    """Nothing starts while the ticket is solved: an agent's internal note after `solved`
    stops the running `touch` timer but starts no second cycle."""
    result = run_replay(
        [
            ev(1, "ticket-created", "T", "2026-03-02T10:00:00Z", plan="x", priority=3),
            ev(2, "reply-sent", "T", "2026-03-02T10:10:00Z", author="agent"),
            ev(3, "status-changed", "T", "2026-03-02T10:20:00Z", status="solved"),
            ev(4, "reply-sent", "T", "2026-03-02T10:30:00Z", author="agent", public=False),
        ],
        TRIAGE,
        "2026-03-03T00:00:00Z",
    )
    assert [e for e in result.events if e["metric"] == "touch"] == []
    assert [(f["metric"], f["cycle"]) for f in result.finished if f["metric"] == "touch"] == [
        ("touch", 1)
    ]
