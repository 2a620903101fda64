"""Live worker throughput end to end, against faust's table floor in the same run.

1. A broker: `--bootstrap`, else KAFKA_BOOTSTRAP_SERVERS, else a private one started with
   scripts/kafka-local in a temporary run dir (stopped on exit).
2. A fresh input topic (`--partitions`, default 6) gets N events (`--events`, default
   200,000) of `worker.traffic.synthetic_stream` (seed 7, 10 events per ticket) starting
   33 days ago, so every deadline is in the past and the worker publishes a realistic mix
   of warnings and breaches while it reads; keyed by ticket id (murmur2, as the worker
   expects).
3. Peer: a bare AIOKafkaConsumer (fresh group, from earliest) reads the N records and
   `json.loads` each value (`--raw-decode none` skips that); timed from its first record
   to its last. Measured before and after the worker; the ratio uses the faster of the two.
4. One worker subprocess (`python -m worker worker`, fresh app id, output and changelog
   topics, built-in presets, default settings otherwise) reads the topic.
   Its /metrics is polled every 0.5 s: startup is spawn -> /readyz 200 and spawn ->
   first event consumed; throughput is the events consumed after the first poll that saw
   any, divided by the time from that poll to the poll that saw all N
   (`sla_events_consumed_total`, summed over types and outcomes).
5. The reference peer over the same topic: bench/faust_floor.py, a bare faust agent with
   one table read and write per event (faust-streaming's per-message floor, the engine the
   worker ran on up to 0.1.0); `--faust-agent` also times the agent without the table.

    .venv/bin/python bench/worker_bench.py [--events 200000] [--bootstrap HOST:PORT]
        [--faust-agent] [--worker-arg=--log-level=WARNING ...]

Last lines: `worker/raw-aiokafka ratio: <R>` and `worker/faust-table-floor ratio: <R>`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from live import (
    Cleanup,
    Run,
    bench_worker,
    produce,
    raw_consume,
    say,
    start_run,
    timed_terminate,
    wait_consumed,
)

from devtools.harness import create_topics
from worker.traffic import synthetic_stream


def keyed(lines: list[bytes]) -> list[tuple[bytes, bytes]]:
    return [(json.loads(line)["ticket_id"].encode(), line) for line in lines]


def peer(script: str, args: list[str], timeout: float) -> str:
    """Run another bench script to completion over the same topic; its result line."""
    path = Path(__file__).with_name(script)
    done = subprocess.run(
        [sys.executable, str(path), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=timeout,
        check=False,
    )
    marker = script.removesuffix(".py").replace("_", "-")
    lines = [line for line in done.stdout.decode().splitlines() if marker in line]
    if not lines:
        tail = "\n".join(done.stdout.decode().splitlines()[-10:])
        raise RuntimeError(f"{script} exited {done.returncode}:\n{tail}")
    return lines[-1][lines[-1].index(marker) :].strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--per-ticket", type=int, default=10, help="events per ticket")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--bootstrap", help="default: KAFKA_BOOTSTRAP_SERVERS, else own broker")
    parser.add_argument("--raw-decode", choices=["json", "none"], default="json")
    parser.add_argument("--timeout", type=float, default=1200, help="seconds for the worker")
    parser.add_argument(
        "--worker-arg",
        action="append",
        default=[],
        help="extra flag for the worker, e.g. --worker-arg=--log-level=WARNING (repeatable)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir and topics")
    parser.add_argument(
        "--two-workers", action="store_true", help="also two workers in one group (aggregate)"
    )
    parser.add_argument(
        "--faust-agent",
        action="store_true",
        help="also time bench/faust_floor.py --mode agent (a bare faust agent, no table)",
    )
    parser.add_argument(
        "--py-spy",
        metavar="PATH",
        help="py-spy executable: record the worker while it ingests (flamegraph/speedscope "
        "files next to the worker log)",
    )
    args = parser.parse_args()

    with Cleanup() as cleanup:
        run(args, cleanup)


def run(args: argparse.Namespace, cleanup: Cleanup) -> None:
    this = start_run(cleanup, "wb", args.bootstrap, args.keep)
    bootstrap, run_id, directory, topic = this.bootstrap, this.run_id, this.directory, this.topic

    tickets = max(1, args.events // args.per_ticket)
    start = (datetime.now(UTC) - timedelta(days=33)).replace(microsecond=0)
    t0 = time.perf_counter()
    lines, peak = synthetic_stream(args.events, tickets, args.seed, start=start)
    records = keyed(lines)
    n = len(records)
    say(
        f"stream: {n:,} events, {tickets:,} tickets from {start:%Y-%m-%d}, peak open "
        f"{peak:,} (built in {time.perf_counter() - t0:.1f} s)"
    )
    asyncio.run(create_topics(bootstrap, [topic], args.partitions))
    count, seconds = asyncio.run(produce(bootstrap, topic, records))
    say(f"produced {count:,} events to {topic} in {seconds:.1f} s ({count / seconds:,.0f}/s)")
    del lines, records

    decode = args.raw_decode == "json"
    raws = [asyncio.run(raw_consume(bootstrap, topic, n, decode=decode))]
    say(
        f"raw aiokafka (before): {raws[0].rate:,.0f} events/s ({raws[0].seconds:.2f} s, "
        f"decode {raws[0].decode}; group join + first fetch {raws[0].join_seconds:.2f} s)"
    )

    worker = bench_worker(
        bootstrap=bootstrap,
        app_id=run_id,
        directory=directory / "worker",
        input_topic=topic,
        outputs_prefix=f"{run_id}-",
        partitions=args.partitions,
        extra=tuple(args.worker_arg),
    )
    cleanup.callback(worker.stop_quietly)
    worker.start()
    say(f"worker pid {worker.pid}, port {worker.port}, log {worker.log_path}")
    worker.wait_readyz(200, timeout=300, poll=0.1)
    ready = time.perf_counter() - worker.started_at
    say(f"worker ready (/readyz 200) {ready:.2f} s after spawn")

    spy = None
    if args.py_spy:
        spy = subprocess.Popen(
            [
                args.py_spy,
                "record",
                "--pid",
                str(worker.pid),
                "--rate",
                "50",
                "--format",
                "raw",
                "--output",
                str(directory / "worker.pyspy.txt"),
                "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        cleanup.callback(spy.kill)  # a no-op once it has exited

    cpu_before = worker.cpu_seconds()
    last_print = [0.0]

    def report(t: float, consumed: int, lag: int) -> None:
        if t - last_print[0] >= 10:
            last_print[0] = t
            say(f"  {t - worker.started_at:6.1f} s: consumed {consumed:,}, lag {lag:,}")

    progress = wait_consumed(worker, n, timeout=args.timeout, on_poll=report)
    cpu = worker.cpu_seconds() - cpu_before
    if spy is not None:
        spy.send_signal(2)
        try:
            spy.wait(30)
        except subprocess.TimeoutExpired:
            spy.kill()
        say(f"py-spy profile: {directory / 'worker.pyspy.txt'}")

    first = progress.first_consumed()
    assert first is not None
    t_first, c_first = first
    t_end, c_end, _, _ = progress.polls[-1]
    elapsed = max(t_end - t_first, 1e-3)  # a tiny run may be consumed within one poll
    rate = (c_end - c_first) / elapsed
    metrics = worker.scrape()
    assert metrics is not None
    # steady rate: between 10 % and 90 % of the events
    lo = next(p for p in progress.polls if p[1] >= 0.1 * n)
    hi = next(p for p in progress.polls if p[1] >= 0.9 * n)
    steady = (hi[1] - lo[1]) / (hi[0] - lo[0]) if hi[0] > lo[0] else float("nan")
    rss = worker.rss_bytes()
    stopped = timed_terminate(worker)  # the peers below get the machine to themselves
    say(f"worker stopped (SIGTERM) in {stopped:.1f} s")
    pair_rate = two_workers(this, args, n, cleanup) if args.two_workers else None

    raws.append(asyncio.run(raw_consume(bootstrap, topic, n, decode=decode)))
    say(f"raw aiokafka (after): {raws[1].rate:,.0f} events/s ({raws[1].seconds:.2f} s)")
    raw = max(raws, key=lambda r: r.rate)

    outcomes: dict[str, int] = {}
    for labels, value in metrics.values("sla_events_consumed_total"):
        outcomes[labels["outcome"]] = outcomes.get(labels["outcome"], 0) + int(value)
    say(
        "worker outcomes: "
        + ", ".join(f"{k} {v:,}" for k, v in sorted(outcomes.items()))
        + f"; published {int(metrics.total('sla_warnings_published_total')):,} warnings, "
        f"{int(metrics.total('sla_breaches_published_total')):,} breaches"
    )
    proc_count, proc_sum, _ = metrics.histogram("sla_event_processing_seconds")
    if proc_count:
        say(
            f"worker sla_event_processing_seconds: mean {proc_sum / proc_count * 1e6:,.0f} µs "
            f"over {proc_count:,} partition steps"
        )
    say(
        f"worker startup: ready {ready:.2f} s, first event consumed "
        f"<= {t_first - worker.started_at:.2f} s after spawn"
    )
    say(
        f"worker: {c_end - c_first:,} events in {elapsed:.2f} s = {rate:,.0f} events/s "
        f"(steady 10-90 %: {steady:,.0f}/s); CPU {cpu / elapsed * 100:.0f} % of a core; "
        f"RSS {rss / 2**20:,.0f} MiB"
    )
    common = ["--bootstrap", bootstrap, "--topic", topic, "--events", str(n)]
    common += ["--partitions", str(args.partitions)]
    floors: dict[str, float] = {}
    for mode in ("agent", "table") if args.faust_agent else ("table",):
        floor_args = ["--mode", mode, "--app-id", f"{run_id}-floor-{mode}"]
        floor_args += ["--datadir", str(directory / f"floor-{mode}")]
        line = peer("faust_floor.py", [*common, *floor_args], args.timeout)
        say(line)
        floors[mode] = float(line.rsplit("=", 1)[1].split()[0].replace(",", ""))
    say(f"raw aiokafka: {raw.rate:,.0f} events/s (decode {raw.decode})")
    say(f"worker events/s: {rate:,.0f}")
    if pair_rate is not None:
        ratio = pair_rate / rate if rate else float("nan")
        say(f"two workers, aggregate: {pair_rate:,.0f} events/s = {ratio:.2f}x one")
    say(f"worker/raw-aiokafka ratio: {rate / max(raw.rate, 1e-9):.3f}")
    say(f"worker/faust-table-floor ratio: {rate / max(floors['table'], 1e-9):.3f}")


def two_workers(this: Run, args: argparse.Namespace, n: int, cleanup: Cleanup) -> float:
    """Two workers in one (fresh) group over the same topic: aggregate events/s, from the
    first poll that saw any event consumed to the poll that saw all n, summed over both
    workers' /metrics (the rebalance when the second joins is inside the measurement)."""
    pair = [
        bench_worker(
            bootstrap=this.bootstrap,
            app_id=f"{this.run_id}-pair",
            directory=this.directory / f"pair-{i}",
            input_topic=this.topic,
            outputs_prefix=f"{this.run_id}-pair-",
            partitions=args.partitions,
            extra=tuple(args.worker_arg),
        )
        for i in range(2)
    ]
    for worker in pair:
        cleanup.callback(worker.stop_quietly)
        worker.start()
    polls: list[tuple[float, int]] = []
    deadline = time.perf_counter() + args.timeout
    while not polls or polls[-1][1] < n:
        if time.perf_counter() > deadline:
            raise TimeoutError(f"two workers consumed {polls[-1][1] if polls else 0} of {n}")
        time.sleep(0.5)
        scraped = [worker.scrape() for worker in pair]
        for worker in pair:
            worker.check_alive()
        polls.append((time.perf_counter(), sum(m.consumed() for m in scraped if m)))
    t_first, c_first = next(p for p in polls if p[1] > 0)
    t_end, c_end = polls[-1]
    rate = (c_end - c_first) / max(t_end - t_first, 1e-3)
    for worker in pair:
        worker.terminate()
    say(f"two workers: {c_end - c_first:,} events in {t_end - t_first:.2f} s = {rate:,.0f}/s")
    return rate


if __name__ == "__main__":
    main()
