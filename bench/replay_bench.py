"""Replay throughput and memory on a synthetic stream.

1,000,000 events over 100,000 tickets (mixed plans, priorities, pauses, priority changes,
follow-up cycles, solved tickets), in time order over about a month. The stream is built
in memory first; only `Replay.feed` + `finish` are timed, JSON decoding and validation of
every line and JSON encoding of every warning and breach included.

Peak memory per open ticket: growth of the process' peak RSS during the replay, divided
by the largest number of tickets open (created, not yet solved) at once.

    python bench/replay_bench.py [--events 1000000] [--tickets 100000] [--seed 7]

Last line: `replay events/s: <N>`.
"""

from __future__ import annotations

import argparse
import gc
import io
import resource
import sys
import time

from worker.core.engine import Engine
from worker.presets import load_presets
from worker.replay import Replay
from worker.traffic import synthetic_stream


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    t0 = time.perf_counter()
    lines, peak_open = synthetic_stream(args.events, args.tickets, args.seed)
    print(
        f"stream: {len(lines):,} events, {args.tickets:,} tickets, "
        f"peak open tickets {peak_open:,} (built in {time.perf_counter() - t0:.1f} s)"
    )

    out = io.StringIO()
    emitted = 0

    def on_event(event: object) -> None:
        nonlocal emitted
        emitted += 1
        out.write(event.model_dump_json())  # type: ignore[attr-defined]
        if emitted % 10_000 == 0:
            out.seek(0)
            out.truncate()

    rejected: list[object] = []
    gc.collect()
    rss_before = peak_rss_bytes()
    replay = Replay(Engine(load_presets()), on_event, rejected.append)
    start = time.perf_counter()
    replay.feed(lines)
    summary = replay.finish()
    elapsed = time.perf_counter() - start
    rss_growth = max(peak_rss_bytes() - rss_before, 0)

    rate = len(lines) / elapsed
    print(summary)
    print(f"replayed in {elapsed:.2f} s; {emitted:,} warnings and breaches written")
    print(
        f"peak RSS growth {rss_growth / 2**20:.0f} MiB = "
        f"{rss_growth / peak_open:,.0f} bytes per open ticket (peak {peak_open:,} open)"
    )
    print(f"python {sys.version.split()[0]}")
    print(f"replay events/s: {rate:,.0f}")


if __name__ == "__main__":
    main()
