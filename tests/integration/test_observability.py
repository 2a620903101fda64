"""A real Prometheus scrapes a live worker on the real broker and sees what happened.

The test starts Prometheus itself (the `prometheus` binary from PATH: scripts/ensure-
prometheus installs it) on a free loopback port, with its own config (scrape every second,
the repository's alert rules) and storage in the test's tmp dir. A service Prometheus that
the Debian package may have started on :9090 is never used. Without the binary the test
is skipped, except in CI (CI=true), where it fails.
"""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from devtools.harness import WorkerProcess, free_port, log_tail
from tests.promql import (
    ALERTS,
    dashboard_expressions,
    docs_expressions,
    find_tool,
    grafana_to_promql,
)

SCRAPE_INTERVAL = "1s"
TIMEOUT_S = 90.0


class PrometheusServer:
    """`prometheus` on 127.0.0.1:<free port>, scraping `targets` as job sla-worker."""

    def __init__(self, binary: str, directory: Path, targets: list[str]) -> None:
        self.binary = binary
        self.directory = directory
        self.targets = targets
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = directory / "prometheus.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        config = {
            "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": "1s"},
            "rule_files": [str(ALERTS)],
            "scrape_configs": [
                {
                    "job_name": "sla-worker",
                    "scrape_interval": SCRAPE_INTERVAL,
                    "scrape_timeout": SCRAPE_INTERVAL,
                    "static_configs": [{"targets": self.targets}],
                }
            ],
        }
        config_path = self.directory / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config))
        for _attempt in range(3):  # a free port can be taken before Prometheus binds it
            self.port = free_port()
            with self.log_path.open("ab") as log:
                self.process = subprocess.Popen(
                    [
                        self.binary,
                        f"--config.file={config_path}",
                        f"--storage.tsdb.path={self.directory / 'data'}",
                        f"--web.listen-address=127.0.0.1:{self.port}",
                        "--storage.tsdb.retention.time=1h",
                        "--log.level=warn",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.directory,
                )
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.process.poll() is None:
                try:
                    with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                        if response.status == 200:
                            return
                except (OSError, urllib.error.URLError):
                    pass
                time.sleep(0.2)
            if self.process.poll() is None:
                break
            if "address already in use" not in self.tail():
                break
        self.stop()
        raise AssertionError(f"Prometheus did not start:\n{self.tail()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def tail(self, lines: int = 30) -> str:
        return log_tail(self.log_path, lines)

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:  # 400/422: a bad expression
            body = json.loads(exc.read())
        assert body["status"] == "success", f"{path} {params}: {body}"
        return body["data"]

    def query(self, expr: str) -> dict[tuple[tuple[str, str], ...], float]:
        """An instant vector as {sorted label pairs: value}."""
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", (expr, data)
        return {
            tuple(sorted(item["metric"].items())): float(item["value"][1])
            for item in data["result"]
        }


@pytest.fixture
def prometheus_factory(tmp_path: Path) -> Iterator[Callable[[list[str]], PrometheusServer]]:
    binary = find_tool("prometheus")
    servers: list[PrometheusServer] = []

    def make(targets: list[str]) -> PrometheusServer:
        server = PrometheusServer(binary, tmp_path / f"prometheus-{len(servers)}", targets)
        servers.append(server)
        server.start()
        return server

    yield make
    for server in servers:
        server.stop()


def event(n: int, type_: str, ticket: str, at: datetime, **fields: Any) -> bytes:
    return json.dumps(
        {
            "event_id": f"obs-{n}",
            "type": type_,
            "ticket_id": ticket,
            "occurred_at": at.isoformat(),
            **fields,
        }
    ).encode()


def one(values: dict[Any, float]) -> float | None:
    """The value of a one-element result (a `sum(...)`), None while there is none."""
    return next(iter(values.values())) if len(values) == 1 else None


async def test_prometheus_sees_warnings_breaches_met_timers_and_dead_letters(
    create_topic: Any,
    produce_lines: Any,
    worker_factory: Callable[..., WorkerProcess],
    prometheus_factory: Callable[[list[str]], PrometheusServer],
) -> None:
    tickets = await create_topic(partitions=3)
    warnings, breaches, dead = [await create_topic(partitions=3) for _ in range(3)]
    worker = worker_factory(
        input_topics=(tickets,),
        extra=(
            "--warnings-topic",
            warnings,
            "--breaches-topic",
            breaches,
            "--dead-letter-topic",
            dead,
        ),
    )
    prometheus = await asyncio.to_thread(prometheus_factory, [f"127.0.0.1:{worker.port}"])
    worker.start()
    await worker.ready()
    # Counters start at 0 in Prometheus only if it scraped them before the first event:
    # otherwise increase() (hence the compliance ratio) cannot see the first increments.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT_S
    while one(await asyncio.to_thread(prometheus.query, "sla_worker_ready")) != 1.0:
        assert loop.time() < deadline, (
            f"Prometheus never scraped a ready worker\n{prometheus.tail()}"
        )
        await asyncio.sleep(0.2)

    # The fast policy: plan "fast", priority 1 first response PT6S, priority 2 PT12S,
    # priority 3 no target; a warning at half the target.
    now = datetime.now(UTC)
    ago = lambda seconds: now - timedelta(seconds=seconds)  # noqa: E731
    lines = [
        # breached live by the worker's timer: a warning at 3 s, a breach at 6 s
        event(1, "ticket-created", "live-1", now, plan="fast", priority=1),
        event(2, "ticket-created", "live-2", now, plan="fast", priority=1),
        # answered after its warning point, before its deadline: warned, then met
        event(3, "ticket-created", "warned-met", ago(4), plan="fast", priority=1),
        event(4, "reply-sent", "warned-met", ago(0.5), author="agent"),
        # answered in time: met, no warning
        event(5, "ticket-created", "met-p1", ago(2), plan="fast", priority=1),
        event(6, "reply-sent", "met-p1", ago(1), author="agent"),
        event(7, "ticket-created", "met-p2", ago(2), plan="fast", priority=2),
        event(8, "reply-sent", "met-p2", ago(1), author="agent"),
        # no target: measured by nothing
        event(9, "ticket-created", "no-sla", now, plan="fast", priority=3),
        # a redelivery, and two messages that cannot be applied
        event(7, "ticket-created", "met-p2", ago(2), plan="fast", priority=2),
        b"{not json",
        event(10, "reply-sent", "ghost", now, author="agent"),
    ]
    keys = [
        *(json.loads(line)["ticket_id"].encode() for line in lines[:-2]),
        b"bad",
        b"ghost",
    ]
    await produce_lines(tickets, lines, keys=keys)

    fr1 = (("metric", "first_response"), ("priority", "1"))
    fr2 = (("metric", "first_response"), ("priority", "2"))
    expected: dict[str, Any] = {
        "sum(sla_warnings_published_total)": 3.0,
        "sum(sla_breaches_published_total)": 2.0,
        "sum(sla_timers_breached_total)": 2.0,
        "sum(sla_timers_met_total)": 3.0,
        "sum by (priority, metric) (sla_timers_met_total > 0)": {fr1: 2.0, fr2: 1.0},
        "sum by (priority, metric) (sla_breaches_published_total > 0)": {fr1: 2.0},
        "sum by (reason) (sla_dead_letters_total > 0)": {
            (("reason", "invalid-json"),): 1.0,
            (("reason", "unknown-ticket"),): 1.0,
        },
        # (an empty label, reason="", is no label in Prometheus)
        "sum by (type, outcome, reason) (sla_events_consumed_total > 0)": {
            (("outcome", "applied"), ("type", "ticket-created")): 6.0,
            (("outcome", "applied"), ("type", "reply-sent")): 3.0,
            (("outcome", "duplicate"), ("type", "ticket-created")): 1.0,
            (("outcome", "dead_lettered"), ("reason", "invalid-json"), ("type", "unknown")): 1.0,
            (
                ("outcome", "dead_lettered"),
                ("reason", "unknown-ticket"),
                ("type", "reply-sent"),
            ): 1.0,
        },
        # the two live tickets still wait for an answer, past their deadline
        'sum(sla_running_timers{metric="first_response"})': 2.0,
        'sum(sla_overdue_timers{metric="first_response"})': 2.0,
        "sum(sla_breach_publication_lateness_seconds_count)": 2.0,
        'sum(up{job="sla-worker"})': 1.0,
        "sum(sla_worker_ready)": 1.0,
    }

    def observed() -> dict[str, Any]:
        results: dict[str, Any] = {}
        for expr, want in expected.items():
            values = prometheus.query(expr)
            results[expr] = values if isinstance(want, dict) else one(values)
        return results

    deadline = loop.time() + TIMEOUT_S
    got = await asyncio.to_thread(observed)
    while got != expected and loop.time() < deadline:
        await asyncio.sleep(1)
        got = await asyncio.to_thread(observed)
    differences = {expr: (got[expr], want) for expr, want in expected.items() if got[expr] != want}
    assert not differences, (
        f"(got, expected) after {TIMEOUT_S:.0f} s: {differences}\n"
        f"--- worker ---\n{worker.tail(15)}\n--- prometheus ---\n{prometheus.tail(10)}"
    )

    # One recovery at start, timed from the process start (or the first rebalance).
    recovery = {
        name: one(await asyncio.to_thread(prometheus.query, name))
        for name in (
            "sla_table_recoveries_total",
            "sla_table_recovery_seconds",
            "time() - sla_table_recovery_started_timestamp_seconds",
        )
    }
    assert recovery["sla_table_recoveries_total"] == 1.0, recovery
    assert 0 < (recovery["sla_table_recovery_seconds"] or 0) < 120, recovery
    assert 0 < (recovery["time() - sla_table_recovery_started_timestamp_seconds"] or 0) < 300

    # The live breaches went out within a timer tick or two of their deadline.
    lateness = "sum by (le) (sla_breach_publication_lateness_seconds_bucket)"
    p99 = one(await asyncio.to_thread(prometheus.query, f"histogram_quantile(0.99, {lateness})"))
    assert p99 is not None and p99 <= 5.0

    # The compliance PromQL of docs/operations.md and of the dashboard: 3 met of 5 ended.
    compliance = docs_expressions()[0].replace("[30d]", "[1h]")
    by_priority = await asyncio.to_thread(prometheus.query, compliance)
    assert by_priority == {
        (("plan", "fast"), ("priority", "1")): pytest.approx(2 / 4),
        (("plan", "fast"), ("priority", "2")): pytest.approx(1.0),
    }
    dashboard_compliance = grafana_to_promql(dashboard_expressions()[0])
    assert "sla_timers_met_total" in dashboard_compliance
    by_plan = await asyncio.to_thread(prometheus.query, dashboard_compliance)
    assert by_plan == {(("plan", "fast"),): pytest.approx(3 / 5)}

    # Every dashboard and docs query evaluates on a real server.
    for expr in [*dashboard_expressions(), *docs_expressions()]:
        await asyncio.to_thread(prometheus.api, "query", query=grafana_to_promql(expr))

    # The alert rules loaded and evaluate cleanly, and nothing fires for a healthy worker.
    async def rule_health() -> dict[str, str]:
        data = await asyncio.to_thread(prometheus.api, "rules")
        return {r["name"]: r["health"] for g in data["groups"] for r in g["rules"]}

    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    names = {rule.get("alert") or rule["record"] for group in groups for rule in group["rules"]}
    health = await rule_health()
    while set(health.values()) != {"ok"} and loop.time() < deadline + 10:
        await asyncio.sleep(1)
        health = await rule_health()
    assert health == dict.fromkeys(names, "ok")
    alerts = await asyncio.to_thread(prometheus.api, "alerts")
    assert [a for a in alerts["alerts"] if a["state"] == "firing"] == []
    assert not math.isnan(p99)
