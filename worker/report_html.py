"""The HTML page of `sla-worker report`: one self-contained file, charts included.

The charts are drawn by matplotlib (the `report` extra) and embedded as inline SVG, so
the page needs no network and no script to open. Every number in its tables carries a
`data-field` attribute naming its place in the JSON report (`totals.met`,
`by_plan.0.achievement_pct`, ...): the page shows exactly the JSON report's numbers, and
a test reads them back from the rendered page.
"""

from __future__ import annotations

import io
from html import escape
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: render to SVG only

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from worker.report import BREACH_FIELDS, STATS

MAX_BREACH_ROWS = 500
"""Breached timers listed on the page (all of them are in the JSON and CSV reports)."""

MET_COLOR, BREACHED_COLOR, LINE_COLOR = "#2e7d32", "#c62828", "#1f3b73"

_STYLE = """
body { font-family: "DejaVu Sans", Arial, sans-serif; margin: 24px 32px; color: #1b1b1b; }
h1 { font-size: 24px; margin-bottom: 4px; }
h2 { font-size: 18px; margin-top: 28px; border-bottom: 1px solid #ccc; padding-bottom: 4px; }
p.note { color: #555; font-size: 13px; max-width: 70em; }
.kpis { display: flex; gap: 16px; margin: 16px 0; }
.kpi { border: 1px solid #ddd; border-radius: 6px; padding: 10px 16px; min-width: 120px; }
.kpi .label { font-size: 12px; color: #555; }
.kpi .value { font-size: 24px; font-weight: bold; }
.charts { display: flex; flex-wrap: wrap; gap: 12px; }
.chart svg { width: 590px; height: auto; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0; }
th, td { border: 1px solid #ddd; padding: 3px 8px; }
th { background: #f3f3f3; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
"""

_HEADERS = {
    "period": "period",
    "plan": "plan",
    "priority": "priority",
    "metric": "metric",
    "customer_id": "customer",
    "started": "started",
    "met": "met",
    "breached": "breached",
    "achievement_pct": "achievement",
    "first_response_count": "first responses timed",
    "first_response_median_s": "first response median",
    "first_response_p90_s": "first response p90",
    "first_response_median_pct_of_target": "median, % of target",
    "first_response_p90_pct_of_target": "p90, % of target",
}


def format_value(name: str, value: Any) -> str:
    """How a number of the JSON report reads on the page."""
    if value is None:
        return "n/a"
    if name.endswith("_pct") or name.endswith("_pct_of_target"):
        return f"{value:.1f} %"
    if name.endswith("_s"):
        total = round(value)
        return f"{total // 3600}:{total // 60 % 60:02d}:{total % 60:02d}"
    return str(value)


def render_html(report: dict[str, Any], title: str = "SLA report") -> str:
    totals = report["totals"]
    source = report["source"]
    period = report["period"]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="note">From {source["records"]} records: {source["warnings"]} warnings, '
        f"{source['breaches']} breaches, {source['finished_timers']} finished timers. "
        "Timers are counted in the period they started (UTC), once their outcome is known: "
        "met, or breached (also while still running). Times to first response are business "
        "time on the timer's calendar, without paused time, of the first responses that "
        "finished; median and p90 by nearest rank.</p>",
        '<div class="kpis">',
        *(
            f'<div class="kpi"><div class="label">{label}</div>'
            f'<div class="value" data-field="totals.{name}">'
            f"{escape(format_value(name, totals[name]))}</div></div>"
            for name, label in (
                ("started", "timers judged"),
                ("met", "met"),
                ("breached", "breached"),
                ("achievement_pct", "achievement"),
                ("first_response_median_s", "first response, median"),
                ("first_response_p90_s", "first response, p90"),
            )
        ),
        "</div>",
        '<div class="charts">',
        _chart("chart-periods", _periods_chart(report["by_period"], period)),
        _chart("chart-plan-priority", _achievement_chart(report["by_plan_priority"])),
        _chart("chart-first-response", _first_response_chart(report["by_plan_priority"])),
    ]
    customers = [row for row in report["by_customer"] if row["customer_id"] is not None]
    if customers:
        parts.append(_chart("chart-customers", _customers_chart(customers)))
    parts.append("</div>")
    sections = (
        (f"By {period}", "by_period", ("period",)),
        ("By plan", "by_plan", ("plan",)),
        ("By priority", "by_priority", ("priority",)),
        ("By metric", "by_metric", ("metric",)),
        ("By customer", "by_customer", ("customer_id",)),
        ("By plan and priority", "by_plan_priority", ("plan", "priority")),
    )
    parts.append(f"<h2>Totals</h2>{_table('totals', [totals], ())}")
    for heading, name, keys in sections:
        parts.append(f"<h2>{escape(heading)}</h2>{_table(name, report[name], keys)}")
    if "by_metric_goal" in report:  # a goal policy's output
        table = _table("by_metric_goal", report["by_metric_goal"], ("metric", "goal"))
        parts.append(f"<h2>By metric and goal</h2>{table}")
    parts.append(_breaches(report["breached"]))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _table(name: str, rows: list[dict[str, Any]], keys: tuple[str, ...]) -> str:
    head = "".join(f"<th>{_HEADERS[c]}</th>" for c in (*keys, *STATS))
    body = []
    for i, row in enumerate(rows):
        prefix = name if name == "totals" else f"{name}.{i}"
        cells = [f"<td>{escape(_label(row[k]))}</td>" for k in keys]
        cells += [
            f'<td class="n" data-field="{prefix}.{s}">{escape(format_value(s, row[s]))}</td>'
            for s in STATS
        ]
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table id="table-{name}"><tr>{head}</tr>{"".join(body)}</table>'


def _breaches(rows: list[dict[str, Any]]) -> str:
    shown = rows[:MAX_BREACH_ROWS]
    note = (
        f"All {len(rows)} breached timers, earliest start first."
        if len(rows) == len(shown)
        else f"The first {len(shown)} of {len(rows)} breached timers (earliest start first); "
        "the JSON report and `--breaches-csv` list them all."
    )
    head = (
        "<tr><th>ticket</th><th>customer</th><th>plan</th><th>priority</th><th>metric</th>"
        "<th>cycle</th><th>started</th><th>deadline</th><th>finished</th>"
        "<th>business time</th><th>target</th></tr>"
    )
    body = "".join(
        "<tr>"
        + "".join(
            f"<td>{escape(_label(r[k]))}</td>"
            for k in BREACH_FIELDS[:-2]  # the business time and target follow, formatted
        )
        + f'<td class="n">{format_value("business_time_s", r["business_time_s"])}</td>'
        + f'<td class="n">{format_value("target_s", r["target_s"])}</td></tr>'
        for r in shown
    )
    return (
        f'<h2>Breached timers</h2><p class="note" id="breaches-note">{escape(note)}</p>'
        f'<table id="table-breached">{head}{body}</table>'
    )


def _label(value: Any) -> str:
    return "(no customer)" if value is None else str(value)


# --- charts -------------------------------------------------------------------------------


def _chart(chart_id: str, figure: Figure) -> str:
    buffer = io.StringIO()
    # Glyphs as paths: the page looks the same wherever it is opened; a fixed hash salt
    # keeps the SVG ids, and so the file, the same from run to run.
    with plt.rc_context({"svg.hashsalt": "sla-worker", "svg.fonttype": "path"}):
        figure.savefig(buffer, format="svg", metadata={"Date": None}, bbox_inches="tight")
    plt.close(figure)
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg") :]  # drop the XML declaration and DOCTYPE
    return f'<div class="chart" id="{chart_id}">{svg}</div>'


def _figure() -> tuple[Figure, Any]:
    figure, axes = plt.subplots(figsize=(7.2, 3.8))
    return figure, axes


def _periods_chart(rows: list[dict[str, Any]], period: str) -> Figure:
    figure, axes = _figure()
    labels = [str(r["period"]) for r in rows]
    met = [r["met"] for r in rows]
    breached = [r["breached"] for r in rows]
    axes.bar(labels, met, color=MET_COLOR, label="met")
    axes.bar(labels, breached, bottom=met, color=BREACHED_COLOR, label="breached")
    axes.set_ylabel("timers")
    axes.set_title(f"Timers per {period}, and achievement")
    axes.tick_params(axis="x", labelrotation=45 if len(labels) > 6 else 0)
    line = axes.twinx()
    achieved = [r["achievement_pct"] for r in rows]
    line.plot(labels, achieved, color=LINE_COLOR, marker="o", label="achievement %")
    line.set_ylim(0, 105)
    line.set_ylabel("achievement %")
    handles = axes.get_legend_handles_labels()
    more = line.get_legend_handles_labels()
    axes.legend(
        handles[0] + more[0],
        handles[1] + more[1],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.12 if len(labels) <= 6 else -0.3),
        ncol=3,
        fontsize=8,
    )
    return figure


def _achievement_chart(rows: list[dict[str, Any]]) -> Figure:
    figure, axes = _figure()
    labels = [f"{r['plan']} P{r['priority']}" for r in rows]
    values = [r["achievement_pct"] or 0 for r in rows]
    colors = [MET_COLOR if v >= 90 else "#f9a825" if v >= 75 else BREACHED_COLOR for v in values]
    axes.bar(labels, values, color=colors)
    axes.set_ylim(0, 105)
    axes.set_ylabel("achievement %")
    axes.set_title("Achievement by plan and priority (green ≥ 90 %, amber ≥ 75 %)")
    axes.tick_params(axis="x", labelrotation=45)
    return figure


def _first_response_chart(rows: list[dict[str, Any]]) -> Figure:
    figure, axes = _figure()
    timed = [r for r in rows if r["first_response_count"]]
    labels = [f"{r['plan']} P{r['priority']}" for r in timed]
    positions = range(len(timed))
    width = 0.4
    axes.bar(
        [p - width / 2 for p in positions],
        [r["first_response_median_pct_of_target"] for r in timed],
        width,
        color=LINE_COLOR,
        label="median",
    )
    axes.bar(
        [p + width / 2 for p in positions],
        [r["first_response_p90_pct_of_target"] for r in timed],
        width,
        color="#7e57c2",
        label="p90",
    )
    axes.axhline(100, color=BREACHED_COLOR, linestyle="--", label="target")
    axes.set_xticks(list(positions), labels, rotation=45)
    axes.set_ylabel("% of target (business time)")
    axes.set_title("Time to first response against the target")
    axes.legend(fontsize=8)
    return figure


def _customers_chart(rows: list[dict[str, Any]]) -> Figure:
    figure, axes = _figure()
    top = sorted(rows, key=lambda r: (-r["breached"], str(r["customer_id"])))[:15][::-1]
    labels = [str(r["customer_id"]) for r in top]
    axes.barh(labels, [r["met"] for r in top], color=MET_COLOR, label="met")
    axes.barh(
        labels,
        [r["breached"] for r in top],
        left=[r["met"] for r in top],
        color=BREACHED_COLOR,
        label="breached",
    )
    axes.set_xlabel("timers")
    axes.set_title("Customers with the most breaches")
    axes.tick_params(axis="y", labelsize=8)
    axes.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2)
    return figure
