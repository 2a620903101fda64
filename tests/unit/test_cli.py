"""`sla-worker` as a user runs it: exit codes, stdout/stderr, files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from worker import __version__
from worker.cli import main
from worker.compiled import describe

ROOT = Path(__file__).parent.parent.parent
REFERENCE = ROOT / "tests" / "data" / "reference-example" / "events.jsonl"
EXAMPLES = ROOT / "examples" / "tickets.jsonl"


@pytest.fixture
def cli() -> CliRunner:
    return CliRunner()


def test_replay_writes_events_to_stdout_and_a_summary_to_stderr(cli: CliRunner) -> None:
    result = cli.invoke(main, ["replay", str(REFERENCE), "--until", "2026-11-28T00:00:00Z"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["type"] for e in lines] == ["sla-warning", "sla-breach"] * 2
    assert "events read: 7, applied: 7, rejected: 0, duplicates: 0" in result.stderr
    assert "warnings: 2, breaches: 2, timers met: 1" in result.stderr


def test_replay_defaults_until_to_the_last_event(cli: CliRunner) -> None:
    result = cli.invoke(main, ["replay", str(REFERENCE)])
    # The last event is Thursday 08:30Z; only EX-100 has come due by then. It breached
    # but was never answered, so it still runs, as does EX-300's.
    assert [json.loads(x)["ticket_id"] for x in result.stdout.splitlines()] == ["EX-100"] * 2
    assert "timers still running: 2" in result.stderr


def test_replay_reads_stdin(cli: CliRunner) -> None:
    result = cli.invoke(
        main, ["replay", "-", "--until", "2026-11-28T00:00:00Z"], input=REFERENCE.read_bytes()
    )
    assert result.exit_code == 0 and len(result.stdout.splitlines()) == 4


def test_rejected_lines_go_to_stderr_with_line_numbers(cli: CliRunner) -> None:
    result = cli.invoke(main, ["replay", str(EXAMPLES)])
    assert result.exit_code == 0
    assert "line 25: rejected (unknown-ticket)" in result.stderr
    assert "line 26: rejected (naive-timestamp)" in result.stderr


def test_rejects_file_and_strict_exit_status(cli: CliRunner, tmp_path: Path) -> None:
    rejects = tmp_path / "rejects.jsonl"
    output = tmp_path / "out.jsonl"
    result = cli.invoke(
        main,
        ["replay", str(EXAMPLES), "--rejects", str(rejects), "--output", str(output), "--strict"],
    )
    assert result.exit_code == 1
    records = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert [(r["line"], r["reason"], r["ticket_id"]) for r in records] == [
        (25, "unknown-ticket", "HD-1009"),
        (26, "naive-timestamp", None),
    ]
    assert output.read_text().count("\n") == len(output.read_text().splitlines()) > 0
    assert "line 25" not in result.stderr


def test_strict_passes_when_nothing_is_rejected(cli: CliRunner) -> None:
    assert cli.invoke(main, ["replay", str(REFERENCE), "--strict"]).exit_code == 0


@pytest.mark.parametrize(
    ("until", "message"),
    [
        ("2026-11-01T00:00:00Z", "is before the last event"),
        ("2026-11-28T00:00:00", "not an RFC 3339 timestamp with an offset"),
        ("tomorrow", "not an RFC 3339 timestamp"),
    ],
)
def test_bad_until_is_a_usage_error(cli: CliRunner, until: str, message: str) -> None:
    result = cli.invoke(main, ["replay", str(REFERENCE), "--until", until])
    assert result.exit_code == 2 and message in result.stderr


def test_replay_with_a_policy_file(cli: CliRunner, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        yaml.safe_dump(
            {
                "version": "custom-1",
                "calendars": {"clock": {"always_open": True}},
                "plans": {
                    "vip": {
                        "default_priority": 3,
                        "priorities": {
                            3: {"first_response": {"target": "PT30M", "calendar": "clock"}}
                        },
                    }
                },
            }
        )
    )
    result = cli.invoke(
        main,
        ["replay", str(REFERENCE), "--policies", str(policy), "--until", "2026-11-28T00:00:00Z"],
    )
    events = [json.loads(x) for x in result.stdout.splitlines()]
    assert {e["policy_version"] for e in events} == {"custom-1"}
    # advanced and professional are unknown plans in this file.
    assert "rejected (unknown-plan)" in result.stderr


def test_invalid_policy_file_stops_replay_with_its_errors(cli: CliRunner, tmp_path: Path) -> None:
    policy = tmp_path / "bad.yaml"
    policy.write_text("version: x\nplans: {}\n")
    result = cli.invoke(main, ["replay", str(REFERENCE), "--policies", str(policy)])
    assert (
        result.exit_code == 1 and "plans: Dictionary should have at least 1 item" in result.stderr
    )


def test_policies_validate(cli: CliRunner, tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(cli.invoke(main, ["policies", "show"]).stdout)
    result = cli.invoke(main, ["policies", "validate", str(good)])
    assert result.exit_code == 0
    assert (
        "ok (version presets-2026.11; plans: advanced, basic, professional, vip)" in result.stdout
    )

    bad = tmp_path / "bad.yaml"
    bad.write_text(good.read_text().replace("target: PT6H", "target: PT"))
    result = cli.invoke(main, ["policies", "validate", str(bad)])
    assert result.exit_code == 1
    assert (
        f"{bad}: plans.professional.priorities.2.first_response.target: invalid duration 'PT'"
        in (result.stderr)
    )

    presets = yaml.safe_load(good.read_text())
    later = {**presets, "version": "2027.01", "effective_from": "2027-01-01T00:00:00+01:00"}
    history = tmp_path / "history.yaml"
    history.write_text(yaml.safe_dump({"versions": [presets, later]}))
    result = cli.invoke(main, ["policies", "validate", str(history)])
    assert result.exit_code == 0, result.output
    assert "ok (version presets-2026.11, 2027.01 from 2026-12-31T23:00:00+00:00;" in result.stdout


def test_version_and_help(cli: CliRunner) -> None:
    # The version line also says whether the hot path runs compiled (worker/compiled.py).
    assert cli.invoke(main, ["--version"]).stdout == f"sla-worker {__version__} ({describe()})\n"
    help_text = cli.invoke(main, ["--help"]).stdout
    for command in ("replay", "policies", "schemas"):
        assert command in help_text


HOSTILE_EXAMPLE = (
    '{"event_id": "a1", "type": "ticket-created", "ticket_id": "T1", '
    '"occurred_at": "2026-11-30T09:00:00Z", "plan": "vip", "priority": 1}\n'
    '{"event_id": "x1", "type": "reply-sent", "ticket_id": "NOPE", '
    '"occurred_at": "2099-01-01T00:00:00Z", "author": "agent"}\n'
    '{"event_id": "a2", "type": "reply-sent", "ticket_id": "T1", '
    '"occurred_at": "2026-11-30T09:10:00Z", "author": "agent"}\n'
    '{"event_id": "a1", "type": "ticket-created", "ticket_id": "T1", '
    '"occurred_at": "2099-01-01T00:00:00Z", "plan": "vip", "priority": 1}\n'
)


def test_rejected_and_duplicate_lines_never_move_the_clock(cli: CliRunner) -> None:
    """Issue #12: a rejected line dated 2099 (and a duplicate dated 2099) must not fire
    T1's timer, which its own reply met ten minutes after creation."""
    args = ["replay", "-", "--until", "2026-11-30T09:30:00Z", "--now", "2099-06-01T00:00:00Z"]
    result = cli.invoke(main, args, HOSTILE_EXAMPLE)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert "applied: 2, rejected: 1, duplicates: 1" in result.stderr
    assert "warnings: 0, breaches: 0, timers met: 1" in result.stderr


def test_future_timestamps_are_rejected_against_now(cli: CliRunner, tmp_path: Path) -> None:
    """With the wall clock of 2026 (here: --now), the 2099 lines are from the future."""
    out = tmp_path / "rejects.jsonl"
    args = ["replay", "-", "--now", "2026-11-30T10:00:00Z", "--rejects", str(out)]
    result = cli.invoke(main, args, HOSTILE_EXAMPLE)
    assert result.exit_code == 0, result.output
    rejects = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["line"], r["reason"]) for r in rejects] == [
        (2, "future-timestamp"),
        (4, "future-timestamp"),
    ]
    assert "at most 0:05:00 is allowed" in rejects[0]["detail"]
    skewed = cli.invoke(main, [*args, "--max-clock-skew-seconds", "1e10"], HOSTILE_EXAMPLE)
    assert skewed.exit_code == 0 and "future-timestamp" not in out.read_text()


def test_too_long_lines_are_rejected_unparsed(cli: CliRunner) -> None:
    line = '{"event_id": "' + "x" * 200 + '"}\n'
    result = cli.invoke(main, ["replay", "-", "--max-message-bytes", "100"], line)
    assert "line 1: rejected (too-large): 217 bytes; the limit is 100" in result.stderr


def test_finished_timers_join_the_output_and_leave_it_unchanged_otherwise(
    cli: CliRunner,
) -> None:
    args = ["replay", str(EXAMPLES), "--until", "2026-12-05T00:00:00Z"]
    args += ["--now", "2026-12-05T00:00:00Z"]
    plain = cli.invoke(main, args)
    with_finished = cli.invoke(main, [*args, "--finished-timers"])
    assert plain.exit_code == with_finished.exit_code == 0
    records = [json.loads(x) for x in with_finished.stdout.splitlines()]
    finished = [r for r in records if r["type"] == "sla-timer-finished"]
    # The other lines are exactly the plain replay's, in the same order.
    others = [x for x in with_finished.stdout.splitlines() if "sla-timer-finished" not in x]
    assert others == plain.stdout.splitlines()
    # Every met timer of the summary, plus the breached ones that stopped later.
    assert sum(r["result"] == "met" for r in finished) == 4  # "timers met: 4"
    assert "timers met: 4" in with_finished.stderr
    assert {r["result"] for r in finished} == {"met", "breached"}
