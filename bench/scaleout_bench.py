"""Scale-out from 1 to 3 workers while timers fall due (#23: the partitions that do not move
keep breach lateness p99 <= 0.5 s while the moved ones restore; 0 missing, 0 invented,
0 repeats against replay).

1. A broker (`--bootstrap`, KAFKA_BOOTSTRAP_SERVERS, or a private one), an input topic of
   `--partitions` (6), the policy and `--tickets` bulk tickets of bench/cluster.py.
2. One worker as deploy/k8s/statefulset.yaml runs one (static member `sla-worker-0`,
   `--standby-replicas 1`, its own `--state-dir`, a 45 s session) reads them all.
3. t0: `--window` tickets are produced whose deadlines fall uniformly over
   [t0 + lead, t0 + lead + spread]. A quarter into the window `sla-worker-1` starts,
   half-way `sla-worker-2` (each waited for until /readyz 200): the group rebalances
   twice, and the partitions given to the new workers restore there (no standby could
   be warm on a worker that just started).
4. Once every timer due by the window's end has fired, the outputs (read_committed) are
   compared with `sla-worker replay` of the input log as exact `event_id` sets.
   Lateness (record timestamp, and a read_committed consumer's receipt, - `due_at`) of
   the breaches due from the second worker's start on, separately for the partitions
   that stayed on the first worker throughout and for those that moved.

    .venv/bin/python bench/scaleout_bench.py [--tickets 300000] [--window 3000]

Last line: `scale-out: breach p99 stayed <s> s, moved <s> s; <n> missing, <n> invented,
<n> repeats`.
"""

from __future__ import annotations

import argparse
import asyncio
import time

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
    wait_until,
)
from live import Cleanup, say, start_run
from timers_bench import percentile


def main() -> None:
    parser = arguments(__doc__)
    args = parser.parse_args()
    with Cleanup() as cleanup, LoadWatch() as load:
        run(args, cleanup, load)


def run(args: argparse.Namespace, cleanup: Cleanup, load: LoadWatch) -> None:
    this = start_run(cleanup, "so", args.bootstrap, args.keep)
    workload = Workload(this, args.partitions, args.lead, args.spread)
    count = workload.produce_bulk(args.tickets)
    workers = [workload.worker(cleanup, f"sla-worker-{i}", standbys=1) for i in range(3)]
    first_worker = workers[0]
    first_worker.start()
    first_worker.wait_readyz(200, timeout=args.timeout)
    ingest = wait_committed(this.bootstrap, this.run_id, this.topic, count, args.timeout)
    say(
        f"1 worker read {count:,} bulk tickets in {ingest:.1f} s after ready; RSS "
        f"{first_worker.rss_bytes() / 2**20:,.0f} MiB; load average {load_average()}"
    )

    kept = set(owned(first_worker))
    joined: list[float] = []
    with Receiver(this.bootstrap, list(workload.outputs.values())) as receiver:
        workload.produce_window(args.window, args.seed)
        first = workload.window[0]
        for i, worker in enumerate(workers[1:], start=1):
            wait_until(first + i * args.spread / 4)
            joined.append(time.time())
            worker.start()
            worker.wait_readyz(200, timeout=args.timeout, poll=0.05)
            kept &= set(owned(first_worker))
            say(
                f"sla-worker-{i} ready {time.time() - joined[-1]:.2f} s after its start; "
                f"owners: {[owned(w) for w in workers[: i + 1]]}"
            )
        until = settle_instant(workload)
        outputs, stamps = asyncio.run(settle_and_read(workload, workers, until, args.timeout))
    kept &= set(owned(first_worker))
    moved = sorted(set(range(args.partitions)) - kept)
    say(f"owners after: {[owned(w) for w in workers]}; stayed {sorted(kept)}, moved {moved}")
    say_restores(workers)
    result, rows = judge(workload, until, outputs, stamps, receiver)
    after = joined[0]
    groups = {
        "stayed, due after the 2nd worker's start": lambda r: (
            r.partition in kept and r.due >= after
        ),
        "moved, due after the 2nd worker's start": lambda r: (
            r.partition not in kept and r.due >= after
        ),
    }
    late = report(workload, rows, groups)
    stayed, went = late[next(iter(groups))], late[list(groups)[1]]
    result.say(
        load, f"tickets: {count:,} bulk + {args.window:,} window; partitions {args.partitions}"
    )
    say(
        f"scale-out: breach p99 stayed {percentile(stayed, 0.99):.3f} s, moved "
        f"{percentile(went, 0.99):.3f} s; {result.short()}"
    )


if __name__ == "__main__":
    main()
