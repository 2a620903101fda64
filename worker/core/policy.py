"""SLA policies: which target applies to a ticket, on which calendar.

A policy file names business calendars and, per plan and priority, the target of each
metric. `PolicySpec` is the validated shape of the file; `Policy` is what the engine uses,
with calendars built and every cross-reference resolved. Errors name the file, the path
inside it and the problem, e.g.
`policies.yaml: plans.professional.priorities.2.first_response.target: invalid duration 'PT'`.
Reading the file is the adapter's job (`worker.policy_file`); this module only validates.

A file may also hold a **history**: `versions:`, a list of such policies, each after the
first `effective_from` an instant. A ticket is judged for its whole life by the version in
force when it was created (`Policy.at`); see docs/semantics.md.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
)

from worker.core.calendar import Calendar, CalendarError, CalendarSpec, never_opens_issue
from worker.core.durations import parse_duration
from worker.core.errors import SlaWorkerError
from worker.core.events import METRICS, Metric, ProductStage, Status
from worker.core.goal_policy import build_goals
from worker.core.goals import Goal, GoalMatcher, GoalSpec
from worker.core.metrics import MetricDef, MetricSpec, index_signals
from worker.core.thresholds import warning_fractions

Duration = Annotated[
    timedelta, BeforeValidator(lambda v: parse_duration(v) if isinstance(v, str) else v)
]
PauseStatus = Literal["pending", "on-hold"]
DEFAULT_WARNINGS = (0.75,)
_DEFAULT_PAUSE: tuple[PauseStatus, ...] = ("pending", "on-hold")


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TargetSpec(_Spec):
    target: Duration = Field(description="ISO 8601 duration in H/M/S, e.g. PT2H.")
    calendar: str = Field(description="Name of a calendar under `calendars`.")


class PrioritySpec(_Spec):
    first_response: TargetSpec | None = None
    follow_up: TargetSpec | None = None


class PlanSpec(_Spec):
    default_priority: int = Field(ge=1)
    priorities: dict[int, PrioritySpec] = Field(min_length=1)
    exempt_stages: list[Literal["beta", "preview"]] = Field(default_factory=list)
    warnings: list[float] | None = Field(
        default=None, description="Warning fractions for this plan; the policy's when absent."
    )

    @field_validator("warnings")
    @classmethod
    def _valid_warnings(cls, value: list[float] | None) -> list[float] | None:
        return None if value is None else warning_fractions(value)


class PolicySpec(_Spec):
    version: str = Field(min_length=1, description="Copied into every emitted event.")
    calendars: dict[str, CalendarSpec] = Field(default_factory=dict)
    warnings: list[float] = Field(default_factory=lambda: list(DEFAULT_WARNINGS))
    pause_statuses: list[PauseStatus] = Field(default_factory=lambda: list(_DEFAULT_PAUSE))
    plans: dict[str, PlanSpec] = Field(min_length=1)
    metrics: dict[str, MetricSpec] = Field(
        default_factory=dict, description="Metrics defined by this policy, beside the built-in."
    )
    goals: list[GoalSpec] = Field(
        default_factory=list, description="Ordered; the first that matches a ticket applies."
    )
    default_priority: int = Field(
        default=3, ge=1, description="Goal policies: the priority of a ticket created without."
    )

    @field_validator("warnings")
    @classmethod
    def _valid_warnings(cls, value: list[float]) -> list[float]:
        return warning_fractions(value)


class GoalPolicySpec(PolicySpec):
    """A policy with `goals:`; its `plans:` (optional) expand to goals after them."""

    plans: dict[str, PlanSpec] = Field(default_factory=dict)
    goals: list[GoalSpec] = Field(min_length=1)


class VersionSpec(PolicySpec):
    effective_from: AwareDatetime | None = Field(
        default=None,
        description="From when tickets created are judged by this version (RFC 3339 with "
        "an offset); required after the first version, which also judges tickets created "
        "before the second.",
    )


class GoalVersionSpec(VersionSpec):
    """A version with `goals:` (its `plans:` optional, as in `GoalPolicySpec`)."""

    plans: dict[str, PlanSpec] = Field(default_factory=dict)
    goals: list[GoalSpec] = Field(min_length=1)


def _version_kind(value: Any) -> str:
    return _GOALS_TAG if isinstance(value, dict) and "goals" in value else _PLANS_TAG


# Tags of the two kinds of version; not part of any path an error names (see
# `_pydantic_issues`).
_PLANS_TAG, _GOALS_TAG = "<plans>", "<goals>"


class HistorySpec(_Spec):
    versions: list[
        Annotated[
            Annotated[VersionSpec, Tag(_PLANS_TAG)] | Annotated[GoalVersionSpec, Tag(_GOALS_TAG)],
            Discriminator(_version_kind),
        ]
    ] = Field(min_length=1)


# --- what the engine uses ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """One metric's promise: `duration` of `calendar` time, with warning fractions."""

    duration: timedelta
    calendar: Calendar
    warnings: tuple[float, ...]
    # `duration * fraction` for each of `warnings`, computed once: the engine needs
    # them after most events, and multiplying a timedelta by a float is not cheap.
    warning_amounts: tuple[timedelta, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        amounts = tuple(self.duration * fraction for fraction in self.warnings)
        object.__setattr__(self, "warning_amounts", amounts)


@dataclass(frozen=True, slots=True)
class Plan:
    name: str
    default_priority: int
    # Plain dicts (not Mapping): the compiled engine looks targets up with dict's C API
    # instead of a generic method call. Treat them as read-only: `MappingProxyType`s
    # here and in `Policy.plans` cost replay 2 % compiled and 7 % in pure Python (issue
    # #15, BENCHMARKS.md).
    targets: dict[int, dict[Metric, Target]]
    exempt_stages: frozenset[ProductStage]

    def target(self, priority: int, metric: Metric) -> Target | None:
        return self.targets[priority].get(metric)


@dataclass(frozen=True, slots=True)
class Policy:
    """One policy version; the latest of a history, which `versions` then holds."""

    version: str
    plans: dict[str, Plan]  # read-only, like Plan.targets
    pause_statuses: frozenset[Status]
    effective_from: datetime | None = None
    # Every version of the file, oldest first (this one last); empty for a file that is a
    # single policy. Read-only.
    versions: tuple[Policy, ...] = ()
    # A goal policy (non-empty `goals`) runs every metric on the engine's goal path; a
    # plan x priority policy has none and runs on the plan path, exactly as before goals.
    goals: tuple[Goal, ...] = ()
    metrics: tuple[MetricDef, ...] = ()  # the metrics the goals use, in definition order
    # The metrics each signal concerns (start, stop or reset), in definition order: the
    # engine looks an event's signal up once instead of asking every metric. Read-only.
    by_signal: dict[str, tuple[MetricDef, ...]] = field(default_factory=dict)
    pauses: dict[str, frozenset[Status]] = field(default_factory=dict)  # metric -> statuses
    calendars: dict[str, Calendar] = field(default_factory=dict)  # read-only
    default_priority: int = 3
    # The goals indexed for matching (`GoalMatcher`), built once here from `goals`.
    matcher: GoalMatcher = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "matcher", GoalMatcher(self.goals))

    @classmethod
    def from_mapping(cls, data: Any, source: str = "<policy>") -> Policy:
        """Validate a parsed policy document (one policy, or `versions:`) and build it,
        or raise `PolicyError`."""
        if isinstance(data, dict) and "versions" in data:
            return _build_history(data, source)
        try:
            kind = GoalPolicySpec if isinstance(data, dict) and "goals" in data else PolicySpec
            spec = kind.model_validate(data)
        except ValidationError as exc:
            raise PolicyError(source, _pydantic_issues(exc)) from None
        return _build(spec, source)

    def history(self) -> tuple[Policy, ...]:
        """The versions, oldest first (just this one for a single policy)."""
        return self.versions or (self,)

    def at(self, instant: datetime) -> Policy:
        """The version in force at `instant` (the first one before the second starts)."""
        versions = self.versions
        if not versions:
            return self
        starts = [v.effective_from or _BEGINNING for v in versions]
        return versions[max(bisect_right(starts, instant) - 1, 0)]

    def describe(self) -> str:
        """The versions and when each takes effect, for logs and `policies validate`."""
        return ", ".join(
            v.version
            + ("" if v.effective_from is None else f" from {v.effective_from.isoformat()}")
            for v in self.history()
        )


_BEGINNING = datetime.min.replace(tzinfo=UTC)


class PolicyError(SlaWorkerError, ValueError):
    """A policy file that cannot be used; lists every problem as `path: message`.

    `lines`: the file's line of each issue where the reader knows it (None: unknown);
    `with_lines()` shows them, as `policies validate` does."""

    def __init__(
        self, source: str, issues: list[str], lines: list[int | None] | None = None
    ) -> None:
        self.source = source
        self.issues = issues
        self.lines = lines or [None] * len(issues)
        super().__init__("\n".join(f"{source}: {issue}" for issue in issues))

    def with_lines(self) -> str:
        """Every problem as `source: path: message (line N)`."""
        return "\n".join(
            f"{self.source}: {issue}" + ("" if line is None else f" (line {line})")
            for issue, line in zip(self.issues, self.lines, strict=True)
        )


def _pydantic_issues(exc: ValidationError) -> list[str]:
    issues = []
    for error in exc.errors(include_url=False):
        parts = [str(part) for part in error["loc"] if part not in (_PLANS_TAG, _GOALS_TAG)]
        path = ".".join(parts) or "(top level)"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "missing":
            message = "required"
        elif error["type"] == "extra_forbidden":
            message = "unknown field"
        issues.append(f"{path}: {message}")
    return issues


def _build(spec: PolicySpec, source: str) -> Policy:
    issues: list[str] = []
    calendars: dict[str, Calendar] = {}
    for name, calendar_spec in spec.calendars.items():
        try:
            calendars[name] = calendar_spec.build(name)
        except CalendarError as exc:
            issues.append(f"calendars.{name}: {exc}")

    plans: dict[str, Plan] = {}
    for plan_name, plan in spec.plans.items():
        where = f"plans.{plan_name}"
        if plan.default_priority not in plan.priorities:
            issues.append(
                f"{where}.default_priority: {plan.default_priority} is not one of the "
                f"plan's priorities {sorted(plan.priorities)}"
            )
        warnings = tuple(plan.warnings if plan.warnings is not None else spec.warnings)
        targets: dict[int, dict[Metric, Target]] = {}
        for priority, priority_spec in plan.priorities.items():
            targets[priority] = {}
            for metric in METRICS:
                target_spec: TargetSpec | None = getattr(priority_spec, metric)
                if target_spec is None:
                    continue
                calendar = calendars.get(target_spec.calendar)
                if calendar is None:
                    if target_spec.calendar not in spec.calendars:
                        issues.append(
                            f"{where}.priorities.{priority}.{metric}.calendar: unknown calendar "
                            f"{target_spec.calendar!r} (defined: {sorted(spec.calendars)})"
                        )
                    continue
                closing = never_opens_issue(calendar)
                if closing is not None:
                    issues.append(f"{where}.priorities.{priority}.{metric}.calendar: {closing}")
                targets[priority][metric] = Target(target_spec.target, calendar, warnings)
        plans[plan_name] = Plan(
            plan_name, plan.default_priority, targets, frozenset(plan.exempt_stages)
        )
    goals: tuple[Goal, ...] = ()
    metrics: tuple[MetricDef, ...] = ()
    pause_statuses = frozenset(spec.pause_statuses)
    if spec.goals:
        goals, metrics = build_goals(spec, calendars, plans, pause_statuses, issues)
    if issues:
        raise PolicyError(source, issues)
    effective_from = getattr(spec, "effective_from", None)
    return Policy(
        spec.version,
        plans,
        pause_statuses,
        None if effective_from is None else effective_from.astimezone(UTC),
        goals=goals,
        metrics=metrics,
        by_signal=index_signals(metrics),
        pauses={metric.name: metric.pause for metric in metrics},
        calendars=calendars,
        default_priority=spec.default_priority,
    )


def _build_history(data: dict[str, Any], source: str) -> Policy:
    try:
        spec = HistorySpec.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(source, _pydantic_issues(exc)) from None
    issues: list[str] = []
    built: list[Policy] = []
    for i, version in enumerate(spec.versions):
        where = f"versions.{i}"
        try:
            built.append(_build(version, source))
        except PolicyError as exc:
            issues += [f"{where}.{issue}" for issue in exc.issues]
            continue
        if i and version.effective_from is None:
            issues.append(f"{where}.effective_from: required after the first version")
    names = [v.version for v in spec.versions]
    for name in sorted({n for n in names if names.count(n) > 1}):
        issues.append(f"versions: version {name!r} appears more than once")
    starts = [v.effective_from for v in spec.versions]
    for i in range(1, len(starts)):
        before, after = starts[i - 1], starts[i]
        if before is not None and after is not None and after <= before:
            issues.append(
                f"versions.{i}.effective_from: {after.isoformat()} is not after the previous "
                f"version's {before.isoformat()}"
            )
    if issues:
        raise PolicyError(source, issues)
    latest = built[-1]
    return Policy(
        latest.version,
        latest.plans,
        latest.pause_statuses,
        latest.effective_from,
        tuple(built),
        goals=latest.goals,
        metrics=latest.metrics,
        by_signal=latest.by_signal,
        pauses=latest.pauses,
        calendars=latest.calendars,
        default_priority=latest.default_priority,
    )
