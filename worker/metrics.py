"""Prometheus metrics and health endpoints of the worker.

Names follow Prometheus conventions (base units, `_total`, `_seconds`); labels are
bounded: plan, priority, metric, event type, outcome, reason, topic, partition — never a
ticket id. The SLA compliance ratio of a plan is
`sla_timers_met_total / (sla_timers_met_total + sla_timers_breached_total)`.
See docs/operations.md for every metric and alert.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from worker import __version__
from worker.core.events import Metric
from worker.core.policy import Policy

if TYPE_CHECKING:
    import faust

    from worker.kafka.app import Runtime
    from worker.kafka.processor import Outcome

# `*_created` series double the scrape size and no dashboard of ours reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]

_CLOCKS: tuple[tuple[str, Metric], ...] = (("fr", "first_response"), ("fu", "follow_up"))
LATENESS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 3600, 86400)
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5)
LAG_BUCKETS = (0.1, 0.5, 1, 5, 15, 60, 300, 1800, 3600, 21600, 86400)


class _TimerCollector(Collector):
    """Running and paused timers by plan and metric, computed at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[GaugeMetricFamily]:
        running = GaugeMetricFamily(
            "sla_running_timers",
            "Timers measuring now, by plan and metric",
            labels=["plan", "metric"],
        )
        paused = GaugeMetricFamily(
            "sla_paused_timers",
            "Timers paused (pending/on-hold), by plan and metric",
            labels=["plan", "metric"],
        )
        counts: dict[tuple[str, str, bool], int] = {}
        for plan, metrics, is_paused in self.metrics.timers.values():
            for metric in metrics:
                key = (plan, metric, is_paused)
                counts[key] = counts.get(key, 0) + 1
        for (plan, metric, is_paused), n in sorted(counts.items()):
            (paused if is_paused else running).add_metric([plan, metric], n)
        yield running
        yield paused


class Metrics:
    """Every number the worker exports; one registry per instance."""

    def __init__(self, policy: Policy, registry: CollectorRegistry | None = None) -> None:
        self.policy = policy
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.consumed = Counter(
            "sla_events_consumed",
            "Inbound events by type and outcome",
            ["type", "outcome", "reason"],
            registry=r,
        )
        self.warnings = Counter(
            "sla_warnings_published",
            "Warnings published",
            ["plan", "priority", "metric"],
            registry=r,
        )
        self.breaches = Counter(
            "sla_breaches_published",
            "Breaches published",
            ["plan", "priority", "metric"],
            registry=r,
        )
        self.met = Counter(
            "sla_timers_met",
            "Timers stopped before their deadline",
            ["plan", "priority", "metric"],
            registry=r,
        )
        self.breached = Counter(
            "sla_timers_breached",
            "Timers whose deadline passed while running",
            ["plan", "priority", "metric"],
            registry=r,
        )
        self.lateness = Histogram(
            "sla_breach_publication_lateness_seconds",
            "Breach publication time minus its deadline",
            buckets=LATENESS_BUCKETS,
            registry=r,
        )
        self.processing = Histogram(
            "sla_event_processing_seconds",
            "Time to process one message",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.lag = Histogram(
            "sla_event_lag_seconds",
            "Processing time minus the event's occurred_at",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.consumer_lag = Gauge(
            "sla_consumer_lag_messages",
            "Messages not yet processed, per input partition",
            ["topic", "partition"],
            registry=r,
        )
        self.recovery = Gauge(
            "sla_table_recovery_seconds",
            "Duration of the last state recovery",
            registry=r,
        )
        self.recoveries = Counter(
            "sla_table_recoveries",
            "State recoveries completed",
            registry=r,
        )
        self.state_tickets = Gauge(
            "sla_state_tickets",
            "Tickets in state on this worker's partitions",
            registry=r,
        )
        self.ready = Gauge(
            "sla_worker_ready",
            "1 when assigned, recovered and consuming",
            registry=r,
        )
        info = Gauge(
            "sla_build_info",
            "Version of the worker and of its policy",
            ["version", "policy_version"],
            registry=r,
        )
        info.labels(__version__, policy.version).set(1)
        # ticket id -> (plan, metrics with a running timer, paused); for the timer gauges.
        self.timers: dict[str, tuple[str, tuple[str, ...], bool]] = {}
        r.register(_TimerCollector(self))

    # --- hooks the worker calls -----------------------------------------------------------

    def outcome(self, outcome: Outcome, started: float) -> None:
        self.processing.observe(time.perf_counter() - started)
        now = datetime.now(UTC)
        event_type = outcome.event_type or "unknown"
        for letter in outcome.dead_letters:
            self.consumed.labels(event_type, "dead_lettered", letter.reason).inc()
        if outcome.duplicate:
            self.consumed.labels(event_type, "duplicate", "").inc()
        elif outcome.held:
            self.consumed.labels(event_type, "held", "").inc()
        elif outcome.applied:
            self.consumed.labels(event_type, "applied", "").inc()
        if outcome.occurred_at is not None and outcome.applied:
            self.lag.observe(max((now - outcome.occurred_at).total_seconds(), 0.0))
        for event in outcome.publish:
            labels = (event.plan, str(event.priority), event.metric)
            if event.type == "sla-breach":
                self.breaches.labels(*labels).inc()
                self.breached.labels(*labels).inc()
                self.lateness.observe(max((now - event.due_at).total_seconds(), 0.0))
            else:
                self.warnings.labels(*labels).inc()
        for met in outcome.met:
            self.met.labels(met.plan, str(met.priority), met.metric).inc()

    def state(self, ticket_id: str, stored: dict[str, Any] | None) -> None:
        """Track a ticket's timers for the gauges (None or {}: forget it)."""
        if not stored or "held" in stored:
            self.timers.pop(ticket_id, None)
            return
        plan = self.policy.plans.get(stored["plan"])
        targets = plan.targets.get(stored["priority"]) if plan and not stored["exempt"] else None
        measured = tuple(
            metric
            for key, metric in _CLOCKS
            if targets and stored.get(key) is not None and targets.get(metric) is not None
        )
        if measured:
            pauses = stored["pauses"]
            self.timers[ticket_id] = (
                stored["plan"],
                measured,
                bool(pauses) and pauses[-1][1] is None,
            )
        else:
            self.timers.pop(ticket_id, None)

    def forget_partition(self, ticket_ids: list[str]) -> None:
        for ticket_id in ticket_ids:
            self.timers.pop(ticket_id, None)

    def recovered(self, tickets: int, seconds: float) -> None:
        self.recovery.set(seconds)
        self.recoveries.inc()
        self.state_tickets.set(tickets)

    def consumer_lag_of(self, topic: str, partition: int, lag: int) -> None:
        self.consumer_lag.labels(topic, str(partition)).set(lag)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def install(self, app: faust.App, runtime: Runtime) -> None:
        """Serve /metrics, /healthz and /readyz on the worker's web port."""
        from faust.web import Request, Response, View

        metrics = self

        class MetricsView(View):
            async def get(self, request: Request) -> Response:
                return self.bytes(metrics.render(), content_type="text/plain; version=0.0.4")

        class HealthView(View):
            async def get(self, request: Request) -> Response:
                return self.json({"status": "alive"})

        class ReadyView(View):
            async def get(self, request: Request) -> Response:
                ready = runtime.recovered and not app.rebalancing
                metrics.ready.set(1 if ready else 0)
                return self.json({"ready": ready}, status=200 if ready else 503)

        app.page("/metrics")(MetricsView)
        app.page("/healthz")(HealthView)
        app.page("/readyz")(ReadyView)
