"""A rolling restart of 3 workers holding many tickets while timers fall due (#23: breach
lateness p99 <= 1 s, max <= 5 s; 0 missing, 0 invented, 0 repeats against replay).

1. A broker (`--bootstrap`, KAFKA_BOOTSTRAP_SERVERS, or a private one), an input topic of
   `--partitions` (6), a policy file (bench/timers_bench.py's: bulk targets of 8-14 h, a
   window plan), and `--tickets` bulk `ticket-created` events (bench/cluster.py).
2. Three workers as deploy/k8s/statefulset.yaml runs them: static members
   `sla-worker-0..2` (`--instance-id`), `--standby-replicas 1`, a `--state-dir` each,
   a 45 s session. They read the bulk; the run waits until every partition's standby
   is caught up.
3. t0: `--window` tickets are produced whose deadlines fall uniformly over
   [t0 + lead, t0 + lead + spread]. From the first deadline on, each worker in turn is
   restarted as a rolling update restarts a pod: SIGTERM, wait for its exit, start it
   again with the same instance id and state directory, wait for /readyz 200, next.
   Restart i begins at the first deadline + i x spread / 3, or when the one before it
   is ready, whichever is later. As a static member a restarted worker keeps its
   partitions through its restart (nothing moves: they wait for it); `--dynamic` runs
   the control without instance ids, where a SIGTERM leaves the group and its
   partitions move, to the standbys, and back.
4. Once every timer due by the window's end has fired (`devtools.harness.settled`), the
   outputs are read (read_committed) and compared with `sla-worker replay` of the input
   log as exact `event_id` sets. Lateness = the record's timestamp (the worker's send
   time) - `due_at`, and a read_committed consumer's receipt - `due_at`, for the
   window's breaches and warnings, overall and for those due on a restarting worker's
   partitions between its SIGTERM and its /readyz.

    .venv/bin/python bench/rolling_bench.py [--tickets 300000] [--window 3000]

Last line: `rolling: breach p99 <s> s, max <s> s; <n> missing, <n> invented, <n> repeats`.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass

from cluster import (
    LoadWatch,
    Receiver,
    Workload,
    arguments,
    judge,
    load_average,
    owned,
    report,
    say_restores,
    settle_and_read,
    settle_instant,
    wait_committed,
    wait_standbys,
    wait_until,
)
from live import Cleanup, say, start_run
from timers_bench import percentile


@dataclass(frozen=True)
class Restart:
    name: str
    partitions: list[int]  # what it ran before the SIGTERM
    asked: float  # epoch seconds: SIGTERM
    exited: float
    ready: float  # /readyz 200 again

    def down(self, partition: int, due: float) -> bool:
        return partition in self.partitions and self.asked <= due <= self.ready


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument(
        "--dynamic",
        action="store_true",
        help="no --instance-id: a SIGTERM leaves the group, the partitions move (control)",
    )
    args = parser.parse_args()
    with Cleanup() as cleanup, LoadWatch() as load:
        run(args, cleanup, load)


def run(args: argparse.Namespace, cleanup: Cleanup, load: LoadWatch) -> None:
    this = start_run(cleanup, "rr", args.bootstrap, args.keep)
    workload = Workload(this, args.partitions, args.lead, args.spread)
    count = workload.produce_bulk(args.tickets)
    workers = [
        workload.worker(cleanup, f"sla-worker-{i}", standbys=1, static=not args.dynamic)
        for i in range(3)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.wait_readyz(200, timeout=args.timeout)
    ingest = wait_committed(this.bootstrap, this.run_id, this.topic, count, args.timeout)
    say(f"3 workers read {count:,} bulk tickets in {ingest:.1f} s after ready")
    warm = wait_standbys(workers, args.partitions, args.timeout)
    say(f"standbys caught up {warm:.1f} s later; owners: {[owned(w) for w in workers]}")
    rss = [w.rss_bytes() / 2**20 for w in workers]
    say(f"RSS {', '.join(f'{r:,.0f}' for r in rss)} MiB; load average {load_average()}")

    restarts: list[Restart] = []
    with Receiver(this.bootstrap, list(workload.outputs.values())) as receiver:
        workload.produce_window(args.window, args.seed)
        first, last = workload.window
        for i, worker in enumerate(workers):
            wait_until(first + i * args.spread / 3)
            before = owned(worker)
            asked = time.time()
            worker.terminate(timeout=120)
            exited = time.time()
            worker.start()
            worker.wait_readyz(200, timeout=args.timeout, poll=0.05)
            restarts.append(Restart(f"sla-worker-{i}", before, asked, exited, time.time()))
            say(
                f"sla-worker-{i} (partitions {before}): exited {exited - asked:.2f} s after "
                f"SIGTERM, ready again {time.time() - exited:.2f} s after its start, "
                f"runs {owned(worker)}; t0 + {time.time() - first + args.lead:.0f} s"
            )
        if time.time() > last:
            say(f"(the restarts ended {time.time() - last:.0f} s after the last deadline)")
        until = settle_instant(workload)
        outputs, stamps = asyncio.run(settle_and_read(workload, workers, until, args.timeout))
    say(f"owners after: {[owned(w) for w in workers]}")
    say_restores(workers)
    result, rows = judge(workload, until, outputs, stamps, receiver)
    down = {
        "due on a restarting worker's partitions": lambda r: any(
            s.down(r.partition, r.due) for s in restarts
        )
    }
    breaches = report(workload, rows, down)["all"]
    result.say(
        load,
        f"tickets: {count:,} bulk + {args.window:,} window; partitions {args.partitions}; "
        f"{'dynamic' if args.dynamic else 'static'} membership",
    )
    say(
        f"rolling: breach p99 {percentile(breaches, 0.99):.3f} s, max {max(breaches):.3f} s; "
        f"{result.short()}"
    )


if __name__ == "__main__":
    main()
