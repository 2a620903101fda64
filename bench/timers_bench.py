"""Timer lateness, memory with many running timers, and restart-to-ready of the live worker.

1. A broker (`--bootstrap`, KAFKA_BOOTSTRAP_SERVERS, or a private scripts/kafka-local one),
   a fresh input topic, and a policy file (written to a temp dir) on a 24x7 calendar:
   plan `bulk` with first-response targets of 8 to 14 hours (by priority), plan `window`
   with one target of `--window-delay + --window-spread` seconds; warnings at 50 %.
2. First `--finished` (default 1,000,000) tickets that were created and solved 40 days
   ago (two events each), then `--tickets` (default 1,000,000) `ticket-created` events on
   plan `bulk`, occurred_at = now, keyed by ticket id, are produced; then one worker
   (fresh app id and topics) ingests them. The bulk events move each partition's event
   time 40 days on, past the finished tickets' retention (30 days): they leave state,
   with changelog tombstones, while the bulk comes in. Progress is read from Kafka (the
   group's committed offsets), so the worker's /metrics is not scraped while it works.
   Ingest rate = events / (ready -> all committed).
3. With every timer running: the worker's RSS (VmRSS; VmHWM is the peak), and one timed
   /metrics scrape (running timers, state tickets).
4. SIGTERM, restart with the same app id (state comes back from the changelog): spawn ->
   /readyz 200 is restart-to-ready; RSS again.
5. Lateness: `--window` (default 20,000) new tickets on plan `window` are produced with
   occurred_at = t0 - U(0, spread), so their deadlines fall uniformly over
   [t0 + delay, t0 + delay + spread] while every bulk timer is still running. A consumer of
   the breach and warning topics records, per message, the Kafka record timestamp (the
   producer's send time) and its own receive time; lateness = that minus `due_at` from the
   JSON. p50/p99/max and counts; `sla_breach_publication_lateness_seconds` from /metrics.

    .venv/bin/python bench/timers_bench.py [--tickets 1000000] [--window 20000]

Last line: `timers: p99 lateness <s> s, RSS <MiB> MiB at <n> timers, restart-to-ready <s> s`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaConsumer
from live import (
    Cleanup,
    bench_worker,
    committed,
    produce,
    say,
    start_run,
    timed_terminate,
)

from devtools.harness import Scrape, WorkerProcess, create_topics

BULK_TARGETS = {1: "PT8H", 2: "PT10H", 3: "PT12H", 4: "PT14H"}


def policy_text(window_target_seconds: int) -> str:
    bulk = "\n".join(
        f"      {p}: {{first_response: {{target: {t}, calendar: clock}}}}"
        for p, t in BULK_TARGETS.items()
    )
    return f"""# timers_bench.py: long bulk timers, one short plan for the lateness window
version: timers-bench-1
calendars:
  clock: {{always_open: true}}
warnings: [0.5]
plans:
  bulk:
    default_priority: 1
    priorities:
{bulk}
  window:
    default_priority: 1
    priorities:
      1: {{first_response: {{target: PT{window_target_seconds}S, calendar: clock}}}}
"""


def created(ticket_id: str, event_id: str, at: datetime, plan: str, priority: int) -> bytes:
    return json.dumps(
        {
            "event_id": event_id,
            "type": "ticket-created",
            "ticket_id": ticket_id,
            "occurred_at": at.isoformat(),
            "plan": plan,
            "priority": priority,
        }
    ).encode()


def bulk_events(count: int) -> Iterator[tuple[bytes, bytes]]:
    now = datetime.now(UTC)
    for n in range(count):
        if n % 1000 == 0:
            now = datetime.now(UTC)
        ticket = f"B-{n:07d}"
        yield ticket.encode(), created(ticket, f"tb-{n}", now, "bulk", 1 + n % 4)


def finished_events(count: int) -> Iterator[tuple[bytes, bytes]]:
    """Tickets created and solved 40 days ago, in time order (1 s apart per ticket)."""
    start = datetime.now(UTC) - timedelta(days=40)
    for n in range(count):
        ticket = f"F-{n:07d}"
        at = start + timedelta(microseconds=n)
        yield ticket.encode(), created(ticket, f"tf-{n}", at, "bulk", 1 + n % 4)
    for n in range(count):
        ticket = f"F-{n:07d}"
        at = start + timedelta(seconds=1, microseconds=n)
        solved = {"event_id": f"ts-{n}", "type": "status-changed", "ticket_id": ticket}
        solved |= {"occurred_at": at.isoformat(), "status": "solved"}
        yield ticket.encode(), json.dumps(solved).encode()


def window_events(
    count: int, t0: datetime, spread: float, seed: int
) -> Iterator[tuple[bytes, bytes]]:
    rng = random.Random(seed)
    for n in range(count):
        ticket = f"W-{n:07d}"
        at = t0 - timedelta(seconds=rng.uniform(0, spread))
        yield ticket.encode(), created(ticket, f"tw-{n}", at, "window", 1)


def mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[k]


def summary(values: list[float]) -> str:
    if not values:
        return "none"
    return (
        f"p50 {percentile(values, 0.5):.3f} s, p99 {percentile(values, 0.99):.3f} s, "
        f"max {max(values):.3f} s, min {min(values):.3f} s"
    )


def timed_scrape(worker: WorkerProcess) -> tuple[Scrape | None, float]:
    started = time.perf_counter()
    metrics = worker.scrape()
    return metrics, time.perf_counter() - started


def wait_ingested(
    bootstrap: str, worker: WorkerProcess, topic: str, expected: int, timeout: float
) -> list[tuple[float, int]]:
    """Poll the group's committed offsets every 2 s until they reach `expected`."""
    polls: list[tuple[float, int]] = []
    deadline = time.perf_counter() + timeout
    last_print = 0.0
    peak_rss = 0
    while True:
        worker.check_alive()
        done = asyncio.run(committed(bootstrap, worker.app_id, topic))
        now = time.perf_counter()
        polls.append((now, done))
        peak_rss = max(peak_rss, worker.rss_bytes())
        if now - last_print >= 30 or done >= expected:
            last_print = now
            say(
                f"  {now - worker.started_at:7.1f} s: {done:,} of {expected:,} committed, "
                f"RSS {mib(worker.rss_bytes())}"
            )
        if done >= expected:
            return polls
        if now > deadline:
            raise TimeoutError(f"ingested {done:,} of {expected:,} in {timeout} s")
        time.sleep(2)


async def lateness_window(
    bootstrap: str,
    worker: WorkerProcess,
    input_topic: str,
    topics: dict[str, str],
    count: int,
    delay: float,
    spread: float,
    seed: int,
    grace: float,
) -> dict[str, list[tuple[float, float, float]]]:
    """Produce the window tickets; collect (due, record timestamp, received) per output."""
    consumer = AIOKafkaConsumer(
        *topics.values(),
        bootstrap_servers=bootstrap,
        group_id=f"{worker.app_id}-lateness",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    by_topic = {topic: kind for kind, topic in topics.items()}
    seen: dict[str, list[tuple[float, float, float]]] = {kind: [] for kind in topics}
    try:
        t0 = datetime.now(UTC)
        n, seconds = await produce(bootstrap, input_topic, window_events(count, t0, spread, seed))
        say(f"produced {n:,} window tickets in {seconds:.1f} s; deadlines from t0 + {delay:.0f} s")
        end = t0.timestamp() + delay + spread + grace
        last_print = 0.0
        while len(seen["breach"]) < count and time.time() < end:
            worker.check_alive()
            batches = await consumer.getmany(timeout_ms=200)
            received = time.time()
            for tp, records in batches.items():
                kind = by_topic[tp.topic]
                for record in records:
                    body = json.loads(record.value)
                    due = datetime.fromisoformat(body["due_at"]).timestamp()
                    seen[kind].append((due, record.timestamp / 1000, received))
            if received - last_print >= 15:
                last_print = received
                say(
                    f"  t0 + {received - t0.timestamp():5.1f} s: {len(seen['warning']):,} "
                    f"warnings, {len(seen['breach']):,} breaches; RSS {mib(worker.rss_bytes())}"
                )
    finally:
        await consumer.stop()
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=1_000_000, help="bulk running timers")
    parser.add_argument(
        "--finished", type=int, default=1_000_000, help="finished tickets, expired on ingest"
    )
    parser.add_argument("--window", type=int, default=20_000, help="timers due in the window")
    parser.add_argument("--window-delay", type=float, default=180, help="t0 -> first deadline")
    parser.add_argument("--window-spread", type=float, default=60, help="window length (s)")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--bootstrap", help="default: KAFKA_BOOTSTRAP_SERVERS, else own broker")
    parser.add_argument("--ingest-timeout", type=float, default=3600)
    parser.add_argument("--worker-arg", action="append", default=[], help="extra worker flag")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir and topics")
    args = parser.parse_args()
    with Cleanup() as cleanup:
        run(args, cleanup)


def run(args: argparse.Namespace, cleanup: Cleanup) -> None:
    this = start_run(cleanup, "tb", args.bootstrap, args.keep)
    bootstrap, run_id, directory, topic = this.bootstrap, this.run_id, this.directory, this.topic

    policy = directory / "policy.yaml"
    policy.write_text(policy_text(round(args.window_delay + args.window_spread)))
    subprocess.run(
        [sys.executable, "-m", "worker", "policies", "validate", str(policy)],
        check=True,
        stdout=subprocess.DEVNULL,
    )

    asyncio.run(create_topics(bootstrap, [topic], args.partitions))
    if args.finished:
        done, seconds = asyncio.run(produce(bootstrap, topic, finished_events(args.finished)))
        say(f"produced {done:,} events of {args.finished:,} finished tickets in {seconds:.1f} s")
    else:
        done = 0
    count, seconds = asyncio.run(produce(bootstrap, topic, bulk_events(args.tickets)))
    say(f"produced {count:,} ticket-created events in {seconds:.1f} s ({count / seconds:,.0f}/s)")
    count += done

    worker = bench_worker(
        bootstrap=bootstrap,
        app_id=run_id,
        directory=directory / "worker",
        input_topic=topic,
        outputs_prefix=f"{run_id}-",
        partitions=args.partitions,
        policy=policy,
        extra=tuple(args.worker_arg),
    )
    cleanup.callback(worker.stop_quietly)
    worker.start()
    say(f"worker pid {worker.pid}, port {worker.port}, log {worker.log_path}")
    worker.wait_readyz(200, timeout=300)
    ready = time.perf_counter() - worker.started_at
    t_ready = time.perf_counter()
    say(f"ready {ready:.1f} s after spawn; ingesting")
    polls = wait_ingested(bootstrap, worker, topic, count, args.ingest_timeout)
    ingest = polls[-1][0] - t_ready
    lo = next(p for p in polls if p[1] >= 0.1 * count)
    hi = next(p for p in polls if p[1] >= 0.9 * count)
    steady = (hi[1] - lo[1]) / (hi[0] - lo[0]) if hi[0] > lo[0] else float("nan")
    say(
        f"ingested {count:,} in {ingest:.1f} s after ready: {count / ingest:,.0f} events/s "
        f"(10-90 %: {steady:,.0f}/s)"
    )
    time.sleep(5)
    rss_before, hwm_before = worker.rss_bytes(), worker.hwm_bytes()
    metrics, scrape = timed_scrape(worker)
    assert metrics is not None
    running = int(metrics.total("sla_running_timers"))
    in_state = int(metrics.total("sla_state_tickets"))
    say(
        f"{in_state:,} tickets in state ({args.finished:,} finished ones expired); "
        f"{running:,} running timers: RSS {mib(rss_before)} (peak {mib(hwm_before)}); "
        f"/metrics scrape took {scrape:.2f} s"
    )

    stop_seconds = timed_terminate(worker)
    say(
        f"SIGTERM: exited {worker.process.returncode if worker.process else '?'} "
        f"in {stop_seconds:.1f} s"
    )
    worker.start()
    worker.wait_readyz(200, timeout=600)
    restart = time.perf_counter() - worker.started_at
    rss_after = worker.rss_bytes()
    metrics, scrape = timed_scrape(worker)
    assert metrics is not None
    recovered = int(metrics.total("sla_state_tickets"))
    recovery = metrics.total("sla_table_recovery_seconds")
    say(
        f"restart-to-ready {restart:.1f} s (worker's own recovery scan {recovery:.1f} s, "
        f"{recovered:,} tickets); RSS {mib(rss_after)}; /metrics scrape took {scrape:.2f} s"
    )

    topics = {"breach": f"{run_id}-breaches", "warning": f"{run_id}-warnings"}
    seen = asyncio.run(
        lateness_window(
            bootstrap,
            worker,
            topic,
            topics,
            args.window,
            args.window_delay,
            args.window_spread,
            args.seed,
            grace=120,
        )
    )
    rss_window = worker.rss_bytes()
    metrics, scrape = timed_scrape(worker)
    assert metrics is not None
    for kind in ("warning", "breach"):
        rows = seen[kind]
        by_ts = [ts - due for due, ts, _ in rows]
        by_rx = [rx - due for due, _, rx in rows]
        say(f"{kind}: {len(rows):,} of {args.window:,} received")
        say(f"  lateness by record timestamp: {summary(by_ts)}")
        say(f"  lateness by receive time:     {summary(by_rx)}")
    count_h, sum_h, buckets = metrics.histogram("sla_breach_publication_lateness_seconds")
    if count_h:
        p99_bucket = next((le for le, c in buckets if c >= 0.99 * count_h), float("inf"))
        over_1s = count_h - next((c for le, c in buckets if le == 1.0), count_h)
        say(
            f"sla_breach_publication_lateness_seconds: {count_h:,} breaches, mean "
            f"{sum_h / count_h:.3f} s, p99 <= {p99_bucket:g} s (bucket), {over_1s:,} over 1 s"
        )
    say(f"RSS after the window {mib(rss_window)}; /metrics scrape took {scrape:.2f} s")
    breaches = [ts - due for due, ts, _ in seen["breach"]]
    p99 = percentile(breaches, 0.99)
    say(
        f"timers: p99 lateness {p99:.3f} s, RSS {mib(rss_before)} at {running:,} timers, "
        f"restart-to-ready {restart:.1f} s"
    )


if __name__ == "__main__":
    main()
