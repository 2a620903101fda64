"""`GET /board`: the at-risk board for a wall screen or a team lead (#24)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web


def board_route() -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(text="<!doctype html><title>board</title>", content_type="text/html")

    return handler
