"""`sla-worker demo`: the worker, live traffic, and warnings and breaches as they fire.

It starts `sla-worker worker` as a child process (`worker.harness.WorkerProcess`, as the
tests and benchmarks do) with a minute-scale demo policy, on topics and state of its own
(so a second run starts clean), produces realistic ticket traffic in real time, and
prints every warning and breach the worker publishes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import click
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from worker.harness import WorkerExited, WorkerProcess
from worker.traffic import LiveTraffic

DEMO_POLICY = Path(__file__).parent / "presets" / "demo.yaml"


def _line(event: dict[str, object]) -> str:
    kind = "BREACH " if event["type"] == "sla-breach" else "warning"
    threshold = f" {int(float(event['threshold']) * 100)}%" if "threshold" in event else ""  # type: ignore[arg-type]
    colour = "red" if kind == "BREACH " else "yellow"
    return (
        click.style(f"{kind}{threshold:>4}", fg=colour, bold=kind == "BREACH ")
        + f"  {event['ticket_id']}  {event['plan']} P{event['priority']}  {event['metric']}"
        f" #{event['cycle']}  target {event['target']}  due {event['due_at']}"
    )


async def _print_outputs(bootstrap: str, topics: list[str], stop: asyncio.Event) -> None:
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=f"demo-printer-{os.getpid()}",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=500)
            for messages in batch.values():
                for message in messages:
                    click.echo(_line(json.loads(message.value or b"{}")))
    finally:
        await consumer.stop()


async def _produce_traffic(bootstrap: str, topic: str, stop: asyncio.Event) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    traffic = LiveTraffic()
    try:
        while not stop.is_set():
            for event in traffic.next_events(datetime.now(UTC)):
                key = str(event["ticket_id"]).encode()
                await producer.send(topic, key=key, value=json.dumps(event).encode())
                if event["type"] == "ticket-created":
                    what = f"{event['ticket_id']} ({event['plan']} P{event['priority']})"
                    click.echo(click.style(f"new ticket {what}", dim=True))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
    finally:
        await producer.stop()


def run_demo(bootstrap: str, duration: float | None, port: int) -> None:
    run = f"demo-{int(time.time())}"
    topics = {name: f"{run}-{name}" for name in ("tickets", "warnings", "breaches", "dead")}
    worker = WorkerProcess(
        bootstrap,
        f"sla-{run}",
        Path(tempfile.mkdtemp(prefix="sla-demo-")),
        input_topics=(topics["tickets"],),
        partitions=3,
        policy=DEMO_POLICY,
        settings={
            "warnings_topic": topics["warnings"],
            "breaches_topic": topics["breaches"],
            "dead_letter_topic": topics["dead"],
        },
        port=port,
    )
    click.echo(f"starting the worker (log: {worker.log_path}) ...")
    worker.start()

    async def main() -> None:
        try:
            await worker.ready(timeout=120)
        except (WorkerExited, TimeoutError) as exc:
            raise click.ClickException(f"the worker did not become ready: {exc}") from exc
        click.echo(
            f"worker ready: {worker.url}/metrics, {worker.url}/tickets/HD-1001; "
            "producing traffic (Ctrl-C stops)"
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if duration is not None:
            loop.call_later(duration, stop.set)
        await asyncio.gather(
            _produce_traffic(bootstrap, topics["tickets"], stop),
            _print_outputs(bootstrap, [topics["warnings"], topics["breaches"]], stop),
        )

    try:
        asyncio.run(main())
    finally:
        if worker.alive():
            with contextlib.suppress(subprocess.TimeoutExpired):  # it was killed then
                worker.terminate(timeout=60)
        click.echo(f"worker stopped (exit {worker.process and worker.process.returncode})")
