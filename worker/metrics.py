"""Prometheus metrics and health endpoints of the worker.

Names follow Prometheus conventions (base units, `_total` for counters, `_seconds`);
labels are bounded: plan, priority, metric (from the policy), event type, outcome and
reason (fixed code lists), topic and partition (from the deployment) — never a ticket id.
Every label combination the policy and the code can produce up front is exported at 0
from the start, so `increase()` and `rate()` see the first event of each series too.

The SLA compliance ratio of a plan over a window is
`increase(sla_timers_met_total[w]) / (increase(sla_timers_met_total[w])
+ increase(sla_timers_breached_total[w]))`, summed by plan (and priority).
docs/operations.md documents every metric and alert.
"""

from __future__ import annotations

import contextlib
import enum
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from worker import __version__
from worker.core.events import INBOUND_TYPES, METRICS
from worker.core.goals import match
from worker.core.policy import Policy
from worker.core.reasons import Reason
from worker.core.state_codec import StateFormatError, goal_ticket, running_timers

if TYPE_CHECKING:
    from collections.abc import Iterable

    from worker.tasks.partition import Batch
    from worker.tasks.processor import Outcome

# `*_created` series double the scrape size and no dashboard of ours reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]

CONTENT_TYPE = "text/plain; version=0.0.4"
"""The text exposition format `generate_latest` writes (charset is UTF-8 by definition)."""

DEAD_LETTER_REASONS: tuple[Reason, ...] = tuple(Reason)
"""Every reason a dead letter can carry; each is exported (at 0) from the start."""

UNKNOWN_TYPE = "unknown"
"""`type` label of a message that is not one of the inbound event types."""

LATENESS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 3600, 86400)
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5)
LAG_BUCKETS = (0.1, 0.5, 1, 5, 15, 60, 300, 1800, 3600, 21600, 86400)


class Unknown(enum.Enum):
    """`Metrics.state(previous=...)` not given (None means: there was no value)."""

    VALUE = 0


_TimerKey = tuple[str, str, str, bool, bool]
"""(plan, metric, goal, paused, past its deadline); goal is "" under a plan x priority
policy and for a goal without a name."""


class TimerTable:
    """The measured timers of the tickets in this worker's state, and their counts.

    Counts are kept up to date on every write, so a scrape costs O(label combinations),
    not O(tickets), on the event loop that also processes messages.
    """

    def __init__(self) -> None:
        self._by_ticket: dict[str, tuple[_TimerKey, ...]] = {}
        self.counts: Tally[_TimerKey] = Tally()
        # Every distinct tuple of timers, once. Tickets share a handful of them (plan,
        # metrics, paused, breached), so each ticket's entry points at a shared tuple
        # instead of holding a fresh one: with the states in a local store, this table is
        # most of what RAM holds per open ticket (about 250 bytes less each).
        self._shapes: dict[tuple[_TimerKey, ...], tuple[_TimerKey, ...]] = {}

    def put(self, ticket_id: str, timers: tuple[_TimerKey, ...]) -> None:
        """Record a ticket's timers (an empty tuple forgets the ticket)."""
        self.counts.subtract(self._by_ticket.pop(ticket_id, ()))
        if timers:
            self._by_ticket[ticket_id] = self._shapes.setdefault(timers, timers)
            self.counts.update(timers)

    def clear(self) -> None:
        self._by_ticket.clear()
        self.counts.clear()
        self._shapes.clear()

    def __len__(self) -> int:
        return len(self._by_ticket)

    def __contains__(self, ticket_id: object) -> bool:
        return ticket_id in self._by_ticket


class _TimerCollector(Collector):
    """Running, paused and overdue timers by plan and metric, from the `TimerTable`."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[GaugeMetricFamily]:
        labels = ["plan", "metric", "goal"]
        running = GaugeMetricFamily(
            "sla_running_timers",
            "Timers measuring now (not paused), including those past their deadline",
            labels=labels,
        )
        paused = GaugeMetricFamily(
            "sla_paused_timers",
            "Timers paused by a pausing status (pending, on-hold)",
            labels=labels,
        )
        overdue = GaugeMetricFamily(
            "sla_overdue_timers",
            "Running or paused timers already breached: customers waiting past the SLA",
            labels=labels,
        )
        totals: dict[tuple[str, str, str], list[int]] = {
            (plan, metric, ""): [0, 0, 0] for plan, metric in self.metrics.pairs
        }
        for (plan, metric, goal, is_paused, is_overdue), n in self.metrics.timers.counts.items():
            row = totals.setdefault((plan, metric, goal), [0, 0, 0])
            row[1 if is_paused else 0] += n
            row[2] += n if is_overdue else 0
        for key, (n_running, n_paused, n_overdue) in sorted(totals.items()):
            running.add_metric(list(key), n_running)
            paused.add_metric(list(key), n_paused)
            overdue.add_metric(list(key), n_overdue)
        yield running
        yield paused
        yield overdue


PartitionView = tuple[int, bool, datetime | None]
"""(partition, caught up, earliest unfired due instant) of an owned partition."""


class _PartitionCollector(Collector):
    """Per owned partition: caught up, and how long its oldest timer is overdue.

    Computed at scrape time from what the worker holds now, so a loop that stopped
    stepping (a stuck partition) shows as a growing age even though nothing fires.
    """

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[GaugeMetricFamily]:
        caught_up = GaugeMetricFamily(
            "sla_partition_caught_up",
            "1 when the worker has read its input partition to the end (its timers fire on "
            "the wall clock), 0 while it reads a backlog",
            labels=["partition"],
        )
        overdue = GaugeMetricFamily(
            "sla_oldest_overdue_timer_seconds",
            "Seconds the partition's oldest unfired timer is past its due instant plus the "
            "allowed lateness and one timer interval (0: none overdue)",
            labels=["partition"],
        )
        now = datetime.now(UTC)
        for partition, is_caught_up, earliest in self.metrics.partitions():
            caught_up.add_metric([str(partition)], 1.0 if is_caught_up else 0.0)
            age = 0.0
            if earliest is not None:
                age = max((now - earliest).total_seconds() - self.metrics.overdue_after, 0.0)
            overdue.add_metric([str(partition)], age)
        yield caught_up
        yield overdue


DUE_SOON_WINDOWS: tuple[tuple[str, timedelta], ...] = (
    ("15m", timedelta(minutes=15)),
    ("1h", timedelta(hours=1)),
    ("4h", timedelta(hours=4)),
)
"""`within` label values of `sla_timers_due_soon`, and their windows (they nest)."""

DueSoon = Mapping[tuple[str, int, str, timedelta], int]
"""(plan, priority, metric, window) -> running timers due within it (`at_risk.due_soon`)."""


class _DueSoonCollector(Collector):
    """Running timers due within 15 minutes, 1 hour and 4 hours, computed at scrape time
    from the deadlines the partitions' at-risk indexes keep sorted (issue #24; bisects,
    no ticket visited): what breaches next, as a number."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "sla_timers_due_soon",
            "Running timers (not paused, not yet breached) whose deadline is within "
            "`within` (15m, 1h, 4h) of the scrape; windows nest (a timer due in 10 minutes "
            "counts in all three)",
            labels=["plan", "priority", "metric", "within"],
        )
        counts = self.metrics.due_soon([window for _, window in DUE_SOON_WINDOWS])
        series: dict[tuple[str, str, str, str], int] = {
            (*triple, label): 0 for triple in self.metrics.triples for label, _ in DUE_SOON_WINDOWS
        }
        labels = {window: label for label, window in DUE_SOON_WINDOWS}
        for (plan, priority, metric, window), n in counts.items():
            key = (plan, str(priority), metric, labels[window])
            series[key] = series.get(key, 0) + n
        for key, n in sorted(series.items()):
            family.add_metric(list(key), n)
        yield family


_SlaLabels = tuple[str, str, str, str]
"""(plan, priority, metric, goal) of the SLA counters."""


class _StepCounts:
    """What the outcomes of one step add to the counters, by label set, and the
    observations of its histograms, at the instant `now` (the step's commit)."""

    __slots__ = (
        "breaches",
        "consumed",
        "dead_letters",
        "lags",
        "lateness",
        "met",
        "now",
        "warnings",
    )

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.consumed: Tally[tuple[str, str, str]] = Tally()
        self.dead_letters: Tally[str] = Tally()
        self.warnings: Tally[_SlaLabels] = Tally()
        self.breaches: Tally[_SlaLabels] = Tally()
        self.met: Tally[_SlaLabels] = Tally()
        self.lags: list[float] = []
        self.lateness: list[float] = []

    def add(self, outcome: Outcome, *, timer: bool) -> None:
        now = self.now
        if not timer:
            # The consumed message counts once, by its own outcome. Dead letters next to
            # an applied event belong to held events it released, not to it.
            verdict = outcome.verdict
            if verdict is not None:
                reason = outcome.dead_letters[0].reason if verdict == "dead_lettered" else ""
                self.consumed[(outcome.event_type or UNKNOWN_TYPE, verdict, reason)] += 1
        for letter in outcome.dead_letters:
            self.dead_letters[letter.reason] += 1
        if outcome.occurred_at is not None and outcome.applied:
            self.lags.append(max((now - outcome.occurred_at).total_seconds(), 0.0))
        for event in outcome.publish:
            labels = (event.plan, str(event.priority), event.metric, event.goal or "")
            if event.type == "sla-breach":
                self.breaches[labels] += 1
                # A record read after the deadline it sets (a reclassification to a
                # shorter target, a ticket created late or backfilled) makes the breach
                # late only from the moment the worker could know it: the record's
                # timestamp (`Outcome.known_at`, filled in by `Partition`).
                since = event.due_at
                if outcome.known_at is not None:
                    since = max(since, outcome.known_at)
                self.lateness.append(max((now - since).total_seconds(), 0.0))
            else:
                self.warnings[labels] += 1
        for finished in outcome.finished:
            if finished.met:
                labels = (
                    finished.plan,
                    str(finished.priority),
                    finished.metric,
                    finished.goal or "",
                )
                self.met[labels] += 1


class Metrics:
    """Every number the worker exports; one registry per instance."""

    def __init__(self, policy: Policy, registry: CollectorRegistry | None = None) -> None:
        self.policy = policy
        self.registry = registry or CollectorRegistry()
        r = self.registry
        # `goal` is the name of the goal that judged the timer where the policy names
        # goals, else "" (which Prometheus stores as no label: a plan x priority policy's
        # series are the ones they always were).
        sla_labels = ["plan", "priority", "metric", "goal"]
        self.consumed = Counter(
            "sla_events_consumed",
            "Inbound messages consumed, each counted once by what happened to it: applied, "
            "duplicate, held (waiting for its ticket-created) or dead_lettered (with reason)",
            ["type", "outcome", "reason"],
            registry=r,
        )
        self.dead_letters = Counter(
            "sla_dead_letters",
            "Messages written to the dead-letter topic, by reason (including held events "
            "that expired and internal errors)",
            ["reason"],
            registry=r,
        )
        self.warnings = Counter(
            "sla_warnings_published", "Warnings published", sla_labels, registry=r
        )
        self.breaches = Counter(
            "sla_breaches_published", "Breaches published", sla_labels, registry=r
        )
        self.met = Counter(
            "sla_timers_met",
            "Timers stopped (reply, solved, closed) before their deadline",
            sla_labels,
            registry=r,
        )
        self.breached = Counter(
            "sla_timers_breached",
            "Timers whose deadline passed while they were running",
            sla_labels,
            registry=r,
        )
        self.lateness = Histogram(
            "sla_breach_publication_lateness_seconds",
            "Time a breach was published (acknowledged by Kafka) minus the later of its "
            "deadline and the timestamp of the input record that set it (a ticket created "
            "or reclassified after its deadline: a late upstream, a backfill)",
            buckets=LATENESS_BUCKETS,
            registry=r,
        )
        self.processing = Histogram(
            "sla_event_processing_seconds",
            "Time to process one step of a partition (the messages of one fetch and the "
            "timers due), its transaction's commit included",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.lag = Histogram(
            "sla_event_lag_seconds",
            "End-to-end lag: time an inbound event was applied minus its occurred_at",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.consumer_lag = Gauge(
            "sla_consumer_lag_messages",
            "Messages not yet processed, per assigned input partition",
            ["topic", "partition"],
            registry=r,
        )
        self.standby_lag = Gauge(
            "sla_standby_lag_records",
            "Changelog records a warm standby kept by this worker has not applied yet, per "
            "partition (--standby-replicas); no series while the lag is not known",
            ["partition"],
            registry=r,
        )
        self.standby_failures = Counter(
            "sla_standby_failures",
            "Failed turns of the warm standbys' loop (a fetch, or the records of one "
            "standby) (--standby-replicas)",
            registry=r,
        )
        self.recovery = Gauge(
            "sla_table_recovery_seconds",
            "Duration of the last state recovery: from the start of the rebalance (or of the "
            "process) until the state was restored and the timers rebuilt",
            registry=r,
        )
        self.recovery_started = Gauge(
            "sla_table_recovery_started_timestamp_seconds",
            "Unix time the current (or last) state recovery started",
            registry=r,
        )
        self.commit_failures = Counter(
            "sla_commit_failures",
            "Steps whose transaction could not be committed (aborted; the partition is "
            "restored from its changelog), by the error's type",
            ["reason"],
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
            "1 when partitions are assigned, state is recovered and the worker is consuming",
            registry=r,
        )
        self.info = info = Gauge(
            "sla_build_info",
            "Always 1; labels: version of the worker and of its policy",
            ["version", "policy_version"],
            registry=r,
        )
        info.labels(__version__, policy.version).set(1)
        ProcessCollector(registry=r)  # process_* (memory, CPU, open files, start time)

        # Every (plan, priority, metric) with a target, and every (plan, metric).
        self.triples = sorted(
            (plan.name, str(priority), metric)
            for plan in policy.plans.values()
            for priority, targets in plan.targets.items()
            for metric in METRICS
            if targets.get(metric) is not None
        )
        self.pairs = sorted({(plan, metric) for plan, _, metric in self.triples})
        for labels in self.triples:
            for counter in (self.warnings, self.breaches, self.met, self.breached):
                counter.labels(*labels, "")
        for event_type in INBOUND_TYPES:
            for outcome in ("applied", "duplicate", "held"):
                self.consumed.labels(event_type, outcome, "")
        for reason in DEAD_LETTER_REASONS:
            self.dead_letters.labels(reason)

        self.timers = TimerTable()
        r.register(_TimerCollector(self))
        self.partitions: Callable[[], list[PartitionView]] = list
        self.overdue_after = 0.0
        r.register(_PartitionCollector(self))
        self.due_soon: Callable[[list[timedelta]], DueSoon] = lambda windows: {}
        r.register(_DueSoonCollector(self))
        # monotonic start of the recovery under way (the first one: process start).
        self._recovery_started: float | None = time.monotonic()
        self.recovery_started.set(time.time())

    # --- hooks the worker calls -----------------------------------------------------------

    def step(self, batch: Batch, seconds: float) -> None:
        """After a partition's step was committed: count everything it did.

        Counted per step, not per message: a step of a thousand messages touches each
        labelled counter once per label set it saw (`_StepCounts`), instead of looking the
        child up and taking its lock a thousand times on the loop that also steps."""
        self.processing.observe(seconds)
        counts = _StepCounts(datetime.now(UTC))
        for outcome in batch.inputs:
            counts.add(outcome, timer=False)
        for outcome in batch.timers:
            counts.add(outcome, timer=True)
        self._count(counts)
        added = 0
        for ticket_id, stored, previous in batch.state_changes:
            added += bool(stored) - bool(previous)
            self.timers.put(ticket_id, self._timers_of(stored))
        if added:
            self.state_tickets.inc(added)

    def outcome(self, outcome: Outcome, *, timer: bool) -> None:
        """After one message or timer: `timer` is True for due timers and expired holds
        (which are not inbound events and are not counted as consumed)."""
        counts = _StepCounts(datetime.now(UTC))
        counts.add(outcome, timer=timer)
        self._count(counts)

    def _count(self, counts: _StepCounts) -> None:
        for (event_type, verdict, reason), n in counts.consumed.items():
            self.consumed.labels(event_type, verdict, reason).inc(n)
        for reason, n in counts.dead_letters.items():
            self.dead_letters.labels(reason).inc(n)
        for labels, n in counts.warnings.items():
            self.warnings.labels(*labels).inc(n)
        for labels, n in counts.breaches.items():
            self.breaches.labels(*labels).inc(n)
            self.breached.labels(*labels).inc(n)
        for labels, n in counts.met.items():
            self.met.labels(*labels).inc(n)
        for seconds in counts.lags:
            self.lag.observe(seconds)
        for seconds in counts.lateness:
            self.lateness.observe(seconds)

    def use_policy(self, policy: Policy) -> None:
        """A reloaded policy (SIGHUP): `sla_build_info` names it from now on."""
        self.policy = policy
        self.info.clear()
        self.info.labels(__version__, policy.version).set(1)

    def state(
        self,
        ticket_id: str,
        stored: dict[str, Any] | None,
        previous: dict[str, Any] | Unknown | None = Unknown.VALUE,
    ) -> None:
        """After a state write (`stored` None or {}: deleted), and for every ticket while
        rebuilding after recovery. Keeps the timer gauges current; given `previous` (the
        stored value before this write, None for a new ticket), `sla_state_tickets` follows
        inserts and deletes too (otherwise it changes only at recovery)."""
        if not isinstance(previous, Unknown):
            self.state_tickets.inc(bool(stored) - bool(previous))
        self.timers.put(ticket_id, self._timers_of(stored))

    def _timers_of(self, stored: dict[str, Any] | None) -> tuple[_TimerKey, ...]:
        summary = running_timers(stored) if stored else None
        if summary is None:
            return ()
        if stored and (self.policy.goals or any(v.goals for v in self.policy.versions)):
            goal_timers = self._goal_timers_of(stored)
            if goal_timers is not None:
                return goal_timers
        plan_name, priority, is_paused, clocks = summary
        plan = self.policy.plans.get(plan_name)
        targets = plan.targets.get(priority) if plan is not None else None
        if plan is None or not targets:
            return ()
        return tuple(
            (plan.name, metric, "", is_paused, breached)
            for metric, breached in clocks
            if targets.get(metric) is not None
        )

    def _goal_timers_of(self, stored: dict[str, Any]) -> tuple[_TimerKey, ...] | None:
        """A goal policy's ticket (None: not one): each timer paused on its own, and counted
        only where the goal the ticket matches now names a target for its metric (the
        others run unmeasured, as on the plan path). Decoding costs some microseconds per
        state write; only goal tickets pay it."""
        try:
            ticket = goal_ticket(stored)
        except (StateFormatError, KeyError, TypeError, ValueError):
            return ()
        if ticket is None or ticket.timers is None:
            return None
        # The version that judges the ticket, as the engine chooses it (`Engine.policy_of`).
        policy = next(
            (v for v in self.policy.history() if v.version == ticket.policy_version),
            None,
        ) or self.policy.at(ticket.last_event_at)
        goals = policy.goals
        found = match(goals, ticket)
        if found < 0:
            return ()
        targets = goals[found].targets
        goal = goals[found].name or ""
        return tuple(
            (ticket.plan, timer.metric, goal, not timer.running, timer.breached)
            for timer in ticket.timers
            if timer.metric in targets
        )

    def forget(self, ticket_ids: Iterable[str]) -> None:
        """Tickets of a partition this worker no longer holds leave the timer gauges."""
        for ticket_id in ticket_ids:
            self.timers.put(ticket_id, ())

    def recovered(self, tickets: int, seconds: float) -> None:
        """After state recovery and the rebuild of the due-indexes (`seconds`: the rebuild)."""
        if self._recovery_started is not None:
            seconds = max(seconds, time.monotonic() - self._recovery_started)
            self._recovery_started = None
        self.recovery.set(seconds)
        self.recoveries.inc()
        self.state_tickets.set(tickets)

    def commit_failed(self, reason: str) -> None:
        self.commit_failures.labels(reason).inc()

    def rebalance_started(self) -> None:
        """Partitions are being revoked: a recovery starts; lag of old partitions goes."""
        self._recovery_started = time.monotonic()
        self.recovery_started.set(time.time())
        self.consumer_lag.clear()

    def consumer_lag_of(self, topic: str, partition: int, lag: int) -> None:
        self.consumer_lag.labels(topic, str(partition)).set(lag)

    def standby_lag_of(self, partition: int, lag: int) -> None:
        self.standby_lag.labels(str(partition)).set(lag)

    def standby_failed(self) -> None:
        self.standby_failures.inc()

    def standby_closed(self, partition: int) -> None:
        """A standby closed or promoted, or its lag not known: its lag leaves the gauge."""
        with contextlib.suppress(KeyError):
            self.standby_lag.remove(str(partition))

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def follow_partitions(
        self, partitions: Callable[[], list[PartitionView]], overdue_after: float
    ) -> None:
        """Where the per-partition liveness gauges come from; `overdue_after`: seconds past
        its due instant a timer may wait (allowed lateness plus one timer interval)."""
        self.partitions = partitions
        self.overdue_after = overdue_after

    def follow_due_soon(self, due_soon: Callable[[list[timedelta]], DueSoon]) -> None:
        """Where `sla_timers_due_soon` comes from: counts for the windows, at scrape time."""
        self.due_soon = due_soon

    def follow_readiness(self, is_ready: Callable[[], bool]) -> None:
        """`sla_worker_ready` is computed at every scrape: a rebalance shows as 0 without
        anyone asking /readyz."""
        self.ready.set_function(lambda: 1.0 if is_ready() else 0.0)
