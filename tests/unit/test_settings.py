"""Worker settings: flags, environment, settings file, validation, and secrets that never
leak."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
import pytest
from pydantic import ValidationError

from worker.cli_options import parse_settings
from worker.kafka.topics import client_options
from worker.settings import AuditSettings, WorkerSettings, worker_command


def settings(args: list[str]) -> WorkerSettings:
    return parse_settings(WorkerSettings, args)


def audit_settings(args: list[str]) -> AuditSettings:
    return parse_settings(AuditSettings, args, WorkerSettings)


def test_defaults() -> None:
    s = settings([])
    assert s.input_topics == ["tickets"] and s.partitions == 6
    assert (s.warnings_topic, s.breaches_topic, s.dead_letter_topic) == (
        "sla-warnings",
        "sla-breaches",
        "sla-dead-letter",
    )
    assert set(client_options(s)) == {"bootstrap_servers", "security_protocol"}


def test_environment_and_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "a:9092,b:9092")
    monkeypatch.setenv("SLA_PARTITIONS", "12")
    monkeypatch.setenv("SLA_INPUT_TOPICS", "created,replies")
    s = settings(["--partitions", "3"])
    assert s.bootstrap_servers == "a:9092,b:9092"
    assert s.partitions == 3  # flags win over the environment
    assert s.input_topics == ["created", "replies"]


def test_sasl_needs_credentials_and_never_shows_the_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ValidationError, match="sasl_username and sasl_password are required"):
        WorkerSettings(security_protocol="SASL_PLAINTEXT")
    monkeypatch.setenv("SLA_SASL_PASSWORD", "s3cret")
    s = settings(
        [
            "--security-protocol",
            "SASL_PLAINTEXT",
            "--sasl-username",
            "sla",
            "--sasl-mechanism",
            "SCRAM-SHA-256",
        ]
    )
    assert "s3cret" not in json.dumps(s.redacted()) and "s3cret" not in repr(s)
    options = client_options(s)
    assert options["sasl_plain_username"] == "sla"
    assert options["sasl_plain_password"] == "s3cret"
    assert options["sasl_mechanism"] == "SCRAM-SHA-256"


def test_ssl_uses_a_verifying_context() -> None:
    s = WorkerSettings(security_protocol="SSL")
    context = s.ssl_context()
    assert context is not None and context.check_hostname
    assert client_options(s)["ssl_context"] is not None


@pytest.mark.parametrize(
    "args",
    [
        ["--partitions", "0"],
        ["--security-protocol", "TLS"],
        ["--input-topics", ","],
        ["--session-timeout-seconds", "1"],
        ["--no-such-setting", "x"],
    ],
)
def test_invalid_settings_are_refused(args: list[str]) -> None:
    with pytest.raises(click.UsageError):
        settings(args)


def test_advertised_url() -> None:
    assert settings(["--web-host", "127.0.0.1", "--web-port", "7000"]).canonical_url == (
        "http://127.0.0.1:7000"
    )
    assert settings(["--advertised-url", "http://w1:6066"]).canonical_url == "http://w1:6066"


def test_worker_command_spells_the_flags_the_worker_parses() -> None:
    argv = worker_command(
        bootstrap_servers="k1:9092,k2:9092",
        input_topics=("created", "replies"),
        web_port=7000,
        timer_interval_seconds=0.5,
    )
    assert argv[:4] == [sys.executable, "-m", "worker", "worker"]
    parsed = settings(argv[4:])
    assert parsed.bootstrap_servers == "k1:9092,k2:9092"
    assert parsed.input_topics == ["created", "replies"]
    assert (parsed.web_port, parsed.timer_interval_seconds) == (7000, 0.5)
    with pytest.raises(ValueError, match="not worker settings: web_prot"):
        worker_command(web_prot=7000)
    with pytest.raises(ValueError, match="secrets never go on a command line: api_token"):
        worker_command(api_token="t0ken")


def test_an_invalid_setting_never_prints_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """pydantic shows a failed model's input in its message: settings hide it."""
    monkeypatch.setenv("SLA_SASL_PASSWORD", "s3cret-password")
    monkeypatch.setenv("SLA_API_TOKEN", "s3cret-token")
    with pytest.raises(click.UsageError) as caught:
        settings(["--security-protocol", "SASL_SSL"])  # no user name
    assert "sasl_username and sasl_password are required" in str(caught.value)
    assert "s3cret" not in str(caught.value)
    with pytest.raises(ValidationError) as raised:
        WorkerSettings(security_protocol="SASL_SSL")
    assert "s3cret" not in str(raised.value)


def test_api_token_from_the_environment_or_a_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert settings([]).api_token is None
    monkeypatch.setenv("SLA_API_TOKEN", "t0ken-env")
    s = settings([])
    assert s.api_token is not None and s.api_token.get_secret_value() == "t0ken-env"
    assert "t0ken" not in json.dumps(s.redacted()) and "t0ken" not in repr(s)
    monkeypatch.delenv("SLA_API_TOKEN")
    secret = tmp_path / "token"
    secret.write_text("t0ken-file\n")  # as a Kubernetes Secret mounts it
    s = settings(["--api-token-file", str(secret)])
    assert s.api_token is not None and s.api_token.get_secret_value() == "t0ken-file"
    assert "t0ken" not in json.dumps(s.redacted()) and "t0ken" not in repr(s)


@pytest.mark.parametrize(
    ("token", "args", "problem"),
    [
        ("a", ["--api-token-file", "/dev/null"], "not both"),
        (None, ["--api-token-file", "/no/such/file"], "cannot read it"),
        ("two words", [], "printable ASCII without spaces"),
        (None, ["--api-token-file", "/dev/null"], "printable ASCII without spaces"),  # empty
    ],
)
def test_unusable_api_tokens_are_refused(
    monkeypatch: pytest.MonkeyPatch, token: str | None, args: list[str], problem: str
) -> None:
    if token is not None:
        monkeypatch.setenv("SLA_API_TOKEN", token)
    with pytest.raises(click.UsageError, match=problem):
        settings(args)


@pytest.mark.parametrize(
    "args",
    [["--from", "yesterday"], ["--to", "2026-12-01T00:00:00"], ["--now", "noon"]],
)
def test_an_audit_window_needs_instants_with_an_offset(args: list[str]) -> None:
    """A mistyped instant is refused with the flag's name before anything connects."""
    with pytest.raises(click.UsageError, match="not an RFC 3339 timestamp with an offset"):
        audit_settings(args)


def test_an_audit_window_of_words_or_instants() -> None:
    audit = audit_settings(["--to", "2026-12-01T00:00:00+01:00"])
    assert (audit.start, audit.end, audit.now) == ("beginning", "2026-12-01T00:00:00+01:00", None)


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--to", "2026-12-01T00:00:00Z", "--now", "2026-11-30T00:00:00Z"], "is after --now"),
        (["--to", "2999-01-01T00:00:00Z"], "is after --now"),  # --now: the wall clock
        (["--from", "2026-12-01T00:00:00Z", "--to", "2026-11-01T00:00:00Z"], "is after --to"),
    ],
)
def test_an_audit_window_must_end_by_now_and_after_it_starts(args: list[str], problem: str) -> None:
    """A window ending after --now would judge records the worker cannot have fired yet
    (it never fires before the wall clock): refused, as a usage error."""
    with pytest.raises(click.UsageError, match=problem):
        audit_settings(args)


def test_the_audit_window_reads_only_its_own_environment_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`START`, `END`, `FROM` and `TO` are common names in a shell's environment: the
    window is read from its flags and `SLA_FROM`/`SLA_TO` only."""
    for name in ("START", "END", "FROM", "TO"):
        monkeypatch.setenv(name, "2020-01-01T00:00:00Z")
    audit = AuditSettings()
    assert (audit.start, audit.end) == ("beginning", "end")
