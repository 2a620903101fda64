"""The at-risk board (`GET /board`) as a team lead sees it: headless Chromium, offline.

The worker here is the real web application (`build_web`, a real HTTP server) over real
partitions fed in-process; the fan-out to other workers over Kafka-assigned owners is
tested in test_at_risk_cluster.py. It fails (never skips) without Chromium
(`scripts/ensure-chromium`) or axe-core (`scripts/ensure-axe-core`).

`SLA_BOARD_SCREENSHOT=docs/images/board.png pytest tests/integration/test_board.py`
refreshes the README's screenshot.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from PIL import Image

from devtools.harness.cdp import Page, browser
from tests.partitions import Feed, new_partition
from worker.kafka.web import build_web
from worker.metrics import Metrics
from worker.presets import load_presets
from worker.settings import WorkerSettings
from worker.tasks.partition import Partition

ROOT = Path(__file__).parent.parent.parent
TOKEN = "board-test-token"
MIN = timedelta(minutes=1)
PRESETS = load_presets()
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]


def ensure(script: str) -> str:
    found = subprocess.run([ROOT / "scripts" / script], capture_output=True, text=True)
    assert found.returncode == 0, f"{script} failed:\n{found.stderr}"
    return found.stdout.strip()


class OnePartitionWorker:
    """What the web API asks a `LiveWorker`, over one real partition owning them all."""

    def __init__(self, partition: Partition) -> None:
        self.settings = WorkerSettings(api_token=TOKEN, partitions=1)
        self.partition = partition
        self.owners: dict[int, str] = {}
        self.policy = PRESETS

    def at_risk_view(self) -> tuple[dict[int, Partition], set[int]]:
        return {0: self.partition}, set()


@pytest.fixture
async def board() -> AsyncIterator[tuple[str, Feed]]:
    """The board's URL and the feed of its partition: vip tickets (an hour on the clock)
    created so many minutes ago."""
    partition = new_partition()
    feed = Feed(partition)
    now = datetime.now(UTC)
    for ticket, priority, ago, customer in [
        ("HD-101", 1, 75, "acme"),  # breached 15 minutes ago
        ("HD-102", 1, 62, "globex"),  # breached 2 minutes ago
        ("HD-103", 1, 56, "acme"),  # 4 minutes left
        ("HD-104", 2, 50, "initech"),  # 10 minutes left
        ("HD-105", 1, 35, "globex"),  # 25 minutes left
        ("HD-106", 2, 20, "acme"),  # 40 minutes left
        ("HD-107", 3, 10, "umbrella"),  # business hours: not within the hour (or it is)
    ]:
        feed.send(
            "ticket-created",
            ticket,
            now - ago * MIN,
            plan="vip",
            priority=priority,
            customer_id=customer,
        )
    feed.tick(now)  # the two breaches fire
    app = build_web(OnePartitionWorker(partition), Metrics(PRESETS))  # type: ignore[arg-type]
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("/board")), feed
    finally:
        await server.close()


def rows(table: str) -> str:
    return f"[...document.querySelectorAll('#{table} tbody tr')].map(r => r.cells[0].textContent)"


def countdown(ticket: str) -> str:
    return (
        "[...document.querySelectorAll('tbody tr')]"
        f".find(r => r.cells[0].textContent === '{ticket}')?.cells[1].textContent"
    )


async def axe_violations(page: Page) -> list[dict[str, Any]]:
    source = (ROOT / "tests" / "axe" / "node_modules" / "axe-core" / "axe.min.js").read_text()
    await page.evaluate(source)
    result = await page.evaluate(
        "axe.run(document, {runOnly: {type: 'tag', values: " + json.dumps(AXE_TAGS) + "}})"
        ".then(r => r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,"
        " nodes: v.nodes.map(n => n.target.join(' '))})))"
    )
    assert isinstance(result, list)
    return result


async def test_the_board_lives(board: tuple[str, Feed], tmp_path: Path) -> None:
    url, feed = board
    executable = ensure("ensure-chromium").split(": ", 1)[1]
    ensure("ensure-axe-core")
    async with browser(executable, tmp_path / "profile") as page:
        await page.size(1280, 800)
        await page.goto(f"{url}#token={TOKEN}")
        await page.wait_for("document.body.dataset.loaded === 'true'")
        # The token came in the fragment; it is taken off the address bar at once.
        assert await page.evaluate("location.hash") == ""
        assert await page.evaluate(rows("breached")) == ["HD-101", "HD-102"]
        assert await page.evaluate(rows("next")) == ["HD-103", "HD-104", "HD-105", "HD-106"]
        assert await page.evaluate("document.getElementById('n-breached').textContent") == "2"

        # Countdowns tick.
        before = await page.evaluate(countdown("HD-103"))
        assert before.startswith(("3 min", "4 min")) and before.endswith(" left")
        await page.wait_for(f"{countdown('HD-103')} !== {before!r}", timeout=3)

        # An answered ticket disappears within 2 s; a new one near its deadline appears.
        feed.send("reply-sent", "HD-103", datetime.now(UTC), author="agent")
        gone = await page.wait_for(f"!{rows('next')}.includes('HD-103')", timeout=2)
        created = datetime.now(UTC) - 58 * MIN
        feed.send("ticket-created", "HD-108", created, plan="vip", priority=1)
        came = await page.wait_for(f"{rows('next')}[0] === 'HD-108'", timeout=2)
        print(f"\nboard: answered ticket gone in {gone:.2f} s, new ticket shown in {came:.2f} s")
        await page.wait_for("document.getElementById('announce').textContent.includes('HD-108')")

        # Accessible in light and dark: no WCAG 2.x A/AA violation.
        for scheme in ("light", "dark"):
            await page.color_scheme(scheme)
            assert await axe_violations(page) == [], scheme
        await page.color_scheme("light")
        shot = Path(os.environ.get("SLA_BOARD_SCREENSHOT") or tmp_path / "board.png")
        await page.screenshot(shot)
        with Image.open(shot) as image:
            assert image.size == (1280, 800)

        # Filters in the URL apply (a team's bookmark), and show in the form.
        await page.goto(f"{url}?priority=2&include_breached=false")
        await page.wait_for("document.body.dataset.loaded === 'true'")
        assert await page.evaluate(rows("breached")) == []
        assert await page.evaluate(rows("next")) == ["HD-104", "HD-106"]
        assert await page.evaluate("document.forms.filters.priority.value") == "2"
        assert not await page.evaluate("document.forms.filters.include_breached.checked")
        await page.goto(f"{url}?within=PT15M&customer=acme,initech")
        await page.wait_for("document.body.dataset.loaded === 'true'")
        assert await page.evaluate(rows("next")) == ["HD-104"]
        assert await page.evaluate(rows("breached")) == ["HD-101"]

        # A filter the API refuses says so on the board.
        await page.goto(f"{url}?plan=platinum")
        await page.wait_for("document.getElementById('status').textContent.includes('plan')")


async def test_without_the_token_the_board_asks_for_it(
    board: tuple[str, Feed], tmp_path: Path
) -> None:
    url, _ = board
    executable = ensure("ensure-chromium").split(": ", 1)[1]
    async with browser(executable, tmp_path / "profile") as page:
        await page.goto(url)
        await page.wait_for("!document.getElementById('token-form').hidden")
        assert "token" in await page.evaluate("document.getElementById('status').textContent")
        await page.evaluate(
            f"document.getElementById('token').value = {TOKEN!r};"
            "document.querySelector('#token-form button').click()"
        )
        await page.wait_for("document.body.dataset.loaded === 'true'")
        assert await page.evaluate(rows("breached")) == ["HD-101", "HD-102"]
