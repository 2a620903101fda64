"""Every rule of the SLA contracts, as scenarios with times worked out by hand.

Calendars of the presets: `cet-business` (Mon-Fri 09-17 Europe/Bratislava, no holidays,
VIP severities 3-5), `sk-business` (the same with Slovak public holidays: professional
and advanced plans) and `24x7`. In November CET is UTC+1, so 09:00 CET is 08:00Z.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.replaying import ReplayFn, ev, run_replay
from worker.core.policy import Policy

REFERENCE = Path(__file__).parent.parent / "data" / "reference-example"


def test_reference_example_matches_the_hand_worked_expectation(replay: ReplayFn) -> None:
    lines = [json.loads(x) for x in (REFERENCE / "events.jsonl").read_text().splitlines()]
    expected = [
        json.loads(x) for x in (REFERENCE / "expected-core-fields.jsonl").read_text().splitlines()
    ]
    result = replay(lines, until="2026-11-28T00:00:00Z")
    assert result.core() == expected
    assert result.rejections == []


def test_emitted_events_carry_plan_priority_target_calendar_and_policy(
    replay: ReplayFn,
) -> None:
    result = replay(
        [ev(1, "ticket-created", "T", "2026-11-24T16:00:00+01:00", plan="vip", priority=3)],
        until="2026-11-26T00:00:00Z",
    )
    warning, breach = result.events
    assert warning == {
        "event_id": warning["event_id"],
        "type": "sla-warning",
        "ticket_id": "T",
        "plan": "vip",
        "priority": 3,
        "metric": "first_response",
        "cycle": 1,
        "started_at": "2026-11-24T15:00:00Z",
        "due_at": "2026-11-25T08:30:00Z",
        "deadline": "2026-11-25T09:00:00Z",
        "threshold": 0.75,
        "target": "PT2H",
        "calendar": "cet-business",
        "policy_version": "presets-2026.11",
    }
    assert breach["type"] == "sla-breach" and "threshold" not in breach
    assert warning["event_id"] != breach["event_id"]


def test_customer_id_is_carried_into_every_output_and_absent_without_one(
    replay: ReplayFn,
) -> None:
    created = ev(1, "ticket-created", "T", "2026-11-24T16:00:00+01:00", plan="vip", priority=3)
    with_customer = replay(
        [
            {**created, "customer_id": "ACME"},
            ev(2, "priority-changed", "T", "2026-11-25T10:00:00Z", priority=1),
        ],
        until="2026-11-26T00:00:00Z",
    )
    assert [e["type"] for e in with_customer.events] == ["sla-warning", "sla-breach"]
    assert all(e["customer_id"] == "ACME" for e in with_customer.events)
    without = replay(
        [created, ev(2, "priority-changed", "T", "2026-11-25T10:00:00Z", priority=1)],
        until="2026-11-26T00:00:00Z",
    )
    # Without a customer_id the outputs have no such key at all (not null): byte for
    # byte what they were before the field existed.
    assert [{**e, "customer_id": "ACME"} for e in without.events] == with_customer.events
    assert all("customer_id" not in e for e in without.events)


def test_event_ids_are_deterministic_across_runs(replay: ReplayFn) -> None:
    lines = [ev(1, "ticket-created", "T", "2026-11-24T16:00:00+01:00", plan="vip", priority=3)]
    first = replay(lines, until="2026-11-26T00:00:00Z").events
    second = replay(lines, until="2026-11-26T00:00:00Z").events
    assert [e["event_id"] for e in first] == [e["event_id"] for e in second]


# --- replies and the deadline instant ------------------------------------------------------


def test_reply_exactly_at_the_deadline_meets_it(replay: ReplayFn) -> None:
    # advanced priority 1: 1 hour on the clock.
    result = replay(
        [
            ev(1, "ticket-created", "T", "2026-11-24T10:00:00Z", plan="advanced", priority=1),
            ev(2, "reply-sent", "T", "2026-11-24T11:00:00Z", author="agent"),
        ],
        until="2026-11-25T00:00:00Z",
    )
    assert [(e["type"], e["due_at"]) for e in result.events] == [
        ("sla-warning", "2026-11-24T10:45:00Z")
    ]
    assert result.summary.met == 1 and result.summary.breaches == 0


def test_reply_one_microsecond_late_does_not(replay: ReplayFn) -> None:
    result = replay(
        [
            ev(1, "ticket-created", "T", "2026-11-24T10:00:00Z", plan="advanced", priority=1),
            ev(2, "reply-sent", "T", "2026-11-24T11:00:00.000001Z", author="agent"),
        ],
        until="2026-11-25T00:00:00Z",
    )
    assert [(e["type"], e["due_at"]) for e in result.events] == [
        ("sla-warning", "2026-11-24T10:45:00Z"),
        ("sla-breach", "2026-11-24T11:00:00Z"),
    ]
    assert result.summary.met == 0


def test_internal_note_does_not_meet_the_timer(replay: ReplayFn) -> None:
    result = replay(
        [
            ev(1, "ticket-created", "T", "2026-11-24T10:00:00Z", plan="advanced", priority=1),
            ev(2, "reply-sent", "T", "2026-11-24T10:10:00Z", author="agent", public=False),
        ],
        until="2026-11-25T00:00:00Z",
    )
    assert [e["type"] for e in result.events] == ["sla-warning", "sla-breach"]


def test_breach_fires_once_and_a_late_reply_is_not_counted_as_met(replay: ReplayFn) -> None:
    result = replay(
        [
            ev(1, "ticket-created", "T", "2026-11-24T10:00:00Z", plan="advanced", priority=1),
            ev(2, "status-changed", "T", "2026-11-24T12:00:00Z", status="open"),
            ev(3, "reply-sent", "T", "2026-11-24T13:00:00Z", author="agent"),
        ],
        until="2026-11-30T00:00:00Z",
    )
    assert [e["type"] for e in result.events] == ["sla-warning", "sla-breach"]
    assert result.summary.met == 0 and result.summary.running_timers == 0


# --- follow-up cycles ----------------------------------------------------------------------


def test_follow_up_cycles_are_numbered_and_a_waiting_customer_starts_none(
    replay: ReplayFn,
) -> None:
    # vip severity 1: first response 1 hour, follow-up 4 hours, on the clock.
    result = replay(
        [
            ev(1, "ticket-created", "T", "2026-11-23T08:00:00Z", plan="vip", priority=1),
            ev(2, "reply-sent", "T", "2026-11-23T08:20:00Z", author="agent"),
            ev(3, "reply-sent", "T", "2026-11-23T09:00:00Z", author="customer"),  # cycle 1
            ev(4, "reply-sent", "T", "2026-11-23T10:00:00Z", author="agent"),  # meets it
            ev(5, "reply-sent", "T", "2026-11-23T11:00:00Z", author="customer"),  # cycle 2
            ev(6, "reply-sent", "T", "2026-11-23T12:00:00Z", author="customer"),  # still 2
        ],
        until="2026-11-23T16:00:00Z",
    )
    assert result.core() == [
        {
            "type": "sla-warning",
            "ticket_id": "T",
            "metric": "follow_up",
            "cycle": 2,
            "threshold": 0.75,
            "due_at": "2026-11-23T14:00:00Z",
            "deadline": "2026-11-23T15:00:00Z",
        },
        {
            "type": "sla-breach",
            "ticket_id": "T",
            "metric": "follow_up",
            "cycle": 2,
            "due_at": "2026-11-23T15:00:00Z",
            "deadline": "2026-11-23T15:00:00Z",
        },
    ]
    assert result.summary.met == 2  # first response and follow-up cycle 1


def test_customer_reply_before_the_first_response_starts_no_follow_up(
    replay: ReplayFn,
) -> None:
    result = replay(
        [
            ev(1, "ticket-created", "T", "2026-11-23T08:00:00Z", plan="vip", priority=1),
            ev(2, "reply-sent", "T", "2026-11-23T08:10:00Z", author="customer"),
            ev(3, "reply-sent", "T", "2026-11-23T08:20:00Z", author="agent"),
        ],
        until="2026-11-24T00:00:00Z",
    )
    assert result.events == []


# --- priority changes ---------------------------------------------------------------------


def test_priority_raised_after_the_new_target_elapsed_breaches_at_once(
    replay: ReplayFn,
) -> None:
    # professional P3 = 9 business hours; at 13:00 CET 4 hours have run; P1 = 3 hours:
    # the warning point (2h15 -> 11:15 CET) and the deadline (12:00 CET) are both past.
    result = replay(
        [
            ev(1, "ticket-created", "T", "2026-11-23T09:00:00+01:00", plan="professional"),
            ev(2, "priority-changed", "T", "2026-11-23T13:00:00+01:00", priority=1),
        ],
        until="2026-11-23T12:00:00Z",
    )
    assert [(e["type"], e["due_at"], e["priority"], e["target"]) for e in result.events] == [
        ("sla-warning", "2026-11-23T10:15:00Z", 1, "PT3H"),
        ("sla-breach", "2026-11-23T11:00:00Z", 1, "PT3H"),
    ]
    assert {e["deadline"] for e in result.events} == {"2026-11-23T11:00:00Z"}


def test_priority_raised_past_only_the_warning_point_warns_at_once(replay: ReplayFn) -> None:
    result = replay(
        [
            ev(1, "ticket-created", "T", "2026-11-23T09:00:00+01:00", plan="professional"),
            ev(2, "priority-changed", "T", "2026-11-23T11:30:00+01:00", priority=1),
        ],
        until="2026-11-23T10:59:59Z",
    )
    assert [(e["type"], e["due_at"], e["deadline"]) for e in result.events] == [
        ("sla-warning", "2026-11-23T10:15:00Z", "2026-11-23T11:00:00Z")
    ]


def test_priority_change_exactly_at_the_new_deadline_still_lets_a_reply_meet_it(
    replay: ReplayFn,
) -> None:
    # advanced P3 from Monday 09:00 CET; at 10:00 CET raised to P1 (1 hour on the clock):
    # the new deadline is this very instant, which is not yet past, so a reply at the
    # same instant meets it. Only the warning point (09:45) was past and fires at once.
    result = replay(
        [
            ev(1, "ticket-created", "T", "2026-11-23T09:00:00+01:00", plan="advanced"),
            ev(2, "priority-changed", "T", "2026-11-23T10:00:00+01:00", priority=1),
            ev(3, "reply-sent", "T", "2026-11-23T10:00:00+01:00", author="agent"),
        ],
        until="2026-11-24T00:00:00Z",
    )
    assert [(e["type"], e["due_at"]) for e in result.events] == [
        ("sla-warning", "2026-11-23T08:45:00Z")
    ]
    assert result.summary.met == 1


def test_priority_lowered_keeps_emitted_warnings_and_moves_the_deadline(
    replay: ReplayFn,
) -> None:
    # advanced P1 (1 hour, 24x7) warns at 08:45Z; lowered to P3 (6 business hours from
    # the original start, Monday 09:00 CET) the deadline becomes 15:00 CET. The 0.75
    # warning was already emitted and is not repeated.
    result = replay(
        [
            ev(1, "ticket-created", "T", "2026-11-23T08:00:00Z", plan="advanced", priority=1),
            ev(2, "priority-changed", "T", "2026-11-23T08:50:00Z", priority=3),
        ],
        until="2026-11-24T00:00:00Z",
    )
    assert [(e["type"], e["due_at"], e["calendar"]) for e in result.events] == [
        ("sla-warning", "2026-11-23T08:45:00Z", "24x7"),
        ("sla-breach", "2026-11-23T14:00:00Z", "sk-business"),
    ]


def test_priority_without_a_target_suspends_the_timer_until_one_applies_again(
    replay: ReplayFn,
) -> None:
    # vip severity 3: follow-up 16 business hours; severity 4 has no follow-up target.
    # The cycle starts Monday 10:00 CET; while at severity 4 nothing fires; back at
    # severity 3 it is measured from its original start: Mon 7h + Tue 5h = warning at
    # Tue 14:00 CET, Mon 7h + Tue 8h + Wed 1h = deadline Wed 10:00 CET.
    result = replay(
        [
            ev(1, "ticket-created", "T", "2026-11-23T09:00:00+01:00", plan="vip", priority=3),
            ev(2, "reply-sent", "T", "2026-11-23T09:30:00+01:00", author="agent"),
            ev(3, "reply-sent", "T", "2026-11-23T10:00:00+01:00", author="customer"),
            ev(4, "priority-changed", "T", "2026-11-23T10:30:00+01:00", priority=4),
            ev(5, "priority-changed", "T", "2026-11-24T10:00:00+01:00", priority=3),
        ],
        until="2026-11-26T00:00:00Z",
    )
    assert [(e["type"], e["metric"], e["due_at"]) for e in result.events] == [
        ("sla-warning", "follow_up", "2026-11-24T13:00:00Z"),
        ("sla-breach", "follow_up", "2026-11-25T09:00:00Z"),
    ]


def test_suspended_timer_fires_nothing_while_it_has_no_target(replay: ReplayFn) -> None:
    result = replay(
        [
            ev(1, "ticket-created", "T", "2026-11-23T09:00:00+01:00", plan="vip", priority=3),
            ev(2, "reply-sent", "T", "2026-11-23T09:30:00+01:00", author="agent"),
            ev(3, "reply-sent", "T", "2026-11-23T10:00:00+01:00", author="customer"),
            ev(4, "priority-changed", "T", "2026-11-23T10:30:00+01:00", priority=4),
        ],
        until="2026-12-31T00:00:00Z",
    )
    assert result.events == [] and result.summary.running_timers == 0


# --- pause and resume ----------------------------------------------------------------------


def test_pause_across_a_weekend(replay: ReplayFn) -> None:
    # professional P2 = 6 business hours from Friday 14:00 CET: 2 hours run before
    # pending at 16:00; open again Monday 10:00 (Monday 09-10 does not count); the
    # remaining 4 hours end Monday 14:00 CET; the warning (4h30) at Monday 12:30 CET.
    result = replay(
        [
            ev(
                1,
                "ticket-created",
                "T",
                "2026-11-27T14:00:00+01:00",
                plan="professional",
                priority=2,
            ),
            ev(2, "status-changed", "T", "2026-11-27T16:00:00+01:00", status="pending"),
            ev(3, "status-changed", "T", "2026-11-30T10:00:00+01:00", status="open"),
        ],
        until="2026-12-01T00:00:00Z",
    )
    assert [(e["type"], e["due_at"]) for e in result.events] == [
        ("sla-warning", "2026-11-30T11:30:00Z"),
        ("sla-breach", "2026-11-30T13:00:00Z"),
    ]


def test_on_hold_pauses_too_and_a_repeated_pause_changes_nothing(replay: ReplayFn) -> None:
    result = replay(
        [
            ev(1, "ticket-created", "T", "2026-11-24T10:00:00Z", plan="advanced", priority=1),
            ev(2, "status-changed", "T", "2026-11-24T10:30:00Z", status="on-hold"),
            ev(3, "status-changed", "T", "2026-11-24T11:00:00Z", status="pending"),
            ev(4, "status-changed", "T", "2026-11-24T12:00:00Z", status="open"),
        ],
        until="2026-11-25T00:00:00Z",
    )
    # 30 minutes ran before the pause; 30 remain from 12:00Z.
    assert [(e["type"], e["due_at"]) for e in result.events] == [
        ("sla-warning", "2026-11-24T12:15:00Z"),
        ("sla-breach", "2026-11-24T12:30:00Z"),
    ]


def test_priority_raised_while_paused_fires_past_points_with_unknown_deadline(
    replay: ReplayFn,
) -> None:
    # professional P3, pending at 11:30 CET after 2h30; raised to P1 (3h): the 2h15
    # warning is past and fires at once, but the deadline depends on when it resumes.
    # Resumed at 15:00 CET, the last 30 minutes end at 15:30 CET.
    result = replay(
        [
            ev(1, "ticket-created", "T", "2026-11-23T09:00:00+01:00", plan="professional"),
            ev(2, "status-changed", "T", "2026-11-23T11:30:00+01:00", status="pending"),
            ev(3, "priority-changed", "T", "2026-11-23T12:00:00+01:00", priority=1),
            ev(4, "status-changed", "T", "2026-11-23T15:00:00+01:00", status="open"),
        ],
        until="2026-11-24T00:00:00Z",
    )
    assert [(e["type"], e["due_at"], e["deadline"]) for e in result.events] == [
        ("sla-warning", "2026-11-23T10:15:00Z", None),
        ("sla-breach", "2026-11-23T14:30:00Z", "2026-11-23T14:30:00Z"),
    ]


def test_a_pause_starting_exactly_at_the_deadline_does_not_meet_it(replay: ReplayFn) -> None:
    result = replay(
        [
            ev(1, "ticket-created", "T", "2026-11-24T10:00:00Z", plan="advanced", priority=1),
            ev(2, "status-changed", "T", "2026-11-24T11:00:00Z", status="pending"),
        ],
        until="2026-11-25T00:00:00Z",
    )
    assert [(e["type"], e["due_at"]) for e in result.events][-1] == (
        "sla-breach",
        "2026-11-24T11:00:00Z",
    )


# --- stopping ------------------------------------------------------------------------------


def test_solved_stops_every_timer_for_good(replay: ReplayFn) -> None:
    result = replay(
        [
            ev(1, "ticket-created", "T", "2026-11-24T10:00:00Z", plan="vip", priority=1),
            ev(2, "status-changed", "T", "2026-11-24T10:30:00Z", status="solved"),
            ev(3, "status-changed", "T", "2026-11-24T10:40:00Z", status="open"),
            ev(4, "reply-sent", "T", "2026-11-24T10:50:00Z", author="agent"),
            ev(5, "reply-sent", "T", "2026-11-24T11:00:00Z", author="customer"),
        ],
        until="2026-11-30T00:00:00Z",
    )
    assert result.events == []
    assert result.summary.met == 1 and result.summary.applied == 5


# --- plans without SLA ---------------------------------------------------------------------


def test_basic_plan_and_exempt_stages_get_no_timers(replay: ReplayFn) -> None:
    result = replay(
        [
            ev(1, "ticket-created", "B", "2026-11-24T10:00:00Z", plan="basic", priority=1),
            ev(
                2,
                "ticket-created",
                "P",
                "2026-11-24T10:00:00Z",
                plan="professional",
                priority=1,
                product_stage="beta",
            ),
            ev(
                3,
                "ticket-created",
                "A",
                "2026-11-24T10:00:00Z",
                plan="advanced",
                priority=1,
                product_stage="preview",
            ),
            ev(4, "priority-changed", "P", "2026-11-24T10:05:00Z", priority=2),
        ],
        until="2026-12-31T00:00:00Z",
    )
    assert result.events == [] and result.summary.running_timers == 0


def test_vip_does_not_exempt_beta(replay: ReplayFn) -> None:
    result = replay(
        [
            ev(
                1,
                "ticket-created",
                "V",
                "2026-11-24T10:00:00Z",
                plan="vip",
                priority=1,
                product_stage="beta",
            )
        ],
        until="2026-11-25T00:00:00Z",
    )
    assert [e["type"] for e in result.events] == ["sla-warning", "sla-breach"]


def test_missing_priority_takes_the_plans_default(replay: ReplayFn) -> None:
    # advanced default is P3: 6 business hours from Monday 09:00 CET.
    result = replay(
        [ev(1, "ticket-created", "T", "2026-11-23T09:00:00+01:00", plan="advanced")],
        until="2026-11-24T00:00:00Z",
    )
    assert [(e["priority"], e["deadline"]) for e in result.events] == [
        (3, "2026-11-23T14:00:00Z"),
        (3, "2026-11-23T14:00:00Z"),
    ]


# --- calendars: DST and Slovak holidays ------------------------------------------------------


def test_deadline_across_the_autumn_dst_weekend(replay: ReplayFn) -> None:
    # vip severity 3 from Friday 2026-10-23 16:30 CEST: 30 minutes Friday, then 90
    # minutes Monday 26 October, now CET (UTC+1): 10:30 CET = 09:30Z.
    result = replay(
        [ev(1, "ticket-created", "T", "2026-10-23T16:30:00+02:00", plan="vip", priority=3)],
        until="2026-10-27T00:00:00Z",
    )
    assert [(e["type"], e["due_at"]) for e in result.events] == [
        ("sla-warning", "2026-10-26T09:00:00Z"),
        ("sla-breach", "2026-10-26T09:30:00Z"),
    ]


def test_deadline_across_easter_and_the_spring_dst_change_2027(replay: ReplayFn) -> None:
    # professional P1 (3 business hours, SK holidays) from Thursday 2027-03-25 15:00 CET:
    # 2 hours Thursday; Good Friday 26 March; weekend with the DST change; Easter Monday
    # 29 March; Tuesday 30 March 09:00 CEST (UTC+2) + 1 hour = 08:00Z.
    result = replay(
        [
            ev(
                1,
                "ticket-created",
                "T",
                "2027-03-25T15:00:00+01:00",
                plan="professional",
                priority=1,
            )
        ],
        until="2027-04-01T00:00:00Z",
    )
    assert [(e["type"], e["due_at"]) for e in result.events] == [
        ("sla-warning", "2027-03-30T07:15:00Z"),
        ("sla-breach", "2027-03-30T08:00:00Z"),
    ]


def test_deadline_across_slovak_christmas(replay: ReplayFn) -> None:
    # From Wednesday 2026-12-23 15:00 CET: 2 hours that day; 24-26 December are holidays,
    # 27th is Sunday; Monday 28 December 09:00 + 1 hour.
    result = replay(
        [
            ev(
                1,
                "ticket-created",
                "T",
                "2026-12-23T15:00:00+01:00",
                plan="professional",
                priority=1,
            )
        ],
        until="2026-12-31T00:00:00Z",
    )
    assert [(e["type"], e["due_at"]) for e in result.events] == [
        ("sla-warning", "2026-12-28T08:15:00Z"),
        ("sla-breach", "2026-12-28T09:00:00Z"),
    ]


def test_vip_calendar_has_no_holidays(replay: ReplayFn) -> None:
    # The same instant on the vip calendar: Thursday 24 December is a working day.
    result = replay(
        [ev(1, "ticket-created", "T", "2026-12-23T16:00:00+01:00", plan="vip", priority=3)],
        until="2026-12-31T00:00:00Z",
    )
    assert result.events[-1]["due_at"] == "2026-12-24T09:00:00Z"


# --- duplicates and bad lines -----------------------------------------------------------------


def test_duplicate_event_ids_are_applied_once(replay: ReplayFn) -> None:
    created = ev(1, "ticket-created", "T", "2026-11-23T08:00:00Z", plan="vip", priority=1)
    first_reply = ev(2, "reply-sent", "T", "2026-11-23T08:20:00Z", author="agent")
    customer = ev(3, "reply-sent", "T", "2026-11-23T09:00:00Z", author="customer")
    result = replay(
        [created, created, first_reply, customer, first_reply, customer],
        until="2026-11-23T20:00:00Z",
    )
    assert result.summary.duplicates == 3 and result.summary.applied == 3
    assert [(e["type"], e["cycle"]) for e in result.events] == [
        ("sla-warning", 1),
        ("sla-breach", 1),
    ]


def test_bad_lines_are_reported_with_line_number_and_reason(replay: ReplayFn) -> None:
    good = ev(1, "ticket-created", "T", "2026-11-23T08:00:00Z", plan="vip", priority=1)
    result = replay(
        [
            good,
            "{not json",
            json.dumps({**good, "event_id": "x2", "ticket_id": "U", "occurred_at": None}),
            json.dumps({**good, "event_id": "x3", "occurred_at": "2026-11-23T08:00:00"}),
            json.dumps({**good, "event_id": "x4", "type": "ticket-deleted"}),
            json.dumps({**good, "event_id": "x5", "ticket_id": "G", "plan": "gold"}),
            json.dumps({**good, "event_id": "x6", "ticket_id": "H", "priority": 9}),
            json.dumps(ev(7, "reply-sent", "NOPE", "2026-11-23T08:05:00Z", author="agent")),
            json.dumps({**good, "event_id": "x8"}),
            json.dumps(ev(9, "reply-sent", "T", "2026-11-23T07:00:00Z", author="agent")),
            json.dumps(ev(10, "priority-changed", "T", "2026-11-23T08:10:00Z", priority=7)),
            json.dumps(ev(11, "reply-sent", "T", "2026-11-23T08:10:00Z", author="bot")),
            "[]",
        ],
        until="2026-11-23T20:00:00Z",
    )
    assert [(r.line, r.reason) for r in result.rejections] == [
        (2, "invalid-json"),
        (3, "invalid-field"),
        (4, "naive-timestamp"),
        (5, "unknown-type"),
        (6, "unknown-plan"),
        (7, "unknown-priority"),
        (8, "unknown-ticket"),
        (9, "duplicate-ticket"),
        (10, "out-of-order"),
        (11, "unknown-priority"),
        (12, "invalid-field"),
        (13, "unknown-type"),
    ]
    assert "occurred_at" in result.rejections[2].detail
    assert "gold" in result.rejections[4].detail
    # The good ticket is unaffected by all of it.
    assert [e["type"] for e in result.events] == ["sla-warning", "sla-breach"]
    assert result.summary.read == 13 and result.summary.rejected == 12


def test_timestamps_are_normalised_to_utc(replay: ReplayFn) -> None:
    result = replay(
        [ev(1, "ticket-created", "T", "2026-11-24T05:00:00-05:00", plan="advanced", priority=1)],
        until="2026-11-25T00:00:00Z",
    )
    assert result.events[0]["started_at"] == "2026-11-24T10:00:00Z"


# --- finished timers (sla-timer-finished) --------------------------------------------------


def test_a_met_timer_is_recorded_with_its_business_time_excluding_pauses(
    replay: ReplayFn,
) -> None:
    # advanced priority 1: 1 hour on the clock. 10 minutes run, 20 paused, 20 run.
    result = replay(
        [
            {
                **ev(1, "ticket-created", "T", "2026-11-24T10:00:00Z", plan="advanced"),
                "priority": 1,
                "customer_id": "ACME",
            },
            ev(2, "status-changed", "T", "2026-11-24T10:10:00Z", status="pending"),
            ev(3, "status-changed", "T", "2026-11-24T10:30:00Z", status="open"),
            ev(4, "reply-sent", "T", "2026-11-24T10:50:00Z", author="agent"),
        ],
        until="2026-11-25T00:00:00Z",
    )
    (record,) = result.finished
    assert record == {
        "event_id": record["event_id"],
        "type": "sla-timer-finished",
        "ticket_id": "T",
        "customer_id": "ACME",
        "plan": "advanced",
        "priority": 1,
        "metric": "first_response",
        "cycle": 1,
        "result": "met",
        "started_at": "2026-11-24T10:00:00Z",
        "finished_at": "2026-11-24T10:50:00Z",
        "finished_by": "reply",
        "business_time": "PT30M",
        "target": "PT1H",
        "calendar": "24x7",
        "deadline": "2026-11-24T11:20:00Z",
        "policy_version": "presets-2026.11",
    }
    assert result.summary.met == 1


def test_a_breached_timer_that_stops_later_is_recorded_as_breached(replay: ReplayFn) -> None:
    result = replay(
        [
            ev(1, "ticket-created", "T", "2026-11-24T10:00:00Z", plan="advanced", priority=1),
            ev(2, "reply-sent", "T", "2026-11-24T13:00:00Z", author="agent"),
        ],
        until="2026-11-25T00:00:00Z",
    )
    (record,) = result.finished
    assert (record["result"], record["business_time"], record["finished_by"]) == (
        "breached",
        "PT3H",
        "reply",
    )
    assert "customer_id" not in record  # absent, not null, without a customer
    assert result.summary.met == 0 and result.summary.breaches == 1


def test_solved_while_paused_is_met_with_no_deadline(replay: ReplayFn) -> None:
    result = replay(
        [
            ev(1, "ticket-created", "T", "2026-11-24T10:00:00Z", plan="advanced", priority=1),
            ev(2, "status-changed", "T", "2026-11-24T10:20:00Z", status="pending"),
            ev(3, "status-changed", "T", "2026-11-24T12:00:00Z", status="solved"),
        ],
        until="2026-11-25T00:00:00Z",
    )
    (record,) = result.finished
    assert (record["result"], record["business_time"], record["finished_by"]) == (
        "met",
        "PT20M",
        "solved",
    )
    assert record["deadline"] is None


def test_each_cycle_finishes_once_with_its_own_id_and_unmeasured_timers_not_at_all(
    replay: ReplayFn,
) -> None:
    result = replay(
        [
            ev(1, "ticket-created", "T", "2026-11-23T08:00:00Z", plan="vip", priority=1),
            ev(2, "reply-sent", "T", "2026-11-23T08:20:00Z", author="agent"),
            ev(3, "reply-sent", "T", "2026-11-23T09:00:00Z", author="customer"),
            ev(4, "reply-sent", "T", "2026-11-23T10:00:00Z", author="agent"),
            ev(5, "reply-sent", "T", "2026-11-23T11:00:00Z", author="customer"),
            ev(6, "status-changed", "T", "2026-11-23T16:00:00Z", status="closed"),
            # Basic has no targets: its timers are not measured, so never recorded.
            ev(7, "ticket-created", "B", "2026-11-23T08:00:00Z", plan="basic"),
            ev(8, "reply-sent", "B", "2026-11-23T18:00:00Z", author="agent"),
        ],
        until="2026-11-24T00:00:00Z",
    )
    assert [
        (f["metric"], f["cycle"], f["result"], f["business_time"]) for f in result.finished
    ] == [
        ("first_response", 1, "met", "PT20M"),
        ("follow_up", 1, "met", "PT1H"),
        ("follow_up", 2, "breached", "PT5H"),
    ]
    assert len({f["event_id"] for f in result.finished}) == 3
    again = replay([ev(1, "ticket-created", "T", "2026-11-23T08:00:00Z", plan="vip", priority=1),
                    ev(2, "reply-sent", "T", "2026-11-23T08:20:00Z", author="agent")])  # fmt: skip
    assert again.finished[0]["event_id"] == result.finished[0]["event_id"]
    met = sum(f["result"] == "met" for f in result.finished)
    assert met == result.summary.met == 2


# --- policy history: a ticket is judged by the version in force when it was created ---------


def test_each_ticket_keeps_the_policy_version_it_was_created_under() -> None:

    def version(name: str, p1: str, p2: str, effective_from: str | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {
            "version": name,
            "calendars": {"clock": {"always_open": True}},
            "plans": {
                "gold": {
                    "default_priority": 1,
                    "priorities": {
                        1: {"first_response": {"target": p1, "calendar": "clock"}},
                        2: {"first_response": {"target": p2, "calendar": "clock"}},
                    },
                }
            },
        }
        if effective_from:
            data["effective_from"] = effective_from
        return data

    policy = Policy.from_mapping(
        {"versions": [version("v1", "PT1H", "PT4H"), version("v2", "PT2H", "PT30M",
                                                             "2026-11-24T12:00:00Z")]}
    )  # fmt: skip
    result = run_replay(
        [
            ev(1, "ticket-created", "LATE-1", "2026-11-24T11:00:00Z", plan="gold"),  # v1
            ev(2, "ticket-created", "OLD", "2026-11-24T11:30:00Z", plan="gold"),  # v1: 1 h
            ev(3, "ticket-created", "NEW", "2026-11-24T12:00:00Z", plan="gold"),  # v2: 2 h
            # After the change, OLD's reclassification still uses v1's P2 target (4 h).
            ev(4, "priority-changed", "OLD", "2026-11-24T12:10:00Z", priority=2),
            ev(5, "ticket-created", "LATE-2", "2026-11-24T12:30:00Z", plan="gold"),  # v2
            ev(6, "reply-sent", "NEW", "2026-11-24T13:00:00Z", author="agent"),
            ev(7, "reply-sent", "OLD", "2026-11-24T14:00:00Z", author="agent"),
        ],
        policy,
        until="2026-11-25T00:00:00Z",
    )
    assert result.rejections == []
    assert [
        (e["ticket_id"], e["type"], e["due_at"], e["policy_version"]) for e in result.events
    ] == [
        ("LATE-1", "sla-warning", "2026-11-24T11:45:00Z", "v1"),
        ("LATE-1", "sla-breach", "2026-11-24T12:00:00Z", "v1"),
        ("LATE-2", "sla-warning", "2026-11-24T14:00:00Z", "v2"),
        ("LATE-2", "sla-breach", "2026-11-24T14:30:00Z", "v2"),
    ]
    finished = {f["ticket_id"]: f for f in result.finished}
    assert (finished["OLD"]["policy_version"], finished["OLD"]["target"]) == ("v1", "PT4H")
    assert (finished["OLD"]["result"], finished["OLD"]["business_time"]) == ("met", "PT2H30M")
    assert (finished["NEW"]["policy_version"], finished["NEW"]["target"]) == ("v2", "PT2H")
    assert all(e["policy_version"] == "v1" for e in result.events if e["ticket_id"] == "OLD")
    assert not [e for e in result.events if e["ticket_id"] == "NEW" and e["type"] == "sla-breach"]


def test_an_engine_that_only_counts_finished_timers(presets: Policy) -> None:
    """`measure=False` (replay without --finished-timers, a worker without the topic):
    the same outputs and counts, no business time, and no finished-timer records."""
    from worker.core.engine import Engine, TimerFinished, finished_record
    from worker.replay import Replay

    lines = [
        json.dumps(e)
        for e in (
            ev(1, "ticket-created", "T", "2026-11-24T10:00:00Z", plan="advanced", priority=1),
            ev(2, "reply-sent", "T", "2026-11-24T10:20:00Z", author="agent"),
        )
    ]
    engine = Engine(presets, measure=False)
    counted = Replay(engine, lambda e: None, lambda r: None)
    counted.feed(lines)
    assert counted.finish().met == 1
    ticket = engine.apply(None, parse(lines[0])).ticket
    (finished,) = engine.apply(ticket, parse(lines[1])).emissions
    assert type(finished) is TimerFinished and finished.met and finished.business_time is None
    with pytest.raises(ValueError, match="measure=False"):
        finished_record(finished)
    with pytest.raises(ValueError, match="measure=True"):
        Replay(engine, lambda e: None, lambda r: None, on_finished=lambda f: None)


def parse(line: str) -> Any:
    from worker.core.events import parse_event

    return parse_event(line)
