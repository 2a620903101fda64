"""The `sla-worker` command line: parses each command's arguments and hands them to the
composition root (`worker/bootstrap/`), which builds and connects what the command runs.

One parser, click, for every command: `worker` and `audit` take their options from the
settings models (`worker/cli_options.py`), `replay` its limits from the same fields, and
every command fails the same way (`worker/cli_commands.py`).
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import click
from pydantic import AwareDatetime, TypeAdapter, ValidationError

from worker import __version__, asyncapi
from worker.bootstrap import read_policy
from worker.bootstrap.replay import run as run_replay
from worker.cli_commands import SlaGroup
from worker.cli_options import setting_options, settings_from, settings_help, settings_params
from worker.compiled import describe
from worker.core.policy import Policy, PolicyError
from worker.policy_file import load_policy
from worker.presets import presets_text
from worker.replay import UntilBeforeLastEvent
from worker.report import Period
from worker.schemas import export
from worker.settings import AuditSettings, StreamSettings, WorkerSettings

_instant = TypeAdapter(AwareDatetime)


class _Instant(click.ParamType):
    name = "TIMESTAMP"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            return _instant.validate_strings(str(value))
        except ValidationError:
            self.fail(f"{value!r} is not an RFC 3339 timestamp with an offset", param, ctx)


def _policy(path: Path | None) -> Policy:
    try:
        return read_policy(path)
    except PolicyError as exc:
        raise click.ClickException(str(exc)) from None


@click.group("sla-worker", cls=SlaGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(
    __version__, prog_name="sla-worker", message=f"%(prog)s %(version)s ({describe()})"
)
def main() -> None:
    """SLA timers for help desks: business-hour deadlines, warnings and breaches."""


@main.command()
@click.argument("events", type=click.File("rb"))
@click.option(
    "--policies",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Policy file (YAML). Default: the built-in presets.",
)
@click.option(
    "--until",
    type=_Instant(),
    help="Advance the clock to this instant after the last event (default: its time).",
)
@click.option(
    "--output",
    type=click.File("w"),
    default="-",
    metavar="FILE",
    help="Where to write warnings and breaches, as JSON Lines (default: stdout).",
)
@click.option(
    "--rejects",
    type=click.File("w"),
    metavar="FILE",
    help="Write rejected lines here as JSON Lines instead of to stderr.",
)
@click.option("--strict", is_flag=True, help="Exit 1 if any line was rejected.")
@click.option(
    "--finished-timers",
    is_flag=True,
    help="Also write an sla-timer-finished record (met or breached) for every timer that "
    "stops, in firing order among the warnings and breaches.",
)
@click.option(
    "--now",
    type=_Instant(),
    help="The clock future timestamps are judged against (default: the wall clock when "
    "the run starts); give it for a reproducible run.",
)
@click.option(
    "--partitions",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    metavar="N",
    help="Keep an event-time clock per partition, as a worker reading a topic of this many "
    "partitions does, placing each ticket where Kafka's default partitioner puts its id "
    "(1: one clock for the whole file).",
)
@setting_options(
    StreamSettings,
    "max_clock_skew_seconds",
    "max_message_bytes",
    "finished_retention_days",
    envvar=False,
)
def replay(
    events: IO[bytes],
    policies: Path | None,
    until: datetime | None,
    output: IO[str],
    rejects: IO[str] | None,
    strict: bool,
    finished_timers: bool,
    now: datetime | None,
    max_clock_skew_seconds: float,
    max_message_bytes: int,
    finished_retention_days: float,
    partitions: int,
) -> None:
    """Replay EVENTS (JSON Lines) and print the warnings and breaches.

    EVENTS is a file, or '-' for stdin. Deadlines come from each event's occurred_at, so
    the same file always gives the same output, ids included. Replay reads no SLA_*
    environment variable: its output depends on its arguments only.
    """
    policy = _policy(policies)
    try:
        summary = run_replay(
            events,
            policy,
            output,
            rejects,
            until,
            now=now,
            max_clock_skew_seconds=max_clock_skew_seconds,
            max_message_bytes=max_message_bytes,
            finished_retention_days=finished_retention_days,
            finished_timers=finished_timers,
            partitions=partitions,
        )
    except UntilBeforeLastEvent as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(str(summary), err=True)
    if strict and summary.rejected:
        sys.exit(1)


@main.command()
@click.argument("records", type=click.File("rb"))
@click.option(
    "--period",
    type=click.Choice(["week", "month"]),
    default="month",
    show_default=True,
    help="Group timers by the ISO week or the calendar month they started in (UTC).",
)
@click.option(
    "--json", "json_out", type=click.File("w"), metavar="FILE", help="Write the JSON report here."
)
@click.option(
    "--csv", "csv_out", type=click.File("w"), metavar="FILE", help="Write every group as CSV here."
)
@click.option(
    "--breaches-csv",
    type=click.File("w"),
    metavar="FILE",
    help="Write the breached timers as CSV here.",
)
@click.option(
    "--html",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Write a self-contained HTML page with charts here (needs the report extra: "
    "pip install 'sla-worker[report]').",
)
@click.option(
    "--title",
    default="SLA report",
    show_default=True,
    metavar="TEXT",
    help="Title of the HTML page.",
)
def report(
    records: IO[bytes],
    period: Period,
    json_out: IO[str] | None,
    csv_out: IO[str] | None,
    breaches_csv: IO[str] | None,
    html: Path | None,
    title: str,
) -> None:
    """Report SLA compliance from replay's or audit's finished timers.

    That is, what they wrote with --finished-timers.

    RECORDS is that output ('-' for stdin). Per period, plan, priority, metric and
    customer: timers started, met, breached, achievement, median and p90 time to first
    response against the target; and the breached timers. Without --json, --csv,
    --breaches-csv or --html, the JSON report goes to stdout.
    """
    from worker.report import build_report, read_records, write_breaches_csv, write_csv

    try:
        built = build_report(read_records(records), period)
    except (KeyError, TypeError, ValueError) as exc:
        raise click.ClickException(
            f"RECORDS is not the output of replay or audit with --finished-timers "
            f"({type(exc).__name__}: {exc})"
        ) from None
    if html is not None:
        try:
            from worker.report_html import render_html
        except ImportError as exc:
            raise click.ClickException(
                f"the HTML report needs matplotlib ({exc}): pip install 'sla-worker[report]'"
            ) from None
        html.write_text(render_html(built, title), encoding="utf-8")
    if csv_out is not None:
        write_csv(built, csv_out)
    if breaches_csv is not None:
        write_breaches_csv(built, breaches_csv)
    if json_out is not None or not (html or csv_out or breaches_csv):
        out = json_out or click.get_text_stream("stdout")
        json.dump(built, out, indent=1)
        out.write("\n")
    totals = built["totals"]
    achievement = totals["achievement_pct"]
    click.echo(
        f"timers judged: {totals['started']}, met: {totals['met']}, breached: "
        f"{totals['breached']}, achievement: "
        f"{'n/a' if achievement is None else f'{achievement:.2f} %'}",
        err=True,
    )


@main.command(
    params=settings_params(WorkerSettings),
    help=settings_help(WorkerSettings, "Run the live worker on Kafka."),
)
def worker(**values: Any) -> None:
    # Imported here: the live worker pulls in aiokafka and aiohttp, which replay and the
    # other commands do not need.
    from worker.bootstrap.live import run as run_worker

    settings = settings_from(click.get_current_context(), WorkerSettings, values)
    sys.exit(run_worker(settings))


@main.command(
    params=settings_params(AuditSettings),
    help=settings_help(
        AuditSettings,
        "Replay from Kafka, read-only; --verify checks what was published.",
        "The audit takes the worker's settings file: what the two share is read, the "
        "worker's other settings are left.",
    ),
)
def audit(**values: Any) -> None:
    from worker.bootstrap.audit import run as run_audit

    ctx = click.get_current_context()
    settings = settings_from(ctx, AuditSettings, values, file_settings=WorkerSettings)
    sys.exit(run_audit(settings, _policy(settings.policies)))


@main.command()
@click.option(
    "--bootstrap-servers",
    envvar="KAFKA_BOOTSTRAP_SERVERS",
    show_envvar=True,
    required=True,
    metavar=WorkerSettings.model_fields["bootstrap_servers"].json_schema_extra["metavar"],  # type: ignore[index]
    help="Kafka bootstrap servers (make run starts a local broker and passes it).",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="Stop after this many seconds (default: at Ctrl-C).",
)
@click.option(
    "--web-port",
    type=click.IntRange(0, 65535),
    default=6066,
    show_default=True,
    metavar="PORT",
    help="The worker's HTTP API, /metrics, /healthz and /readyz.",
)
def demo(bootstrap_servers: str, duration: float | None, web_port: int) -> None:
    """Run the worker on demo traffic, printing warnings and breaches.

    Uses a minute-scale demo policy and topics of its own, so each run starts clean.
    """
    from worker.demo import run_demo

    run_demo(bootstrap_servers, duration, web_port)


@main.group()
def policies() -> None:
    """Check and show SLA policy files."""


@policies.command("validate")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def policies_validate(file: Path) -> None:
    """Check FILE; print every problem with its path, exit 1 if there is any."""
    try:
        policy = load_policy(file)
    except PolicyError as exc:
        click.echo(exc.with_lines(), err=True)
        sys.exit(1)
    plans = ", ".join(sorted(policy.plans))
    if not policy.goals:
        click.echo(f"{file}: ok (version {policy.describe()}; plans: {plans})")
        return
    named = sum(1 for goal in policy.goals if goal.name is not None)
    metrics = ", ".join(metric.name for metric in policy.metrics)
    click.echo(
        f"{file}: ok (version {policy.describe()}; goals: {named} named, "
        f"{len(policy.goals) - named} from plans; metrics: {metrics})"
    )


@policies.command("show")
@click.option(
    "--metrics",
    "metrics",
    is_flag=True,
    help="Print the built-in metric definitions instead (the `metrics:` vocabulary).",
)
def policies_show(metrics: bool) -> None:
    """Print the built-in presets (a starting point for your own file)."""
    if metrics:
        from worker.policy_file import builtin_metrics_yaml

        click.echo(builtin_metrics_yaml(), nl=False)
        return
    click.echo(presets_text(), nl=False)


@main.group()
def schemas() -> None:
    """Export the JSON Schemas of the events and the topics' AsyncAPI."""


@schemas.command("export")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("schemas"),
    show_default=True,
    metavar="DIR",
    help="Where to write them.",
)
def schemas_export(directory: Path) -> None:
    """Write one JSON Schema per event type, and the topics' AsyncAPI document.

    The AsyncAPI document (asyncapi.yaml) holds the same schemas."""
    for path in [*export(directory), asyncapi.export(directory)]:
        click.echo(str(path))
