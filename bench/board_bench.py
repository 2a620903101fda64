"""The at-risk board with 10,000 rows in headless Chromium (issue #24).

One worker's web application (`build_web`, a real HTTP server) over one partition of
`--rows` (10,000) vip tickets, all due within the hour (created 0-60 minutes ago, an hour
on the clock) or breached, fed in-process. Chromium (`scripts/ensure-chromium`) opens
the board as a team lead would (`/board`: the first 500 rows, counts of all 10,000), then
with every row on the page (`/board?limit=10000`); measured in the page, for each:

- time to first render: navigation start -> the first answer's rows on screen
  (`performance.now()` when the board set them);
- the cost of each later update (one poll a second: rows reused, countdowns rewritten),
  over `--polls` (20) updates: median and max;
- the `/at-risk?limit=<rows>` answer's size and time, as the browser fetched it.

    .venv/bin/python bench/board_bench.py [--rows 10000]

Last lines: `board: <n> rows at risk, limit <l>: first render <ms> ms, update p50 <ms> ms,
max <ms> ms`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiohttp.test_utils import TestServer
from pydantic import SecretStr

from devtools.harness.cdp import browser
from worker.core.engine import Engine
from worker.kafka.web import build_web
from worker.metrics import Metrics
from worker.presets import load_presets
from worker.settings import WorkerSettings
from worker.tasks.partition import Message, Partition, Topics
from worker.tasks.processor import TicketProcessor

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-token"


class OnePartition:
    def __init__(self, partition: Partition) -> None:
        self.settings = WorkerSettings(api_token=SecretStr(TOKEN), partitions=1)
        self.partition = partition
        self.owners: dict[int, str] = {}
        self.policy = load_presets()

    def at_risk_view(self) -> tuple[dict[int, Partition], set[int]]:
        return {0: self.partition}, set()


def filled(rows: int) -> Partition:
    policy = load_presets()
    partition = Partition(
        0, TicketProcessor(Engine(policy), None), Topics("w", "b", "d", "c"), timedelta(0)
    )
    now = datetime.now(UTC)
    messages = []
    for n in range(rows):
        at = now - timedelta(minutes=60 * (n + 0.5) / rows * 1.05)  # ~5 % breached
        body = {
            "event_id": f"c-{n}",
            "type": "ticket-created",
            "ticket_id": f"HD-{n}",
            "occurred_at": at.isoformat(),
            "plan": "vip",
            "priority": 1 + n % 2,
            "customer_id": f"customer-{n % 97}",
        }
        messages.append((at, f"HD-{n}", json.dumps(body).encode()))
    batch = [
        Message("tickets", 0, offset, key.encode(), value)
        for offset, (_, key, value) in enumerate(sorted(messages))
    ]
    partition.step(batch, now, None)
    partition.step([], now, now)
    return partition


async def main(args: argparse.Namespace) -> None:
    found = subprocess.run(
        [ROOT / "scripts" / "ensure-chromium"], capture_output=True, text=True, check=True
    )
    executable = found.stdout.strip().split(": ", 1)[1]
    worker = OnePartition(filled(args.rows))
    server = TestServer(build_web(worker, Metrics(worker.policy)), host="127.0.0.1")  # type: ignore[arg-type]
    await server.start_server()
    try:
        for limit in (500, args.rows):
            await measure(executable, str(server.make_url(f"/board?limit={limit}")), args, limit)
    finally:
        await server.close()


async def measure(executable: str, url: str, args: argparse.Namespace, limit: int) -> None:
    with tempfile.TemporaryDirectory() as profile:
        async with browser(executable, Path(profile)) as page:
            await page.size(1280, 900)
            await page.goto(f"{url}#token={TOKEN}")
            await page.wait_for("document.body.dataset.loaded === 'true'", timeout=60)
            first = float(await page.evaluate("document.body.dataset.firstRenderMs"))
            shown = await page.evaluate("document.querySelectorAll('tbody tr').length")
            updates: list[float] = []
            last = None
            while len(updates) < args.polls:
                await asyncio.sleep(0.25)
                status = await page.evaluate("document.getElementById('status').textContent")
                if status != last:  # "as of" changes with every poll
                    last = status
                    updates.append(float(await page.evaluate("document.body.dataset.renderMs")))
            timing = await page.evaluate(
                "(() => { const e = performance.getEntriesByType('resource')"
                ".filter(r => r.name.includes('at-risk')).pop();"
                " return [e.duration, e.transferSize || e.encodedBodySize]; })()"
            )
    result = {
        "rows_at_risk": args.rows,
        "limit": limit,
        "rows_shown": shown,
        "first_render_ms": first,
        "update_ms_p50": statistics.median(updates),
        "update_ms_max": max(updates),
        "at_risk_fetch_ms": round(timing[0], 1),
        "at_risk_bytes": timing[1],
    }
    print(json.dumps(result))
    print(
        f"board: {args.rows:,} rows at risk, limit {limit}: first render {first:.0f} ms,"
        f" update p50 {result['update_ms_p50']:.1f} ms, max {result['update_ms_max']:.1f} ms"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--polls", type=int, default=20)
    asyncio.run(main(parser.parse_args()))
    sys.exit(0)
