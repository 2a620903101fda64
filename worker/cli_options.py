"""Command-line options generated from the settings models, and the settings they give.

Each field of a settings model (`worker/settings.py`) becomes one click option: its
flag (`--max-clock-skew-seconds`), its value's name (`SECONDS`, `TIMESTAMP`), its help
(the field's description), its real default and its environment variable (`SLA_...`),
all shown by `--help`. The values are then validated by the model itself, so pydantic's
validators stay the one definition of what a setting accepts, and a value they refuse is
a usage error that names where it came from: the flag, the variable or the settings file.

Where a setting's value comes from, first match wins: the flag, the environment variable,
the settings file (`--config FILE`, TOML), the default.
"""

from __future__ import annotations

import os
import tomllib
import types
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

import click
from click.core import ParameterSource
from pydantic import AliasChoices, BaseModel, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from worker.settings import ENV_PREFIX, envvars_of, flag_of, is_secret, metavar_of

Settings = TypeVar("Settings", bound=BaseModel)
Command = TypeVar("Command", bound=Callable[..., Any])

CONFIG = "config"
_GIVEN = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
_METAVARS_BY_SUFFIX = (
    ("_seconds", "SECONDS"),
    ("_days", "DAYS"),
    ("_bytes", "BYTES"),
    ("_topic", "TOPIC"),
)


def _value_type(field: FieldInfo) -> Any:
    """The annotation without `None`: what a given value must be."""
    annotation = field.annotation
    if get_origin(annotation) in (Union, types.UnionType):
        options = [a for a in get_args(annotation) if a is not type(None)]
        return options[0] if len(options) == 1 else annotation
    return annotation


def metavar(name: str, field: FieldInfo) -> str:
    """The name of a setting's value in help: `SECONDS`, `FILE`, `[PLAIN|SSL]`."""
    explicit = metavar_of(field)
    if explicit is not None:
        return explicit
    for suffix, metavar in _METAVARS_BY_SUFFIX:
        if name.endswith(suffix):
            return metavar
    value_type = _value_type(field)
    if get_origin(value_type) is Literal:
        return "[" + "|".join(map(str, get_args(value_type))) + "]"
    if value_type is Path:
        return "FILE"
    if value_type is int:
        return "N"
    return "TEXT"


def shown_default(field: FieldInfo) -> str | None:
    """The default as a user would type it: `300`, not `300.0`; `a,b`, not a list."""
    default = field.get_default(call_default_factory=True)
    if default is None or isinstance(default, bool):
        return None
    if isinstance(default, list | tuple):
        return ",".join(map(str, default))
    if isinstance(default, float) and default.is_integer():
        return str(int(default))
    return str(default)


class _SettingValue(click.ParamType):
    """A value checked against its field's type and bounds as it is parsed; a field with
    validators of its own (`input_topics`, the audit's window) is checked by the model."""

    def __init__(self, field: FieldInfo, metavar: str, checked: bool) -> None:
        self.name = metavar
        # The field's type with its bounds (`ge`, `gt`), checked with pydantic's messages.
        constrained: Any = _value_type(field)
        if field.metadata:
            constrained = Annotated[constrained, *field.metadata]
        self._adapter: TypeAdapter[Any] | None = TypeAdapter(constrained) if checked else None

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> object:
        if self._adapter is None or not isinstance(value, str):
            return value
        try:
            return self._adapter.validate_strings(value)
        except ValidationError as exc:
            hint = _variable_given(ctx, param)
            raise click.BadParameter(_messages(exc), ctx, param, param_hint=hint) from None


def _variable_given(ctx: click.Context | None, param: click.Parameter | None) -> str | None:
    """The environment variable a value came from, if it did not come from its flag."""
    if ctx is None or param is None or param.name is None:
        return None
    if ctx.get_parameter_source(param.name) is not ParameterSource.ENVIRONMENT:
        return None
    envvars = [param.envvar] if isinstance(param.envvar, str) else list(param.envvar or [])
    return next((e for e in envvars if e in os.environ), None)


def _messages(exc: ValidationError) -> str:
    return "; ".join(_message(error["msg"]) for error in exc.errors(include_url=False))


def _message(text: str) -> str:
    return text.removeprefix("Value error, ")


def _refuse_secret(name: str, field: FieldInfo) -> click.Option:
    """A hidden flag for a secret, there only to say how to pass the secret instead."""
    flag, (envvar, *_) = flag_of(name, field), envvars_of(name, field)

    def refuse(ctx: click.Context, param: click.Parameter, value: object) -> None:
        if value is not None:
            raise click.BadParameter(
                f"a secret on the command line is visible to anyone who runs ps; set "
                f"{envvar} or give {flag}-file FILE instead",
                ctx,
                param_hint=flag,
            )

    return click.Option([flag], hidden=True, expose_value=False, callback=refuse)


def setting_option(model: type[BaseModel], name: str, *, envvar: bool = True) -> click.Option:
    """The option of one setting; without `envvar` (replay, whose output must depend on
    its arguments only) it reads no environment variable."""
    field = model.model_fields[name]
    flag = flag_of(name, field)
    help_text = field.description or ""
    envvars = envvars_of(name, field) if envvar else None
    if _value_type(field) is bool:
        return click.Option(
            [flag, name],
            is_flag=True,
            default=False,
            help=help_text,
            envvar=envvars,
            show_envvar=envvar,
        )
    checked = name not in _fields_with_validators(model)
    param_type = _SettingValue(field, metavar(name, field), checked)
    default = shown_default(field)
    return click.Option(
        [flag, name],
        type=param_type,
        default=default,
        show_default=default is not None,
        help=help_text,
        envvar=envvars,
        show_envvar=envvar,
    )


def setting_options(
    model: type[BaseModel], *names: str, envvar: bool = True
) -> Callable[[Command], Command]:
    """A decorator that adds the options of these settings to a click command, as
    `click.option` does, in this order."""

    def decorate(command: Command) -> Command:
        # click.command() reads a function's options from __click_params__, last first.
        params = getattr(command, "__click_params__", [])
        params += [setting_option(model, name, envvar=envvar) for name in reversed(names)]
        command.__click_params__ = params  # type: ignore[attr-defined]
        return command

    return decorate


def settings_help(model: type[BaseModel], summary: str, more: str = "") -> str:
    """A settings command's help: its summary, where each setting comes from, and how
    its secrets are given, named from the model."""
    secrets = [
        f"{envvars_of(n, f)[0]} ({flag_of(n, f)}-file)"
        for n, f in model.model_fields.items()
        if is_secret(f)
    ]
    text = (
        "Each setting is taken from its flag, else its environment variable, else the "
        "settings file (--config), else its default."
    )
    if secrets:
        text += f" Secrets are never flags: {', '.join(secrets)}."
    return f"{summary}\n\n{text}{' ' + more if more else ''}"


def _fields_with_validators(model: type[BaseModel]) -> set[str]:
    decorators = model.__pydantic_decorators__.field_validators.values()
    return {name for decorator in decorators for name in decorator.info.fields}


def config_option() -> click.Option:
    return click.Option(
        ["--config", CONFIG],
        metavar="FILE",
        envvar=ENV_PREFIX + CONFIG.upper(),
        show_envvar=True,
        help="Settings file (TOML): `name = value` per setting, names as in docs/worker.md "
        "(secrets excepted). A flag, then an environment variable, win over it.",
    )


def settings_params(model: type[BaseModel]) -> list[click.Parameter]:
    """Every option of `model`'s settings, `--config` first; a secret has only the hidden
    flag that refuses it."""
    params: list[click.Parameter] = [config_option()]
    for name, field in model.model_fields.items():
        params.append(
            _refuse_secret(name, field) if is_secret(field) else setting_option(model, name)
        )
    return params


def settings_from(
    ctx: click.Context,
    model: type[Settings],
    values: Mapping[str, Any],
    file_settings: type[BaseModel] | None = None,
) -> Settings:
    """The settings of this invocation: what the flags and environment variables gave,
    over what the settings file gave, over the defaults. `file_settings` is the model
    whose fields the file may hold (the audit reads the worker's file: it takes what it
    shares with the worker and leaves the rest)."""
    given: dict[str, Any] = {}
    origin: dict[str, str] = {}
    config = values.get(CONFIG)
    if config is not None:
        for name, value in read_config(Path(config), model, file_settings or model).items():
            given[name] = value
            origin[name] = f"--config {config}: {name}"
    for name, value in values.items():
        if name == CONFIG or ctx.get_parameter_source(name) not in _GIVEN:
            continue
        field = model.model_fields[name]
        given[name] = value
        if ctx.get_parameter_source(name) is ParameterSource.ENVIRONMENT:
            envvars = envvars_of(name, field)
            origin[name] = next((e for e in envvars if e in os.environ), envvars[0])
        else:
            origin[name] = flag_of(name, field)
    try:
        return model(**given)
    except ValidationError as exc:
        raise click.UsageError(_located(exc, model, origin), ctx) from None


def _located(exc: ValidationError, model: type[BaseModel], origin: dict[str, str]) -> str:
    """pydantic's errors as one line, each named by where its value came from."""
    names: dict[str, str] = {}
    for field_name, field in model.model_fields.items():
        names[field_name] = field_name
        if isinstance(field.validation_alias, AliasChoices):
            names.update({str(c): field_name for c in field.validation_alias.choices})
    parts = []
    for error in exc.errors(include_url=False):
        loc = error["loc"]
        name = names.get(str(loc[0])) if loc else None
        if name is None:
            parts.append(_message(error["msg"]))
            continue
        where = origin.get(name, flag_of(name, model.model_fields[name]))
        parts.append(f"{where}: {_message(error['msg'])}")
    return "; ".join(parts)


def read_config(path: Path, model: type[BaseModel], file_model: type[BaseModel]) -> dict[str, Any]:
    """The settings file's values that `model` takes. A key that is no setting of
    `file_model`, or that is a secret, is a usage error: a typo would otherwise be
    ignored, and a secret belongs in the environment or a file of its own."""
    hint = f"--config {path}"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise click.BadParameter(
            f"cannot read it: {exc.strerror or exc}", param_hint=hint
        ) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise click.BadParameter(f"not TOML: {exc}", param_hint=hint) from None
    fields = {**file_model.model_fields, **model.model_fields}
    by_flag = {flag_of(n, f).removeprefix("--").replace("-", "_"): n for n, f in fields.items()}
    taken: dict[str, Any] = {}
    for key, value in data.items():
        name = by_flag.get(key.replace("-", "_"))
        if name is None:
            raise click.BadParameter(f"{key}: not a setting", param_hint=hint)
        if is_secret(fields[name]):
            envvar = envvars_of(name, fields[name])[0]
            raise click.BadParameter(
                f"{key}: a secret does not belong in the settings file; set {envvar} or "
                f"give {name}_file instead",
                param_hint=hint,
            )
        if name in model.model_fields:
            taken[name] = value
    return taken


def parse_settings(
    model: type[Settings],
    args: list[str],
    file_settings: type[BaseModel] | None = None,
) -> Settings:
    """The settings a command of `model`'s options gives for `args` (and the environment),
    as the command line parses them; a usage error is raised as `click.UsageError`. For
    the tests, and for a program that starts the worker in-process."""
    command = click.Command("sla-worker", params=settings_params(model))
    with command.make_context("sla-worker", list(args)) as ctx:
        return settings_from(ctx, model, ctx.params, file_settings)
