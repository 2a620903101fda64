"""Shared pieces of the live-worker benchmarks (`worker_bench.py`, `timers_bench.py`).

A broker (given, or a private one started with `scripts/kafka-local` in a temporary run
directory and stopped again), topic creation and deletion, a fast keyed producer, a bare
aiokafka consumer, and `sla-worker worker` as a subprocess with its /metrics, /readyz and
RSS. Everything started here is stopped by `Cleanup` on exit, also on Ctrl-C, SIGTERM and
exceptions.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from prometheus_client.parser import text_string_to_metric_families

from worker.settings import worker_command

ROOT = Path(__file__).resolve().parent.parent
KAFKA_LOCAL = ROOT / "scripts" / "kafka-local"


class Cleanup(contextlib.ExitStack):
    """An exit stack that also runs on SIGTERM/SIGHUP (turned into KeyboardInterrupt)."""

    def __enter__(self) -> Cleanup:
        super().__enter__()

        def interrupt(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt(f"signal {signum}")

        for sig in (signal.SIGTERM, signal.SIGHUP):
            previous = signal.signal(sig, interrupt)
            self.callback(signal.signal, sig, previous)
        return self


def say(message: str) -> None:
    print(message, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- broker -------------------------------------------------------------------------------


def broker(cleanup: Cleanup, bootstrap: str | None) -> str:
    """The bootstrap address: the given one, KAFKA_BOOTSTRAP_SERVERS, or a private broker
    (scripts/kafka-local in a temporary SLA_KAFKA_HOME, stopped on exit)."""
    bootstrap = bootstrap or os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if bootstrap:
        return bootstrap
    home = tempfile.mkdtemp(prefix="sla-bench-kafka-")
    env = {**os.environ, "SLA_KAFKA_HOME": home, "SLA_KAFKA_HEAP": "1g"}

    def stop() -> None:
        subprocess.run(
            [sys.executable, str(KAFKA_LOCAL), "stop"],
            env=env,
            stdout=subprocess.DEVNULL,
            timeout=90,
            check=False,
        )
        shutil.rmtree(home, ignore_errors=True)

    cleanup.callback(stop)
    started = subprocess.run(
        [sys.executable, str(KAFKA_LOCAL), "start", "--owner-pid", str(os.getpid())],
        env=env,
        stdout=subprocess.PIPE,
        timeout=600,
        check=True,
    )
    address = started.stdout.decode().strip().splitlines()[-1]
    say(f"started a private broker at {address} (run dir {home})")
    return address


async def create_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, partitions, 1) for n in names])
    finally:
        await admin.close()


async def delete_topics(bootstrap: str, prefix: str) -> list[str]:
    """Delete every topic whose name starts with `prefix` (this run's topics)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if names:
            await admin.delete_topics(names)
        return names
    finally:
        await admin.close()


async def committed(bootstrap: str, group: str, topic: str) -> int:
    """Sum of the group's committed offsets on `topic` (= records consumed and committed,
    for a topic written from offset 0); read from Kafka, without touching the worker."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return sum(max(m.offset, 0) for tp, m in offsets.items() if tp.topic == topic)


def drop_topics_on_exit(cleanup: Cleanup, bootstrap: str, prefix: str) -> None:
    def drop() -> None:
        try:
            asyncio.run(asyncio.wait_for(delete_topics(bootstrap, prefix), 60))
        except Exception as exc:  # cleanup must not hide the run's own error
            say(f"(could not delete topics {prefix}*: {exc!r})")

    cleanup.callback(drop)


@dataclass(frozen=True)
class Run:
    """One benchmark run: its broker, id (the prefix of its topics), temp dir, input topic."""

    bootstrap: str
    run_id: str
    directory: Path
    topic: str


def start_run(cleanup: Cleanup, prefix: str, bootstrap: str | None, keep: bool) -> Run:
    """A broker, a fresh run id and temp dir; both removed on exit unless `keep`."""
    address = broker(cleanup, bootstrap)
    run_id = f"{prefix}-{uuid.uuid4().hex[:8]}"
    directory = Path(tempfile.mkdtemp(prefix=f"sla-{run_id}-"))
    if not keep:
        cleanup.callback(shutil.rmtree, directory, ignore_errors=True)
        drop_topics_on_exit(cleanup, address, run_id)
    say(f"run {run_id}: broker {address}, dir {directory}, python {sys.version.split()[0]}")
    return Run(address, run_id, directory, f"{run_id}-tickets")


async def produce(
    bootstrap: str, topic: str, records: Iterable[tuple[bytes, bytes]], window: int = 20_000
) -> tuple[int, float]:
    """Send keyed records (default murmur2 partitioner, acks=all); (count, seconds)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=20,
        max_batch_size=1 << 20,
        max_request_size=8 << 20,
    )
    await producer.start()
    started = time.perf_counter()
    count = 0
    try:
        pending = []
        for key, value in records:
            pending.append(await producer.send(topic, value=value, key=key))
            count += 1
            if len(pending) >= window:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
        await producer.flush()
    finally:
        await producer.stop()
    return count, time.perf_counter() - started


@dataclass
class RawResult:
    records: int
    seconds: float  # first record received -> last record received
    join_seconds: float  # consumer start -> first record
    decode: str

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else float("inf")


async def raw_consume(
    bootstrap: str, topic: str, expected: int, *, decode: bool = True, timeout: float = 300
) -> RawResult:
    """A bare AIOKafkaConsumer (fresh group, from earliest) reading `expected` records,
    each value decoded with json.loads when `decode`."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"raw-{topic}-{time.time_ns()}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    started = time.perf_counter()
    await consumer.start()
    first = None
    count = 0
    loads = json.loads
    try:
        while count < expected:
            if time.perf_counter() - started > timeout:
                raise TimeoutError(f"raw consumer read {count} of {expected} in {timeout} s")
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for records in batches.values():
                if first is None:
                    first = time.perf_counter()
                if decode:
                    for record in records:
                        loads(record.value)
                count += len(records)
        ended = time.perf_counter()
    finally:
        await consumer.stop()
    assert first is not None
    return RawResult(count, ended - first, first - started, "json.loads" if decode else "none")


# --- the worker subprocess ------------------------------------------------------------------


@dataclass
class Metrics:
    """One /metrics scrape: samples by name, each a list of (labels, value)."""

    samples: dict[str, list[tuple[dict[str, str], float]]]

    @classmethod
    def parse(cls, text: str) -> Metrics:
        samples: dict[str, list[tuple[dict[str, str], float]]] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
        return cls(samples)

    def total(self, name: str, **match: str) -> float:
        return sum(
            value
            for labels, value in self.samples.get(name, [])
            if all(labels.get(k) == v for k, v in match.items())
        )

    def values(self, name: str) -> list[tuple[dict[str, str], float]]:
        return self.samples.get(name, [])

    def consumed(self) -> int:
        return int(self.total("sla_events_consumed_total"))

    def lag(self) -> tuple[int, int]:
        """(sum of per-partition consumer lag, number of partitions reporting it)."""
        values = self.values("sla_consumer_lag_messages")
        return int(sum(v for _, v in values)), len(values)

    def histogram(self, name: str) -> tuple[int, float, list[tuple[float, int]]]:
        """(count, sum, cumulative buckets) of an unlabelled histogram."""
        buckets = sorted(
            (float(labels["le"]), int(value))
            for labels, value in self.values(f"{name}_bucket")
            if "le" in labels
        )
        return int(self.total(f"{name}_count")), self.total(f"{name}_sum"), buckets


@dataclass
class WorkerProcess:
    """`python -m worker worker` with its own port and log file."""

    bootstrap: str
    app_id: str
    directory: Path
    input_topic: str
    outputs_prefix: str
    partitions: int = 6
    policy: Path | None = None
    extra: tuple[str, ...] = ()
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    _log: Any = None

    @property
    def log_path(self) -> Path:
        return self.directory / "worker.log"

    def args(self) -> list[str]:
        args = worker_command(
            bootstrap_servers=self.bootstrap,
            app_id=self.app_id,
            partitions=self.partitions,
            input_topics=self.input_topic,
            warnings_topic=f"{self.outputs_prefix}warnings",
            breaches_topic=f"{self.outputs_prefix}breaches",
            dead_letter_topic=f"{self.outputs_prefix}dead-letter",
            web_host="127.0.0.1",
            web_port=self.port,
        )
        args += self.extra
        if self.policy is not None:
            args += ["--policies", str(self.policy)]
        return args

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._close_log()
        self._log = self.log_path.open("ab")
        self.started_at = time.perf_counter()
        self.process = subprocess.Popen(
            self.args(), stdout=self._log, stderr=subprocess.STDOUT, cwd=self.directory
        )

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def check_alive(self) -> None:
        if not self.alive():
            code = None if self.process is None else self.process.returncode
            raise RuntimeError(f"worker exited ({code}):\n{self.tail()}")

    def get(self, path: str, timeout: float = 10) -> tuple[int, bytes]:
        url = f"http://127.0.0.1:{self.port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def metrics(self) -> Metrics | None:
        try:
            status, body = self.get("/metrics")
        except (OSError, ValueError):
            return None
        return Metrics.parse(body.decode()) if status == 200 else None

    def is_ready(self) -> bool:
        try:
            return self.get("/readyz", timeout=2)[0] == 200
        except (OSError, ValueError):
            return False

    def wait_ready(self, timeout: float, poll: float = 0.25) -> float:
        """Seconds from start() until /readyz answers 200."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            self.check_alive()
            if self.is_ready():
                return time.perf_counter() - self.started_at
            time.sleep(poll)
        raise TimeoutError(f"worker not ready after {timeout} s:\n{self.tail()}")

    def rss_bytes(self) -> int:
        return _status_kib(self.pid, "VmRSS") * 1024

    def hwm_bytes(self) -> int:
        return _status_kib(self.pid, "VmHWM") * 1024

    def cpu_seconds(self) -> float:
        """User + system CPU time of the worker process so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def terminate(self, timeout: float = 120) -> float:
        """SIGTERM and wait; seconds until it exited."""
        assert self.process is not None
        started = time.perf_counter()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(30)
            raise
        finally:
            self._close_log()
        return time.perf_counter() - started

    def stop_quietly(self) -> None:
        if self.alive():
            assert self.process is not None
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(30)
        self._close_log()

    def tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


def _status_kib(pid: int, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {name} in /proc/{pid}/status")


@dataclass
class Progress:
    """Polls of the worker's consumed count until it reaches a target."""

    polls: list[tuple[float, int, int, int]] = field(default_factory=list)  # t, consumed, lag, n

    def first_consumed(self) -> tuple[float, int] | None:
        for t, consumed, _, _ in self.polls:
            if consumed > 0:
                return t, consumed
        return None


def wait_consumed(
    worker: WorkerProcess,
    expected: int,
    *,
    timeout: float,
    poll: float = 0.5,
    on_poll: Callable[[float, int, int], None] | None = None,
) -> Progress:
    """Poll /metrics until `sla_events_consumed_total` (all outcomes) reaches `expected`,
    or (past 90 % of it) the consumer lag is 0 on every partition with nothing consumed
    for 5 s."""
    progress = Progress()
    deadline = time.perf_counter() + timeout
    stable_since = None
    last = -1
    while True:
        worker.check_alive()
        now = time.perf_counter()
        if now > deadline:
            raise TimeoutError(f"worker consumed {last} of {expected} in {timeout} s")
        metrics = worker.metrics()
        if metrics is not None:
            consumed = metrics.consumed()
            lag, reporting = metrics.lag()
            t = time.perf_counter()
            progress.polls.append((t, consumed, lag, reporting))
            if on_poll is not None:
                on_poll(t, consumed, lag)
            if consumed >= expected:
                return progress
            if consumed != last:
                stable_since = t
                last = consumed
            elif (
                consumed >= 0.9 * expected
                and reporting >= worker.partitions
                and lag == 0
                and stable_since is not None
                and t - stable_since > 5
            ):
                return progress
        time.sleep(max(0.0, poll - (time.perf_counter() - now)))
