"""`sla-worker report`: SLA compliance from what a replay or an audit wrote.

Input: the JSON Lines of `sla-worker replay --finished-timers` or `sla-worker audit
--finished-timers` (warnings, breaches and `sla-timer-finished` records; anything else is
counted and skipped). Each timer is known by its ticket, metric, cycle and start; it is
judged when its outcome is known at the end of the input:

- **met**: its `sla-timer-finished` record says `met`;
- **breached**: its `sla-breach` is in the input (whether the timer stopped later or was
  still running at the end), or its finished record says `breached`;
- a timer still running within its target has no outcome yet: it is not counted.

Per group the report gives the timers *started* in it (by `started_at`, UTC; every
judged timer: met + breached), met, breached, achievement (met / started, in %), and the
business time to first response of the first-response timers that finished: median and
p90 (nearest rank: values that occurred), in seconds and in % of the target in force
when each stopped. Groups: in total, per period (ISO week or calendar month), plan,
priority, metric, customer, plan and priority, and all five together; where the records
name goals (a goal policy's output), also per metric and goal (`by_metric_goal`, and a
`goal` column in the CSV). And the list of breached timers.

No I/O of its own and no clock: `read_records` takes lines, `build_report` returns a dict
(the JSON report); `write_csv` and `write_breaches_csv` format it. The HTML page is
`worker.report_html`'s (it needs matplotlib).
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import IO, Any, Literal

Period = Literal["week", "month"]
DIMENSIONS: tuple[str, ...] = ("period", "plan", "priority", "metric", "customer_id")
# (name in the JSON report, dimensions grouped by)
BREAKDOWNS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("by_period", ("period",)),
    ("by_plan", ("plan",)),
    ("by_priority", ("priority",)),
    ("by_metric", ("metric",)),
    ("by_customer", ("customer_id",)),
    ("by_plan_priority", ("plan", "priority")),
    ("groups", DIMENSIONS),
)
STATS: tuple[str, ...] = (
    "started",
    "met",
    "breached",
    "achievement_pct",
    "first_response_count",
    "first_response_median_s",
    "first_response_p90_s",
    "first_response_median_pct_of_target",
    "first_response_p90_pct_of_target",
)
BREACH_FIELDS: tuple[str, ...] = (
    "ticket_id",
    "customer_id",
    "plan",
    "priority",
    "metric",
    "cycle",
    "started_at",
    "deadline",
    "finished_at",
    "business_time_s",
    "target_s",
)

_DURATION = re.compile(r"PT(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?")


def seconds(text: str) -> float:
    """Seconds of an ISO 8601 duration as the outputs write them (`PT1H2M3.5S`, `PT0S`)."""
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ValueError(f"not a duration: {text!r}")
    hours, minutes, secs = match.groups()
    return int(hours or 0) * 3600 + int(minutes or 0) * 60 + float(secs or 0)


@dataclass(slots=True)
class Timer:
    """One timer as the records describe it (the finished record wins over the breach)."""

    ticket_id: str
    customer_id: str | None
    plan: str
    priority: int
    metric: str
    cycle: int
    started_at: str
    target_s: float
    breached: bool = False
    met: bool = False
    deadline: str | None = None
    finished_at: str | None = None
    business_s: float | None = None
    goal: str | None = None  # the goal that judged it (the latest record's)


@dataclass(slots=True)
class Source:
    """What the input held."""

    records: int = 0
    warnings: int = 0
    breaches: int = 0
    finished: int = 0
    skipped: int = 0  # blank, not JSON, or another type
    timers: dict[tuple[str, str, int, str], Timer] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return {
            "records": self.records,
            "warnings": self.warnings,
            "breaches": self.breaches,
            "finished_timers": self.finished,
            "skipped": self.skipped,
        }


def read_records(lines: Iterable[bytes | str]) -> Source:
    """Collect the timers of a replay's or audit's output."""
    source = Source()
    timers = source.timers
    for raw in lines:
        if not raw or raw.isspace():
            continue
        source.records += 1
        try:
            record = json.loads(raw)
            kind = record.get("type")
        except (ValueError, AttributeError):
            source.skipped += 1
            continue
        if kind == "sla-warning":
            source.warnings += 1
            continue
        if kind not in ("sla-breach", "sla-timer-finished"):
            source.skipped += 1
            continue
        key = (record["ticket_id"], record["metric"], record["cycle"], record["started_at"])
        timer = timers.get(key)
        if timer is None:
            timer = timers[key] = Timer(
                record["ticket_id"],
                record.get("customer_id"),
                record["plan"],
                record["priority"],
                record["metric"],
                record["cycle"],
                record["started_at"],
                seconds(record["target"]),
            )
        goal = record.get("goal")
        if goal is not None:
            timer.goal = goal
        if kind == "sla-breach":
            source.breaches += 1
            timer.breached = True
            timer.deadline = record["due_at"]
            continue
        source.finished += 1
        # The ticket as it was when the timer stopped: its latest priority and target.
        timer.priority = record["priority"]
        timer.target_s = seconds(record["target"])
        timer.finished_at = record["finished_at"]
        timer.business_s = seconds(record["business_time"])
        if record["result"] == "met":
            timer.met = True
        else:
            timer.breached = True
        if timer.deadline is None:
            timer.deadline = record["deadline"]
    return source


def nearest_rank(values: list[float], percent: float) -> float:
    """The `percent` percentile of sorted `values` by the nearest-rank method."""
    rank = max(math.ceil(percent / 100 * len(values)), 1)
    return values[rank - 1]


def _stats(timers: list[Timer]) -> dict[str, Any]:
    met = sum(1 for t in timers if t.met)
    breached = sum(1 for t in timers if t.breached)
    started = met + breached
    times = sorted(
        t.business_s for t in timers if t.metric == "first_response" and t.business_s is not None
    )
    shares = sorted(
        t.business_s / t.target_s * 100
        for t in timers
        if t.metric == "first_response" and t.business_s is not None
    )
    return {
        "started": started,
        "met": met,
        "breached": breached,
        "achievement_pct": round(met / started * 100, 2) if started else None,
        "first_response_count": len(times),
        "first_response_median_s": round(nearest_rank(times, 50), 3) if times else None,
        "first_response_p90_s": round(nearest_rank(times, 90), 3) if times else None,
        "first_response_median_pct_of_target": round(nearest_rank(shares, 50), 2)
        if shares
        else None,
        "first_response_p90_pct_of_target": round(nearest_rank(shares, 90), 2) if shares else None,
    }


class _Periods:
    """`started_at` -> its period label, cached per day."""

    def __init__(self, period: Period) -> None:
        self.period = period
        self._weeks: dict[str, str] = {}

    def __call__(self, started_at: str) -> str:
        if self.period == "month":
            return started_at[:7]
        day = started_at[:10]
        label = self._weeks.get(day)
        if label is None:
            year, week, _ = date.fromisoformat(day).isocalendar()
            label = self._weeks[day] = f"{year}-W{week:02d}"
        return label


def _sort_key(key: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(("", "") if v is None else (type(v).__name__, v) for v in key)


def build_report(source: Source, period: Period = "month") -> dict[str, Any]:
    """The JSON report (see the module doc) of the timers in `source`."""
    label = _Periods(period)
    judged = [t for t in source.timers.values() if t.met or t.breached]
    # (period, plan, priority, metric, customer_id) of each judged timer
    dims = [(label(t.started_at), t.plan, t.priority, t.metric, t.customer_id) for t in judged]
    report: dict[str, Any] = {
        "period": period,
        "source": source.counts(),
        "totals": _stats(judged),
    }
    for name, by in BREAKDOWNS:
        indexes = [DIMENSIONS.index(d) for d in by]
        grouped: dict[tuple[Any, ...], list[Timer]] = {}
        for timer, values in zip(judged, dims, strict=True):
            grouped.setdefault(tuple(values[i] for i in indexes), []).append(timer)
        report[name] = [
            {**dict(zip(by, key, strict=True)), **_stats(grouped[key])}
            for key in sorted(grouped, key=_sort_key)
        ]
    if any(t.goal is not None for t in judged):
        # Only for a goal policy's output: other reports stay what they were.
        by_goal: dict[tuple[str, str | None], list[Timer]] = {}
        for timer in judged:
            by_goal.setdefault((timer.metric, timer.goal), []).append(timer)
        report["by_metric_goal"] = [
            {"metric": metric, "goal": goal, **_stats(by_goal[(metric, goal)])}
            for metric, goal in sorted(by_goal, key=_sort_key)
        ]
    report["breached"] = [
        {
            "ticket_id": t.ticket_id,
            "customer_id": t.customer_id,
            "plan": t.plan,
            "priority": t.priority,
            "metric": t.metric,
            "cycle": t.cycle,
            "started_at": t.started_at,
            "deadline": t.deadline,
            "finished_at": t.finished_at,
            "business_time_s": t.business_s,
            "target_s": t.target_s,
            **({} if t.goal is None else {"goal": t.goal}),
        }
        for t in sorted(
            (t for t in judged if t.breached),
            key=lambda t: (t.started_at, t.ticket_id, t.metric, t.cycle),
        )
    ]
    return report


def write_csv(report: dict[str, Any], out: IO[str]) -> None:
    """Every group of the report as one table: `breakdown` names the grouping (`total`,
    `period`, `plan`, ..., `plan+priority`, `all`); columns it does not group by are empty."""
    writer = csv.writer(out, lineterminator="\n")
    goals = "by_metric_goal" in report
    columns = (*DIMENSIONS, "goal") if goals else DIMENSIONS
    writer.writerow(["breakdown", *columns, *STATS])
    rows: list[tuple[str, dict[str, Any]]] = [("total", report["totals"])]
    for name, by in BREAKDOWNS:
        kind = "all" if by == DIMENSIONS else "+".join(by).replace("customer_id", "customer")
        rows += [(kind, row) for row in report[name]]
    if goals:
        rows += [("metric+goal", row) for row in report["by_metric_goal"]]
    for kind, row in rows:
        writer.writerow(
            [kind, *(_cell(row.get(d)) for d in columns), *(_cell(row[s]) for s in STATS)]
        )


def write_breaches_csv(report: dict[str, Any], out: IO[str]) -> None:
    writer = csv.writer(out, lineterminator="\n")
    goals = "by_metric_goal" in report
    fields = (*BREACH_FIELDS, "goal") if goals else BREACH_FIELDS
    writer.writerow(fields)
    for row in report["breached"]:
        writer.writerow([_cell(row.get(f)) for f in fields])


def _cell(value: Any) -> Any:
    return "" if value is None else value
