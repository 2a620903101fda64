"""Stored ticket state round-trips exactly, and a restored engine carries on identically."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from worker.core.engine import Engine
from worker.core.policy import Policy
from worker.core.state_codec import StateFormatError, dump_ticket, load_ticket, running_timers
from worker.presets import presets_text
from worker.replay import Replay
from worker.traffic import synthetic_stream


def test_round_trip_is_exact_through_json(presets: Policy) -> None:
    lines, _ = synthetic_stream(20_000, 2_000, seed=3)
    replay = Replay(Engine(presets), lambda e: None, lambda r: None)
    replay.feed(lines[:12_000])
    assert replay.tickets
    for ticket in replay.tickets.values():
        restored = load_ticket(json.loads(json.dumps(dump_ticket(ticket))))
        assert Engine(presets).refresh(restored) == ticket


def test_restoring_state_midway_changes_no_output(presets: Policy) -> None:
    """What a crash and recovery from the changelog must guarantee, at the core level."""
    lines, _ = synthetic_stream(20_000, 2_000, seed=5)
    whole: list[str] = []
    Replay(Engine(presets), lambda e: whole.append(e.model_dump_json()), print).feed(lines)

    resumed: list[str] = []
    first = Replay(Engine(presets), lambda e: resumed.append(e.model_dump_json()), print)
    first.feed(lines[:9_000])
    stored = {k: json.dumps(dump_ticket(t)) for k, t in first.tickets.items()}

    second = Replay(Engine(presets), lambda e: resumed.append(e.model_dump_json()), print)
    for data in stored.values():
        second.restore(second.engine.refresh(load_ticket(json.loads(data))))
    for number, line in enumerate(lines[9_000:], start=9_001):
        second.feed_line(number, line)
    assert resumed == whole and len(whole) > 100


def test_unknown_format_is_refused(presets: Policy) -> None:
    with pytest.raises(StateFormatError, match="unsupported ticket state format 99"):
        load_ticket({"v": 99})


def test_the_timer_summary_reads_stored_state_without_decoding_it(presets: Policy) -> None:
    engine = Engine(presets)
    replay = Replay(engine, lambda e: None, lambda r: None)
    lines, _ = synthetic_stream(2_000, 200, seed=5)
    replay.feed(lines)
    for ticket in replay.tickets.values():
        stored = json.loads(json.dumps(dump_ticket(ticket)))
        summary = running_timers(stored)
        if ticket.exempt:
            assert summary is None
            continue
        assert summary is not None
        plan, priority, paused, clocks = summary
        assert (plan, priority, paused) == (ticket.plan, ticket.priority, ticket.paused)
        running = [c for c in (ticket.first_response, ticket.follow_up) if c is not None]
        assert clocks == [(c.metric, c.breached) for c in running]
    assert running_timers({"held": [], "p": 0}) is None  # held events are not a ticket


def test_customer_id_round_trips_and_state_without_it_still_loads(presets: Policy) -> None:
    lines, _ = synthetic_stream(2_000, 200, seed=3, customers=7)
    replay = Replay(Engine(presets), lambda e: None, lambda r: None)
    replay.feed(lines)
    ticket = replay.tickets["T-0000009"]
    assert ticket.customer_id == "C-0002"
    stored = json.loads(json.dumps(dump_ticket(ticket)))
    assert stored["cust"] == "C-0002" and load_ticket(stored) == ticket
    # State written before customer_id existed (format 1 without "cust") reads as None,
    # and a ticket without a customer stores no "cust" key at all.
    del stored["cust"]
    assert load_ticket(stored).customer_id is None
    old = load_ticket(stored)
    assert "cust" not in dump_ticket(old)


def test_the_policy_version_is_stored_and_state_without_it_gets_the_one_in_force() -> None:
    def version(name: str, effective_from: str | None = None) -> dict[str, object]:
        data: dict[str, object] = {
            "version": name,
            "calendars": {"clock": {"always_open": True}},
            "plans": {"gold": {"default_priority": 1, "priorities": {1: {
                "first_response": {"target": "PT1H", "calendar": "clock"}}}}},
        }  # fmt: skip
        if effective_from:
            data["effective_from"] = effective_from
        return data

    policy = Policy.from_mapping(
        {"versions": [version("v1"), version("v2", "2026-11-24T12:00:00Z")]}
    )
    engine = Engine(policy)
    replay = Replay(engine, lambda e: None, lambda r: None)
    replay.feed(
        [
            '{"event_id": "1", "type": "ticket-created", "ticket_id": "A", "plan": "gold",'
            ' "occurred_at": "2026-11-24T11:00:00Z"}',
            '{"event_id": "2", "type": "status-changed", "ticket_id": "A", "status": "open",'
            ' "occurred_at": "2026-11-24T12:30:00Z"}',
        ]
    )
    stored = dump_ticket(replay.tickets["A"])
    assert stored["pv"] == "v1"  # created before v2: judged by v1 for good
    assert engine.refresh(load_ticket(stored)).policy_version == "v1"
    del stored["pv"]  # stored before versions were recorded: the one at its last event
    assert engine.refresh(load_ticket(stored)).policy_version == "v2"


STATE_V1 = Path(__file__).parent.parent / "data" / "state-v1"


def test_state_written_by_the_previous_release_is_timed_on_exactly(presets: Policy) -> None:
    """An upgrade in place: this version restores the changelog of the release before
    goal policies (format 1) and publishes, byte for byte, what that release did."""
    published: list[str] = []
    replay = Replay(
        Engine(presets),
        lambda e: published.append(e.model_dump_json()),
        print,
        on_finished=lambda f: published.append(f.model_dump_json()),
    )
    for line in (STATE_V1 / "tickets.jsonl").read_text().splitlines():
        stored = json.loads(line)
        assert stored["v"] == 1
        ticket = replay.engine.refresh(load_ticket(stored))
        assert dump_ticket(ticket) == stored  # and it is written back as format 1
        replay.restore(ticket)
    lines, _ = synthetic_stream(4_000, 400, seed=5, customers=30)
    for number, line in enumerate(lines[1_800:], start=1_801):
        replay.feed_line(number, line)
    replay.finish(datetime.fromisoformat("2026-12-31T00:00:00+00:00"))
    assert published == (STATE_V1 / "expected-outputs.jsonl").read_text().splitlines()


GOAL_POLICY = Policy.from_mapping(
    {
        **yaml.safe_load(presets_text()),
        "goals": [
            {
                "name": "vip",
                "when": {"plan": "vip", "priority": [1, 2, 3]},
                "calendar": {
                    "by": "group",
                    "map": {"a": "cet-business", "b": "24x7"},
                    "default": "sk-business",
                },
                "targets": {
                    "first_response": "PT2H",
                    "follow_up": "PT8H",
                    "resolution": "PT24H",
                    "periodic_update": "PT8H",
                    "requester_wait": "PT16H",
                    "agent_work": "PT8H",
                },
            }
        ],
    }
)


def goal_stream(events: int, tickets: int, seed: int) -> list[bytes]:
    """The synthetic stream, with a group move beside every other priority change."""
    lines, _ = synthetic_stream(events, tickets, seed=seed)
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


def test_goal_tickets_round_trip_as_format_2_and_resume_identically() -> None:
    lines = goal_stream(20_000, 2_000, seed=5)
    whole: list[str] = []
    Replay(Engine(GOAL_POLICY), lambda e: whole.append(e.model_dump_json()), print).feed(lines)
    assert any('"goal":"vip"' in line for line in whole)

    resumed: list[str] = []
    first = Replay(Engine(GOAL_POLICY), lambda e: resumed.append(e.model_dump_json()), print)
    first.feed(lines[:9_000])
    stored = {k: json.dumps(dump_ticket(t)) for k, t in first.tickets.items()}
    assert all(json.loads(data)["v"] == 2 for data in stored.values())
    for ticket in first.tickets.values():
        restored = load_ticket(json.loads(json.dumps(dump_ticket(ticket))))
        Engine(GOAL_POLICY).refresh(restored)
        # The due caches are not stored. A running timer's is a lower bound of its exact
        # due instant until that bound comes due (`Timer.due_bound`): the restored one
        # may be that bound where the original has computed the exact instant since.
        for mine, theirs in zip(restored.timers or (), ticket.timers or (), strict=True):
            assert (mine.due is None) == (theirs.due is None)
            assert mine.due is None or theirs.due is None or mine.due <= theirs.due
            mine.due = theirs.due
        assert (restored.due is None) == (ticket.due is None)
        assert restored.due is None or ticket.due is None or restored.due <= ticket.due
        restored.due = ticket.due
        assert restored == ticket

    second = Replay(Engine(GOAL_POLICY), lambda e: resumed.append(e.model_dump_json()), print)
    for data in stored.values():
        second.restore(second.engine.refresh(load_ticket(json.loads(data))))
    for number, line in enumerate(lines[9_000:], start=9_001):
        second.feed_line(number, line)
    assert resumed == whole and len(whole) > 100
