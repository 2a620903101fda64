"""Restart-to-ready of one worker holding many tickets: a full changelog restore against a
restart from its local snapshot (`--state-dir`), in the same run (#23).

1. A broker (`--bootstrap`, KAFKA_BOOTSTRAP_SERVERS, or a private one).
2. An empty input topic and the worker's changelog (`--partitions`, default 6), which gets
   `--tickets` (default 1,000,000) tickets' state as the worker stores it: values from a
   pool of real states (bench/store_bench.py's `build_pool`: the first 60 % of a
   synthetic stream replayed, starting now, so open, paused and solved tickets, with
   deadlines ahead: nothing fires during the run), one per ticket id, keyed as the
   worker keys them (murmur2 partitioning).
3. Runs of one worker process (built-in presets, `--log-level WARNING`), each timed from
   spawn to /readyz 200 (joining the group, fencing, restoring every partition), RSS
   when ready, then SIGTERM:
   - `full`: no `--state-dir`: reads the whole changelog;
   - `full+write`: a fresh `--state-dir`: reads the whole changelog and writes the store;
   - `snapshot`: the same `--state-dir` again: loads the store, reads the changelog's tail
     (empty here: nothing was written since).

    .venv/bin/python bench/restart_bench.py [--tickets 1000000] [--partitions 6]
        [--settle SECONDS] [--skip-full]

`--settle`: RSS sampled again that long after ready (a restart from the snapshot fills
the timer gauges in after ready); `--skip-full`: no run without `--state-dir` (5,000,000
tickets).

Last line: `restart-to-ready seconds: full <s>, snapshot <s>`.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from live import Cleanup, bench_worker, produce, say, start_run, timed_terminate
from store_bench import build_pool

from devtools.harness import create_topics
from worker.harness import WorkerProcess


def states(tickets: int, pool_size: int, seed: int) -> Iterator[tuple[bytes, bytes]]:
    # A stream from now on: its tickets' deadlines lie ahead, nothing fires in the run.
    pool = build_pool(pool_size, seed, start=datetime.now(UTC).replace(microsecond=0))
    for n in range(tickets):
        key = f"T-{n:08d}".encode()
        prefix, suffix = pool[n % len(pool)]
        yield key, prefix + key + suffix


async def make_changelog(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        config = {"cleanup.policy": "compact"}
        await admin.create_topics([NewTopic(topic, partitions, 1, topic_configs=config)])
    finally:
        await admin.close()


def timed_start(worker: WorkerProcess, label: str, settle: float = 0.0) -> float:
    worker.start()
    worker.wait_readyz(200, timeout=3600, poll=0.1)
    seconds = time.perf_counter() - worker.started_at
    rss = worker.rss_bytes()
    say(f"{label}: ready {seconds:.2f} s after spawn; RSS {rss / 2**20:,.0f} MiB")
    if settle > 0:
        # A restart from the snapshot fills the timer gauges in after ready, beside the
        # loop: RSS once that is done (or `settle` seconds later), as it then stays.
        time.sleep(settle)
        rss = worker.rss_bytes()
        say(f"{label}: RSS {rss / 2**20:,.0f} MiB {settle:.0f} s after ready")
    stopped = timed_terminate(worker)
    say(f"{label}: stopped (SIGTERM) in {stopped:.1f} s")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=1_000_000)
    parser.add_argument("--pool", type=int, default=2000, help="distinct real states")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--bootstrap", help="default: KAFKA_BOOTSTRAP_SERVERS, else own broker")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument(
        "--skip-full", action="store_true", help="no run without --state-dir (large runs)"
    )
    parser.add_argument(
        "--settle", type=float, default=0.0, help="seconds after ready to sample RSS again"
    )
    args = parser.parse_args()
    with Cleanup() as cleanup:
        this = start_run(cleanup, "rs", args.bootstrap, args.keep)
        changelog = f"{this.run_id}-tickets-changelog"
        asyncio.run(create_topics(this.bootstrap, [this.topic], args.partitions))
        asyncio.run(make_changelog(this.bootstrap, changelog, args.partitions))
        started = datetime.now(UTC)
        count, seconds = asyncio.run(
            produce(this.bootstrap, changelog, states(args.tickets, args.pool, args.seed))
        )
        say(f"changelog: {count:,} tickets' state in {seconds:.1f} s (from {started:%H:%M:%S} UTC)")
        state_dir = this.directory / "state"

        def worker(snapshots: bool) -> WorkerProcess:
            extra: tuple[str, ...] = ("--log-level", "WARNING")
            if snapshots:
                extra += ("--state-dir", str(state_dir))
            made = bench_worker(
                bootstrap=this.bootstrap,
                app_id=this.run_id,
                directory=this.directory / "worker",
                input_topic=this.topic,
                outputs_prefix=f"{this.run_id}-",
                partitions=args.partitions,
                extra=extra,
            )
            cleanup.callback(made.stop_quietly)
            return made

        full = None
        if not args.skip_full:
            full = timed_start(worker(False), "full (no --state-dir)", args.settle)
        written = timed_start(worker(True), "full+write (fresh --state-dir)", args.settle)
        size = sum(f.stat().st_size for f in Path(state_dir).rglob("*") if f.is_file())
        say(f"state dir: {size / 2**20:,.0f} MiB")
        snapshot = timed_start(worker(True), "snapshot (same --state-dir)", args.settle)
        say(f"tickets: {args.tickets:,}; partitions: {args.partitions}")
        shown = f"{written:.2f} (full+write)" if full is None else f"{full:.2f}"
        say(f"restart-to-ready seconds: full {shown}, snapshot {snapshot:.2f}")


if __name__ == "__main__":
    main()
