"""Worker and audit settings: flags, environment variables (prefix `SLA_`), a settings file.

Every setting is one field here, documented by its description; the `worker` and `audit`
command lines (`worker/cli_options.py`) and the settings table of docs/worker.md
(`worker/settings_doc.py`) are generated from these fields, so none of them can drift
apart. A field's `json_schema_extra` may name its metavar (`TIMESTAMP`) and its flag when
that is not the field's name (`--from`). A secret (`SecretStr`) has no flag: `ps` would
show it; it comes from the environment or from the file its `*_file` field names.
"""

from __future__ import annotations

import logging
import socket
import ssl
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    AwareDatetime,
    Field,
    SecretStr,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from worker.core.limits import DEFAULT_MAX_BYTES, DEFAULT_MAX_CLOCK_SKEW

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]

ENV_PREFIX = "SLA_"
DEFAULT_FINISHED_RETENTION_DAYS = 30.0


def _cli(metavar: str, flag: str | None = None) -> dict[str, Any]:
    """How a field reads on the command line, where its name and type do not say it."""
    return {"metavar": metavar} | ({} if flag is None else {"flag": flag})


def _read_secret(path: Path, name: str) -> SecretStr:
    """A secret from a file, as a mounted Kubernetes Secret holds it."""
    try:
        return SecretStr(path.read_text().strip())
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{name}: cannot read it ({exc})") from None


class KafkaConnection(BaseSettings):
    """How to reach Kafka: shared by the worker and the audit."""

    model_config = SettingsConfigDict(
        env_prefix="SLA_",
        extra="forbid",
        frozen=True,
        # A validation error would otherwise print its input, secrets included.
        hide_input_in_errors=True,
    )

    bootstrap_servers: str = Field(
        default="127.0.0.1:9092",
        validation_alias=AliasChoices(
            "SLA_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS", "bootstrap_servers"
        ),
        description="Kafka bootstrap servers, comma-separated host:port.",
        json_schema_extra=_cli("HOST:PORT[,HOST:PORT...]"),
    )
    security_protocol: SecurityProtocol = Field(
        default="PLAINTEXT", description="How to talk to the brokers."
    )
    sasl_mechanism: SaslMechanism = Field(
        default="SCRAM-SHA-512", description="SASL mechanism (with SASL_SSL/SASL_PLAINTEXT)."
    )
    sasl_username: str | None = Field(
        default=None, description="SASL user name.", json_schema_extra=_cli("NAME")
    )
    sasl_password: SecretStr | None = Field(
        default=None,
        description="SASL password, from the environment only (or --sasl-password-file); "
        "never logged.",
    )
    sasl_password_file: Path | None = Field(
        default=None,
        description="Read the SASL password from this file (e.g. a mounted Kubernetes "
        "Secret) instead of SLA_SASL_PASSWORD; surrounding whitespace is ignored.",
    )
    ssl_cafile: Path | None = Field(
        default=None,
        description="CA bundle for SSL/SASL_SSL (default: the system's CAs).",
    )
    ssl_certfile: Path | None = Field(default=None, description="Client certificate (mTLS).")
    ssl_keyfile: Path | None = Field(default=None, description="Client key (mTLS).")

    def ssl_context(self) -> ssl.SSLContext | None:
        if "SSL" not in self.security_protocol:
            return None
        context = ssl.create_default_context(
            cafile=str(self.ssl_cafile) if self.ssl_cafile else None
        )
        if self.ssl_certfile:
            context.load_cert_chain(
                str(self.ssl_certfile), str(self.ssl_keyfile) if self.ssl_keyfile else None
            )
        return context

    def redacted(self) -> dict[str, Any]:
        """The settings as logged at start: secrets masked."""
        data = self.model_dump(mode="json")
        if data.get("sasl_password") is not None:
            data["sasl_password"] = "**********"
        return data

    @model_validator(mode="after")
    def _check_sasl(self) -> KafkaConnection:
        if self.sasl_password_file is not None:
            if self.sasl_password is not None:
                raise ValueError("give SLA_SASL_PASSWORD or --sasl-password-file, not both")
            # The model is frozen; this is its construction.
            password = _read_secret(self.sasl_password_file, "--sasl-password-file")
            object.__setattr__(self, "sasl_password", password)
        if self.security_protocol.startswith("SASL") and (
            not self.sasl_username or self.sasl_password is None
        ):
            raise ValueError(
                f"--security-protocol {self.security_protocol}: sasl_username and "
                "sasl_password are required for SASL (--sasl-username, and "
                "SLA_SASL_PASSWORD or --sasl-password-file)"
            )
        return self


class StreamSettings(KafkaConnection):
    """What the worker and the audit read and write, and the rules both apply."""

    # NoDecode: the environment gives "a,b", not JSON; the validator below splits it.
    input_topics: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["tickets"],
        description="Topics of inbound events keyed by ticket id: one topic carrying every "
        "type, or one per event type (comma-separated).",
        json_schema_extra=_cli("TOPIC[,TOPIC...]"),
    )
    warnings_topic: str = Field(default="sla-warnings", description="Where warnings go.")
    breaches_topic: str = Field(default="sla-breaches", description="Where breaches go.")
    finished_timers_topic: str | None = Field(
        default=None,
        description="Where sla-timer-finished records go (every timer that stops, met or "
        "breached); unset: not published. The audit's --verify compares it too when set.",
    )
    policies: Path | None = Field(
        default=None,
        description="Policy file (YAML): one policy or a history of versions; the built-in "
        "presets when unset. The worker reads it again on SIGHUP.",
    )
    finished_retention_days: float = Field(
        default=DEFAULT_FINISHED_RETENTION_DAYS,
        gt=0,
        description="A solved or closed ticket leaves state (a changelog tombstone) once "
        "event time passes its last event plus this; later events for it are rejected.",
    )
    max_clock_skew_seconds: float = Field(
        default=DEFAULT_MAX_CLOCK_SKEW.total_seconds(),
        ge=0,
        description="Reject (future-timestamp) events dated more than this ahead of the "
        "clock (--now; the live worker's: the wall clock): they would move event time.",
    )
    max_message_bytes: int = Field(
        default=DEFAULT_MAX_BYTES,
        ge=1,
        description="Reject (too-large) message values larger than this, unparsed.",
    )

    @field_validator("input_topics", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        items = value.split(",") if isinstance(value, str) else value
        topics = [str(t).strip() for t in items if str(t).strip()]
        if not topics:
            raise ValueError("at least one topic is needed")
        return topics


class WorkerSettings(StreamSettings):
    """`sla-worker worker`: the live worker."""

    app_id: str = Field(
        default="sla-worker",
        description="Consumer group id; prefix of the state changelog topic and of the "
        "transactional ids; names the deployment in the outputs' CloudEvents source "
        "(urn:sla-worker:app:<app-id>).",
        json_schema_extra=_cli("NAME"),
    )
    dead_letter_topic: str = Field(
        default="sla-dead-letter",
        description="Inputs that cannot be applied, with the reason in headers.",
    )
    partitions: int = Field(
        default=6, ge=1, description="Partitions of every topic; input topics must match."
    )
    replication_factor: int = Field(default=1, ge=1, description="For topics the worker creates.")
    web_host: str = Field(
        default="0.0.0.0",
        description="Address of the HTTP server.",
        json_schema_extra=_cli("HOST"),
    )
    web_port: int = Field(
        default=6066,
        ge=0,
        le=65535,
        description="HTTP API, /metrics, /healthz and /readyz.",
        json_schema_extra=_cli("PORT"),
    )
    advertised_url: str | None = Field(
        default=None,
        description="URL other workers use to reach this one's HTTP API (requests for a "
        "ticket are routed to its owner). Default: http://<web host or hostname>:<web port>.",
        json_schema_extra=_cli("URL"),
    )
    api_token: SecretStr | None = Field(
        default=None,
        description="When set, GET /tickets/{id} and GET /at-risk require the header "
        "`Authorization: Bearer <token>` (every worker of the group needs the same token); "
        "/metrics, /healthz, /readyz and the /board page (which asks for the token) stay "
        "open. From the environment only (or --api-token-file); never logged.",
    )
    api_token_file: Path | None = Field(
        default=None,
        description="Read the API token from this file (e.g. a mounted Kubernetes Secret) "
        "instead of SLA_API_TOKEN; surrounding whitespace is ignored. When set, GET "
        "/tickets/{id} and GET /at-risk require `Authorization: Bearer <token>`.",
    )
    allowed_lateness_seconds: float = Field(
        default=0.0,
        ge=0,
        description="Once caught up, wait this long past a deadline (wall clock) before "
        "firing, for events produced late.",
    )
    hold_unknown_seconds: float = Field(
        default=300.0,
        ge=0,
        description="With several input topics: how long an event for a ticket whose "
        "ticket-created has not arrived is held before it is dead-lettered.",
    )
    session_timeout_seconds: float = Field(
        default=30.0,
        ge=6,
        description="How long the group waits for a silent worker before giving its "
        "partitions to the others (Kafka session.timeout.ms).",
    )
    instance_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=249,
        description="Static group membership (Kafka group.instance.id, KIP-345): a stable "
        "name per worker, such as the pod name of a StatefulSet. A worker that restarts "
        "within --session-timeout-seconds gets its partitions back without a rebalance, "
        "so a rolling restart moves nothing; one that stops for longer hands them over "
        "only when the session times out. Unset: the worker leaves the group on stop.",
        json_schema_extra=_cli("NAME"),
    )
    transaction_timeout_seconds: float = Field(
        default=10.0,
        ge=1,
        le=900,
        description="How long the brokers let a step's transaction stay open before they "
        "abort it (Kafka transaction.timeout.ms): what a hung owner can hold back "
        "read_committed consumers of the outputs. Steps take milliseconds; Kafka Streams "
        "uses 10 s.",
        json_schema_extra=_cli("SECONDS"),
    )
    max_commit_attempts: int = Field(
        default=5,
        ge=1,
        description="Steps of one partition that may fail to commit in a row, for a reason "
        "that is neither a broker outage nor a new owner (those are ridden out), before the "
        "worker exits 1 so that its orchestrator restarts it.",
        json_schema_extra=_cli("N"),
    )
    state_dir: Path | None = Field(
        default=None,
        description="Where each partition keeps its state (RocksDB, "
        "<dir>/<app-id>/<partition>): ticket states and timer indexes live there, not in "
        "RAM, written only after each step committed, so that a restart reads only the "
        "changelog's tail and, before the partition runs, decodes only the tickets whose "
        "stored due instant has passed. Unset: all state in RAM, every restore "
        "reads the whole changelog.",
        json_schema_extra=_cli("DIR"),
    )
    standby_replicas: int = Field(
        default=0,
        ge=0,
        le=16,
        description="Warm standbys (Kafka Streams' num.standby.replicas): each partition's "
        "state is kept ready by this many other workers, which tail its changelog, so that "
        "a takeover reads only the changelog's last records instead of all of it. Each "
        "standby costs the memory a running partition of it would. 0: none.",
        json_schema_extra=_cli("N"),
    )
    timer_interval_seconds: float = Field(
        default=0.2, gt=0, description="How often due timers are checked."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Logs are JSON lines on stderr."
    )

    @model_validator(mode="after")
    def _load_api_token(self) -> WorkerSettings:
        if self.api_token_file is not None:
            if self.api_token is not None:
                raise ValueError("give SLA_API_TOKEN or --api-token-file, not both")
            from_file = _read_secret(self.api_token_file, "--api-token-file")
            # The model is frozen; this is its construction.
            object.__setattr__(self, "api_token", from_file)
        token = self.api_token.get_secret_value() if self.api_token is not None else None
        if token is not None and (
            not token or not token.isascii() or not token.isprintable() or " " in token
        ):
            # What a header can carry: no whitespace, no control characters (value unsaid).
            raise ValueError(
                "the API token (SLA_API_TOKEN or --api-token-file) must be printable ASCII "
                "without spaces"
            )
        return self

    @property
    def log_level_number(self) -> int:
        return int(getattr(logging, self.log_level))

    @property
    def canonical_url(self) -> str:
        if self.advertised_url:
            return self.advertised_url
        host = socket.gethostname() if self.web_host in ("0.0.0.0", "::") else self.web_host
        return f"http://{host}:{self.web_port}"


def _extra(field: FieldInfo) -> dict[str, Any]:
    return field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}


def flag_of(name: str, field: FieldInfo) -> str:
    """A setting's command-line flag: its name in kebab case, unless the field names it."""
    return "--" + str(_extra(field).get("flag", name)).replace("_", "-")


def metavar_of(field: FieldInfo) -> str | None:
    """The placeholder for a setting's value in help, where the field names one."""
    metavar = _extra(field).get("metavar")
    return None if metavar is None else str(metavar)


def envvars_of(name: str, field: FieldInfo) -> list[str]:
    """The environment variables a setting is read from, first the `SLA_` one; upper-case
    validation aliases (KAFKA_BOOTSTRAP_SERVERS) are read too."""
    names = [ENV_PREFIX + str(_extra(field).get("flag", name)).upper()]
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        names += [c for c in alias.choices if isinstance(c, str) and c.isupper()]
    return list(dict.fromkeys(names))


def is_secret(field: FieldInfo) -> bool:
    """A secret never has a flag and never comes from the settings file."""
    return "SecretStr" in repr(field.annotation)


def worker_command(**values: object) -> list[str]:
    """The argv that runs `sla-worker worker` in a new process with these settings.

    For the demo, the integration tests and the benchmarks, which start workers as
    subprocesses. Names are `WorkerSettings` fields, checked here so that a typo fails at
    once rather than as an "unrecognized argument" in a worker's log; a list or tuple
    becomes a comma-separated value. A secret is refused, as the worker refuses it as a
    flag: pass it in the process's environment or through its `*_file` setting.
    """
    fields = WorkerSettings.model_fields
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"not worker settings: {', '.join(unknown)}")
    secrets = sorted(name for name in values if is_secret(fields[name]))
    if secrets:
        raise ValueError(
            f"secrets never go on a command line: {', '.join(secrets)}; pass them in the "
            "environment (SLA_<NAME>) or as <name>_file"
        )
    argv = [sys.executable, "-m", "worker", "worker"]
    for name, value in values.items():
        text = ",".join(map(str, value)) if isinstance(value, list | tuple) else str(value)
        argv += [flag_of(name, fields[name]), text]
    return argv


_INSTANT = TypeAdapter(AwareDatetime)


def parse_instant(value: str) -> datetime:
    """An instant given as a setting (the audit's `--from`, `--to`, `--now`), in UTC;
    raises pydantic's `ValidationError` when it is not a timestamp with an offset."""
    return _INSTANT.validate_strings(value).astimezone(UTC)


_OPEN_ENDS = {"start": "beginning", "end": "end"}  # the audit window's words for open


class AuditSettings(StreamSettings):
    """`sla-worker audit`: replay straight from Kafka, and verify what was published."""

    start: str = Field(
        default="beginning",
        description="Window start: 'beginning' or an RFC 3339 timestamp; only records due "
        "(finished) at or after it are written and judged. The whole input is read anyway.",
        json_schema_extra=_cli("TIMESTAMP", flag="from"),
    )
    end: str = Field(
        default="end",
        description="Window end: 'end' (what the clock reaches: the last event, at most "
        "--now) or an RFC 3339 timestamp, not after --now, that the clock runs to; only "
        "records due (finished) by then are written and judged.",
        json_schema_extra=_cli("TIMESTAMP", flag="to"),
    )
    output: Path | None = Field(
        default=None, description="Warnings and breaches as JSON Lines (default: stdout)."
    )
    events: Path | None = Field(
        default=None,
        description="Also write the merged input as JSON Lines: `sla-worker replay "
        "--partitions N` of this file gives the audit's output byte for byte (the summary "
        "prints the command).",
    )
    verify: bool = Field(
        default=False,
        description="Compare the replay with what the warnings and breaches topics hold; "
        "exit 1 on any difference.",
    )
    differences: Path | None = Field(
        default=None, description="With --verify: each difference as JSON Lines."
    )
    finished_timers: bool = Field(
        default=False,
        description="Also write an sla-timer-finished record for every timer that stops "
        "(met or breached) to --output, as `sla-worker replay --finished-timers` does.",
    )
    now: str | None = Field(
        default=None,
        description="The clock future timestamps are judged against (default: the wall "
        "clock when the audit starts).",
        json_schema_extra=_cli("TIMESTAMP"),
    )

    @field_validator("start", "end", "now")
    @classmethod
    def _instant_or_open(cls, value: str | None, info: ValidationInfo) -> str | None:
        """An instant is checked here, so a mistyped one is a usage error that names
        the flag, not a failure once the audit has connected to Kafka."""
        if value is None or value == _OPEN_ENDS.get(info.field_name or ""):
            return value
        try:
            parse_instant(value)
        except ValidationError:
            raise ValueError(
                f"{value!r} is not an RFC 3339 timestamp with an offset (e.g. 2026-12-01T00:00:00Z)"
            ) from None
        return value

    @model_validator(mode="after")
    def _window_in_order(self) -> AuditSettings:
        """A window that ends after --now would judge records the worker cannot have
        fired yet (it never fires before the wall clock), and one that ends before it
        starts judges nothing: both are usage errors."""
        if self.end == "end":
            return self
        end = parse_instant(self.end)
        now = datetime.now(UTC) if self.now is None else parse_instant(self.now)
        if end > now:
            raise ValueError(
                f"--to {self.end} is after --now ({now.isoformat()}): the worker cannot have "
                "fired what is not due yet"
            )
        if self.start != "beginning" and parse_instant(self.start) > end:
            raise ValueError(f"--from {self.start} is after --to {self.end}")
        return self
