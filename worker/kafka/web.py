"""The worker's HTTP API: `/tickets/{id}`, `/at-risk`, `/board`, `/metrics`, `/healthz`,
`/readyz`.

Any worker answers for any ticket: the ticket's partition is the one Kafka's default
partitioner (murmur2 of the key, as for the input messages) gives its id; the worker
that owns it answers, and the others forward the request to it (the group's map of
owners comes with each assignment, `worker.kafka.assignment`). A forwarded request is
never forwarded again, so a stale map costs a 503, not a loop.

`/at-risk` (`worker.kafka.at_risk_web`) asks every member of the group and merges their
answers; `/board` (`worker.kafka.board`) is the page that shows them to a team lead.

With an API token (`SLA_API_TOKEN` or `--api-token-file`), `/tickets/{id}` and `/at-risk`
answer only
requests that carry `Authorization: Bearer <token>` (RFC 6750), compared in constant time;
others get 401 with
`WWW-Authenticate: Bearer`. A forwarded request carries the token on to the owner, which
checks it again (every worker of a group has the same token). `/metrics`, `/healthz` and
`/readyz` stay open for Prometheus and the kubelet.
"""

from __future__ import annotations

import hmac
from typing import Any

import aiohttp
from aiohttp import web

from worker.kafka.at_risk_web import FORWARDED, AtRiskApi
from worker.kafka.board import board_route
from worker.kafka.service import LiveWorker
from worker.kafka.topics import default_partition
from worker.metrics import CONTENT_TYPE, Metrics

__all__ = ["FORWARDED", "build_web", "partition_of", "serve"]


def partition_of(ticket_id: str, partitions: int) -> int:
    """The partition Java clients and aiokafka choose for this ticket's key."""
    return default_partition(ticket_id.encode(), partitions)


def build_web(worker: LiveWorker, metrics: Metrics) -> web.Application:
    partitions = worker.settings.partitions
    own_url = worker.settings.canonical_url
    secret = worker.settings.api_token
    token = None if secret is None else secret.get_secret_value()

    async def ticket(request: web.Request) -> web.Response:
        if token is not None and (refused := _refused(request, token)) is not None:
            return refused
        ticket_id = request.match_info["ticket_id"]
        partition = partition_of(ticket_id, partitions)
        if worker.owns(partition):
            body = worker.describe(partition, ticket_id)
            if body is None:
                return web.json_response({"error": f"unknown ticket {ticket_id!r}"}, status=404)
            return web.json_response(body)
        owner = worker.owner_of(partition)
        if owner is None or owner == own_url or FORWARDED in request.headers:
            return web.json_response(
                {"error": f"partition {partition} is being restored or reassigned; retry"},
                status=503,
            )
        return await _forward(f"{owner.rstrip('/')}/tickets/{ticket_id}", token)

    async def metrics_view(request: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def readyz(request: web.Request) -> web.Response:
        ready = worker.ready
        body: dict[str, Any] = {"ready": ready, "partitions": sorted(worker.partitions)}
        body["brokers_reachable"] = worker.broker_reachable
        body["busy"] = worker.busy
        body["inputs"] = worker.diagnostics()
        body["standbys"] = worker.standby_diagnostics()
        return web.json_response(body, status=200 if ready else 503)

    def refused(request: web.Request) -> web.Response | None:
        return None if token is None else _refused(request, token)

    app = web.Application()
    app.router.add_get("/tickets/{ticket_id}", ticket)
    at_risk = AtRiskApi(
        lambda: worker.at_risk_view(),
        lambda: worker.policy,
        lambda: worker.owners,
        partitions,
        own_url,
        token,
        refused,
    )
    app.router.add_get("/at-risk", at_risk.handle)
    app.on_startup.append(at_risk.start_warming)
    app.on_cleanup.append(at_risk.close)
    app.router.add_get("/board", board_route())
    app.router.add_get("/metrics", metrics_view)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


def _refused(request: web.Request, token: str) -> web.Response | None:
    """None when the request carries the bearer token; else the 401 to answer with."""
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        challenge, error = 'Bearer realm="sla-worker"', "a bearer token is required"
    elif hmac.compare_digest(credentials.strip().encode(), token.encode()):
        return None
    else:
        challenge = 'Bearer realm="sla-worker", error="invalid_token"'
        error = "the bearer token is not valid"
    return web.json_response({"error": error}, status=401, headers={"WWW-Authenticate": challenge})


async def _forward(url: str, token: str | None) -> web.Response:
    timeout = aiohttp.ClientTimeout(total=5)
    headers = {FORWARDED: "1"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url, headers=headers) as response,
        ):
            body = await response.read()
            if response.status == 401:  # ours passed here: the workers' tokens differ
                error = (
                    f"the owner at {url} refused this worker's API token: every worker of "
                    "the group needs the same API token (SLA_API_TOKEN or --api-token-file)"
                )
                return web.json_response({"error": error}, status=502)
            return web.Response(body=body, status=response.status, content_type="application/json")
    except (aiohttp.ClientError, TimeoutError) as exc:
        return web.json_response(
            {"error": f"the owner at {url} did not answer: {type(exc).__name__}"}, status=503
        )


async def serve(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
