"""The `sla-worker` command line: parses each command's arguments and hands them to the
composition root (`worker/bootstrap/`), which builds and connects what the command runs."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import IO

import click
from pydantic import AwareDatetime, TypeAdapter, ValidationError

from worker import __version__, asyncapi
from worker.bootstrap import read_policy
from worker.bootstrap.replay import run as run_replay
from worker.compiled import describe
from worker.core.limits import DEFAULT_MAX_BYTES, DEFAULT_MAX_CLOCK_SKEW
from worker.core.policy import Policy, PolicyError
from worker.policy_file import load_policy
from worker.presets import presets_text
from worker.replay import UntilBeforeLastEvent
from worker.report import Period
from worker.schemas import export

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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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
    help="Where to write warnings and breaches, as JSON Lines (default: stdout).",
)
@click.option(
    "--rejects",
    type=click.File("w"),
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
    "--max-clock-skew-seconds",
    type=click.FloatRange(min=0),
    default=DEFAULT_MAX_CLOCK_SKEW.total_seconds(),
    show_default=True,
    help="Reject (future-timestamp) events dated more than this ahead of --now.",
)
@click.option(
    "--max-message-bytes",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_BYTES,
    show_default=True,
    help="Reject (too-large) longer lines without parsing them.",
)
@click.option(
    "--finished-retention-days",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    show_default=True,
    help="Forget a solved or closed ticket this long (event time) after its last event, "
    "as the live worker does.",
)
@click.option(
    "--partitions",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Keep an event-time clock per partition, as a worker reading a topic of this many "
    "partitions does, placing each ticket where Kafka's default partitioner puts its id "
    "(1: one clock for the whole file).",
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
    """Replay EVENTS (JSON Lines, '-' for stdin) and print the warnings and breaches.

    Deadlines come from each event's occurred_at, so the same file always gives the
    same output, ids included.
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
@click.option("--json", "json_out", type=click.File("w"), help="Write the JSON report here.")
@click.option("--csv", "csv_out", type=click.File("w"), help="Write every group as CSV here.")
@click.option("--breaches-csv", type=click.File("w"), help="Write the breached timers as CSV here.")
@click.option(
    "--html",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write a self-contained HTML page with charts here (needs the report extra: "
    "pip install 'sla-worker[report]').",
)
@click.option("--title", default="SLA report", show_default=True, help="Title of the HTML page.")
def report(
    records: IO[bytes],
    period: Period,
    json_out: IO[str] | None,
    csv_out: IO[str] | None,
    breaches_csv: IO[str] | None,
    html: Path | None,
    title: str,
) -> None:
    """SLA compliance from RECORDS: what `sla-worker replay --finished-timers` or `sla-worker
    audit --finished-timers` wrote ('-' for stdin).

    Per period, plan, priority, metric and customer: timers started, met, breached,
    achievement, median and p90 time to first response against the target; and the
    breached timers. Without --json, --csv, --breaches-csv or --html, the JSON report goes
    to stdout.
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
    context_settings={"ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def worker(args: tuple[str, ...]) -> None:
    """Run the live worker on Kafka (`sla-worker worker --help` lists every setting).

    Every setting is a flag or an SLA_* environment variable; flags win.
    """
    # Imported here: the live worker pulls in aiokafka and aiohttp, which replay and the
    # other commands do not need.
    from pydantic_settings import CliApp

    from worker.bootstrap.live import run as run_worker
    from worker.settings import WorkerSettings

    try:
        settings = CliApp.run(WorkerSettings, cli_args=list(args))
    except ValidationError as exc:
        print(f"sla-worker worker: invalid settings:\n{exc}")
        sys.exit(2)
    sys.exit(run_worker(settings))


@main.command(
    context_settings={"ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def audit(args: tuple[str, ...]) -> None:
    """Replay straight from Kafka, read-only; --verify checks what was published
    (`sla-worker audit --help` lists every setting)."""
    from pydantic_settings import CliApp

    from worker.bootstrap.audit import run as run_audit
    from worker.settings import AuditSettings

    try:
        settings = CliApp.run(AuditSettings, cli_args=list(args))
    except ValidationError as exc:
        raise click.UsageError(f"invalid settings:\n{exc}") from None
    sys.exit(run_audit(settings, _policy(settings.policies)))


@main.command()
@click.option(
    "--bootstrap-servers",
    envvar="KAFKA_BOOTSTRAP_SERVERS",
    required=True,
    help="Kafka bootstrap servers (make run starts a local broker and passes it).",
)
@click.option("--duration", type=float, help="Stop after this many seconds (default: Ctrl-C).")
@click.option("--web-port", type=int, default=6066, show_default=True)
def demo(bootstrap_servers: str, duration: float | None, web_port: int) -> None:
    """Run the worker on live demo traffic and print warnings and breaches as they fire.

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
        click.echo(str(exc), err=True)
        sys.exit(1)
    plans = ", ".join(sorted(policy.plans))
    click.echo(f"{file}: ok (version {policy.describe()}; plans: {plans})")


@policies.command("show")
def policies_show() -> None:
    """Print the built-in presets (a starting point for your own file)."""
    click.echo(presets_text(), nl=False)


@main.group()
def schemas() -> None:
    """JSON Schemas of the events sla-worker reads and writes; AsyncAPI of its topics."""


@schemas.command("export")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("schemas"),
    show_default=True,
)
def schemas_export(directory: Path) -> None:
    """Write one JSON Schema per event type, and the AsyncAPI document of the topics
    (asyncapi.yaml, with the same schemas)."""
    for path in [*export(directory), asyncapi.export(directory)]:
        click.echo(str(path))
