"""A bare faust agent over a topic: the floor the live worker stands on.

Same faust settings as the worker (RocksDB store, at-least-once, acks=all, stream buffer
4096, one agent at concurrency 1 over raw bytes), and no SLA logic at all:

- `--mode agent`: iterate `stream.events()` and count;
- `--mode table`: also one table read and one table write per event (a JSON dict of
  about the size of a ticket's state), as the worker does.

Prints `faust-floor <mode>: <n> events in <s> s = <rate> events/s` (timed from the first
event to the last) and exits; `worker_bench.py` runs it as a subprocess (its reference peer).

    .venv/bin/python bench/faust_floor.py --bootstrap HOST:PORT --topic T --events N
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from typing import Any

import faust


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--events", type=int, required=True, help="stop after this many")
    parser.add_argument("--mode", choices=["agent", "table"], default="agent")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--app-id", default=f"faust-floor-{time.time_ns()}")
    parser.add_argument("--datadir", help="RocksDB directory (default: a new temp dir)")
    args = parser.parse_args()

    app = faust.App(
        args.app_id,
        broker=f"kafka://{args.bootstrap}",
        store="rocksdb://",
        datadir=args.datadir or tempfile.mkdtemp(prefix="sla-faust-floor-"),
        topic_partitions=args.partitions,
        topic_allow_declare=True,
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        stream_buffer_maxsize=4096,
        table_standby_replicas=0,
        web_enabled=False,
    )
    source = app.topic(
        args.topic,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )
    table = app.Table("floor", partitions=args.partitions, key_type=bytes)
    with_table = args.mode == "table"
    state: dict[str, Any] = {"count": 0, "first": None}

    @app.agent(source, name="floor", concurrency=1)
    async def floor(stream: Any) -> None:
        async for event in stream.events():
            if state["first"] is None:
                state["first"] = time.perf_counter()
            message = event.message
            if with_table:
                old = table.get(message.key)
                table[message.key] = {
                    "n": 1 + (old["n"] if old else 0),
                    "v": message.value.decode(),
                }
            state["count"] += 1
            if state["count"] >= args.events:
                seconds = time.perf_counter() - state["first"]
                n = args.events - 1  # timed from the first event's arrival
                print(
                    f"faust-floor {args.mode}: {n:,} events in {seconds:.2f} s = "
                    f"{n / seconds:,.0f} events/s",
                    flush=True,
                )
                os._exit(0)  # a throwaway app: no graceful shutdown needed

    logging.disable(logging.DEBUG)  # like the worker at INFO: no debug records built
    sys.argv = [sys.argv[0], "worker", "--loglevel", "warn", "--without-web"]
    app.main()


if __name__ == "__main__":
    main()
