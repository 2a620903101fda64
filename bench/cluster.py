"""Shared pieces of the benchmarks that run several workers under load (`rolling_bench.py`,
`scaleout_bench.py`, issue #23): a workload of many tickets with timers falling due during
the run, its input log kept for replay, the workers as the Kubernetes StatefulSet in
deploy/k8s runs them, the lateness of what they publish, and the exact comparison of what
they published with replay.

The workload (`Workload`): `--tickets` bulk tickets whose first-response deadlines lie
hours ahead (the state the workers hold, `timers_bench.bulk_events`), then, once the
workers have read them, `--window` tickets whose deadlines fall uniformly over
[t0 + lead, t0 + lead + spread] (`timers_bench.window_events`: created before t0 on a
target of lead + spread seconds; their 50 % warnings fall due during the run too).

The oracle is `sla-worker replay` of the same input log (every value produced, in the
order produced, kept in a file) with `--partitions` (an event-time clock per input
partition, as the worker keeps) and `--until` the instant the run is settled at: the
pure core on the same inputs. The workers' outputs, read with read_committed once
`devtools.harness.settled` says everything due by that instant fired, must equal it as
exact sets of `event_id` (and the same content per id), with no id published twice.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from aiokafka import AIOKafkaConsumer
from live import Cleanup, Run, bench_worker, committed, produce, say
from timers_bench import bulk_events, policy_text, summary, window_events

from devtools.harness import WorkerProcess, create_topics, read_all, settled
from tests.integration.fault_log import Published
from worker.kafka.topics import default_partition

SESSION_TIMEOUT = 45  # seconds, as deploy/k8s/statefulset.yaml sets it


def arguments(doc: str) -> argparse.ArgumentParser:
    """The options both benchmarks take: the workload, the broker, the waits."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=300_000, help="bulk tickets held")
    parser.add_argument("--window", type=int, default=3000, help="tickets due in the run")
    parser.add_argument("--lead", type=float, default=20, help="t0 -> the first deadline (s)")
    parser.add_argument("--spread", type=float, default=120, help="deadlines over (s)")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--timeout", type=float, default=3600, help="per wait (s)")
    parser.add_argument("--bootstrap", help="default: KAFKA_BOOTSTRAP_SERVERS, else own broker")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir and topics")
    return parser


def load_average() -> tuple[float, float, float]:
    one, five, fifteen = Path("/proc/loadavg").read_text().split()[:3]
    return float(one), float(five), float(fifteen)


class LoadWatch:
    """The 1-minute load average, sampled every few seconds in a thread while a run lasts
    (other work on the machine makes lateness worse: the report says how busy it was)."""

    def __init__(self, every: float = 5) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, args=(every,), daemon=True)

    def _watch(self, every: float) -> None:
        while not self._stop.is_set():
            self.samples.append(load_average()[0])
            self._stop.wait(every)

    def __enter__(self) -> LoadWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> str:
        if not self.samples:
            return "no samples"
        mean = sum(self.samples) / len(self.samples)
        return (
            f"1-min load average {min(self.samples):.1f}-{max(self.samples):.1f}, mean {mean:.1f}"
        )


@dataclass
class Workload:
    """A run's input topic and policy, and the log of every value produced to it."""

    run: Run
    partitions: int
    lead: float  # t0 -> the first window deadline
    spread: float  # seconds over which window deadlines fall
    policy: Path = field(init=False)
    log: Path = field(init=False)
    t0: datetime | None = None

    def __post_init__(self) -> None:
        self.policy = self.run.directory / "policy.yaml"
        self.policy.write_text(policy_text(round(self.lead + self.spread)))
        subprocess.run(
            [sys.executable, "-m", "worker", "policies", "validate", str(self.policy)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        self.log = self.run.directory / "input.jsonl"
        self.log.write_bytes(b"")
        asyncio.run(create_topics(self.run.bootstrap, [self.run.topic], self.partitions))

    @property
    def outputs(self) -> dict[str, str]:
        return {"warning": f"{self.run.run_id}-warnings", "breach": f"{self.run.run_id}-breaches"}

    def produce(self, records: Iterable[tuple[bytes, bytes]]) -> int:
        """Produce keyed records to the input topic, each value also appended to the log."""
        with self.log.open("ab") as log:
            count, seconds = asyncio.run(
                produce(self.run.bootstrap, self.run.topic, _tee(records, log))
            )
        say(f"produced {count:,} events in {seconds:.1f} s")
        return count

    def produce_bulk(self, tickets: int) -> int:
        return self.produce(bulk_events(tickets))

    def produce_window(self, count: int, seed: int) -> datetime:
        """The window tickets: deadlines over [t0 + lead, t0 + lead + spread]; t0 = now."""
        self.t0 = datetime.now(UTC)
        self.produce(window_events(count, self.t0, self.spread, seed))
        return self.t0

    @property
    def window(self) -> tuple[float, float]:
        """The window's deadlines, as epoch seconds: (first, last)."""
        assert self.t0 is not None, "the window is not produced yet"
        first = self.t0.timestamp() + self.lead
        return first, first + self.spread

    def worker(
        self, cleanup: Cleanup, name: str, *, standbys: int, static: bool = True
    ) -> WorkerProcess:
        """A worker as deploy/k8s/statefulset.yaml runs one: static member `name` (the pod
        name; not `static`: a dynamic member, which leaves the group on SIGTERM), its own
        state directory, `standbys` warm standbys, a 45 s session."""
        extra = [
            *("--log-level", "INFO", "--standby-replicas", str(standbys)),
            *("--session-timeout-seconds", str(SESSION_TIMEOUT)),
            *("--state-dir", str(self.run.directory / name / "state")),
        ]
        if static:
            extra += ["--instance-id", name]
        made = bench_worker(
            bootstrap=self.run.bootstrap,
            app_id=self.run.run_id,
            directory=self.run.directory / name,
            input_topic=self.run.topic,
            outputs_prefix=f"{self.run.run_id}-",
            partitions=self.partitions,
            policy=self.policy,
            extra=tuple(extra),
        )
        cleanup.callback(made.stop_quietly)
        return made

    def partition_of(self, ticket_id: str) -> int:
        return default_partition(ticket_id.encode(), self.partitions)

    def replay(self, until: datetime) -> dict[str, Any]:
        """`sla-worker replay` of the log, one clock per partition: {event_id: event}."""
        started = time.perf_counter()
        done = subprocess.run(
            [
                *(sys.executable, "-m", "worker", "replay", str(self.log)),
                *("--policies", str(self.policy), "--until", until.isoformat()),
                *("--partitions", str(self.partitions)),
            ],
            capture_output=True,
            check=True,
        )
        expected = {}
        for raw in done.stdout.splitlines():
            event = json.loads(raw)
            expected[event["event_id"]] = event
        say(f"replay of the log: {len(expected):,} events in {time.perf_counter() - started:.1f} s")
        return expected


def _tee(records: Iterable[tuple[bytes, bytes]], log: IO[bytes]) -> Iterator[tuple[bytes, bytes]]:
    for key, value in records:
        log.write(value + b"\n")
        yield key, value


# --- waiting for the workers ----------------------------------------------------------------


def wait_committed(bootstrap: str, group: str, topic: str, expected: int, timeout: float) -> float:
    """Until the group's committed offsets on `topic` reach `expected`; the seconds."""
    started = time.perf_counter()
    last_print = started
    while (done := asyncio.run(committed(bootstrap, group, topic))) < expected:
        now = time.perf_counter()
        if now - started > timeout:
            raise TimeoutError(f"committed {done:,} of {expected:,} in {timeout} s")
        if now - last_print >= 30:
            last_print = now
            say(f"  {now - started:6.1f} s: {done:,} of {expected:,} committed")
        time.sleep(1)
    return time.perf_counter() - started


def readyz(worker: WorkerProcess) -> tuple[int, Any]:
    try:
        return worker.get("/readyz")
    except (OSError, ValueError):
        return 0, {}


def owned(worker: WorkerProcess) -> list[int]:
    """The partitions the worker runs now ([] while it does not answer 200)."""
    status, body = readyz(worker)
    return list(body.get("partitions", [])) if status == 200 else []


def wait_standbys(workers: Sequence[WorkerProcess], partitions: int, timeout: float) -> float:
    """Until every partition has a standby on some worker and all are caught up (lag 0)."""
    started = time.perf_counter()
    while True:
        rows = []
        for worker in workers:
            worker.check_alive()
            rows += readyz(worker)[1].get("standbys", [])
        warm = {r["partition"] for r in rows if r["lag"] == 0}
        if len(warm) >= partitions:
            return time.perf_counter() - started
        if time.perf_counter() - started > timeout:
            raise TimeoutError(f"standbys caught up: {sorted(warm)} of {partitions} partitions")
        time.sleep(0.5)


RESTORES = ("restored partitions", "promoted standby", "from the local snapshot")


def say_restores(workers: Sequence[WorkerProcess]) -> None:
    """Each worker's log lines on its restores, promotions and snapshots, in its order."""
    for worker in workers:
        for line in worker.log_path.read_text(errors="replace").splitlines():
            if any(what in line for what in RESTORES):
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                say(f"  {worker.directory.name} {entry['time'][11:]}: {entry['message']}")


def wait_until(epoch: float) -> None:
    if (wait := epoch - time.time()) > 0:
        time.sleep(wait)


# --- what they publish ----------------------------------------------------------------------


class Receiver:
    """A read_committed consumer of the output topics in a thread: when each published
    event became visible to a consumer (its transaction committed), by event id. The
    record's own timestamp is the worker's send time, inside the open transaction."""

    def __init__(self, bootstrap: str, topics: Sequence[str]) -> None:
        self.received: dict[str, float] = {}
        self._args = (bootstrap, tuple(topics))
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._consume()), daemon=True)

    async def _consume(self) -> None:
        bootstrap, topics = self._args
        consumer = AIOKafkaConsumer(
            *topics,
            bootstrap_servers=bootstrap,
            group_id=f"receiver-{time.time_ns()}",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            isolation_level="read_committed",
            fetch_max_wait_ms=50,
        )
        await consumer.start()
        self._ready.set()
        try:
            while not self._stop.is_set():
                batches = await consumer.getmany(timeout_ms=100)
                now = time.time()
                for records in batches.values():
                    for record in records:
                        event_id = json.loads(record.value or b"{}").get("event_id")
                        self.received.setdefault(event_id, now)
        finally:
            await consumer.stop()

    def __enter__(self) -> Receiver:
        self._thread.start()
        self._ready.wait(60)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


@dataclass(frozen=True)
class Lateness:
    """One published event's lateness: its partition, due instant, and seconds late by
    its record timestamp and by when a read_committed consumer received it."""

    event_id: str
    kind: str
    partition: int
    due: float
    by_timestamp: float
    by_receipt: float | None


def lateness(
    workload: Workload, outputs: Published, records: dict[str, float], receiver: Receiver
) -> list[Lateness]:
    rows = []
    for event_id, event in outputs.events.items():
        due = datetime.fromisoformat(event["due_at"]).timestamp()
        seen = receiver.received.get(event_id)
        rows.append(
            Lateness(
                event_id,
                event["type"],
                workload.partition_of(event["ticket_id"]),
                due,
                records[event_id] - due,
                None if seen is None else seen - due,
            )
        )
    return rows


def stats(values: Sequence[float]) -> str:
    return f"n {len(values):,}: {summary(list(values))}" if values else "none"


@dataclass
class Verdict:
    expected: int
    published: int
    missing: list[str]
    invented: list[str]
    different: list[str]
    repeats: int

    @property
    def exact(self) -> bool:
        return not (self.missing or self.invented or self.different or self.repeats)

    def line(self) -> str:
        return (
            f"{self.expected:,} expected by replay, {self.published:,} published "
            f"(read_committed): {len(self.missing)} missing, {len(self.invented)} invented, "
            f"{len(self.different)} different, {self.repeats} repeats"
        )

    def short(self) -> str:
        """For a script's last line."""
        return f"{len(self.missing)} missing, {len(self.invented)} invented, {self.repeats} repeats"

    def say(self, load: LoadWatch, setup: str) -> None:
        """The run's load, its setup and the comparison with replay (with examples)."""
        say(f"load during the run: {load.summary()}")
        say(setup)
        say(f"correctness: {self.line()}")
        if self.missing or self.invented or self.different:
            say(
                f"  e.g. missing {self.missing[:5]}, invented {self.invented[:5]}, "
                f"different {self.different[:5]}"
            )


async def settle_and_read(
    workload: Workload, workers: Sequence[WorkerProcess], until: datetime, timeout: float
) -> tuple[Published, dict[str, float]]:
    """Once the workers have fired everything due by `until`: the outputs (read_committed)
    and each event's record timestamp (epoch seconds)."""
    await settled(workers, until, timeout=timeout)
    records = []
    for topic in workload.outputs.values():
        records += await read_all(workload.run.bootstrap, topic)
    # `Published` keeps the bodies; the timestamps are those of each id's first copy.
    stamps: dict[str, float] = {}
    for record in records:
        stamps.setdefault(json.loads(record.value)["event_id"], record.timestamp_ms / 1000)
    return Published.of(records), stamps


def verdict(expected: dict[str, Any], outputs: Published) -> Verdict:
    got = outputs.events
    return Verdict(
        expected=len(expected),
        published=len(got),
        missing=sorted(set(expected) - set(got)),
        invented=sorted(set(got) - set(expected)),
        different=sorted(i for i in expected if i in got and got[i] != expected[i]),
        repeats=sum(outputs.repeats.values()) + len(outputs.conflicts),
    )


def judge(
    workload: Workload,
    until: datetime,
    outputs: Published,
    stamps: dict[str, float],
    receiver: Receiver,
) -> tuple[Verdict, list[Lateness]]:
    """The outputs against replay of the log up to `until`, and each one's lateness."""
    return verdict(workload.replay(until), outputs), lateness(workload, outputs, stamps, receiver)


def settle_instant(workload: Workload, margin: float = 5) -> datetime:
    """After the window's last deadline: everything the run makes due is due by then."""
    return datetime.fromtimestamp(workload.window[1] + margin, UTC)


def report(
    workload: Workload,
    rows: Sequence[Lateness],
    groups: dict[str, Any],
) -> dict[str, list[float]]:
    """Say the lateness of the window's breaches and warnings (due within the run), by
    record timestamp and by receipt, overall and per group (`groups`: label -> a test of
    a `Lateness`); return each group's breach lateness by record timestamp."""
    first, last = workload.window
    during = [r for r in rows if first - 1 <= r.due <= last + 1]
    result: dict[str, list[float]] = {}
    for label, test in {"all": lambda r: True, **groups}.items():
        for kind in ("breach", "warning"):
            chosen = [r for r in during if r.kind == f"sla-{kind}" and test(r)]
            stamped = [r.by_timestamp for r in chosen]
            received = [r.by_receipt for r in chosen if r.by_receipt is not None]
            say(f"{kind} lateness, {label}: by record timestamp {stats(stamped)}")
            say(f"{kind} lateness, {label}: by receipt (read_committed) {stats(received)}")
            if kind == "breach":
                result[label] = stamped
    return result
