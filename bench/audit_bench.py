"""`sla-worker audit` (replay straight from Kafka) against `sla-worker replay` of a file,
and `sla-worker report` over the result, on the same 1,000,000 events in one run.

1. A broker: `--bootstrap`, else KAFKA_BOOTSTRAP_SERVERS, else a private one started with
   scripts/kafka-local in a temporary run dir (stopped on exit).
2. The stream: `worker.traffic.synthetic_stream` (seed 7, 1,000,000 events over 100,000
   tickets, 50 customers; about a month of traffic in time order). It is written to a
   file, and produced to a fresh 6-partition topic keyed by ticket id (murmur2, as the
   worker expects) in record batches built with aiokafka's `create_batch`/`send_batch`.
3. `sla-worker replay FILE` and `sla-worker audit --input-topics TOPIC` (window: the whole
   topic) run as subprocesses, one after the other, with the same `--now`; each is timed
   from spawn to exit (start-up included: Python, the policy, and for the audit the
   Kafka connection), and its peak RSS read by a small parent process (getrusage). Both
   write their output to a file; the two outputs must hold the same records (the audit's
   merge orders events of different tickets at the same instant by partition, so lines
   may come in another order).
4. `sla-worker replay --finished-timers` writes the report's input, and `sla-worker
   report --html --json --csv` over it is timed the same way (peak RSS included).

    .venv/bin/python bench/audit_bench.py [--events 1000000] [--bootstrap HOST:PORT]

Last line: `audit/file-replay ratio: <R>` (replay seconds / audit seconds: the audit's
throughput as a share of file replay's).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2
from live import Cleanup, say, start_run

from devtools.harness import create_topics
from worker.compiled import describe
from worker.traffic import synthetic_stream

NOW = "2027-01-01T00:00:00Z"
BATCH_BYTES = 1 << 20


@dataclass
class Timed:
    seconds: float
    peak_rss: int  # bytes
    stderr: str


# A small parent that runs the command and reports its children's peak RSS: measured from
# this (large) process, a child's peak would include the pages it shares with us before
# its exec.
_PEAK = (
    "import resource, subprocess, sys; code = subprocess.run(sys.argv[1:]).returncode; "
    "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss; "
    "print(f'peak-rss-kib {peak}', file=sys.stderr); sys.exit(code)"
)


def timed(args: list[str]) -> Timed:
    """Run `sla-worker ARGS` to completion: wall seconds, peak RSS, stderr."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _PEAK, sys.executable, "-m", "worker", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        check=False,
    )
    seconds = time.perf_counter() - started
    stderr = done.stderr.decode()
    if done.returncode != 0:
        raise RuntimeError(f"sla-worker {args[0]} exited {done.returncode}:\n{stderr}")
    peak = int(stderr.rsplit("peak-rss-kib ", 1)[1].split()[0])
    return Timed(seconds, peak * 1024, stderr)


async def produce_batches(
    bootstrap: str, topic: str, lines: list[bytes], partitions: int
) -> tuple[int, float]:
    """Produce keyed lines in record batches per partition (murmur2 of the key, as the
    default partitioner does): one `send_batch` per full batch, a window of them in
    flight. Returns (count, seconds)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", max_request_size=8 << 20, linger_ms=5
    )
    await producer.start()
    started = time.perf_counter()
    batches = [producer.create_batch() for _ in range(partitions)]
    in_flight: list[asyncio.Future[object]] = []

    async def flush(partition: int) -> None:
        batch = batches[partition]
        batch.close()
        in_flight.append(await producer.send_batch(batch, topic, partition=partition))
        batches[partition] = producer.create_batch()
        if len(in_flight) >= 4 * partitions:
            await asyncio.gather(*in_flight)
            in_flight.clear()

    try:
        for line in lines:
            key = json.loads(line)["ticket_id"].encode()
            partition = (murmur2(key) & 0x7FFFFFFF) % partitions
            if batches[partition].append(key=key, value=line, timestamp=None) is None:
                await flush(partition)
                appended = batches[partition].append(key=key, value=line, timestamp=None)
                assert appended is not None
        for partition in range(partitions):
            if batches[partition].record_count():
                await flush(partition)
        await asyncio.gather(*in_flight)
    finally:
        await producer.stop()
    return len(lines), time.perf_counter() - started


def summary_line(stderr: str) -> str:
    return next(line for line in stderr.splitlines() if line.startswith("events read"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--customers", type=int, default=50)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--bootstrap", help="default: KAFKA_BOOTSTRAP_SERVERS, else own broker")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir and topics")
    args = parser.parse_args()
    with Cleanup() as cleanup:
        run(args, cleanup)


def run(args: argparse.Namespace, cleanup: Cleanup) -> None:
    this = start_run(cleanup, "ab", args.bootstrap, args.keep)
    directory, topic = this.directory, this.topic
    say(
        f"machine: {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, "
        f"{platform.system()} {platform.release()}; python {sys.version.split()[0]}, "
        f"{describe()}"
    )

    t0 = time.perf_counter()
    lines, peak = synthetic_stream(args.events, args.tickets, args.seed, customers=args.customers)
    events = directory / "events.jsonl"
    events.write_bytes(b"\n".join(lines) + b"\n")
    say(
        f"stream: {len(lines):,} events, {args.tickets:,} tickets, {args.customers} customers, "
        f"peak open {peak:,} ({events.stat().st_size / 2**20:,.0f} MiB; built in "
        f"{time.perf_counter() - t0:.1f} s)"
    )
    asyncio.run(create_topics(this.bootstrap, [topic], args.partitions))
    count, seconds = asyncio.run(produce_batches(this.bootstrap, topic, lines, args.partitions))
    say(f"produced {count:,} events to {topic} in {seconds:.1f} s ({count / seconds:,.0f}/s)")
    n = len(lines)
    del lines

    replay_out, audit_out = directory / "replay.jsonl", directory / "audit.jsonl"
    replay = timed(["replay", str(events), "--now", NOW, "--output", str(replay_out)])
    say(
        f"replay: {replay.seconds:.2f} s = {n / replay.seconds:,.0f} events/s, peak RSS "
        f"{replay.peak_rss / 2**20:,.0f} MiB\n  {summary_line(replay.stderr)}"
    )
    audit = timed(
        [
            "audit",
            *("--bootstrap-servers", this.bootstrap, "--input-topics", topic),
            *("--now", NOW, "--output", str(audit_out)),
        ]
    )
    say(
        f"audit: {audit.seconds:.2f} s = {n / audit.seconds:,.0f} events/s, peak RSS "
        f"{audit.peak_rss / 2**20:,.0f} MiB\n  {summary_line(audit.stderr)}"
    )
    same = sorted(replay_out.read_bytes().splitlines()) == sorted(
        audit_out.read_bytes().splitlines()
    )
    say(f"audit output == replay output (as sets of lines): {same}")
    if not same or summary_line(replay.stderr) != summary_line(audit.stderr):
        raise SystemExit("the audit and the replay disagree")

    records = directory / "records.jsonl"
    finished = timed(
        ["replay", str(events), "--now", NOW, "--finished-timers", "--output", str(records)]
    )
    say(
        f"replay --finished-timers: {finished.seconds:.2f} s, {records.stat().st_size / 2**20:,.0f}"
        f" MiB of records ({len(records.read_bytes().splitlines()):,} lines)"
    )
    report = timed(
        [
            "report", str(records), "--period", "week",
            "--html", str(directory / "report.html"),
            "--json", str(directory / "report.json"),
            "--csv", str(directory / "report.csv"),
        ]
    )  # fmt: skip
    totals = json.loads((directory / "report.json").read_text())["totals"]
    say(
        f"report (HTML, JSON, CSV) of {n:,} events: {report.seconds:.2f} s, peak RSS "
        f"{report.peak_rss / 2**20:,.0f} MiB; {totals['started']:,} timers judged, "
        f"{totals['met']:,} met, {totals['breached']:,} breached"
    )
    say(f"replay events/s: {n / replay.seconds:,.0f}")
    say(f"audit events/s: {n / audit.seconds:,.0f}")
    say(f"audit/file-replay ratio: {replay.seconds / audit.seconds:.3f}")


if __name__ == "__main__":
    main()
