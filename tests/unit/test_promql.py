"""The alert rules, the dashboard and the docs query only what the worker exports.

- `promtool check config`, `promtool check rules` and `promtool test rules` on
  deploy/prometheus (unit tests of every alert, firing and not firing);
- every PromQL expression of the alert rules, of the Grafana dashboard and of
  docs/operations.md parses (promtool) and names only metrics a `Metrics` instance exports;
- no metric has a ticket label; every metric, alert and runbook is documented.

promtool comes from Prometheus (scripts/ensure-prometheus installs it). Without it these
tests are skipped, except in CI (CI=true), where they fail.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import Counter, Gauge, Histogram, Summary

from tests.promql import (
    ALERT_TESTS,
    ALERTS,
    OPERATIONS,
    PROMETHEUS_DIR,
    ROOT,
    alert_rules,
    dashboard_expressions,
    dashboard_variable_metrics,
    docs_expressions,
    find_tool,
    grafana_to_promql,
)
from worker.core.policy import Policy
from worker.metrics import Metrics

FAST_POLICY = ROOT / "tests" / "data" / "fast-policy.yaml"

# Series Prometheus itself adds to every scrape.
SCRAPE_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}


# --- promtool ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def promtool() -> str:
    return find_tool("promtool")


def run_promtool(promtool: str, *args: str, cwd: Path = PROMETHEUS_DIR) -> str:
    result = subprocess.run(
        [promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
    output = f"{result.stdout}\n{result.stderr}".strip()
    assert result.returncode == 0, f"promtool {' '.join(args)} failed:\n{output}"
    return output


def test_promtool_check_config(promtool: str) -> None:
    output = run_promtool(promtool, "check", "config", "prometheus.yml")
    assert "SUCCESS" in output


def test_promtool_check_rules(promtool: str) -> None:
    output = run_promtool(promtool, "check", "rules", ALERTS.name)
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert f"SUCCESS: {len(rules)} rules found" in output


def test_promtool_test_rules(promtool: str) -> None:
    output = run_promtool(promtool, "test", "rules", ALERT_TESTS.name)
    assert "SUCCESS" in output and "FAILED" not in output


def test_every_alert_has_a_firing_and_a_silent_unit_test() -> None:
    tests = yaml.safe_load(ALERT_TESTS.read_text())
    assert [str(f) for f in tests["rule_files"]] == [ALERTS.name]
    firing: set[str] = set()
    silent: set[str] = set()
    for case in tests["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert names - firing == set(), "alerts without a test where they fire"
    assert names - silent == set(), "alerts without a test where they must not fire"
    assert (firing | silent) - names == set(), "tests of alerts that do not exist"


def test_dashboard_and_docs_expressions_are_valid_promql(promtool: str, tmp_path: Path) -> None:
    """promtool has no expression checker: recording rules of every expression do it."""
    expressions = [*dashboard_expressions(), *docs_expressions()]
    rules = {
        "groups": [
            {
                "name": "expressions",
                "rules": [
                    {"record": f"check:expression_{n}", "expr": grafana_to_promql(expr)}
                    for n, expr in enumerate(expressions)
                ],
            }
        ]
    }
    path = tmp_path / "expressions.yml"
    path.write_text(yaml.safe_dump(rules))
    output = run_promtool(promtool, "check", "rules", str(path))
    assert f"SUCCESS: {len(expressions)} rules found" in output


# --- metric names in PromQL -------------------------------------------------------------------

PROMQL_KEYWORDS = {
    # binary operators and modifiers
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    # number literals
    "inf",
    "nan",
}


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects. A tokenizer, not a parser: strings, label
    matchers, grouping label lists, ranges and durations go first; then every identifier
    that is not a function call, a keyword or a number is a metric name."""
    text = grafana_to_promql(expr)
    text = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`', '""', text)
    text = re.sub(r"#[^\n]*", " ", text)  # comments
    text = re.sub(r"\{[^{}]*\}", " ", text)  # label matchers
    text = re.sub(
        r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", " ", text
    )  # grouping
    text = re.sub(r"\[[^\[\]]*\]", " ", text)  # ranges and subqueries
    text = re.sub(r"\boffset\s+-?[0-9a-z]+", " ", text)
    names = set()
    for match in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        name = match.group()
        following = text[match.end() :].lstrip()
        if following.startswith("(") or name.lower() in PROMQL_KEYWORDS:
            continue  # a function or aggregation, or a keyword
        if re.search(r"[0-9.]$", text[: match.start()]):
            continue  # the exponent or unit of a number (1e9, 5m)
        names.add(name)
    return names


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum by (plan) (rate(a_total{plan=~"x|y"}[5m]))', {"a_total"}),
        (
            "histogram_quantile(0.95, sum by (le) (rate(h_bucket[$__rate_interval]))) > 60",
            {"h_bucket"},
        ),
        ("a > 1000 and deriv(a[10m]) > 0", {"a"}),
        ("up{job='w'} == 0 or absent(up{job='w'})", {"up"}),
        ("sum(rate(b[1d] offset 15m)) > 3 * sum without (instance) (c)", {"b", "c"}),
        ("time() - t_seconds > 1e3", {"t_seconds"}),
        ("x / on (instance) group_left (version) y", {"x", "y"}),
        ("max(max_over_time(m[5m:1m]))", {"m"}),
    ],
)
def test_metric_names_tokenizer(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def exported_metrics(metrics: Metrics) -> tuple[set[str], set[str]]:
    """(every series name a scrape of `metrics` can contain, every label name)."""
    names: set[str] = set()
    labels: set[str] = set()
    suffixes = {
        "counter": ("_total",),
        "histogram": ("_bucket", "_sum", "_count"),
        "summary": ("_sum", "_count"),
        "info": ("_info",),
    }
    for family in metrics.registry.collect():
        names.add(family.name)
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ()))
        for sample in family.samples:
            names.add(sample.name)
            labels.update(sample.labels)
    # Labelled metrics without a child yet have no sample: read their declared labels.
    for value in vars(metrics).values():
        if isinstance(value, Counter | Gauge | Histogram | Summary):
            labels.update(value._labelnames)
    return names, labels


@pytest.fixture(scope="module")
def exported() -> tuple[set[str], set[str]]:
    return exported_metrics(Metrics(Policy.from_mapping(yaml.safe_load(FAST_POLICY.read_text()))))


def test_alerts_dashboard_and_docs_reference_only_exported_metrics(
    exported: tuple[set[str], set[str]],
) -> None:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    recording = [rule for group in groups for rule in group["rules"] if "record" in rule]
    names = exported[0] | SCRAPE_SERIES | {rule["record"] for rule in recording}
    sources = {
        **{f"alert {r['alert']}": r["expr"] for r in alert_rules()},
        **{f"recording rule {r['record']}": r["expr"] for r in recording},
        **{f"dashboard query {n}": e for n, e in enumerate(dashboard_expressions())},
        **{f"docs/operations.md block {n}": e for n, e in enumerate(docs_expressions())},
    }
    for where, expr in sources.items():
        used = metric_names(expr)
        assert used, f"{where}: no metric name found in {expr!r}"
        assert used <= names, f"{where} uses {sorted(used - names)}, not exported"
    assert set(dashboard_variable_metrics()) <= names


def test_dashboard_covers_what_operators_and_sla_managers_read() -> None:
    used = {name for expr in dashboard_expressions() for name in metric_names(expr)}
    assert {
        "sla_timers_met_total",
        "sla_timers_breached_total",
        "sla_warnings_published_total",
        "sla_breaches_published_total",
        "sla_running_timers",
        "sla_breach_publication_lateness_seconds_bucket",
        "sla_consumer_lag_messages",
        "sla_dead_letters_total",
    } <= used


def test_no_metric_is_labelled_by_ticket(exported: tuple[set[str], set[str]]) -> None:
    names, labels = exported
    assert {"plan", "priority", "metric", "type", "outcome", "reason"} <= labels
    assert not [label for label in labels if "ticket" in label.lower()]
    assert not [label for label in labels if label.lower() in {"id", "event_id", "key"}]
    # Prometheus naming: counters end in _total, and only counters do.
    for family in Metrics(
        Policy.from_mapping(yaml.safe_load(FAST_POLICY.read_text()))
    ).registry.collect():
        assert family.name.startswith(("sla_", "process_")), family.name
        assert not family.name.endswith("_total"), f"{family.name}: _total is the suffix"
        if family.type == "gauge" and family.name.startswith("sla_"):
            assert not family.name.endswith(("_count", "_sum", "_bucket")), family.name
    assert all(not name.endswith("_created") for name in names)


# --- documentation and runbooks ---------------------------------------------------------------


def _slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def runbook_sections() -> dict[str, str]:
    """{anchor: text} of the level-3 sections of docs/operations.md."""
    text = OPERATIONS.read_text()
    parts = re.split(r"^### (.+)$", text, flags=re.M)
    return {_slug(parts[i]): parts[i + 1] for i in range(1, len(parts), 2)}


def test_every_alert_links_to_its_runbook() -> None:
    sections = runbook_sections()
    for rule in alert_rules():
        name = rule["alert"]
        annotations = rule["annotations"]
        assert annotations.get("summary") and annotations.get("description"), name
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        url = annotations["runbook_url"]
        path, _, anchor = url.partition("#")
        assert path == "docs/operations.md", url
        assert anchor == _slug(name), f"{name}: runbook anchor {anchor!r}"
        section = sections.get(anchor)
        assert section is not None, f"docs/operations.md has no section '### {name}'"
        for part in ("**Meaning**", "**First checks**", "**Fixes**"):
            assert part in section, f"runbook {name} lacks {part}"


def test_every_metric_and_alert_is_documented(exported: tuple[set[str], set[str]]) -> None:
    text = OPERATIONS.read_text()
    families = {
        f.name + ("_total" if f.type == "counter" else "")
        for f in Metrics(
            Policy.from_mapping(yaml.safe_load(FAST_POLICY.read_text()))
        ).registry.collect()
        if f.name.startswith("sla_")
    }
    missing = sorted(name for name in families if f"`{name}`" not in text)
    assert not missing, f"undocumented metrics: {missing}"
    for rule in alert_rules():
        assert f"`{rule['alert']}`" in text, rule["alert"]


def test_the_alert_expressions_in_the_docs_are_those_of_the_rules() -> None:
    text = OPERATIONS.read_text().split("## Alerts", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", text, flags=re.S)
    assert block, "docs/operations.md: no ```yaml block of alert expressions under ## Alerts"
    documented: dict[str, str] = {}
    name = ""
    for line in block.group(1).splitlines():
        line = re.sub(r"#.*$", "", line)
        match = re.match(r"^(\w+):(.*)$", line)
        if match:
            name, line = match.groups()
            documented[name] = ""
        documented[name] += " " + line

    def normal(expr: str) -> str:
        return re.sub(r"\s+", " ", expr).replace("( ", "(").replace(" )", ")").strip()

    assert {name: normal(e) for name, e in documented.items()} == {
        rule["alert"]: normal(rule["expr"]) for rule in alert_rules()
    }
