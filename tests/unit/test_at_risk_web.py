"""`GET /at-risk` over HTTP (issue #24): bad input, the token, and the cluster fan-out
with real aiohttp servers (the Kafka side is in tests/integration/test_at_risk_cluster.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests.partitions import Feed, new_partition
from worker.kafka.at_risk_web import (
    COMPACT,
    FORWARDED,
    WorkerAnswer,
    compact_row,
    due_soon_counts,
    parse_within,
    row_from_compact,
    row_json,
)
from worker.kafka.web import build_web
from worker.metrics import Metrics
from worker.policy_file import load_policy
from worker.presets import load_presets
from worker.settings import WorkerSettings
from worker.tasks.partition import Partition

PRESETS = load_presets()
GOALS = load_policy(Path(__file__).parent.parent / "data" / "goals-policy.yaml")
MIN = timedelta(minutes=1)


class FakeWorker:
    """What the web API asks a `LiveWorker`, with real partitions."""

    def __init__(
        self,
        partitions: dict[int, Partition],
        *,
        token: str | None = None,
        restoring: set[int] | None = None,
        count: int = 4,
    ) -> None:
        self.settings = WorkerSettings(api_token=token, partitions=count)
        self.held = partitions
        self.restoring = restoring or set()
        self.owners: dict[int, str] = {}
        self.policy = PRESETS

    def at_risk_view(self) -> tuple[dict[int, Partition], set[int]]:
        return dict(self.held), set(self.restoring)


@asynccontextmanager
async def api(worker: FakeWorker) -> AsyncIterator[TestClient[Any, Any]]:
    app = build_web(worker, Metrics(PRESETS))  # type: ignore[arg-type]
    async with TestClient(TestServer(app)) as client:
        yield client


def partition_with(number: int, *created: tuple[str, int, int]) -> Partition:
    """A partition with tickets (id, priority, minutes ago) on vip (1 h on the clock)."""
    partition = new_partition()
    partition.number = number
    feed = Feed(partition)
    now = datetime.now(UTC)
    for ticket, priority, ago in sorted(created, key=lambda c: -c[2]):
        feed.send("ticket-created", ticket, now - ago * MIN, plan="vip", priority=priority)
    return partition


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_one_worker_answers_for_its_partitions_and_names_the_others() -> None:
    worker = FakeWorker({0: partition_with(0, ("A", 1, 50), ("B", 2, 20), ("C", 1, 70))})
    async with api(worker) as client:
        response = await client.get("/at-risk")
        assert response.status == 200
        body = await response.json()
    assert [r["ticket_id"] for r in body["rows"]] == ["C", "A", "B"]
    first = body["rows"][0]
    assert first["breached"] is False  # not fired yet: the partition was not stepped
    assert first["remaining"].startswith("-PT10M") and first["remaining_seconds"] < 0
    assert set(first) == {
        "ticket_id",
        "customer_id",
        "plan",
        "priority",
        "metric",
        "cycle",
        "goal",
        "group",
        "deadline",
        "remaining",
        "remaining_seconds",
        "target",
        "calendar",
        "paused",
        "breached",
        "partition",
    }
    assert first["goal"] is None and first["calendar"] == "24x7" and first["target"] == "PT1H"
    # No other member known: partitions 1-3 are missing, and the answer says so.
    assert body["partial"] is True and body["missing_partitions"] == [1, 2, 3]
    assert body["counts"] == {
        "total": 3,
        "breached": 0,
        "priority": {"1": 2, "2": 1},
        "metric": {"first_response": 3},
    }


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("within=1h", "within"),
        ("within=PT", "within"),
        ("within=P400D", "within"),
        ("limit=0", "limit"),
        ("limit=10001", "limit"),
        ("limit=ten", "limit"),
        ("include_breached=maybe", "include_breached"),
        ("metric=resolution", "metric"),
        ("plan=platinum", "plan"),
        ("priority=9", "priority"),
        ("priority=high", "priority"),
        ("plan=", "plan"),
        ("goal=fast", "goal"),
        ("group=", "group"),
        ("sort=deadline", "sort"),
    ],
)
async def test_bad_input_is_a_400_naming_the_parameter(query: str, parameter: str) -> None:
    async with api(FakeWorker({})) as client:
        response = await client.get(f"/at-risk?{query}")
        assert response.status == 400
        body = await response.json()
    assert body["parameter"] == parameter and body["error"]


def test_within_takes_iso_durations_of_wall_clock_time() -> None:
    assert parse_within("PT15M") == 15 * MIN
    assert parse_within("P1DT2H") == timedelta(days=1, hours=2)
    assert parse_within("P2D") == timedelta(days=2)
    assert parse_within("PT0S") == timedelta(0)


async def test_the_token_is_required_and_carried_to_the_others() -> None:
    near = partition_with(1, ("N", 1, 55))
    async with api(FakeWorker({1: near}, token="s3cret")) as other:
        other_url = str(other.make_url("")).rstrip("/")
        asked = FakeWorker({0: partition_with(0, ("A", 1, 50))}, token="s3cret", count=2)
        asked.owners = {0: asked.settings.canonical_url, 1: other_url}
        async with api(asked) as client:
            assert (await client.get("/at-risk")).status == 401
            refused = await client.get("/at-risk", headers=bearer("wrong"))
            assert refused.status == 401
            response = await client.get("/at-risk", headers=bearer("s3cret"))
            body = await response.json()
    assert [r["ticket_id"] for r in body["rows"]] == ["N", "A"]
    assert body["partial"] is False and body["missing_partitions"] == []


async def test_a_member_that_does_not_answer_makes_the_answer_partial() -> None:
    restoring = FakeWorker({1: partition_with(1, ("B", 1, 40))}, restoring={3}, count=4)
    async with api(restoring) as other:
        other_url = str(other.make_url("")).rstrip("/")
        asked = FakeWorker({0: partition_with(0, ("A", 1, 50))}, count=4)
        asked.owners = {
            0: asked.settings.canonical_url,
            1: other_url,
            2: "http://127.0.0.1:9",  # nobody listens there
            3: other_url,
        }
        async with api(asked) as client:
            body = await (await client.get("/at-risk?limit=1")).json()
    assert [r["ticket_id"] for r in body["rows"]] == ["A"]  # limit 1 of the merged rows
    assert body["counts"]["total"] == 2
    assert body["partial"] is True
    assert body["missing_partitions"] == [2, 3]
    assert body["restoring_partitions"] == [3]
    assert [e["worker"] for e in body["errors"]] == ["http://127.0.0.1:9"]


async def test_a_partition_claimed_twice_counts_once() -> None:
    both = partition_with(1, ("B", 1, 40))
    async with api(FakeWorker({1: both}, count=2)) as other:
        other_url = str(other.make_url("")).rstrip("/")
        asked = FakeWorker({0: partition_with(0, ("A", 1, 50)), 1: both}, count=2)
        asked.owners = {0: asked.settings.canonical_url, 1: other_url}
        async with api(asked) as client:
            body = await (await client.get("/at-risk")).json()
    assert [r["ticket_id"] for r in body["rows"]] == ["A", "B"]
    assert body["counts"]["total"] == 2 and body["partial"] is False


def test_the_due_soon_gauge_counts_at_scrape_time() -> None:
    worker = FakeWorker({0: partition_with(0, ("A", 1, 50), ("B", 1, 20), ("C", 2, 65))})
    metrics = Metrics(PRESETS)
    metrics.follow_due_soon(lambda windows: due_soon_counts(worker.at_risk_view, windows))
    scraped = metrics.render().decode()

    def sample(priority: str, within: str) -> float:
        labels = f'metric="first_response",plan="vip",priority="{priority}",within="{within}"'
        line = next(
            x for x in scraped.splitlines() if x.startswith("sla_timers_due_soon{" + labels)
        )
        return float(line.rsplit(" ", 1)[1])

    # A: 10 minutes left, B: 40 (priority 1); C is past its deadline (not counted).
    assert [sample("1", w) for w in ("15m", "1h", "4h")] == [1, 2, 2]
    assert [sample("2", w) for w in ("15m", "1h", "4h")] == [0, 0, 0]
    assert sample("3", "4h") == 0  # every series with a target is exported, at 0 too


async def test_a_goal_policy_filters_by_goal_and_group() -> None:
    """Under a goal policy (#22) rows name their goal and the ticket's group; its metrics
    and goal names are the known filter values, any plan or priority is accepted."""
    partition = new_partition(GOALS)
    feed = Feed(partition)
    now = datetime.now(UTC)
    feed.send("ticket-created", "A", now - 50 * MIN, plan="vip", priority=1, group="emea")
    feed.send("ticket-created", "B", now - 20 * MIN, plan="vip", priority=2, group="amer")
    worker = FakeWorker({0: partition})
    worker.policy = GOALS
    async with api(worker) as client:
        rows = (await (await client.get("/at-risk?metric=first_response")).json())["rows"]
        assert [(r["ticket_id"], r["goal"], r["group"]) for r in rows] == [
            ("A", "vip-urgent", "emea"),
            ("B", "vip-urgent", "amer"),
        ]
        body = await (await client.get("/at-risk?group=amer&within=PT8H")).json()
        assert {r["ticket_id"] for r in body["rows"]} == {"B"}
        body = await (await client.get("/at-risk?goal=standard&plan=anything")).json()
        assert body["rows"] == []
        assert (await client.get("/at-risk?metric=resolution&within=PT9H")).status == 200
        response = await client.get("/at-risk?goal=gold")
        assert response.status == 400
        assert (await response.json())["parameter"] == "goal"


async def test_workers_exchange_rows_compactly_and_read_the_public_form_too() -> None:
    """A forwarded request that asks for compact rows gets arrays of plain values; an
    earlier version's peer answers the public form, which is read as well: both give the
    very rows the worker would answer itself."""
    partition = partition_with(0, ("A", 1, 50), ("B", 2, 20), ("C", 1, 70))
    worker = FakeWorker({0: partition}, count=1)
    at = datetime.now(UTC).isoformat()
    async with api(worker) as client:
        forwarded = {FORWARDED: "1"}
        compact = await (
            await client.get(
                "/at-risk", params={"at": at}, headers={**forwarded, COMPACT: "compact"}
            )
        ).json()
        public = await (await client.get("/at-risk", params={"at": at}, headers=forwarded)).json()
    assert all(isinstance(row, list) for row in compact["rows"])
    assert all(isinstance(row, dict) for row in public["rows"])
    one, two = WorkerAnswer.from_json(compact), WorkerAnswer.from_json(public)
    rows = one.parts[0].rows
    assert [r.ticket_id for r in rows] == ["C", "A", "B"]
    # The public form rounds nothing but the remaining time's sub-microsecond float.
    assert [row_json(r) for r in rows] == [row_json(r) for r in two.parts[0].rows]
    assert rows == [row_from_compact(compact_row(r)) for r in rows]
