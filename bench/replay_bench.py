"""Replay throughput and memory on a synthetic stream.

1,000,000 events over 100,000 tickets (mixed plans, priorities, pauses, priority changes,
follow-up cycles, solved tickets; `worker.traffic.synthetic_stream`), in time order over
about a month. The stream is built in memory first; only `Replay.feed` + `finish` are
timed, JSON decoding and validation of every line and JSON encoding of every warning and
breach included. The peer, timed in the same run on the same lines, is bare `json.loads`:
a floor no JSON-reading replay can go under, and a yardstick for this machine's speed.

Memory per open ticket: tracemalloc's count of the bytes held by the replay after
100,000 tickets were created and left open with running timers (state, due-index and
all), divided by 100,000.

    python bench/replay_bench.py [--events 1000000] [--tickets 100000] [--seed 7]

Last line: `replay events/s: <N>`.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import sys
import time
import tracemalloc
from datetime import UTC, datetime, timedelta

from worker.compiled import describe
from worker.core.engine import Engine
from worker.core.events import SlaEvent
from worker.presets import load_presets
from worker.replay import Replay, relaxed_garbage_collection
from worker.traffic import synthetic_stream


def throughput(lines: list[bytes]) -> tuple[float, str, int]:
    out = io.StringIO()
    emitted = 0

    def on_event(event: SlaEvent) -> None:
        nonlocal emitted
        emitted += 1
        out.write(event.model_dump_json())
        if emitted % 10_000 == 0:
            out.seek(0)
            out.truncate()

    # As `sla-worker replay` without --finished-timers: finished timers counted, not measured.
    engine = Engine(load_presets(), measure=False)
    replay = Replay(engine, on_event, lambda rejection: None)
    with relaxed_garbage_collection():  # as `sla-worker replay` does
        start = time.perf_counter()
        replay.feed(lines)
        summary = replay.finish()
        elapsed = time.perf_counter() - start
    return elapsed, str(summary), emitted


def json_loads_seconds(lines: list[bytes]) -> float:
    start = time.perf_counter()
    for line in lines:
        json.loads(line)
    return time.perf_counter() - start


def bytes_per_open_ticket(tickets: int) -> float:
    start = datetime(2026, 11, 23, 8, tzinfo=UTC)
    lines = [
        json.dumps(
            {
                "event_id": f"m-{n}",
                "type": "ticket-created",
                "ticket_id": f"OPEN-{n:07d}",
                "occurred_at": (start + timedelta(milliseconds=n)).isoformat(),
                "plan": ("vip", "professional", "advanced")[n % 3],
                "priority": 1 + n % 3,
            }
        ).encode()
        for n in range(tickets)
    ]
    gc.collect()
    tracemalloc.start()
    replay = Replay(Engine(load_presets()), lambda event: None, lambda rejection: None)
    replay.feed(lines)
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(replay.tickets) == tickets
    return held / tickets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    t0 = time.perf_counter()
    lines, peak_open = synthetic_stream(args.events, args.tickets, args.seed)
    print(
        f"stream: {len(lines):,} events, {args.tickets:,} tickets, peak open tickets "
        f"{peak_open:,} (built in {time.perf_counter() - t0:.1f} s)"
    )
    elapsed, summary, emitted = throughput(lines)
    peer = json_loads_seconds(lines)
    rate = len(lines) / elapsed
    print(summary)
    print(f"replayed in {elapsed:.2f} s; {emitted:,} warnings and breaches written")
    print(
        f"peer json.loads: {len(lines) / peer:,.0f} lines/s; replay costs "
        f"{elapsed / peer:.1f}x json.loads per line"
    )
    per_ticket = bytes_per_open_ticket(args.tickets)
    print(f"memory per open ticket: {per_ticket:,.0f} bytes ({args.tickets:,} open tickets)")
    print(f"python {sys.version.split()[0]}, {describe()}")
    print(f"replay events/s: {rate:,.0f}")


if __name__ == "__main__":
    main()
