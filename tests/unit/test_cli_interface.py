"""One command line (#25): every command's help, errors, settings file and secrets read
and fail the same way, and docs/worker.md's settings table is the models' own."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from worker.cli import main
from worker.cli_options import parse_settings
from worker.settings import AuditSettings, WorkerSettings
from worker.settings_doc import PAGE, settings_table, with_table

ROOT = Path(__file__).parent.parent.parent
EVENTS = ROOT / "tests" / "data" / "reference-example" / "events.jsonl"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The settings of these tests are their own, whatever the shell exports."""
    import os

    for name in list(os.environ):
        if name.startswith("SLA_") or name == "KAFKA_BOOTSTRAP_SERVERS":
            monkeypatch.delenv(name)


def commands(group: click.Group = main, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every command and group, as the words that name it."""
    yield path
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from commands(command, (*path, name))
        else:
            yield (*path, name)


ALL_COMMANDS = list(commands())
ARTEFACTS = [
    re.compile(r"\{[^}]*null[^}]*\}"),  # {str,null}
    re.compile(r"<lambda>"),
    re.compile(r"list\["),
    re.compile(r"\(default: null\)"),
    re.compile(r"SecretStr|NoneType|Optional\["),
    re.compile(r"default factory"),
]


@pytest.mark.parametrize("words", ALL_COMMANDS, ids=lambda w: " ".join(w) or "sla-worker")
def test_every_help_is_free_of_type_artefacts(words: tuple[str, ...]) -> None:
    result = CliRunner().invoke(main, [*words, "--help"])
    assert result.exit_code == 0 and result.stderr == ""
    text = result.stdout
    assert text.startswith("Usage: sla-worker")
    for artefact in ARTEFACTS:
        assert not artefact.search(text), f"{artefact.pattern} in {' '.join(words)} --help"
    # One default per option: the help entry of an option says it once.
    entries = re.split(r"\n  (?=-)", text)
    for entry in entries:
        assert entry.count("default:") <= 1, entry


def test_every_summary_is_one_whole_line() -> None:
    text = CliRunner().invoke(main, ["--help"]).stdout
    listed = text.split("Commands:\n", 1)[1].splitlines()
    assert len(listed) == len(main.commands)
    for line in listed:
        assert line.rstrip().endswith("."), line
        assert "..." not in line


def test_the_settings_commands_show_each_variable_and_real_defaults() -> None:
    text = CliRunner().invoke(main, ["worker", "--help"]).stdout
    flat = " ".join(text.split())
    assert "--max-clock-skew-seconds SECONDS" in flat
    assert "SLA_MAX_CLOCK_SKEW_SECONDS; default: 300]" in flat
    assert "--input-topics TOPIC[,TOPIC...]" in flat and "default: tickets]" in flat
    assert "env var: SLA_BOOTSTRAP_SERVERS, KAFKA_BOOTSTRAP_SERVERS" in flat
    assert "--sasl-password " not in flat and "--api-token " not in flat
    audit = " ".join(CliRunner().invoke(main, ["audit", "--help"]).stdout.split())
    for flag in ("--now TIMESTAMP", "--from TIMESTAMP", "--to TIMESTAMP"):
        assert flag in audit
    assert "--no-verify" not in audit and "--no-finished-timers" not in audit
    replay = " ".join(CliRunner().invoke(main, ["replay", "--help"]).stdout.split())
    assert "--now TIMESTAMP" in replay and "[default: 300]" in replay


def bad(*args: str) -> tuple[str, ...]:
    return args


# (command line, what the one line must name)
BAD_INVOCATIONS = [
    # unknown flag
    (bad("replay", "-", "--nope"), "--nope"),
    (bad("report", "-", "--nope"), "--nope"),
    (bad("worker", "--nope"), "--nope"),
    (bad("audit", "--nope"), "--nope"),
    (bad("demo", "--bootstrap-servers", "k:9092", "--nope"), "--nope"),
    (bad("policies", "validate", "f.yaml", "--nope"), "--nope"),
    (bad("schemas", "export", "--nope"), "--nope"),
    # wrong type
    (bad("replay", "-", "--max-message-bytes", "many"), "--max-message-bytes"),
    (bad("replay", "-", "--now", "noon"), "--now"),
    (bad("report", "-", "--period", "year"), "--period"),
    (bad("worker", "--partitions", "six"), "--partitions"),
    (bad("worker", "--security-protocol", "TLS"), "--security-protocol"),
    (bad("audit", "--from", "yesterday"), "--from"),
    (bad("audit", "--now", "noon"), "--now"),
    (bad("demo", "--bootstrap-servers", "k:9092", "--web-port", "web"), "--web-port"),
    # out of range
    (bad("replay", "-", "--max-clock-skew-seconds", "-1"), "--max-clock-skew-seconds"),
    (bad("replay", "-", "--partitions", "0"), "--partitions"),
    (bad("worker", "--partitions", "0"), "--partitions"),
    (bad("worker", "--web-port", "70000"), "--web-port"),
    (bad("audit", "--finished-retention-days", "0"), "--finished-retention-days"),
    (bad("demo", "--bootstrap-servers", "k:9092", "--duration", "-1"), "--duration"),
    # missing value
    (bad("replay", "-", "--until"), "--until"),
    (bad("report", "-", "--json"), "--json"),
    (bad("worker", "--input-topics"), "--input-topics"),
    (bad("audit", "--now"), "--now"),
    (bad("schemas", "export", "--dir"), "--dir"),
    (bad("replay"), "EVENTS"),
    (bad("policies", "validate"), "FILE"),
    # a secret as a flag
    (bad("worker", "--sasl-password", "pw"), "SLA_SASL_PASSWORD"),
    (bad("worker", "--api-token=tok"), "SLA_API_TOKEN"),
    (bad("audit", "--sasl-password", "pw"), "--sasl-password-file"),
    # an unreadable settings file
    (bad("worker", "--config", "/no/such/worker.toml"), "--config /no/such/worker.toml"),
    (bad("audit", "--config", "/no/such/worker.toml"), "--config /no/such/worker.toml"),
    (bad("worker", "--config", str(EVENTS)), "not TOML"),
    # a window the audit cannot judge
    (bad("audit", "--to", "2999-01-01T00:00:00Z"), "--to"),
]


@pytest.mark.parametrize(
    ("args", "named"), BAD_INVOCATIONS, ids=[" ".join(a) for a, _ in BAD_INVOCATIONS]
)
def test_a_bad_invocation_is_one_line_naming_the_option(args: tuple[str, ...], named: str) -> None:
    result = CliRunner().invoke(main, list(args), input="")
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    command = " ".join(["sla-worker", *[a for a in args[:2] if not a.startswith("-")]])
    assert lines[0].startswith(f"{command.split()[0]} {args[0]}"), lines[0]
    assert named in lines[0]
    assert "pydantic.dev" not in lines[0] and "Usage:" not in lines[0]


def test_a_secret_given_as_a_flag_says_how_to_pass_it() -> None:
    result = CliRunner().invoke(main, ["worker", "--sasl-password", "hunter2"])
    assert result.stderr == (
        "sla-worker worker: --sasl-password: a secret on the command line is visible to "
        "anyone who runs ps; set SLA_SASL_PASSWORD or give --sasl-password-file FILE "
        "instead (see 'sla-worker worker --help')\n"
    )
    assert "hunter2" not in result.stderr


def test_a_runtime_error_is_one_line_exit_1(tmp_path: Path) -> None:
    records = tmp_path / "records.jsonl"
    records.write_text('{"type": "sla-timer-finished"}\n')
    result = CliRunner().invoke(main, ["report", str(records)])
    assert result.exit_code == 1 and result.stdout == ""
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("sla-worker report: RECORDS is not the output")


def test_a_file_that_cannot_be_written_is_one_line_exit_1(tmp_path: Path) -> None:
    output = tmp_path / "no" / "such" / "directory" / "out.jsonl"
    result = CliRunner().invoke(main, ["audit", "--output", str(output)])
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.startswith("sla-worker audit: [Errno 2] No such file or directory")
    assert len(result.stderr.splitlines()) == 1


def test_precedence_flag_then_environment_then_file_then_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "worker.toml"
    config.write_text(
        'partitions = 3\nreplication-factor = 2\napp_id = "from-file"\n'
        'input_topics = ["a", "b"]\nlog_level = "DEBUG"\n'
    )
    monkeypatch.setenv("SLA_PARTITIONS", "4")
    monkeypatch.setenv("SLA_REPLICATION_FACTOR", "5")
    monkeypatch.setenv("SLA_WEB_PORT", "7001")
    s = parse_settings(WorkerSettings, ["--config", str(config), "--partitions", "12"])
    assert s.partitions == 12  # flag over environment over file
    assert s.replication_factor == 5  # environment over file
    assert (s.app_id, s.input_topics, s.log_level) == ("from-file", ["a", "b"], "DEBUG")
    assert s.web_port == 7001  # environment over default
    assert s.warnings_topic == "sla-warnings"  # default
    monkeypatch.setenv("SLA_CONFIG", str(config))
    assert parse_settings(WorkerSettings, []).app_id == "from-file"


def test_the_audit_takes_what_it_shares_with_the_worker_file(tmp_path: Path) -> None:
    config = tmp_path / "worker.toml"
    config.write_text('input_topics = "x,y"\npartitions = 12\nweb_port = 7000\n')
    audit = parse_settings(AuditSettings, ["--config", str(config)], WorkerSettings)
    assert audit.input_topics == ["x", "y"]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("partitionz = 3\n", "partitionz: not a setting"),
        ('sasl_password = "pw-9f2c"\n', "sasl_password: a secret does not belong in the settings"),
        ('api_token = "tok-9f2c"\n', "set SLA_API_TOKEN or give api_token_file instead"),
        ("partitions = 0\n", "partitions: Input should be greater than or equal to 1"),
        ("partitions = [\n", "not TOML"),
    ],
)
def test_a_bad_settings_file_is_refused(tmp_path: Path, content: str, problem: str) -> None:
    config = tmp_path / "worker.toml"
    config.write_text(content)
    result = CliRunner().invoke(main, ["worker", "--config", str(config)])
    assert result.exit_code == 2 and result.stdout == ""
    assert len(result.stderr.splitlines()) == 1
    assert f"--config {config}: " in result.stderr and problem in result.stderr
    assert "9f2c" not in result.stderr


def test_a_bad_environment_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLA_PARTITIONS", "six")
    result = CliRunner().invoke(main, ["worker"])
    assert result.exit_code == 2
    assert result.stderr.startswith("sla-worker worker: SLA_PARTITIONS: Input should be")


def test_secrets_from_files(tmp_path: Path) -> None:
    password = tmp_path / "password"
    password.write_text("s3cret\n")
    s = parse_settings(
        WorkerSettings,
        [
            "--security-protocol",
            "SASL_SSL",
            "--sasl-username",
            "sla",
            "--sasl-password-file",
            str(password),
        ],
    )
    assert s.sasl_password is not None and s.sasl_password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(s) and "s3cret" not in str(s.redacted())


def test_a_secret_in_the_environment_and_a_file_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SLA_SASL_PASSWORD", "pw")
    with pytest.raises(click.UsageError, match="not both"):
        parse_settings(WorkerSettings, ["--sasl-password-file", str(tmp_path)])


def test_the_docs_settings_table_is_generated_from_the_model() -> None:
    text = PAGE.read_text(encoding="utf-8")
    assert settings_table() in text
    assert with_table(text) == text, "regenerate it: python -m worker.settings_doc"
