"""`GET /at-risk` and the due-soon scrape with many open tickets over three workers (#24).

The partitions' state is built in-process (no Kafka needed to fill a million tickets);
the HTTP path, the cluster fan-out included, is real: three worker processes, each a
real aiohttp server with the worker's own web application (`build_web`) over its share
of the partitions, which know each other's addresses as an assignment would tell them.

1. A policy (written by the script): plans `standard` and `premium`, first-response
   targets of 100-120 hours on a 24x7 calendar (priorities 1-2) and 40-48 business hours
   on Monday-Friday 09:00-17:00 Europe/Bratislava (priorities 3-4), warnings at 75 %.
2. `--tickets` (default 100,000 and 1,000,000) open tickets with random plan, priority
   and customer, created uniformly over the last 5.1 days (so about 2 % of the 24x7 ones
   have breached and still wait, and their deadlines spread over the next 5 days: about
   0.8 % of them are due within any hour), spread over `--partitions` (6) partitions;
   worker k owns the partitions p with p % 3 == k. Each worker builds its partitions with
   `Partition.step` (the code the live worker runs), then fires what is due.
3. `--requests` (300) `GET /at-risk?within=PT1H&limit=100` with the API token, asked of
   the three workers in turn after 30 warm-up requests: latency p50/p99/max, as the client
   sees it (the answer includes the fan-out to the other two).
4. 30 scrapes of `/metrics` per worker (`sla_timers_due_soon` computed at each scrape):
   latency p50/p99/max.

    .venv/bin/python bench/at_risk_bench.py [--tickets 100000,1000000] [--requests 300]

Last line: `at-risk: <n> tickets: p99 <ms> ms; scrape p99 <ms> ms` per size.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from pydantic import SecretStr

from worker.core.engine import Engine
from worker.core.policy import Policy
from worker.harness import free_port
from worker.kafka.at_risk_web import due_soon_counts, local_answer
from worker.kafka.web import build_web, serve
from worker.metrics import DUE_SOON_WINDOWS, Metrics
from worker.settings import WorkerSettings
from worker.tasks.at_risk import AtRiskQuery
from worker.tasks.partition import Message, Partition, Topics
from worker.tasks.processor import TicketProcessor

TOKEN = "bench-token"
WORKERS = 3
POLICY = {
    "version": "bench-at-risk",
    "calendars": {
        "24x7": {"always_open": True},
        "business": {
            "timezone": "Europe/Bratislava",
            "hours": {d: ["09:00-17:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
        },
    },
    "warnings": [0.75],
    "pause_statuses": ["pending"],
    "plans": {
        plan: {
            "default_priority": 3,
            "priorities": {
                1: {"first_response": {"target": "PT120H", "calendar": "24x7"}},
                2: {"first_response": {"target": "PT100H", "calendar": "24x7"}},
                3: {"first_response": {"target": "PT40H", "calendar": "business"}},
                4: {"first_response": {"target": "PT48H", "calendar": "business"}},
            },
        }
        for plan in ("standard", "premium")
    },
}


class BenchWorker:
    """What the web application asks a `LiveWorker`, over partitions built here."""

    def __init__(self, settings: WorkerSettings, policy: Policy) -> None:
        self.settings = settings
        self.policy = policy
        self.owners: dict[int, str] = {}
        self.held: dict[int, Partition] = {}

    def at_risk_view(self) -> tuple[dict[int, Partition], set[int]]:
        return dict(self.held), set()


def build(
    index: int, tickets: int, partitions: int, policy: Policy, now: datetime
) -> dict[int, Partition]:
    """Worker `index`'s partitions, with its share of the tickets, stepped to `now`."""
    processor = TicketProcessor(Engine(policy), None)
    topics = Topics("warnings", "breaches", "dead", "changelog")
    owned = {
        p: Partition(p, processor, topics, timedelta(0))
        for p in range(partitions)
        if p % WORKERS == index
    }
    rng = random.Random(index)
    span = 5.1 * 86400
    events: dict[int, list[tuple[datetime, str, bytes]]] = {p: [] for p in owned}
    for n in range(tickets):
        p = n % partitions
        if p not in owned:
            continue
        ticket = f"T-{n}"
        at = now - timedelta(seconds=rng.random() * span)
        body = {
            "event_id": f"c-{n}",
            "type": "ticket-created",
            "ticket_id": ticket,
            "occurred_at": at.isoformat(),
            "plan": rng.choice(("standard", "premium")),
            "priority": rng.randint(1, 4),
            "customer_id": f"customer-{rng.randrange(500)}",
        }
        events[p].append((at, ticket, json.dumps(body).encode()))
    for p, partition in owned.items():
        batch: list[Message] = []
        for offset, (_, ticket, value) in enumerate(sorted(events.pop(p))):
            batch.append(Message("tickets", p, offset, ticket.encode(), value))
            if len(batch) == 2000:
                partition.step(batch, now, None)
                batch = []
        partition.step(batch, now, None)
        partition.step([], now, now)  # everything due by now fires: the breaches
    return owned


async def serve_worker(args: argparse.Namespace) -> None:
    policy = Policy.from_mapping(POLICY)
    ports = [int(p) for p in args.ports.split(",")]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    settings = WorkerSettings(
        api_token=SecretStr(TOKEN), partitions=args.partitions, advertised_url=urls[args.index]
    )
    worker = BenchWorker(settings, policy)
    started = time.perf_counter()
    worker.held = build(args.index, args.tickets, args.partitions, policy, datetime.now(UTC))
    worker.owners = {p: urls[p % WORKERS] for p in range(args.partitions)}
    metrics = Metrics(policy)
    metrics.follow_due_soon(lambda windows: due_soon_counts(worker.at_risk_view, windows))
    app: web.Application = build_web(worker, metrics)  # type: ignore[arg-type]
    runner = await serve(app, "127.0.0.1", ports[args.index])
    tickets = sum(len(p.tickets) for p in worker.held.values())
    breached = sum(len(p.at_risk) for p in worker.held.values())
    print(
        json.dumps(
            {"ready": args.index, "tickets": tickets, "breached": breached,
             "build_s": round(time.perf_counter() - started, 1)}
        ),
        flush=True,
    )  # fmt: skip
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (/proc/<pid>/stat, in clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def quantiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50": round(statistics.median(ordered) * 1000, 2),
        "p99": round(ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))] * 1000, 2),
        "max": round(ordered[-1] * 1000, 2),
    }


def in_process(tickets: int, args: argparse.Namespace) -> dict[str, Any]:
    """Worker 0's share, queried and counted without HTTP in this process, alone: what
    the worker's event loop spends per request and per scrape."""
    policy = Policy.from_mapping(POLICY)
    worker = BenchWorker(WorkerSettings(partitions=args.partitions), policy)
    worker.held = build(0, tickets, args.partitions, policy, datetime.now(UTC))
    query = AtRiskQuery(within=timedelta(hours=1), limit=100)
    windows = [window for _, window in DUE_SOON_WINDOWS]
    started = time.perf_counter()
    local_answer(worker.at_risk_view, query, datetime.now(UTC))
    cold = time.perf_counter() - started
    local, counting, local_cpu, counting_cpu = [], [], [], []
    for _ in range(100):
        started, cpu = time.perf_counter(), time.thread_time()
        local_answer(worker.at_risk_view, query, datetime.now(UTC)).to_json(100, compact=True)
        local.append(time.perf_counter() - started)
        local_cpu.append(time.thread_time() - cpu)
        started, cpu = time.perf_counter(), time.thread_time()
        due_soon_counts(worker.at_risk_view, windows)
        counting.append(time.perf_counter() - started)
        counting_cpu.append(time.thread_time() - cpu)
    return {
        "tickets": sum(len(p.tickets) for p in worker.held.values()),
        "cold_first_query_ms": round(cold * 1000, 1),
        "query_ms": quantiles(local),
        "query_cpu_ms": quantiles(local_cpu),
        "due_soon_ms": quantiles(counting),
        "due_soon_cpu_ms": quantiles(counting_cpu),
    }


async def measure(tickets: int, args: argparse.Namespace) -> dict[str, Any]:
    ports = [free_port() for _ in range(WORKERS)]
    command = [sys.executable, __file__, "--serve", "--tickets", str(tickets)]
    command += ["--partitions", str(args.partitions), "--ports", ",".join(map(str, ports))]
    processes = [
        subprocess.Popen([*command, "--index", str(k)], stdout=subprocess.PIPE, text=True)
        for k in range(WORKERS)
    ]
    try:
        built = [json.loads(await asyncio.to_thread(p.stdout.readline)) for p in processes]  # type: ignore[union-attr]
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        headers = {"Authorization": f"Bearer {TOKEN}"}
        latencies: list[float] = []
        scrapes: list[float] = []
        async with aiohttp.ClientSession() as session:
            # Until the whole group answers (each worker warms its summaries first).
            started = time.perf_counter()
            while True:
                async with session.get(f"{urls[0]}/at-risk", headers=headers) as response:
                    body = await response.json()
                if not body["partial"] or time.perf_counter() - started > 300:
                    break
            complete_after = time.perf_counter() - started
            for n in range(30 + args.requests):
                if n == 30:
                    cpu_before = sum(cpu_seconds(p.pid) for p in processes)
                url = f"{urls[n % WORKERS]}/at-risk?within=PT1H&limit=100"
                started = time.perf_counter()
                async with session.get(url, headers=headers) as response:
                    body = await response.json()
                elapsed = time.perf_counter() - started
                assert response.status == 200 and not body["partial"], body
                if n >= 30:
                    latencies.append(elapsed)
            cpu_per_request = (
                sum(cpu_seconds(p.pid) for p in processes) - cpu_before
            ) / args.requests
            rows, counts = len(body["rows"]), body["counts"]
            started = time.perf_counter()
            async with session.get(
                f"{urls[0]}/at-risk?within=PT1H&limit=10000", headers=headers
            ) as response:
                big = await response.json()
            big_seconds = time.perf_counter() - started
            for _ in range(30):
                for url in urls:
                    started = time.perf_counter()
                    async with session.get(f"{url}/metrics") as response:
                        text = await response.text()
                    scrapes.append(time.perf_counter() - started)
        due_soon = [line for line in text.splitlines() if line.startswith("sla_timers_due_soon{")]
        return {
            "tickets": tickets,
            "built": built,
            "first_complete_answer_s": round(complete_after, 2),
            "rss_mib": [round(rss_mib(p.pid)) for p in processes],
            "at_risk_ms": quantiles(latencies),
            "cpu_ms_per_request_all_workers": round(cpu_per_request * 1000, 2),
            "rows": rows,
            "total": counts["total"],
            "breached": counts["breached"],
            "limit_10000_rows": len(big["rows"]),
            "limit_10000_ms": big_seconds * 1000,
            "scrape_ms": quantiles(scrapes),
            "due_soon_series": len(due_soon),
        }
    finally:
        for process in processes:
            process.terminate()
            process.wait()


async def main(args: argparse.Namespace) -> None:
    results = []
    for tickets in [int(t) for t in args.tickets.split(",")]:
        alone = await asyncio.to_thread(in_process, tickets, args)
        result = await measure(tickets, args)
        result["worker_0_in_process"] = alone
        results.append(result)
        print(json.dumps(result), flush=True)
    for r in results:
        print(
            f"at-risk: {r['tickets']:,} tickets: p99 {r['at_risk_ms']['p99']:.1f} ms;"
            f" scrape p99 {r['scrape_ms']['p99']:.1f} ms"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tickets", default="100000,1000000")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--ports", default="", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.serve:
        arguments.tickets = int(arguments.tickets)
        asyncio.run(serve_worker(arguments))
    else:
        asyncio.run(main(arguments))
