"""Chaos soak: live traffic for minutes, faults on a seeded schedule, checked against replay.

    .venv/bin/python bench/soak.py --minutes 10 --seed 1     # the benchmark (BENCHMARKS.md)
    .venv/bin/python bench/soak.py --minutes 2 --seed 7      # what the test suite runs

1. A private broker (scripts/kafka-local, restarted on the same address by the soak).
2. Two workers in one group (`--workers`) on the minute-scale demo policy
   (worker/presets/demo.yaml: targets of 45 s to 3 min, warnings at 50 % and 75 %).
3. Ticket traffic produced as it happens, for `--minutes`: new tickets, agent and
   customer replies, pauses, reclassifications, solved tickets, and a few hostile lines
   (invalid JSON, unknown tickets, unknown types, redeliveries). Each record carries its
   production sequence number in a header, so the log can be put back in order.
4. Faults, one at a time, at seeded instants: SIGKILL of a worker (restarted a few
   seconds later), SIGTERM of a worker (restarted), a third worker joining and later
   leaving, and a broker restart on its address with its data (10-20 s down). Traffic
   pauses while the broker is down, and only then: an event that reaches Kafka after
   its effects came due on the wall clock cannot be judged the same by any live system
   (that is what `--allowed-lateness-seconds` is for in production);
   tests/integration/test_broker_outage.py covers traffic produced through an outage.
5. Traffic stops at T; every timer due by U = T + 5 s should have fired by U + 10 s. The soak
   then reads the input topic back (read_committed, in production order), runs
   `sla-worker replay --until U` on it, and compares with every warning and breach
   published with `due_at <= U` as exact sets of `event_id`s: missing (replay emits it,
   nobody published it), invented (published, replay does not emit it), different
   (same id, other content). It reports repeats in committed output, records of aborted
   transactions, dead letters against hostile lines, and the lateness of publication
   over all warnings and breaches: the record's timestamp minus `due_at`, or minus the
   reclassification that put `due_at` in the past (a ticket moved to a shorter target
   is overdue at once; that is not lateness).

The last line reads `soak: missing <M>, invented <I>, duplicates <D>, lateness p99 <S> s`;
the exit status is 0 when nothing is missing, invented, different or repeated in
committed output, nothing was published before it was due, dead letters match the
hostile lines exactly, every kind of fault ran, and replay emits at least 20 warnings
and breaches (so an empty run cannot pass). What was not yet out 10 s after U is
reported, not failed: a fault near the end may legitimately delay it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from live import ROOT, Cleanup, bench_worker, say

from devtools.harness import (
    LocalBroker,
    Record,
    WorkerExited,
    WorkerProcess,
    create_topics,
    read_all,
    settled,
)
from worker.traffic import PLANS

POLICY = ROOT / "worker" / "presets" / "demo.yaml"
SEQ_HEADER = "soak-seq"
SETTLE_AFTER_TRAFFIC = timedelta(seconds=5)  # U = T + this
FIRE_WITHIN = 10.0  # seconds after U by which everything due by U should be out
EARLY_TOLERANCE = 0.01  # seconds; clock reads on one machine
MIN_EXPECTED = 20  # warnings and breaches replay must emit for a run to prove anything
FAULTS = ("kill", "term", "join", "broker")


# --- traffic --------------------------------------------------------------------------------


class Traffic:
    """Ticket events as they happen, at `rate` new tickets per second; each open ticket
    gets, per second, an agent reply (0.6 %), a customer reply (1 %), a pause or resume
    (0.5 %), a new priority (0.5 %), or is solved (0.5 %): tickets live minutes, long
    enough for the demo policy's warnings and breaches. About 1 % of lines are hostile."""

    def __init__(self, seed: int, rate: float) -> None:
        self.rng = random.Random(seed)
        self.rate = rate
        self.open: dict[str, tuple[str, bool]] = {}  # ticket -> (plan, paused)
        self.tickets = 0
        self.events = 0
        self.hostile = 0
        self.sent: list[tuple[bytes, bytes]] = []  # (key, value) of recent events, to redeliver

    def tick(self, now: datetime, seconds: float) -> list[tuple[bytes, bytes, bool]]:
        """(key, value, hostile) for what happens in the `seconds` ending `now`."""
        rng, out = self.rng, []
        at = now.isoformat().replace("+00:00", "Z")

        def event(kind: str, ticket: str, **fields: Any) -> None:
            self.events += 1
            body = {"event_id": f"s-{self.events}", "type": kind, "ticket_id": ticket}
            body |= {"occurred_at": at, **fields}
            value = json.dumps(body).encode()
            out.append((ticket.encode(), value, False))
            self.sent = [*self.sent[-50:], (ticket.encode(), value)]

        for _ in range(_poisson(rng, self.rate * seconds)):
            self.tickets += 1
            ticket = f"S-{self.tickets}"
            plan = rng.choice(list(PLANS))
            self.open[ticket] = (plan, False)
            event("ticket-created", ticket, plan=plan, priority=rng.choice(PLANS[plan]))
        for ticket, (plan, paused) in list(self.open.items()):
            roll = rng.random() / seconds
            if roll < 0.006:
                event("reply-sent", ticket, author="agent")
            elif roll < 0.016:
                event("reply-sent", ticket, author="customer")
            elif roll < 0.021:
                self.open[ticket] = (plan, not paused)
                event("status-changed", ticket, status="open" if paused else "pending")
            elif roll < 0.026:
                event("priority-changed", ticket, priority=rng.choice(PLANS[plan]))
            elif roll < 0.031:
                del self.open[ticket]
                event("status-changed", ticket, status="solved")
        for _ in range(len(out)):
            if rng.random() < 0.01:
                out.append(self._hostile(rng, at))
        return out

    def _hostile(self, rng: random.Random, at: str) -> tuple[bytes, bytes, bool]:
        kind = rng.choice(["json", "unknown-ticket", "unknown-type", "redelivery"])
        if kind == "redelivery" and self.sent:
            key, value = rng.choice(self.sent)
            return key, value, False  # a duplicate: counted by both, never dead-lettered
        self.hostile += 1
        if kind == "json":
            return b"S-1", b'{"event_id": "broken", "type": ', True
        if kind == "unknown-ticket":
            body = {"event_id": f"h-{self.hostile}", "type": "reply-sent", "ticket_id": "NOPE"}
            body |= {"occurred_at": at, "author": "agent"}
            return b"NOPE", json.dumps(body).encode(), True
        body = {"event_id": f"h-{self.hostile}", "type": "ticket-merged", "ticket_id": "S-1"}
        return b"S-1", json.dumps(body | {"occurred_at": at}).encode(), True


def _poisson(rng: random.Random, mean: float) -> int:
    count, total = 0, rng.expovariate(1.0)
    while total < mean:
        count += 1
        total += rng.expovariate(1.0)
    return count


# --- the run --------------------------------------------------------------------------------


@dataclass
class Soak:
    args: argparse.Namespace
    broker: LocalBroker
    directory: Path
    run_id: str = field(default_factory=lambda: f"soak-{uuid.uuid4().hex[:6]}")
    workers: list[WorkerProcess] = field(default_factory=list)
    producing: asyncio.Event = field(default_factory=asyncio.Event)  # set: traffic flows
    faults: list[str] = field(default_factory=list)
    hostile: int = 0

    @property
    def topic(self) -> str:
        return f"{self.run_id}-tickets"

    def worker(self, name: str) -> WorkerProcess:
        return bench_worker(
            self.broker.bootstrap,
            app_id=self.run_id,
            directory=self.directory / name,
            input_topic=self.topic,
            outputs_prefix=f"{self.run_id}-",
            partitions=self.args.partitions,
            policy=POLICY,
            extra=("--session-timeout-seconds", "6", "--timer-interval-seconds", "0.2"),
        )

    async def produce(self, until: float) -> None:
        traffic = Traffic(self.args.seed, self.args.rate)
        producer = AIOKafkaProducer(
            bootstrap_servers=self.broker.bootstrap, acks="all", enable_idempotence=True
        )
        await producer.start()
        seq, last = 0, time.monotonic()
        try:
            while time.monotonic() < until:
                await asyncio.sleep(0.2)
                await self.producing.wait()
                now = time.monotonic()
                lines = traffic.tick(datetime.now(UTC), now - last)
                last = now
                for key, value, _ in lines:
                    seq += 1
                    headers = [(SEQ_HEADER, str(seq).encode())]
                    while True:  # the broker may go away between the pause and here
                        try:
                            await producer.send_and_wait(
                                self.topic, value, key=key, headers=headers
                            )
                            break
                        except KafkaError:
                            await asyncio.sleep(0.5)
        finally:
            await producer.stop()
        self.hostile = traffic.hostile
        say(f"produced {seq} lines: {traffic.tickets} tickets, {traffic.hostile} hostile")

    async def inject(self, until: float) -> None:
        """Faults one at a time, at seeded instants over the traffic's middle 80 %."""
        rng = random.Random(self.args.seed * 7919)
        minutes = self.args.minutes
        kinds = list(FAULTS) * max(1, round(minutes / 4))
        rng.shuffle(kinds)
        span = until - time.monotonic()
        slots = sorted(rng.uniform(0.1, 0.85) * span for _ in kinds)
        started = time.monotonic()
        for kind, at in zip(kinds, slots, strict=True):
            await asyncio.sleep(max(at - (time.monotonic() - started), 0))
            when = time.monotonic() - started
            await getattr(self, f"_{kind}")(rng)
            self.faults.append(f"{when:.0f}s {kind}")
            say(f"  {when:6.1f} s: {self.faults[-1].split()[1]} done")

    async def _kill(self, rng: random.Random) -> None:
        victim = rng.choice(self.workers[:2])
        victim.process.kill()  # type: ignore[union-attr]
        await asyncio.sleep(rng.uniform(1, 5))
        victim.start()
        await asyncio.to_thread(victim.wait_readyz, 200, 120)

    async def _term(self, rng: random.Random) -> None:
        victim = rng.choice(self.workers[:2])
        await asyncio.to_thread(victim.terminate)
        await asyncio.sleep(rng.uniform(1, 5))
        victim.start()
        await asyncio.to_thread(victim.wait_readyz, 200, 120)

    async def _join(self, rng: random.Random) -> None:
        third = self.worker(f"w{len(self.workers)}")
        self.workers.append(third)
        third.start()
        await asyncio.to_thread(third.wait_readyz, 200, 120)
        await asyncio.sleep(rng.uniform(10, 30))
        await asyncio.to_thread(third.terminate)

    async def _broker(self, rng: random.Random) -> None:
        self.producing.clear()
        await asyncio.sleep(0.5)  # the last sends are acknowledged
        await asyncio.to_thread(self.broker.stop)
        await asyncio.sleep(rng.uniform(10, 20))
        await asyncio.to_thread(self.broker.resume)
        self.producing.set()
        for worker in self.workers[:2]:
            await asyncio.to_thread(worker.wait_readyz, 200, 120)


# --- reading back and comparing ---------------------------------------------------------------


def replay(log: list[bytes], until: datetime, directory: Path) -> dict[str, dict[str, Any]]:
    events = directory / "input.jsonl"
    events.write_bytes(b"".join(line + b"\n" for line in log))
    done = subprocess.run(
        [
            *(sys.executable, "-m", "worker", "replay", str(events), "--policies", str(POLICY)),
            *("--until", until.isoformat(), "--now", until.isoformat()),
        ],
        capture_output=True,
        check=True,
    )
    (directory / "replay.summary").write_bytes(done.stderr)
    return {e["event_id"]: e for e in map(json.loads, done.stdout.splitlines())}


def became_due(
    event: dict[str, Any], published: float, reclassified: dict[str, list[float]]
) -> float:
    """When a warning or breach could first be published: its `due_at`, or, when a
    reclassification to a shorter target put that instant in the past, that change (the
    worker publishes with the event; lateness counts from there). Taken as the ticket's
    last reclassification between `due_at` and the publication: exact for those, and it
    can only understate the lateness of a point that was overdue anyway."""
    due = datetime.fromisoformat(event["due_at"]).timestamp()
    later = [at for at in reclassified.get(event["ticket_id"], ()) if due < at <= published]
    return max(later, default=due)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def compare(soak: Soak, until: datetime) -> int:
    bootstrap, run_id = soak.broker.bootstrap, soak.run_id
    inputs = await read_all(bootstrap, soak.topic)
    ordered = sorted(inputs, key=lambda r: int(dict(r.headers)[SEQ_HEADER]))
    want = replay([r.value for r in ordered], until, soak.directory)
    reclassified: dict[str, list[float]] = {}
    for record in ordered:
        with contextlib.suppress(ValueError, KeyError, TypeError):
            event = json.loads(record.value)
            if event["type"] == "priority-changed":
                at = datetime.fromisoformat(event["occurred_at"]).timestamp()
                reclassified.setdefault(event["ticket_id"], []).append(at)

    published, repeats = await published_by(soak, until)
    not_out_in_time = len(set(want) - set(published))  # read at U + FIRE_WITHIN
    try:  # then all there is to see: every input applied, everything due by U fired
        await settled([w for w in soak.workers if w.alive()], until, timeout=120)
    except (TimeoutError, WorkerExited) as exc:
        say(f"the workers did not settle: {str(exc).splitlines()[0]}")
    published, repeats = await published_by(soak, until)
    different: list[str] = []
    missing = sorted(set(want) - set(published))
    invented = sorted(set(published) - set(want))
    for event_id in set(want) & set(published):
        if json.loads(published[event_id][0]) != want[event_id]:
            different.append(event_id)
    lateness = [
        timestamp / 1000 - became_due(json.loads(value), timestamp / 1000, reclassified)
        for value, timestamp in published.values()
    ]
    # Published before it was due (the record's timestamp is the worker's send time, on
    # this machine's clock): what the fire-on-event-time rules exist to prevent.
    early = sum(1 for late in lateness if late < -EARLY_TOLERANCE)
    uncommitted = 0
    for kind in ("warnings", "breaches"):
        uncommitted += len(await read_all(bootstrap, f"{run_id}-{kind}", committed=False))
    committed_records = len(published) + sum(repeats.values())
    letters = len(await read_all(bootstrap, f"{run_id}-dead-letter"))
    counts = Counter(e["type"] for e in want.values())
    say(
        f"replay of {len(ordered)} input records emits {counts['sla-warning']} warnings and "
        f"{counts['sla-breach']} breaches due by {until.isoformat()}"
    )
    say(f"faults: {', '.join(soak.faults)}")
    say(
        f"published (read_committed, due by then): {len(published)} distinct, "
        f"{sum(repeats.values())} repeats; records of aborted transactions "
        f"(read_uncommitted only): {max(uncommitted - committed_records, 0)}"
    )
    say(f"dead letters: {letters} for {soak.hostile} hostile lines")
    say(
        f"lateness of publication: p50 {percentile(lateness, 0.5):.3f} s, p99 "
        f"{percentile(lateness, 0.99):.3f} s, max {max(lateness, default=0):.3f} s, "
        f"mean {statistics.fmean(lateness) if lateness else 0:.3f} s"
    )
    say(
        f"published before due: {early}; not yet out {FIRE_WITHIN:.0f} s after the end: "
        f"{not_out_in_time} of {len(want)}"
    )
    if missing or invented or different:
        say(f"missing {missing[:10]}, invented {invented[:10]}, different {different[:10]}")
    problems = []
    if len(want) < MIN_EXPECTED:
        problems.append(f"replay emits only {len(want)} warnings and breaches: proves little")
    ran = {fault.split()[1] for fault in soak.faults}
    if ran != set(FAULTS):
        problems.append(f"faults that ran: {sorted(ran)}, not all of {FAULTS}")
    if letters != soak.hostile:
        problems.append(f"{letters} dead letters for {soak.hostile} hostile lines")
    if early:
        problems.append(f"{early} published before they were due")
    for problem in problems:
        say(f"FAILED: {problem}")
    say(
        f"soak: missing {len(missing)}, invented {len(invented)}, duplicates "
        f"{sum(repeats.values())}, lateness p99 {percentile(lateness, 0.99):.3f} s"
    )
    failed = missing or invented or different or repeats or problems
    return 1 if failed else 0


async def published_by(
    soak: Soak, until: datetime
) -> tuple[dict[str, tuple[bytes, int]], Counter[str]]:
    """Warnings and breaches due by `until`, read_committed: {event_id: (value, record
    timestamp ms)} of the first of each id, and how often each id came again."""
    published: dict[str, tuple[bytes, int]] = {}
    repeats: Counter[str] = Counter()
    for kind in ("warnings", "breaches"):
        records: list[Record] = await read_all(soak.broker.bootstrap, f"{soak.run_id}-{kind}")
        for record in records:
            event = json.loads(record.value)
            if datetime.fromisoformat(event["due_at"]) > until:
                continue
            if event["event_id"] in published:
                repeats[event["event_id"]] += 1
                continue
            published[event["event_id"]] = (record.value, record.timestamp_ms)
    return published, repeats


async def soak_run(args: argparse.Namespace, soak: Soak) -> int:
    await create_topics(soak.broker.bootstrap, [soak.topic], args.partitions)
    soak.workers = [soak.worker("w0"), soak.worker("w1")]
    for worker in soak.workers:
        worker.start()
    for worker in soak.workers:
        await asyncio.to_thread(worker.wait_readyz, 200, 120)
    say(f"{len(soak.workers)} workers ready; traffic for {args.minutes:g} min at {args.rate}/s")
    until = time.monotonic() + args.minutes * 60
    soak.producing.set()
    await asyncio.gather(soak.produce(until), soak.inject(until))
    end = datetime.now(UTC) + SETTLE_AFTER_TRAFFIC
    await asyncio.sleep(SETTLE_AFTER_TRAFFIC.total_seconds() + FIRE_WITHIN)
    for worker in soak.workers[:2]:
        worker.check_alive()
    return await compare(soak, end)


def stop_workers(soak: Soak) -> None:
    for worker in soak.workers:
        worker.stop_quietly()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rate", type=float, default=2.0, help="new tickets per second")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--keep", action="store_true", help="keep the run directory")
    args = parser.parse_args()
    with Cleanup() as cleanup:  # runs its callbacks last registered, first
        directory = Path(tempfile.mkdtemp(prefix="sla-soak-"))
        if not args.keep:
            cleanup.callback(shutil.rmtree, directory, ignore_errors=True)
        broker = LocalBroker(directory / "kafka", {"SLA_KAFKA_HEAP": "1g"})
        cleanup.callback(broker.stop)
        broker.start()
        say(f"soak: broker {broker.bootstrap}, dir {directory}, seed {args.seed}")
        soak = Soak(args, broker, directory)
        cleanup.callback(stop_workers, soak)
        status = asyncio.run(soak_run(args, soak))
    sys.exit(status)


if __name__ == "__main__":
    main()
