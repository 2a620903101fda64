"""The at-risk query over one partition (issue #24): the rows a team lead sees, from the
due index and the ordered at-risk index, equal to what a scan of every ticket would give."""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.partitions import Feed, new_partition
from worker.core.due_index import DueIndex
from worker.core.engine import Engine
from worker.core.policy import Policy
from worker.policy_file import load_policy
from worker.tasks import at_risk
from worker.tasks.at_risk import AtRiskQuery, AtRiskRow, answer, due_soon, merge, warm
from worker.tasks.partition import Partition

GOALS = load_policy(Path(__file__).parent.parent / "data" / "goals-policy.yaml")
T0 = datetime(2026, 11, 24, 10, tzinfo=UTC)  # a Tuesday, 10:00 UTC (11:00 in Bratislava)
MIN = timedelta(minutes=1)
WINDOWS = (15 * MIN, 60 * MIN, 240 * MIN)


def rows(partition: Partition, now: datetime, **query: Any) -> list[tuple[str, str, int]]:
    found = answer(partition, AtRiskQuery(**query), now)
    return [(r.ticket_id, r.metric, r.cycle) for r in found.rows]


def test_nearest_deadline_first_and_only_within_the_window() -> None:
    partition = new_partition()
    feed = Feed(partition)
    # vip priority 1: first response within an hour, around the clock (warning at 75 %).
    feed.send("ticket-created", "A", T0, plan="vip", priority=1, customer_id="acme")
    feed.send("ticket-created", "B", T0 + 10 * MIN, plan="vip", priority=1)
    feed.send("ticket-created", "C", T0 + 40 * MIN, plan="vip", priority=2)
    now = T0 + 45 * MIN  # A: 15 minutes left, B: 25, C: 55
    assert rows(partition, now, within=20 * MIN) == [("A", "first_response", 1)]
    assert rows(partition, now) == [
        ("A", "first_response", 1),
        ("B", "first_response", 1),
        ("C", "first_response", 1),
    ]
    first = answer(partition, AtRiskQuery(), now).rows[0]
    assert first == AtRiskRow(
        "A",
        "acme",
        "vip",
        1,
        "first_response",
        1,
        T0 + 60 * MIN,
        15 * MIN,
        60 * MIN,
        "24x7",
        False,
        False,
        0,
    )


def test_breached_timers_stay_until_answered() -> None:
    partition = new_partition()
    feed = Feed(partition)
    feed.send("ticket-created", "A", T0, plan="vip", priority=1)
    feed.send("ticket-created", "B", T0 + 30 * MIN, plan="vip", priority=1)
    feed.tick(T0 + 70 * MIN)  # A breached ten minutes ago: no due point any more
    assert partition.clock.due.get("A") is None and "A" in partition.at_risk
    found = answer(partition, AtRiskQuery(), T0 + 70 * MIN)
    assert [(r.ticket_id, r.breached, r.remaining) for r in found.rows] == [
        ("A", True, -10 * MIN),
        ("B", False, 20 * MIN),
    ]
    assert (found.total, found.breached) == (2, 1)
    assert rows(partition, T0 + 70 * MIN, include_breached=False) == [("B", "first_response", 1)]
    feed.send("reply-sent", "A", T0 + 71 * MIN, author="agent")
    assert "A" not in partition.at_risk
    assert rows(partition, T0 + 72 * MIN) == [("B", "first_response", 1)]


def test_remaining_is_business_time_on_the_timers_calendar() -> None:
    """Friday 16:30 in Bratislava: a 2-hour business-hours target created then has 30
    minutes today and 90 on Monday; a 1-hour 24x7 target created an hour later is due
    sooner on the wall clock but has more business time left at 17:15."""
    friday = datetime(2026, 11, 27, 15, 30, tzinfo=UTC)  # 16:30 CET
    partition = new_partition()
    feed = Feed(partition)
    feed.send("ticket-created", "slow", friday, plan="vip", priority=3)
    feed.send("ticket-created", "fast", friday + 15 * MIN, plan="vip", priority=1)
    now = friday + 45 * MIN  # 17:15 CET: business hours are over
    found = answer(partition, AtRiskQuery(within=timedelta(days=4)), now)
    assert [(r.ticket_id, r.remaining, r.calendar) for r in found.rows] == [
        ("fast", 30 * MIN, "24x7"),
        ("slow", 90 * MIN, "cet-business"),
    ]
    assert found.rows[1].deadline == datetime(2026, 11, 30, 9, 30, tzinfo=UTC)


def test_paused_timers_are_not_at_risk_and_filters_apply() -> None:
    partition = new_partition()
    feed = Feed(partition)
    feed.send("ticket-created", "A", T0, plan="vip", priority=1, customer_id="acme")
    feed.send("ticket-created", "B", T0, plan="vip", priority=2, customer_id="globex")
    feed.send("ticket-created", "C", T0, plan="advanced", priority=1, customer_id="acme")
    feed.send("ticket-created", "D", T0, plan="vip", priority=1)
    feed.send("status-changed", "D", T0 + MIN, status="pending")  # waiting on the customer
    now = T0 + 30 * MIN
    assert {t for t, _, _ in rows(partition, now)} == {"A", "B", "C"}
    assert {t for t, _, _ in rows(partition, now, plans=frozenset({"vip"}))} == {"A", "B"}
    assert {t for t, _, _ in rows(partition, now, priorities=frozenset({2}))} == {"B"}
    assert {t for t, _, _ in rows(partition, now, customers=frozenset({"acme"}))} == {"A", "C"}
    assert rows(partition, now, metrics=frozenset({"follow_up"})) == []
    assert rows(partition, now, goals=frozenset({"any"})) == []  # a plan policy: no goals
    assert len(rows(partition, now, limit=2)) == 2
    counts = answer(partition, AtRiskQuery(limit=1), now)
    assert (counts.total, dict(counts.by_priority)) == (3, {1: 2, 2: 1})


def test_a_new_state_value_is_summarised_again() -> None:
    """The summary cache is keyed by the stored value: a priority change (a new deadline)
    shows at once."""
    partition = new_partition()
    feed = Feed(partition)
    feed.send("ticket-created", "A", T0, plan="vip", priority=3)  # 2 business hours
    assert rows(partition, T0 + MIN) == []
    feed.send("priority-changed", "A", T0 + 2 * MIN, priority=1)  # an hour on the clock
    assert [r.deadline for r in answer(partition, AtRiskQuery(), T0 + 3 * MIN).rows] == [
        T0 + 60 * MIN
    ]


def test_due_soon_counts_nest() -> None:
    partition = new_partition()
    feed = Feed(partition)
    feed.send("ticket-created", "A", T0, plan="vip", priority=1)  # due at T0 + 60 min
    feed.send("ticket-created", "B", T0 + 40 * MIN, plan="vip", priority=1)  # at +100
    feed.send("ticket-created", "C", T0 + 50 * MIN, plan="vip", priority=2)  # at +110
    windows = (15 * MIN, 60 * MIN, 240 * MIN)
    counts = due_soon(partition, windows, T0 + 50 * MIN)
    assert counts == {
        ("vip", 1, "first_response", 15 * MIN): 1,
        ("vip", 1, "first_response", 60 * MIN): 2,
        ("vip", 1, "first_response", 240 * MIN): 2,
        ("vip", 2, "first_response", 60 * MIN): 1,
        ("vip", 2, "first_response", 240 * MIN): 1,
    }


def test_merge_keeps_the_order_and_sums_counts() -> None:
    one, two = new_partition(), new_partition()
    Feed(one).send("ticket-created", "A", T0, plan="vip", priority=1)
    Feed(two).send("ticket-created", "B", T0 + MIN, plan="vip", priority=1)
    Feed(two).send("ticket-created", "C", T0 - MIN, plan="vip", priority=1)
    now = T0 + 10 * MIN
    merged = merge([answer(p, AtRiskQuery(), now) for p in (one, two)], limit=2)
    assert [r.ticket_id for r in merged.rows] == ["C", "A"] and merged.total == 3


def test_due_index_until_walks_only_what_is_due() -> None:
    index = DueIndex()
    for n in range(1000):
        index.schedule(f"t{n}", T0 + n * MIN)
    index.schedule("t5", T0 + 2000 * MIN)  # rescheduled: its old entry is stale
    found = sorted(index.until(T0 + 9 * MIN))
    assert found == sorted((f"t{n}", T0 + n * MIN) for n in range(10) if n != 5)


# --- against a scan of every ticket ------------------------------------------------------


def oracle(partition: Partition, query: AtRiskQuery, now: datetime) -> list[AtRiskRow]:
    """Every ticket decoded, every timer checked: what the indexes must give."""
    engine = partition.processor.engine
    found = []
    for value in partition.tickets.values():
        _, ticket, _ = partition.processor.restore(json.loads(value))
        if ticket is None:
            continue
        if query.groups and ticket.group not in query.groups:
            continue
        for view in engine.timers(ticket, now):
            if view.deadline is None:
                continue
            if query.goals and view.goal not in query.goals:
                continue
            if view.breached and not query.include_breached:
                continue
            if not view.breached and view.deadline > now + query.within:
                continue
            found.append(
                AtRiskRow(
                    ticket.ticket_id,
                    ticket.customer_id,
                    ticket.plan,
                    ticket.priority,
                    view.metric,
                    view.cycle,
                    view.deadline,
                    view.target.duration - view.elapsed,
                    view.target.duration,
                    view.calendar,
                    view.paused,
                    view.breached,
                    partition.number,
                    view.goal,
                    ticket.group,
                )
            )
    return sorted(found, key=lambda row: row.order)[: query.limit]


def oracle_rows(partition: Partition, query: AtRiskQuery, now: datetime) -> list[AtRiskRow]:
    """Every matching row of a scan of every ticket, the other filters applied too."""
    return [
        row
        for row in oracle(
            partition,
            AtRiskQuery(
                within=query.within,
                include_breached=query.include_breached,
                limit=10**9,
                goals=query.goals,
                groups=query.groups,
            ),
            now,
        )
        if (not query.metrics or row.metric in query.metrics)
        and (not query.plans or row.plan in query.plans)
        and (not query.priorities or row.priority in query.priorities)
        and (not query.customers or row.customer_id in query.customers)
    ]


def check(partition: Partition, query: AtRiskQuery, now: datetime) -> None:
    """The answer's rows and counts against the scan."""
    expected = oracle_rows(partition, query, now)
    got = answer(partition, query, now)
    assert got.rows == expected[: query.limit]
    assert got.total == len(expected)
    assert got.breached == sum(row.breached for row in expected)
    assert got.by_priority == Counter(row.priority for row in expected)
    assert got.by_metric == Counter(row.metric for row in expected)


def due_soon_oracle(
    partition: Partition, windows: tuple[timedelta, ...], now: datetime
) -> Counter[tuple[str, int, str, timedelta]]:
    """Every ticket decoded: running timers (not paused, not breached) due in [now, now + w]."""
    counts: Counter[tuple[str, int, str, timedelta]] = Counter()
    for value in partition.tickets.values():
        _, ticket, _ = partition.processor.restore(json.loads(value))
        if ticket is None:
            continue
        for view in partition.processor.engine.timers(ticket, now):
            if view.deadline is None or view.breached or view.paused or view.deadline < now:
                continue
            for window in windows:
                if view.deadline <= now + window:
                    counts[(ticket.plan, ticket.priority, view.metric, window)] += 1
    return counts


@pytest.mark.parametrize("policy", [None, GOALS], ids=["plans", "goals"])
@settings(max_examples=40, deadline=None)
@given(st.randoms(use_true_random=False))
def test_the_indexes_give_what_a_scan_gives(policy: Policy | None, rng: random.Random) -> None:
    """On the presets, and on a goal policy (#22) whose timers pause per metric and
    follow the ticket's group from Berlin to New York hours."""
    partition = new_partition() if policy is None else new_partition(policy)
    feed = Feed(partition)
    at = T0 + timedelta(minutes=rng.randrange(0, 3 * 24 * 60))
    tickets = [f"T{n}" for n in range(rng.randrange(1, 25))]
    alive: set[str] = set()
    for _ in range(rng.randrange(1, 80)):
        at += timedelta(minutes=rng.randrange(0, 90))
        ticket = rng.choice(tickets)
        if ticket not in alive:
            plan = rng.choice(["vip", "professional", "advanced"])
            fields: dict[str, Any] = {"plan": plan, "priority": rng.randrange(1, 4)}
            if rng.random() < 0.5:
                fields["customer_id"] = rng.choice(["acme", "globex"])
            if policy is not None and rng.random() < 0.5:
                fields["group"] = rng.choice(["emea", "amer"])
            feed.send("ticket-created", ticket, at, **fields)
            alive.add(ticket)
            continue
        action = rng.randrange(6 if policy is not None else 5)
        if action == 0:
            feed.send("reply-sent", ticket, at, author=rng.choice(["agent", "customer"]))
        elif action == 1:
            feed.send("status-changed", ticket, at, status=rng.choice(["pending", "open"]))
        elif action == 2:
            feed.send("priority-changed", ticket, at, priority=rng.randrange(1, 4))
        elif action == 3:
            feed.tick(at)
        elif action == 5:  # a goal policy: the ticket moves team (or customer)
            if rng.random() < 0.7:
                feed.send("ticket-updated", ticket, at, group=rng.choice(["emea", "amer"]))
            else:
                feed.send("ticket-updated", ticket, at, customer_id=rng.choice(["acme", "x"]))
        elif rng.random() < 0.2:
            feed.send("status-changed", ticket, at, status="solved")
        if rng.random() < 0.3:  # ask now and then, so the indexes see changes
            within = rng.choice([timedelta(days=3), timedelta(hours=1), timedelta(hours=4)])
            check(partition, AtRiskQuery(within=within), at)
        if rng.random() < 0.1:
            assert due_soon(partition, WINDOWS, at) == due_soon_oracle(partition, WINDOWS, at)
    for later in (0, 30, 240, 3000):
        now = at + timedelta(minutes=later)
        for query in (
            AtRiskQuery(),
            AtRiskQuery(within=timedelta(hours=4), limit=3),
            AtRiskQuery(within=timedelta(hours=2), include_breached=False),
            AtRiskQuery(customers=frozenset({"acme"}), limit=2),
            AtRiskQuery(within=timedelta(hours=4), plans=frozenset({"vip"}), limit=4),
            AtRiskQuery(priorities=frozenset({1, 2}), metrics=frozenset({"first_response"})),
            AtRiskQuery(within=timedelta(hours=8), limit=5),
            AtRiskQuery(within=timedelta(days=5), include_breached=False),
            AtRiskQuery(within=timedelta(days=5), groups=frozenset({"amer"})),
            AtRiskQuery(within=timedelta(hours=3), groups=frozenset({"amer"})),
            AtRiskQuery(within=timedelta(days=5), goals=frozenset({"enterprise"})),
            AtRiskQuery(goals=frozenset({"enterprise"}), customers=frozenset({"x"})),
        ):
            check(partition, query, now)
        assert due_soon(partition, WINDOWS, now) == due_soon_oracle(partition, WINDOWS, now)
    list(partition.rebuild())  # as after a restore or a policy reload: the indexes anew
    for query in (AtRiskQuery(within=timedelta(days=5)), AtRiskQuery()):
        check(partition, query, now)
    assert due_soon(partition, WINDOWS, now) == due_soon_oracle(partition, WINDOWS, now)


def test_warming_summarises_what_a_query_would_visit_in_slices() -> None:
    partition = new_partition()
    feed = Feed(partition)
    for n in range(40):
        feed.send("ticket-created", f"T{n}", T0 + n * MIN, plan="vip", priority=1)
    feed.tick(T0 + 80 * MIN)  # T0-T20 breached, the rest due within the hour
    cache = partition.at_risk_summaries
    assert warm(partition, T0 + 80 * MIN, timedelta(hours=4), lambda: True) == 16
    assert warm(partition, T0 + 80 * MIN, timedelta(hours=4), lambda: False) == 24
    assert all(cache.cached(partition, f"T{n}") for n in range(40))
    assert warm(partition, T0 + 80 * MIN, timedelta(hours=4), lambda: False) == 0
    feed.send("reply-sent", "T39", T0 + 81 * MIN, author="agent")
    assert not cache.cached(partition, "T39")  # a new state: summarised again when asked


def test_the_index_follows_writes_a_new_engine_and_forgets_when_nobody_asks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Rows change with each state write between queries; a new engine (a policy reload)
    builds the index anew; too many writes without a query make it forget its running
    timers (memory stays bounded), and the next query fills it again."""
    partition = new_partition()
    feed = Feed(partition)
    for n in range(10):
        feed.send("ticket-created", f"T{n}", T0 + n * MIN, plan="vip", priority=1)
    now = T0 + 30 * MIN
    check(partition, AtRiskQuery(), now)
    assert partition.at_risk.covered is not None
    feed.send("reply-sent", "T3", T0 + 31 * MIN, author="agent")  # answered: gone
    feed.send("ticket-created", "N", T0 + 31 * MIN, plan="vip", priority=1)  # new: in
    check(partition, AtRiskQuery(), T0 + 32 * MIN)
    assert "T3" not in {r.ticket_id for r in answer(partition, AtRiskQuery(), now).rows}
    partition.processor.engine = Engine(partition.processor.engine.policy)
    check(partition, AtRiskQuery(), T0 + 32 * MIN)
    monkeypatch.setattr(at_risk, "DIRTY_LIMIT", 3)
    for n in range(5):
        feed.send("priority-changed", f"T{n + 4}", T0 + 33 * MIN, priority=2)
    assert partition.at_risk.covered is None  # forgotten
    check(partition, AtRiskQuery(), T0 + 34 * MIN)
    assert due_soon(partition, WINDOWS, T0 + 34 * MIN) == due_soon_oracle(
        partition, WINDOWS, T0 + 34 * MIN
    )
