"""A takeover of a partition holding many tickets, with a warm standby and without one,
in the same run (#23: "with a standby, a takeover of a partition holding 1,000,000
tickets is ready in <= 2 s").

1. A broker (`--bootstrap`, KAFKA_BOOTSTRAP_SERVERS, or a private one).
2. An input topic of one partition and the worker's changelog, which gets `--tickets`
   (default 1,000,000) tickets' state, as bench/restart_bench.py builds it (real states
   from a pool, deadlines ahead: nothing fires during the run).
3. Per variant, on the same changelog and consumer group: an owner worker starts and
   restores the partition; a second worker joins (no partition for it: one partition);
   with `--standby-replicas 1` it keeps the partition warm, and the run waits until its
   standby is caught up (`/readyz` standbys lag 0). Then the owner is stopped with
   SIGTERM (it commits nothing half-done and leaves the group at once), and the time is
   taken from the owner's exit to the second worker's `/readyz` 200 with partition 0
   running (the rebalance, the fence, the restore or the promotion, the seek):
   - `cold`: without standbys: the second worker reads the whole changelog;
   - `standby`: with `--standby-replicas 1`: it promotes its standby and reads the tail.
   Both use `--session-timeout-seconds 6` (heartbeats every 0.6 s: how soon the second
   worker learns of the rebalance).

    .venv/bin/python bench/standby_bench.py [--tickets 1000000]

Last line: `takeover seconds (from the owner's exit): cold <s>, standby <s>`; the line
before it the same from the SIGTERM (the owner's orderly stop included).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import UTC, datetime
from typing import Any

from live import Cleanup, bench_worker, produce, say, start_run, timed_terminate
from restart_bench import make_changelog, states

from devtools.harness import create_topics
from worker.harness import WorkerProcess


def wait_for(worker: WorkerProcess, test: Any, timeout: float = 1800, poll: float = 0.05) -> float:
    """Until `test(status, body)` of the worker's /readyz; returns the instant."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        worker.check_alive()
        try:
            status, body = worker.get("/readyz")
        except OSError:
            status, body = 0, {}
        if test(status, body):
            return time.perf_counter()
        time.sleep(poll)
    raise TimeoutError(worker.tail())


def takeover(make: Any, standby: bool) -> tuple[float, float]:
    """(seconds from the owner's exit, from its SIGTERM) to the partition running on the
    other worker."""
    label = "standby" if standby else "cold"
    owner = make(standby)
    owner.start()
    owner.wait_readyz(200, timeout=1800, poll=0.1)
    say(f"{label}: owner ready {time.perf_counter() - owner.started_at:.1f} s after spawn")
    spare = make(standby)
    spare.start()
    spare.wait_readyz(200, timeout=600, poll=0.1)
    if standby:
        warm = wait_for(
            spare,
            lambda s, b: [(r["partition"], r["lag"]) for r in b.get("standbys", [])] == [(0, 0)],
        )
        say(
            f"{label}: standby caught up {warm - spare.started_at:.1f} s after spawn; "
            f"RSS {spare.rss_bytes() / 2**20:,.0f} MiB"
        )
    asked = time.perf_counter()
    owner.terminate()
    exited = time.perf_counter()
    ready = wait_for(spare, lambda s, b: s == 200 and b.get("partitions") == [0], poll=0.02)
    seconds = ready - exited
    say(
        f"{label}: owner exited {exited - asked:.2f} s after SIGTERM; partition 0 running on "
        f"the other worker {seconds:.2f} s after that; RSS {spare.rss_bytes() / 2**20:,.0f} MiB"
    )
    for line in spare.log_path.read_text().splitlines():
        if "promot" in line or "restored partitions" in line:
            say(f"{label}: log: {line[:300]}")
    timed_terminate(spare)
    return seconds, ready - asked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=1_000_000)
    parser.add_argument("--pool", type=int, default=2000, help="distinct real states")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--bootstrap", help="default: KAFKA_BOOTSTRAP_SERVERS, else own broker")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    with Cleanup() as cleanup:
        this = start_run(cleanup, "sb", args.bootstrap, args.keep)
        changelog = f"{this.run_id}-tickets-changelog"
        asyncio.run(create_topics(this.bootstrap, [this.topic], 1))
        asyncio.run(make_changelog(this.bootstrap, changelog, 1))
        started = datetime.now(UTC)
        count, seconds = asyncio.run(
            produce(this.bootstrap, changelog, states(args.tickets, args.pool, args.seed))
        )
        say(f"changelog: {count:,} tickets' state in {seconds:.1f} s (from {started:%H:%M:%S} UTC)")
        made = 0

        def make(standby: bool) -> WorkerProcess:
            nonlocal made
            made += 1
            worker = bench_worker(
                bootstrap=this.bootstrap,
                app_id=this.run_id,
                directory=this.directory / f"worker-{made}",
                input_topic=this.topic,
                outputs_prefix=f"{this.run_id}-",
                partitions=1,
                extra=(
                    *("--log-level", "INFO", "--session-timeout-seconds", "6"),
                    *("--standby-replicas", "1" if standby else "0"),
                ),
            )
            cleanup.callback(worker.stop_quietly)
            return worker

        cold, cold_asked = takeover(make, standby=False)
        warm, warm_asked = takeover(make, standby=True)
        say(f"tickets: {args.tickets:,} in one partition; ratio cold/standby {cold / warm:.1f}")
        say(
            f"from SIGTERM (the owner's exit included): cold {cold_asked:.2f}, "
            f"standby {warm_asked:.2f}"
        )
        say(f"takeover seconds (from the owner's exit): cold {cold:.2f}, standby {warm:.2f}")


if __name__ == "__main__":
    main()
