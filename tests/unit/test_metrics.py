"""The worker's Prometheus metrics: each hook, with real outcomes, events and states."""

from __future__ import annotations

import dataclasses
import json
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from worker import __version__
from worker.core.engine import Engine, TimerFinished
from worker.core.events import SlaBreach, SlaWarning
from worker.core.policy import Policy
from worker.core.reasons import Reason
from worker.metrics import DEAD_LETTER_REASONS, Metrics
from worker.tasks.partition import Batch
from worker.tasks.processor import DeadLetter, Outcome, Source, TicketProcessor

ROOT = Path(__file__).resolve().parents[2]
FAST = ROOT / "tests" / "data" / "fast-policy.yaml"


@pytest.fixture(scope="module")
def policy() -> Policy:
    return Policy.from_mapping(yaml.safe_load(FAST.read_text()))


@pytest.fixture
def metrics(policy: Policy) -> Metrics:
    return Metrics(policy)


# Series labelled with the goal that judged the timer ("" under a plan x priority policy).
GOAL_LABELLED = {
    "sla_warnings_published_total",
    "sla_breaches_published_total",
    "sla_timers_met_total",
    "sla_timers_breached_total",
    "sla_running_timers",
    "sla_paused_timers",
    "sla_overdue_timers",
}


def value(metrics: Metrics, name: str, **labels: str) -> float:
    if name in GOAL_LABELLED:
        labels.setdefault("goal", "")
    sample = metrics.registry.get_sample_value(name, labels)
    assert sample is not None, f"no sample {name}{labels}"
    return sample


def source(body: dict[str, Any] | bytes, key: bytes | None = b"T-1") -> Source:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Source("tickets", 0, 7, key, raw)


def sla_fields(**overrides: Any) -> dict[str, Any]:
    due = datetime.now(UTC) - timedelta(seconds=3)
    fields: dict[str, Any] = {
        "event_id": "e-1",
        "ticket_id": "T-1",
        "plan": "fast",
        "priority": 1,
        "metric": "first_response",
        "cycle": 1,
        "started_at": due - timedelta(seconds=6),
        "due_at": due,
        "deadline": due,
        "target": timedelta(seconds=6),
        "calendar": "clock",
        "policy_version": "fast-test-1",
    }
    return {**fields, **overrides}


def finished(
    plan: str = "fast", priority: int = 2, metric: Any = "first_response", met: bool = True
) -> TimerFinished:
    now = datetime.now(UTC)
    second = timedelta(seconds=1)
    return TimerFinished(
        "T-1", None, plan, priority, metric, 1, now - second, now, "reply", met, second,
        6 * second, "clock", now + 5 * second, "fast-test-1",
    )  # fmt: skip


# --- consumed messages and dead letters ------------------------------------------------------


def test_every_known_series_is_exported_at_zero_from_the_start(metrics: Metrics) -> None:
    for plan, priority, metric in [
        ("fast", "1", "first_response"),
        ("fast", "1", "follow_up"),
        ("fast", "2", "first_response"),
    ]:
        for name in (
            "sla_warnings_published_total",
            "sla_breaches_published_total",
            "sla_timers_met_total",
            "sla_timers_breached_total",
        ):
            assert value(metrics, name, plan=plan, priority=priority, metric=metric) == 0
    # Priority 2 has no follow-up target, priority 3 no target at all: no series.
    labels = {"plan": "fast", "priority": "2", "metric": "follow_up"}
    assert metrics.registry.get_sample_value("sla_timers_met_total", labels) is None
    for reason in DEAD_LETTER_REASONS:
        assert value(metrics, "sla_dead_letters_total", reason=reason) == 0
    assert (
        value(metrics, "sla_events_consumed_total", type="reply-sent", outcome="applied", reason="")
        == 0
    )
    assert value(metrics, "sla_running_timers", plan="fast", metric="follow_up") == 0
    assert value(metrics, "sla_build_info", version=__version__, policy_version="fast-test-1") == 1
    metrics.use_policy(dataclasses.replace(metrics.policy, version="fast-test-2"))  # SIGHUP
    old = {"version": __version__, "policy_version": "fast-test-1"}
    assert metrics.registry.get_sample_value("sla_build_info", old) is None
    assert value(metrics, "sla_build_info", version=__version__, policy_version="fast-test-2") == 1


def test_an_applied_event_is_counted_with_its_end_to_end_lag(metrics: Metrics) -> None:
    occurred = datetime.now(UTC) - timedelta(seconds=10)
    outcome = Outcome(event_type="ticket-created", applied=True, occurred_at=occurred)
    metrics.step(Batch(0, inputs=[outcome]), 0.002)

    labels = {"type": "ticket-created", "outcome": "applied", "reason": ""}
    assert value(metrics, "sla_events_consumed_total", **labels) == 1
    assert value(metrics, "sla_event_lag_seconds_count") == 1
    assert 10 <= value(metrics, "sla_event_lag_seconds_sum") < 12
    assert value(metrics, "sla_event_lag_seconds_bucket", le="5.0") == 0
    assert value(metrics, "sla_event_lag_seconds_bucket", le="15.0") == 1
    assert value(metrics, "sla_event_processing_seconds_count") == 1
    assert value(metrics, "sla_event_processing_seconds_sum") == 0.002


def test_duplicates_and_held_events_are_counted_but_not_lagged(metrics: Metrics) -> None:
    now = datetime.now(UTC)
    metrics.outcome(Outcome(event_type="reply-sent", duplicate=True, occurred_at=now), timer=False)
    metrics.outcome(
        Outcome(event_type="status-changed", held=True, occurred_at=now, state={"held": []}),
        timer=False,
    )
    consumed = "sla_events_consumed_total"
    assert value(metrics, consumed, type="reply-sent", outcome="duplicate", reason="") == 1
    assert value(metrics, consumed, type="status-changed", outcome="held", reason="") == 1
    assert value(metrics, "sla_event_lag_seconds_count") == 0


def test_a_dead_lettered_message_is_counted_once_with_its_reason(metrics: Metrics) -> None:
    undecodable = Outcome(dead_letters=[DeadLetter(source(b"{not json"), "invalid-json", "x")])
    metrics.outcome(undecodable, timer=False)
    rejected = Outcome(
        event_type="reply-sent",
        occurred_at=datetime.now(UTC),
        dead_letters=[DeadLetter(source({"type": "reply-sent"}), "out-of-order", "x")],
        state={"v": 1},  # the ticket's state is stored again
    )
    metrics.outcome(rejected, timer=False)

    consumed = "sla_events_consumed_total"
    assert (
        value(metrics, consumed, type="unknown", outcome="dead_lettered", reason="invalid-json")
        == 1
    )
    assert (
        value(metrics, consumed, type="reply-sent", outcome="dead_lettered", reason="out-of-order")
        == 1
    )
    assert value(metrics, "sla_dead_letters_total", reason="invalid-json") == 1
    assert value(metrics, "sla_dead_letters_total", reason="out-of-order") == 1
    assert value(metrics, "sla_event_lag_seconds_count") == 0  # nothing was applied


def test_held_events_released_and_rejected_count_as_dead_letters_not_as_the_message(
    metrics: Metrics,
) -> None:
    """A ticket-created applies and releases held events, one of which is rejected."""
    letter = DeadLetter(source({"type": "priority-changed"}), "unknown-priority", "x")
    outcome = Outcome(
        event_type="ticket-created",
        applied=True,
        occurred_at=datetime.now(UTC),
        dead_letters=[letter],
        state={"v": 1},
    )
    metrics.outcome(outcome, timer=False)
    consumed = "sla_events_consumed_total"
    assert value(metrics, consumed, type="ticket-created", outcome="applied", reason="") == 1
    assert (
        metrics.registry.get_sample_value(
            consumed,
            {"type": "ticket-created", "outcome": "dead_lettered", "reason": "unknown-priority"},
        )
        is None
    )
    assert value(metrics, "sla_dead_letters_total", reason="unknown-priority") == 1


def test_expired_held_events_are_dead_letters_but_no_consumed_message(
    metrics: Metrics,
) -> None:
    """The timer that expires held events is not an inbound message."""
    letters = [
        DeadLetter(source({"type": "reply-sent"}), "unknown-ticket", "never created"),
        DeadLetter(source({"type": "status-changed"}), "unknown-ticket", "never created"),
    ]
    metrics.outcome(Outcome(dead_letters=letters, state={}), timer=True)
    assert value(metrics, "sla_dead_letters_total", reason="unknown-ticket") == 2
    families = {f.name: f for f in metrics.registry.collect()}
    assert all(
        sample.labels["outcome"] != "dead_lettered"
        for sample in families["sla_events_consumed"].samples
    )


def test_an_internal_error_is_a_dead_letter_of_an_unknown_type(metrics: Metrics) -> None:
    letter = DeadLetter(source({"type": "reply-sent"}), "internal-error", "KeyError: 'x'")
    metrics.outcome(Outcome(dead_letters=[letter]), timer=False)
    consumed = "sla_events_consumed_total"
    labels = {"outcome": "dead_lettered", "reason": "internal-error"}
    assert value(metrics, consumed, type="unknown", **labels) == 1
    assert value(metrics, "sla_dead_letters_total", reason="internal-error") == 1


def test_every_reason_is_exported_from_the_start() -> None:
    """Dashboards and alerts see each reason's series at 0 before its first dead letter."""
    assert tuple(Reason) == DEAD_LETTER_REASONS


# --- warnings, breaches, met timers -----------------------------------------------------------


def test_warnings_breaches_and_met_timers_by_plan_priority_and_metric(metrics: Metrics) -> None:
    warning = SlaWarning(**sla_fields(threshold=0.5))
    breach = SlaBreach(**sla_fields(event_id="e-2"))
    # A timer finished after its breach is counted by its breach, not as met.
    outcome = Outcome(
        publish=[warning, breach], finished=[finished(priority=2), finished(met=False)]
    )
    metrics.outcome(outcome, timer=True)

    labels = {"plan": "fast", "priority": "1", "metric": "first_response"}
    assert value(metrics, "sla_warnings_published_total", **labels) == 1
    assert value(metrics, "sla_breaches_published_total", **labels) == 1
    assert value(metrics, "sla_timers_breached_total", **labels) == 1
    assert value(metrics, "sla_timers_met_total", **labels) == 0
    assert (
        value(metrics, "sla_timers_met_total", plan="fast", priority="2", metric="first_response")
        == 1
    )
    # Lateness: now minus the deadline (3 s ago), once per breach, not per warning.
    assert value(metrics, "sla_breach_publication_lateness_seconds_count") == 1
    assert 3 <= value(metrics, "sla_breach_publication_lateness_seconds_sum") < 5
    assert value(metrics, "sla_breach_publication_lateness_seconds_bucket", le="2.0") == 0
    assert value(metrics, "sla_breach_publication_lateness_seconds_bucket", le="5.0") == 1


def counters(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every counter sample and histogram count of the worker's own metrics (not the sums:
    they depend on the clock; nor the process's and the interpreter's, such as
    `process_cpu_seconds_total`, which move between two reads)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in metrics.registry.collect()
        if family.type in ("counter", "histogram") and family.name.startswith("sla_")
        for sample in family.samples
        if not sample.name.endswith("_sum")
    }


def test_a_step_counts_its_outcomes_as_they_would_count_one_by_one(policy: Policy) -> None:
    """`step` adds up a step's outcomes per label set before touching the counters (one
    increment per series, not per message): the totals are those of counting each."""
    now = datetime.now(UTC)
    warning = SlaWarning(**sla_fields(threshold=0.5))
    breach = SlaBreach(**sla_fields(event_id="e-2"))
    letter = DeadLetter(source({"type": "priority-changed"}), Reason.UNKNOWN_PRIORITY, "x")
    inputs = [
        Outcome(event_type="ticket-created", applied=True, occurred_at=now),
        Outcome(event_type="ticket-created", applied=True, occurred_at=now, publish=[breach]),
        Outcome(event_type="reply-sent", duplicate=True, occurred_at=now),
        Outcome(dead_letters=[letter]),
        Outcome(dead_letters=[letter]),
        Outcome(event_type="ticket-created", applied=True, occurred_at=now, dead_letters=[letter]),
    ]
    timers = [
        Outcome(publish=[warning, breach], finished=[finished(priority=2), finished(met=False)]),
        Outcome(publish=[warning], finished=[finished(priority=2)]),
    ]
    batched, one_by_one = Metrics(policy), Metrics(policy)
    batched.step(Batch(0, inputs=inputs, timers=timers), 0.01)
    one_by_one.processing.observe(0.01)
    for outcome in inputs:
        one_by_one.outcome(outcome, timer=False)
    for outcome in timers:
        one_by_one.outcome(outcome, timer=True)

    assert counters(batched) == counters(one_by_one)
    labels = {"plan": "fast", "priority": "1", "metric": "first_response"}
    assert value(batched, "sla_breaches_published_total", **labels) == 2
    assert value(batched, "sla_timers_breached_total", **labels) == 2
    assert value(batched, "sla_warnings_published_total", **labels) == 2
    assert value(batched, "sla_dead_letters_total", reason="unknown-priority") == 3
    consumed = "sla_events_consumed_total"
    assert value(batched, consumed, type="ticket-created", outcome="applied", reason="") == 3
    assert (
        value(batched, consumed, type="unknown", outcome="dead_lettered", reason="unknown-priority")
        == 2
    )
    assert value(batched, "sla_event_lag_seconds_count") == 3
    assert value(batched, "sla_breach_publication_lateness_seconds_count") == 2


def test_a_breach_published_before_its_deadline_counts_zero_lateness(metrics: Metrics) -> None:
    future = datetime.now(UTC) + timedelta(seconds=30)
    breach = SlaBreach(**sla_fields(due_at=future, deadline=future))
    metrics.outcome(Outcome(publish=[breach]), timer=True)
    assert value(metrics, "sla_breach_publication_lateness_seconds_sum") == 0


def test_lateness_counts_from_when_the_worker_could_know_a_deadline(metrics: Metrics) -> None:
    """A deadline set by a record produced after it (`known_at`, the record's timestamp):
    late only from that record on; a deadline known in time: from the deadline."""
    now = datetime.now(UTC)
    hour_ago = now - timedelta(hours=1)
    breach = SlaBreach(**sla_fields(due_at=hour_ago, deadline=hour_ago))
    metrics.outcome(Outcome(publish=[breach], known_at=now - timedelta(seconds=2)), timer=True)
    assert 2 <= value(metrics, "sla_breach_publication_lateness_seconds_sum") < 4
    # known_at before the deadline changes nothing: an hour late.
    metrics.outcome(Outcome(publish=[breach], known_at=hour_ago - timedelta(hours=1)), timer=True)
    assert 3600 <= value(metrics, "sla_breach_publication_lateness_seconds_sum") - 2 < 3604


def test_the_engine_s_own_emissions_feed_the_counters(policy: Policy, metrics: Metrics) -> None:
    """End to end through the processor: a ticket warned, breached, answered; another met."""
    processor = TicketProcessor(Engine(policy), hold_unknown=None)
    start = datetime(2026, 11, 24, 10, tzinfo=UTC)

    def event(n: int, type_: str, ticket: str, at: timedelta, **fields: Any) -> Source:
        body = {
            "event_id": f"e-{n}",
            "type": type_,
            "ticket_id": ticket,
            "occurred_at": (start + at).isoformat(),
            **fields,
        }
        return source(body, key=ticket.encode())

    stored: dict[str, Any] = {}
    for src in [
        event(1, "ticket-created", "A", timedelta(0), plan="fast", priority=1),
        event(2, "ticket-created", "B", timedelta(0), plan="fast", priority=2),
        event(3, "reply-sent", "B", timedelta(seconds=1), author="agent"),
        # A's reply after its 6 s deadline: its warning and breach fire first.
        event(4, "reply-sent", "A", timedelta(seconds=10), author="agent"),
    ]:
        ticket = src.key.decode() if src.key else ""
        outcome = processor.on_event(src, stored.get(ticket), start)
        metrics.outcome(outcome, timer=False)
        if outcome.state is not None:
            metrics.state(ticket, outcome.state, stored.get(ticket))
            stored[ticket] = outcome.state

    fr1 = {"plan": "fast", "priority": "1", "metric": "first_response"}
    fr2 = {"plan": "fast", "priority": "2", "metric": "first_response"}
    assert value(metrics, "sla_warnings_published_total", **fr1) == 1
    assert value(metrics, "sla_breaches_published_total", **fr1) == 1
    assert value(metrics, "sla_timers_breached_total", **fr1) == 1
    assert value(metrics, "sla_timers_met_total", **fr1) == 0  # answered after the breach
    assert value(metrics, "sla_timers_met_total", **fr2) == 1
    consumed = "sla_events_consumed_total"
    assert value(metrics, consumed, type="ticket-created", outcome="applied", reason="") == 2
    assert value(metrics, consumed, type="reply-sent", outcome="applied", reason="") == 2
    assert value(metrics, "sla_state_tickets") == 2
    assert value(metrics, "sla_running_timers", plan="fast", metric="first_response") == 0


# --- timers and state -------------------------------------------------------------------------


def stored_ticket(
    plan: str = "fast",
    priority: int = 1,
    fr: bool = True,
    fu: bool = False,
    paused: bool = False,
    breached: bool = False,
    exempt: bool = False,
) -> dict[str, Any]:
    clock = ["first_response", 1, 0, [], breached]
    return {
        "v": 1,
        "id": "T",
        "plan": plan,
        "priority": priority,
        "exempt": exempt,
        "fr": clock if fr else None,
        "fu": ["follow_up", 1, 0, [], False] if fu else None,
        "pauses": [[0, None]] if paused else [[0, 5]],
        "p": 0,
    }


def timers(metrics: Metrics, name: str, metric: str = "first_response") -> float:
    return value(metrics, name, plan="fast", metric=metric)


def test_running_paused_and_overdue_timers_follow_each_state_write(metrics: Metrics) -> None:
    metrics.state("A", stored_ticket(), None)
    metrics.state("B", stored_ticket(fu=True), None)
    metrics.state("C", stored_ticket(paused=True), None)
    assert timers(metrics, "sla_running_timers") == 2
    assert timers(metrics, "sla_running_timers", "follow_up") == 1
    assert timers(metrics, "sla_paused_timers") == 1

    metrics.state("A", stored_ticket(breached=True), stored_ticket())  # A breached
    metrics.state("C", stored_ticket(), stored_ticket(paused=True))  # C resumed
    assert timers(metrics, "sla_running_timers") == 3
    assert timers(metrics, "sla_paused_timers") == 0
    assert timers(metrics, "sla_overdue_timers") == 1

    metrics.state("A", stored_ticket(fr=False), stored_ticket(breached=True))  # answered
    metrics.state("B", {}, stored_ticket(fu=True))  # deleted
    assert timers(metrics, "sla_running_timers") == 1
    assert timers(metrics, "sla_running_timers", "follow_up") == 0
    assert timers(metrics, "sla_overdue_timers") == 0
    assert len(metrics.timers) == 1 and "C" in metrics.timers


def test_the_timer_gauges_cost_about_a_dict_entry_per_ticket(metrics: Metrics) -> None:
    """With the states in a local store, the gauges' table is most of what RAM holds per
    open ticket (#23: 5,000,000 tickets in 1 GiB). Tickets with the same timers share one
    tuple of them, so an entry costs its dict slot, not a fresh tuple of label tuples
    (about 250 bytes each before)."""
    states = [stored_ticket(), stored_ticket(fu=True), stored_ticket(paused=True)]
    ids = [f"T-{i:06d}" for i in range(30_000)]  # made before: ids are not the table's
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i, ticket_id in enumerate(ids):
            metrics.state(ticket_id, states[i % 3])
        per_ticket = (tracemalloc.get_traced_memory()[0] - before) / len(ids)
    finally:
        tracemalloc.stop()
    assert len(metrics.timers) == len(ids)
    assert timers(metrics, "sla_paused_timers") == 10_000
    assert per_ticket < 100, f"{per_ticket:.0f} bytes per ticket"


def test_unmeasured_timers_are_not_counted(metrics: Metrics) -> None:
    metrics.state("no-target", stored_ticket(priority=3), None)
    metrics.state("no-follow-up-target", stored_ticket(priority=2, fr=False, fu=True), None)
    metrics.state("exempt", stored_ticket(exempt=True), None)
    metrics.state("gone-plan", stored_ticket(plan="retired"), None)
    metrics.state("held", {"held": [{"until": "x"}], "p": 0}, None)
    assert len(metrics.timers) == 0
    assert timers(metrics, "sla_running_timers") == 0
    assert value(metrics, "sla_state_tickets") == 5  # they are all in state, though


def test_state_tickets_follows_inserts_and_deletes_and_is_reset_by_recovery(
    metrics: Metrics,
) -> None:
    metrics.recovered(tickets=10, seconds=0.5)
    assert value(metrics, "sla_state_tickets") == 10
    metrics.state("new", stored_ticket(), None)  # insert
    metrics.state("new", stored_ticket(breached=True), stored_ticket())  # update
    metrics.state("old", {}, stored_ticket())  # delete
    metrics.state("never-was", {}, None)  # a delete of nothing
    assert value(metrics, "sla_state_tickets") == 10
    metrics.state("new-2", stored_ticket(), None)
    assert value(metrics, "sla_state_tickets") == 11
    # While rebuilding after recovery (no previous value given) only the timers change.
    metrics.timers.clear()
    metrics.state("rebuilt", stored_ticket())
    assert value(metrics, "sla_state_tickets") == 11
    assert timers(metrics, "sla_running_timers") == 1
    metrics.recovered(tickets=3, seconds=0.1)
    assert value(metrics, "sla_state_tickets") == 3


def test_recovery_is_timed_from_the_start_of_the_rebalance(metrics: Metrics) -> None:
    before = time.time()
    metrics.consumer_lag_of("tickets", 2, 42)
    assert value(metrics, "sla_consumer_lag_messages", topic="tickets", partition="2") == 42

    metrics.rebalance_started()
    assert value(metrics, "sla_table_recovery_started_timestamp_seconds") >= before
    # The revoked partitions' lag goes; the next timer tick reports the new assignment.
    labels = {"topic": "tickets", "partition": "2"}
    assert metrics.registry.get_sample_value("sla_consumer_lag_messages", labels) is None

    time.sleep(0.05)
    metrics.recovered(tickets=0, seconds=0.01)  # the index rebuild itself took 10 ms
    assert 0.05 <= value(metrics, "sla_table_recovery_seconds") < 1
    assert value(metrics, "sla_table_recoveries_total") == 1
    # A recovery without a rebalance start seen reports its own duration.
    metrics.recovered(tickets=0, seconds=0.2)
    assert value(metrics, "sla_table_recovery_seconds") == 0.2
    assert value(metrics, "sla_table_recoveries_total") == 2


# --- exposition and HTTP endpoints ------------------------------------------------------------


def test_render_is_valid_prometheus_text(metrics: Metrics) -> None:
    metrics.consumer_lag_of("tickets", 0, 5)
    families = {f.name: f for f in text_string_to_metric_families(metrics.render().decode())}
    assert families["sla_events_consumed"].type == "counter"
    assert families["sla_breach_publication_lateness_seconds"].type == "histogram"
    assert families["sla_running_timers"].type == "gauge"
    assert families["sla_consumer_lag_messages"].samples[0].value == 5
    assert not [name for name in families if name.endswith("_created")]


def test_readiness_is_computed_at_every_scrape(metrics: Metrics) -> None:
    ready = False
    metrics.follow_readiness(lambda: ready)
    assert value(metrics, "sla_worker_ready") == 0
    ready = True
    assert value(metrics, "sla_worker_ready") == 1
    metrics.ready.set(0)  # a computed gauge ignores sets
    assert value(metrics, "sla_worker_ready") == 1


def test_partition_liveness_is_computed_at_scrape(metrics: Metrics) -> None:
    now = datetime.now(UTC)
    views = [(0, True, None), (3, False, now - timedelta(seconds=100))]
    metrics.follow_partitions(lambda: views, overdue_after=10.0)
    assert value(metrics, "sla_partition_caught_up", partition="0") == 1
    assert value(metrics, "sla_partition_caught_up", partition="3") == 0
    assert value(metrics, "sla_oldest_overdue_timer_seconds", partition="0") == 0
    assert 89 <= value(metrics, "sla_oldest_overdue_timer_seconds", partition="3") < 95
    views = [(0, True, now + timedelta(seconds=30))]  # partition 3 revoked: its series go
    assert value(metrics, "sla_oldest_overdue_timer_seconds", partition="0") == 0
    labels = {"partition": "3"}
    assert metrics.registry.get_sample_value("sla_partition_caught_up", labels) is None


def test_a_goal_policy_counts_each_measured_timer_with_its_own_pause() -> None:
    """Under a goal policy (#22) a ticket's timers pause one by one (requester wait runs
    on hold, agent work does not), and only the metrics the matching goal names count."""
    from worker.core.events import parse_event
    from worker.core.state_codec import dump_ticket
    from worker.policy_file import load_policy

    policy = load_policy(ROOT / "tests" / "data" / "goals-policy.yaml")
    engine, metrics = Engine(policy), Metrics(policy)
    at = "2026-03-02T10:00:00Z"

    def apply(ticket: Any, body: dict[str, Any]) -> Any:
        event = parse_event(json.dumps({"event_id": f"e{body}", "occurred_at": at, **body}))
        return engine.apply(ticket, event).ticket

    vip = apply(None, {"type": "ticket-created", "ticket_id": "V", "plan": "vip", "priority": 1})
    pro = apply(None, {"type": "ticket-created", "ticket_id": "P", "plan": "pro", "priority": 3})
    pro = apply(pro, {"type": "status-changed", "ticket_id": "P", "status": "on-hold"})
    metrics.state("V", dump_ticket(vip), None)
    metrics.state("P", dump_ticket(pro), None)

    def count(name: str, plan: str, metric: str, goal: str) -> float:
        return value(metrics, name, plan=plan, metric=metric, goal=goal)

    # vip-urgent: first response and resolution run; requester wait and agent work run
    # unmeasured (the goal names no target for them) and are not counted.
    assert count("sla_running_timers", "vip", "first_response", "vip-urgent") == 1
    assert count("sla_running_timers", "vip", "resolution", "vip-urgent") == 1
    labels = {"plan": "vip", "metric": "agent_work", "goal": "vip-urgent"}
    assert metrics.registry.get_sample_value("sla_running_timers", labels) in (None, 0)
    # standard, on hold: requester wait runs, agent work and first response wait.
    assert count("sla_running_timers", "pro", "requester_wait", "standard") == 1
    assert count("sla_paused_timers", "pro", "agent_work", "standard") == 1
    assert count("sla_paused_timers", "pro", "first_response", "standard") == 1


def test_a_goal_policy_labels_warnings_breaches_and_met_timers_with_the_goal() -> None:
    """The counters carry the goal that judged the timer, so a dashboard can tell the
    enterprise goal's breaches from the standard one's; unnamed goals (the plan x priority
    short form) leave the label empty, which Prometheus stores as no label at all."""
    from worker.policy_file import load_policy

    policy = load_policy(ROOT / "tests" / "data" / "goals-policy.yaml")
    processor, metrics = TicketProcessor(Engine(policy), hold_unknown=None), Metrics(policy)
    start = datetime(2026, 3, 2, 10, tzinfo=UTC)  # a Monday
    now = start + timedelta(days=2)
    stored: dict[str, Any] | None = None
    for n, (type_, at, fields) in enumerate(
        [
            ("ticket-created", timedelta(0), {"plan": "vip", "priority": 1}),
            # A public reply 5 minutes later meets first response (PT1H, 24x7).
            ("reply-sent", timedelta(minutes=5), {"author": "agent", "public": True}),
            # A status change 9 hours in: resolution (PT8H) warned at 6 h, breached at 8 h.
            ("status-changed", timedelta(hours=9), {"status": "open"}),
        ]
    ):
        body = {
            "event_id": f"e-{n}",
            "type": type_,
            "ticket_id": "V",
            "occurred_at": (start + at).isoformat(),
            **fields,
        }
        outcome = processor.on_event(source(body, key=b"V"), stored, now)
        assert outcome.applied, outcome
        metrics.outcome(outcome, timer=False)
        stored = outcome.state if outcome.state is not None else stored

    def count(name: str, metric: str, goal: str) -> float | None:
        labels = {"plan": "vip", "priority": "1", "metric": metric, "goal": goal}
        return metrics.registry.get_sample_value(name, labels)

    assert count("sla_timers_met_total", "first_response", "vip-urgent") == 1
    for name in (
        "sla_warnings_published_total",
        "sla_breaches_published_total",
        "sla_timers_breached_total",
    ):
        assert count(name, "resolution", "vip-urgent") == 1
        assert count(name, "resolution", "") in (None, 0)
