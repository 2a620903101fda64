"""Building a goal policy: metric definitions compiled, goals resolved and checked.

`build_goals` turns the `metrics:` and `goals:` of a validated policy file (and its
`plans:`, a short form that expands to goals after the named ones) into the `Goal`s and
`MetricDef`s the engine uses, and lists every problem: an unknown metric or calendar, a
calendar that never opens again (fixed or mapped: a timer on it could never come due), a
condition that can never match (an empty list of values, a goal that an earlier goal
shadows), a goal name used twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from worker.core.calendar import Calendar, never_opens_issue
from worker.core.events import Status
from worker.core.goals import (
    ATTRIBUTES,
    CalendarMapSpec,
    CalendarRef,
    Goal,
    GoalTarget,
    conditions_of,
)
from worker.core.metrics import BUILTIN_METRICS, MetricDef, MetricSpec, compile_metric

if TYPE_CHECKING:
    from worker.core.policy import Plan, PolicySpec


def build_goals(
    spec: PolicySpec,
    calendars: dict[str, Calendar],
    plans: dict[str, Plan],
    pause_statuses: frozenset[Status],
    issues: list[str],
) -> tuple[tuple[Goal, ...], tuple[MetricDef, ...]]:
    """The goals (named ones first, then the plans' expansion) and the metrics they use;
    problems are appended to `issues` as `path: message`."""
    specs: dict[str, MetricSpec] = dict(BUILTIN_METRICS)
    for name, defined in spec.metrics.items():
        if name in BUILTIN_METRICS:
            issues.append(f"metrics.{name}: {name!r} is a built-in metric; choose another name")
        specs[name] = defined
    for name, defined in spec.metrics.items():
        if defined.after is not None and defined.after not in specs:
            issues.append(f"metrics.{name}.after: unknown metric {defined.after!r}")

    def calendar(ref: CalendarRef, where: str) -> tuple[Calendar, str | None, dict[str, Calendar]]:
        # (calendar name, the path of the reference) for each calendar the ref can choose
        named = (
            [(ref, where)]
            if isinstance(ref, str)
            else [
                (ref.default, f"{where}.default"),
                *((name, f"{where}.map.{value}") for value, name in ref.map.items()),
            ]
        )
        for name, path in named:
            if name not in calendars and name not in spec.calendars:
                issues.append(
                    f"{where}: unknown calendar {name!r} (defined: {sorted(spec.calendars)})"
                )
            elif name in calendars:
                closing = never_opens_issue(calendars[name])
                if closing is not None:
                    issues.append(f"{path}: {closing}")
        if isinstance(ref, str):
            return calendars.get(ref) or _unknown(), None, {}
        mapped = {value: calendars.get(name) or _unknown() for value, name in ref.map.items()}
        return calendars.get(ref.default) or _unknown(), ref.by, mapped

    goals: list[Goal] = []
    shadows = _Shadows()
    used: list[str] = []
    seen_names: dict[str, int] = {}
    for i, goal in enumerate(spec.goals):
        where = f"goals.{i}"
        if goal.name in seen_names:
            issues.append(
                f"{where}.name: goal {goal.name!r} is already goals.{seen_names[goal.name]}"
            )
        seen_names.setdefault(goal.name, i)
        for attribute, values in goal.when:
            if values is not None and not values:
                issues.append(f"{where}.when.{attribute}: an empty list can never match")
        for field, values in (goal.when.fields or {}).items():
            if not values:
                issues.append(f"{where}.when.fields.{field}: an empty list can never match")
        own = None if goal.calendar is None else calendar(goal.calendar, f"{where}.calendar")
        warnings = tuple(goal.warnings if goal.warnings is not None else spec.warnings)
        targets: dict[str, GoalTarget] = {}
        for metric, target in goal.targets.items():
            if metric not in specs:
                issues.append(
                    f"{where}.targets.{metric}: unknown metric {metric!r} "
                    f"(built-in: {', '.join(BUILTIN_METRICS)}; defined: {sorted(spec.metrics)})"
                )
                continue
            if target.calendar is not None:
                fixed, by, mapped = calendar(target.calendar, f"{where}.targets.{metric}.calendar")
            elif own is not None:
                fixed, by, mapped = own
            else:
                issues.append(f"{where}.targets.{metric}.calendar: required (no goal calendar)")
                continue
            targets[metric] = GoalTarget(target.target, fixed, by, mapped, warnings)
            if metric not in used:
                used.append(metric)
        fields = tuple(
            (name, frozenset(values)) for name, values in sorted((goal.when.fields or {}).items())
        )
        built = Goal(goal.name, conditions_of(goal.when), fields, targets)
        j = shadows.first_shadowing(built)
        if j is not None:
            issues.append(
                f"{where}: can never match: every ticket it matches matches goal "
                f"{goals[j].name!r} (goals.{j}) first"
            )
        shadows.add(built)
        goals.append(built)

    for plan in plans.values():
        goals += _expand(plan, used)

    # The metrics the goals use, and the ones those must wait for (`after`).
    needed = set(used)
    for name in list(used):
        after = specs[name].after if name in specs else None
        while after is not None and after in specs and after not in needed:
            needed.add(after)
            after = specs[after].after
    metrics = tuple(
        compile_metric(name, defined, pause_statuses)
        for name, defined in specs.items()
        if name in needed
    )
    return tuple(goals), metrics


def _unknown() -> Calendar:
    """A stand-in for a calendar the policy does not define (already an issue)."""
    return Calendar.always_open("unknown")


class _Shadows:
    """Finds an earlier goal that matches every ticket a new one matches, without
    comparing each pair (a policy of 1,000 goals is checked in well under a second).

    An earlier goal `e` shadows a new goal `g` when, for every attribute `e` constrains,
    `g` constrains it to a subset of `e`'s values. So for any attribute `a` that `g`
    constrains and any one of its values `v`, `e` either leaves `a` free or accepts `v`:
    the candidates are those two short lists, for the `a` that makes them shortest.
    """

    def __init__(self) -> None:
        self.goals: list[Goal] = []
        self.free: dict[str, list[int]] = {name: [] for name in ATTRIBUTES}
        self.accepting: dict[tuple[str, str], list[int]] = {}
        self.unconditional: int | None = None

    def first_shadowing(self, goal: Goal) -> int | None:
        if self.unconditional is not None:
            return self.unconditional
        if not goal.conditions:
            # Only a goal with no plain conditions can shadow one: check those alone.
            candidates = [i for i, earlier in enumerate(self.goals) if not earlier.conditions]
        else:
            best: list[int] | None = None
            for name, values in goal.conditions:
                value = next(iter(values), None)
                found = self.free[name] + self.accepting.get((name, str(value)), [])
                if best is None or len(found) < len(best):
                    best = found
            candidates = sorted(best or [])
        for i in candidates:
            if self.goals[i].shadows(goal):
                return i
        return None

    def add(self, goal: Goal) -> None:
        index = len(self.goals)
        self.goals.append(goal)
        constrained = dict(goal.conditions)
        for name in ATTRIBUTES:
            values = constrained.get(name)
            if values is None:
                self.free[name].append(index)
                continue
            for value in values:
                self.accepting.setdefault((name, value), []).append(index)
        if not goal.conditions and not goal.fields and self.unconditional is None:
            self.unconditional = index


def _expand(plan: Plan, used: list[str]) -> list[Goal]:
    """The goals of one plan of the plan x priority short form: tickets of an exempt
    stage first (no targets), then one goal per priority."""
    plan_only = ("plan", frozenset({plan.name}))
    goals: list[Goal] = []
    if plan.exempt_stages:
        stages = ("product_stage", frozenset(plan.exempt_stages))
        goals.append(Goal(None, (plan_only, stages), (), {}))
    for priority, targets in plan.targets.items():
        converted: dict[str, GoalTarget] = {}
        for metric, target in targets.items():
            converted[metric] = GoalTarget(
                target.duration, target.calendar, None, {}, target.warnings
            )
            if metric not in used:
                used.append(metric)
        conditions = (plan_only, ("priority", frozenset({str(priority)})))
        goals.append(Goal(None, conditions, (), converted))
    return goals


__all__ = ["CalendarMapSpec", "build_goals"]
