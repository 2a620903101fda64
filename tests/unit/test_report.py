"""`sla-worker report`: its numbers agree with the replay that produced its input."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from click.testing import CliRunner

from tests.replaying import ev
from worker.cli import main
from worker.core.engine import Engine
from worker.core.policy import Policy
from worker.replay import Replay, Summary
from worker.report import BREAKDOWNS, build_report, nearest_rank, read_records, write_csv
from worker.traffic import synthetic_stream


def replayed(policy: Policy, lines: list[bytes] | list[str]) -> tuple[list[str], Summary]:
    """What `sla-worker replay --finished-timers` writes, and its summary."""
    out: list[str] = []
    replay = Replay(
        Engine(policy),
        lambda e: out.append(e.model_dump_json()),
        lambda r: None,
        on_finished=lambda f: out.append(f.model_dump_json()),
    )
    replay.feed(lines)
    return out, replay.finish()


@pytest.fixture(scope="module")
def synthetic(presets: Policy) -> tuple[list[str], Summary]:
    lines, _ = synthetic_stream(30_000, 3_000, seed=17, customers=9)
    return replayed(presets, lines)


@pytest.mark.parametrize("period", ["week", "month"])
def test_totals_agree_with_the_replay_summary(
    synthetic: tuple[list[str], Summary], period: Any
) -> None:
    output, summary = synthetic
    report = build_report(read_records(output), period)
    totals = report["totals"]
    assert totals["met"] == summary.met and totals["breached"] == summary.breaches
    assert totals["started"] == summary.met + summary.breaches
    assert report["source"]["warnings"] == summary.warnings
    assert report["source"]["breaches"] == summary.breaches
    assert len(report["breached"]) == summary.breaches
    # Every breakdown partitions the same timers.
    for name, _ in BREAKDOWNS:
        for stat in ("started", "met", "breached", "first_response_count"):
            assert sum(row[stat] for row in report[name]) == totals[stat], (name, stat)
    assert {row["customer_id"] for row in report["by_customer"]} == {f"C-{n:04d}" for n in range(9)}


def test_a_hand_worked_report(presets: Policy) -> None:
    # advanced P1: first response 1 hour on the clock.
    lines = [
        json.dumps(e)
        for e in [
            {
                **ev(1, "ticket-created", "A", "2026-11-30T10:00:00Z", plan="advanced"),
                "priority": 1,
                "customer_id": "ACME",
            },
            ev(2, "reply-sent", "A", "2026-11-30T10:30:00Z", author="agent"),  # met in 30 min
            ev(3, "ticket-created", "B", "2026-11-30T11:00:00Z", plan="advanced", priority=1),
            ev(4, "reply-sent", "B", "2026-11-30T13:00:00Z", author="agent"),  # breached, 2 h
            ev(5, "ticket-created", "C", "2026-12-01T09:00:00Z", plan="advanced", priority=1),
            ev(6, "ticket-created", "D", "2026-12-01T12:00:00Z", plan="advanced", priority=1),
        ]
    ]
    output, summary = replayed(presets, lines)
    # C breaches and is still running at the end (D's creation at 12:00); D runs, unjudged.
    report = build_report(read_records(output), "week")
    assert report["totals"] == {
        "started": 3,
        "met": 1,
        "breached": 2,
        "achievement_pct": 33.33,
        "first_response_count": 2,
        "first_response_median_s": 1800.0,
        "first_response_p90_s": 7200.0,
        "first_response_median_pct_of_target": 50.0,
        "first_response_p90_pct_of_target": 200.0,
    }
    assert [(r["period"], r["started"]) for r in report["by_period"]] == [
        ("2026-W49", 3)  # Monday 30 November and Tuesday 1 December: ISO week 49
    ]
    month = build_report(read_records(output), "month")
    assert [(r["period"], r["met"], r["breached"]) for r in month["by_period"]] == [
        ("2026-11", 1, 1),
        ("2026-12", 0, 1),
    ]
    assert [(r["customer_id"], r["met"]) for r in report["by_customer"]] == [
        (None, 0),
        ("ACME", 1),
    ]
    assert [
        (b["ticket_id"], b["finished_at"], b["business_time_s"]) for b in report["breached"]
    ] == [
        ("B", "2026-11-30T13:00:00Z", 7200.0),
        ("C", None, None),
    ]
    assert summary.met == 1 and summary.breaches == 2


def test_nearest_rank_takes_values_that_occurred() -> None:
    values = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]
    assert (nearest_rank(values, 50), nearest_rank(values, 90)) == (5.0, 9.0)
    assert nearest_rank([7.0], 90) == 7.0


def test_csv_holds_every_group(synthetic: tuple[list[str], Summary]) -> None:
    report = build_report(read_records(synthetic[0]), "month")
    out = io.StringIO()
    write_csv(report, out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert len(rows) == 1 + sum(len(report[name]) for name, _ in BREAKDOWNS)
    total = rows[0]
    assert total["breakdown"] == "total" and int(total["met"]) == report["totals"]["met"]
    assert {r["breakdown"] for r in rows} == {
        "total", "period", "plan", "priority", "metric", "customer", "plan+priority", "all",
    }  # fmt: skip


def test_command_line(synthetic: tuple[list[str], Summary], tmp_path: Any) -> None:
    records = tmp_path / "out.jsonl"
    records.write_text("\n".join(synthetic[0]) + "\n")
    result = CliRunner().invoke(main, ["report", str(records), "--period", "week"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["totals"]["met"] == synthetic[1].met
    assert f"met: {synthetic[1].met}, breached: {synthetic[1].breaches}" in result.stderr

    breaches = tmp_path / "breaches.csv"
    result = CliRunner().invoke(main, ["report", str(records), "--breaches-csv", str(breaches)])
    assert result.exit_code == 0 and result.stdout == ""
    assert len(breaches.read_text().splitlines()) == 1 + synthetic[1].breaches

    wrong = tmp_path / "events.jsonl"  # an events file is not a replay's output
    wrong.write_text(json.dumps({**ev(1, "sla-breach", "T", "2026-11-30T10:00:00Z")}) + "\n")
    result = CliRunner().invoke(main, ["report", str(wrong)])
    assert result.exit_code == 1 and "not the output of replay or audit" in result.stderr
