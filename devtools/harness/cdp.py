"""Headless Chromium driven over the Chrome DevTools Protocol, for pages that live
(the board test and the board benchmark).

The report test renders a static page with `--screenshot`/`--dump-dom`; the at-risk
board polls and changes by itself, so its test must watch it over time: evaluate
JavaScript in the page, wait for a condition, take screenshots. The protocol is a JSON
message exchange on a WebSocket (https://chromedevtools.github.io/devtools-protocol/),
which aiohttp speaks: no browser-automation package needed for these few commands.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from worker.harness import free_port


class Page:
    """One browser tab: `evaluate` JavaScript, `wait_for` a condition, `screenshot`."""

    def __init__(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        self.socket = socket
        self._ids = itertools.count(1)

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        number = next(self._ids)
        await self.socket.send_json({"id": number, "method": method, "params": params})
        while True:
            message = await self.socket.receive(timeout=60)
            if message.type != aiohttp.WSMsgType.TEXT:
                raise RuntimeError(f"the browser closed the connection: {message.type}")
            data = json.loads(message.data)
            if data.get("id") == number:
                if "error" in data:
                    raise RuntimeError(f"{method}: {data['error']}")
                result: dict[str, Any] = data.get("result", {})
                return result

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression (awaited if it is a promise)."""
        result = await self.send(
            "Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(json.dumps(result["exceptionDetails"])[:2000])
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 10, poll: float = 0.05) -> float:
        """Seconds until `expression` is truthy in the page; TimeoutError after `timeout`."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if await self.evaluate(expression):
                return time.monotonic() - started
            await asyncio.sleep(poll)
        raise TimeoutError(f"not true after {timeout} s: {expression}")

    async def goto(self, url: str) -> None:
        await self.send("Page.enable")
        await self.send("Page.navigate", url=url)
        await self.wait_for("document.readyState === 'complete'")

    async def screenshot(self, path: Path) -> None:
        shot = await self.send("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(shot["data"]))

    async def size(self, width: int, height: int) -> None:
        await self.send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )

    async def color_scheme(self, scheme: str) -> None:
        """Emulate `prefers-color-scheme: light` or `dark`."""
        await self.send(
            "Emulation.setEmulatedMedia",
            features=[{"name": "prefers-color-scheme", "value": scheme}],
        )


@contextlib.asynccontextmanager
async def browser(executable: str, profile: Path) -> AsyncIterator[Page]:
    """A headless Chromium with one blank tab; offline but for 127.0.0.1."""
    port = free_port()
    process = subprocess.Popen(
        [
            executable,
            *("--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}"),
            f"--remote-debugging-port={port}",
            "--remote-allow-origins=*",
            # Offline: nothing but the worker on 127.0.0.1 answers.
            "--proxy-server=127.0.0.1:9",
            "--proxy-bypass-list=127.0.0.1",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        async with aiohttp.ClientSession() as session:
            target = await _blank_tab(session, port)
            async with session.ws_connect(
                target["webSocketDebuggerUrl"], max_msg_size=64 * 1024 * 1024
            ) as socket:
                yield Page(socket)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def _blank_tab(session: aiohttp.ClientSession, port: int) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        try:
            async with session.get(f"http://127.0.0.1:{port}/json/list") as response:
                tabs = await response.json()
            pages = [t for t in tabs if t.get("type") == "page"]
            if pages:
                page: dict[str, Any] = pages[0]
                return page
        except (aiohttp.ClientError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("Chromium's DevTools endpoint did not come up in 30 s")
        await asyncio.sleep(0.1)
