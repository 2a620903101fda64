"""How every `sla-worker` command reads and fails, whatever its options.

- A usage error (unknown flag, a value of the wrong type or out of range, a missing value,
  a secret given as a flag, an unreadable settings file) is one line on stderr that names
  the option, exit status 2, nothing on stdout:
  `sla-worker worker: --partitions: Input should be greater than or equal to 1 (see
  'sla-worker worker --help')`. (click alone prints the whole usage first, over 3 lines.)
- A runtime error (a policy file with problems, a report input that is not one, a file
  that cannot be written) is one line too, exit status 1: `sla-worker replay: <message>`.
- `sla-worker --help` lists each command with the whole first paragraph of its help,
  where click would cut it at 45 characters, mid-sentence.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import click


def _one_line(text: str) -> str:
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


def _command_path(exc: click.ClickException) -> str:
    ctx = getattr(exc, "ctx", None)
    return ctx.command_path if isinstance(ctx, click.Context) else "sla-worker"


def usage_message(exc: click.UsageError) -> str:
    """The option, then what is wrong with it."""
    if isinstance(exc, click.BadParameter) and not isinstance(exc, click.MissingParameter):
        hint = exc.param_hint
        if hint is None and isinstance(exc.param, click.Option):
            hint = max(exc.param.opts, key=len)
        elif hint is None and exc.param is not None:
            hint = exc.param.human_readable_name
        if isinstance(hint, Sequence) and not isinstance(hint, str):
            hint = " / ".join(hint)
        if hint:
            return f"{hint}: {exc.message}"
    return exc.format_message()


def _blame(exc: click.ClickException, ctx: click.Context) -> None:
    """Name the command that failed, where click left it unsaid."""
    if getattr(exc, "ctx", None) is None:
        exc.ctx = ctx  # type: ignore[attr-defined]


class _Named:
    """A command whose failures name it (see `SlaGroup.main`), and whose summary in its
    group's help is whole."""

    help: str | None
    short_help: str | None

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)  # type: ignore[misc,no-any-return]
        except click.ClickException as exc:
            _blame(exc, ctx)
            raise

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)  # type: ignore[misc]
        except click.ClickException as exc:
            _blame(exc, ctx)
            raise
        except OSError as exc:
            # A file that cannot be opened or written (an output in a missing directory):
            # the user's to fix, so one line, not a traceback.
            failed = click.ClickException(str(exc))
            _blame(failed, ctx)
            raise failed from exc

    def get_short_help_str(self, limit: int = 45) -> str:
        """The whole first paragraph of the help, as one line."""
        if self.short_help:
            return self.short_help
        first = (self.help or "").strip().split("\n\n")[0]
        return " ".join(first.split())


class SlaCommand(_Named, click.Command):
    pass


class SlaGroup(_Named, click.Group):
    """The `sla-worker` group: its commands and subgroups share the look and the errors."""

    command_class = SlaCommand
    group_class = type  # subgroups are SlaGroups too

    def main(  # type: ignore[override]
        self, args: Sequence[str] | None = None, prog_name: str | None = None, **extra: Any
    ) -> Any:
        extra.pop("standalone_mode", None)
        # `python -m worker` is `sla-worker` too, in its usage lines and its errors.
        prog_name = prog_name or self.name
        try:
            result = super().main(args, prog_name, standalone_mode=False, **extra)
        except click.UsageError as exc:
            path = _command_path(exc)
            message = _one_line(usage_message(exc))
            click.echo(f"{path}: {message} (see '{path} --help')", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            click.echo(f"{_command_path(exc)}: {_one_line(exc.format_message())}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        # --help and --version end with click's Exit, which returns its status here.
        sys.exit(result if isinstance(result, int) else 0)
