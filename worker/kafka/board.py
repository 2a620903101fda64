"""`GET /board`: the at-risk board for a wall screen or a team lead (issue #24).

One self-contained HTML page (`board.html`: no CDN, no external file; it works offline)
that polls `GET /at-risk` on the worker that served it, once a second, with the filters
of its own URL (`/board?within=PT4H&plan=vip&priority=1,2`: a team bookmarks its board).
The page itself holds no data, so it is served without the API token; the data it asks
for needs the token like any other `/at-risk` request. The page asks for it when
`/at-risk` answers 401 and keeps it in the tab's session storage; a wall screen can be
given `/board#token=...` (a URL fragment never reaches the server or its logs). Why
polling rather than server-sent events: docs/board.md.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib import resources

from aiohttp import web

PAGE = resources.files("worker.kafka").joinpath("board.html").read_bytes()


def board_route() -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(
            body=PAGE,
            content_type="text/html",
            charset="utf-8",
            headers={
                # Nothing from anywhere else: the page needs no network but its worker.
                "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; "
                "style-src 'unsafe-inline'; connect-src 'self'; form-action 'self'; "
                "frame-ancestors 'none'; base-uri 'none'",
                "Cache-Control": "no-cache",
                "Referrer-Policy": "no-referrer",
            },
        )

    return handler
