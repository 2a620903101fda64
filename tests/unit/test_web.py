"""The HTTP API's bearer token: who must show it, how it is checked, and that a request
forwarded to the ticket's owner carries it on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from worker.kafka.web import build_web
from worker.metrics import Metrics
from worker.presets import load_presets
from worker.settings import WorkerSettings

TICKET = {"ticket_id": "HD-1", "plan": "vip", "timers": []}


class FakeWorker:
    """What the web API asks a `LiveWorker`: owns a partition, or knows who does."""

    def __init__(self, token: str | None, owner: str | None = None) -> None:
        self.settings = WorkerSettings(api_token=token, advertised_url="http://me:6066")
        self.owner = owner  # None: this worker owns every partition
        self.ready = True
        self.broker_reachable = True
        self.busy = False
        self.partitions: dict[int, Any] = {}

    def diagnostics(self) -> list[dict[str, Any]]:
        return []

    def standby_diagnostics(self) -> list[dict[str, Any]]:
        return []

    def owns(self, partition: int) -> bool:
        return self.owner is None

    def owner_of(self, partition: int) -> str | None:
        return self.owner

    def describe(self, partition: int, ticket_id: str) -> dict[str, Any] | None:
        return TICKET if ticket_id == "HD-1" else None


@asynccontextmanager
async def api(worker: FakeWorker) -> AsyncIterator[TestClient[Any, Any]]:
    app = build_web(worker, Metrics(load_presets()))  # type: ignore[arg-type]
    async with TestClient(TestServer(app)) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_without_a_token_the_api_is_open() -> None:
    async with api(FakeWorker(token=None)) as client:
        response = await client.get("/tickets/HD-1")
        assert response.status == 200 and await response.json() == TICKET


async def test_tickets_need_the_bearer_token() -> None:
    async with api(FakeWorker(token="s3cret")) as client:
        missing = await client.get("/tickets/HD-1")
        assert missing.status == 401
        assert missing.headers["WWW-Authenticate"] == 'Bearer realm="sla-worker"'
        basic = await client.get("/tickets/HD-1", headers={"Authorization": "Basic s3cret"})
        assert basic.status == 401
        assert basic.headers["WWW-Authenticate"] == 'Bearer realm="sla-worker"'
        for wrong in ("s3cre", "s3cret-", "S3CRET"):
            refused = await client.get("/tickets/HD-1", headers=bearer(wrong))
            assert refused.status == 401
            assert refused.headers["WWW-Authenticate"] == (
                'Bearer realm="sla-worker", error="invalid_token"'
            )
            assert "s3cret" not in await refused.text()
        ok = await client.get("/tickets/HD-1", headers=bearer("s3cret"))
        assert ok.status == 200 and await ok.json() == TICKET
        unknown = await client.get("/tickets/HD-2", headers={"authorization": "bearer s3cret"})
        assert unknown.status == 404  # the scheme is case-insensitive (RFC 7235)


async def test_metrics_and_probes_stay_open() -> None:
    async with api(FakeWorker(token="s3cret")) as client:
        for path in ("/metrics", "/healthz", "/readyz"):
            assert (await client.get(path)).status == 200, path


async def test_a_forwarded_request_carries_the_token_to_the_owner() -> None:
    async with api(FakeWorker(token="s3cret")) as owner:
        owner_url = str(owner.make_url("/")).rstrip("/")
        async with api(FakeWorker(token="s3cret", owner=owner_url)) as other:
            forwarded = await other.get("/tickets/HD-1", headers=bearer("s3cret"))
            assert forwarded.status == 200 and await forwarded.json() == TICKET
            assert (await other.get("/tickets/HD-1")).status == 401  # checked before forwarding


async def test_an_owner_with_another_token_is_a_configuration_error() -> None:
    async with api(FakeWorker(token="other")) as owner:
        owner_url = str(owner.make_url("/")).rstrip("/")
        async with api(FakeWorker(token="s3cret", owner=owner_url)) as other:
            response = await other.get("/tickets/HD-1", headers=bearer("s3cret"))
            assert response.status == 502
            assert "same API token" in (await response.json())["error"]
