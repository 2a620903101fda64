"""What deploy/ and docs/operations.md say in PromQL, and where Prometheus' tools are:
read by the PromQL checks (tests/unit/test_promql.py) and the test against a real
Prometheus (tests/integration/test_observability.py)."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
ALERT_TESTS = PROMETHEUS_DIR / "alerts.test.yml"
DASHBOARDS = sorted((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))
OPERATIONS = ROOT / "docs" / "operations.md"


def find_tool(name: str) -> str:
    """Path of a Prometheus tool: a skip without it, a failure in CI."""
    path = shutil.which(name)
    if path is None:
        message = (
            f"{name!r} is not on PATH: run scripts/ensure-prometheus (as root it installs "
            "Debian's prometheus package), or put Prometheus' binaries on PATH"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return path


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def _exprs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                yield value
            else:
                yield from _exprs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _exprs(value)


def dashboard_expressions() -> list[str]:
    """Every panel query of every provisioned dashboard."""
    assert DASHBOARDS, "no dashboard JSON under deploy/grafana/dashboards"
    expressions = [e for path in DASHBOARDS for e in _exprs(json.loads(path.read_text()))]
    assert expressions
    return expressions


def dashboard_variable_metrics() -> list[str]:
    """Metric names of the dashboards' `label_values(metric, label)` variables."""
    names = []
    for path in DASHBOARDS:
        for variable in json.loads(path.read_text())["templating"]["list"]:
            query = variable.get("query")
            text = query.get("query", "") if isinstance(query, dict) else str(query or "")
            match = re.fullmatch(r"\s*label_values\(\s*([a-zA-Z_:][\w:]*)\s*,\s*\w+\s*\)\s*", text)
            if variable["type"] == "query":
                assert match, f"unexpected variable query {text!r}"
                names.append(match.group(1))
    return names


def docs_expressions() -> list[str]:
    """The ```promql blocks of docs/operations.md."""
    blocks = re.findall(r"```promql\n(.*?)```", OPERATIONS.read_text(), flags=re.S)
    assert blocks, "docs/operations.md has no ```promql block"
    return blocks


GRAFANA_DURATIONS = {"$__range": "1h", "$__rate_interval": "1m", "$__interval": "15s"}


def grafana_to_promql(expr: str) -> str:
    """Replace Grafana's variables: durations by durations, `$var` (in regex matchers) by
    `.*`."""
    for variable, duration in GRAFANA_DURATIONS.items():
        expr = expr.replace(variable, duration)
    assert "$__" not in expr, f"unknown Grafana variable in {expr!r}"
    return re.sub(r"\$\{?\w+\}?", ".*", expr)
