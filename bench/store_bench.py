"""Local state stores for a partition's tickets (issue #23, groundwork): RocksDB, LMDB
and SQLite against the in-RAM dict the worker keeps today, on the worker's workload.

Values are realistic ticket state: a pool of `--pool` tickets is built by replaying the
first 60 % of `worker.traffic.synthetic_stream` (open, paused and solved tickets) and
dumping each as the worker stores it (`state_codec.dump_ticket` plus the partition, compact
JSON); ticket n gets pool value n mod pool under its own id `T-<n:08d>`. Keys are ticket
ids (text), values bytes; the partition's clock record (event time and input offsets, as
`worker.tasks.partition` writes it) is one more key, `\\x00clock`.

Stores, each in a child process of its own (so RSS is its own) on a fresh directory:

- `dict`: today's `dict[str, bytes]`, the floor (no durability at all);
- `rocksdb-sync` / `rocksdb`: rocksdict (RocksDB) in raw mode, default options, one
  `WriteBatch` per commit, `WriteOptions.sync` True (the WAL is fdatasync'ed at every
  commit) / False (the WAL is written but not synced: a process crash loses nothing, a
  power loss the last commits, recovery to a consistent point in time);
- `lmdb-sync` / `lmdb-nometasync` / `lmdb-nosync`: py-lmdb, one write transaction per
  commit; default (data and meta page synced at commit) / `metasync=False` (data synced,
  meta page not: a system crash can undo the last commit, never corrupt) / `sync=False`
  (no sync: per LMDB's docs a system crash can corrupt the database);
- `sqlite-full` / `sqlite-normal`: sqlite3, WAL mode, one table `state(key TEXT PRIMARY
  KEY, value BLOB)`, `BEGIN`, upserts and deletes, `COMMIT`; `synchronous=FULL` (the WAL
  synced at every commit) / `NORMAL` (synced at checkpoints only: a power loss can roll
  back the last commits, never corrupt).

Phases, each timed in the store's child process:

1. bulk load of `--tickets` tickets in random id order, `--chunk` per commit;
2. `--steps` steps: 90 updates of random tickets, 10 new tickets, 10 deletes of random
   tickets and the clock record, one atomic commit each (steps/s from the sum of the
   commit times; p50/p99 of one commit; bytes the process wrote to storage per step,
   `/proc/self/io` write_bytes, background compaction included);
3. `--reads` point reads of random live tickets (the timer loop), one read transaction
   each where the store has them;
4. a full scan (the store's part of a full restore; a peer column gives `json.loads` of
   the same values, which a restore also pays);
5. after close, in a second fresh process: reopen (open, then read the clock record:
   restart-to-ready without a scan), the same reads, a full scan, disk size (allocated
   blocks) and RSS after each (VmRSS, split into anonymous and file-backed, and
   getrusage's peak). LMDB's pages are file-backed mappings: they count in VmRSS
   (RssFile) once touched, but are page cache the kernel can reclaim. The OS page cache
   is warm (the files were just written); caches are not dropped.

Crash probes per store, on a small store of their own: (a) a child commits steps 1-3,
then writes step 4's clock record and 5,000 puts into an open batch and `os._exit`s
before the commit; (b) a child commits steps in a loop and is SIGKILLed at a random
moment (mid-commit some of the time). The parent reopens and checks that the contents
equal exactly the state after the step the clock record names (all-or-nothing, clock
matching the data). A process crash only: the kernel keeps what was written before it;
power loss is not simulated.

    python bench/store_bench.py [--tickets 500000] [--steps 300] [--reads 20000]
                                [--stores dict,rocksdb,...] [--seed 7]

(`--max-step-seconds`, default 5, ends the steps of a slow store early; the output says
how many ran. `lmdb-nometasync` runs only when named in `--stores`.)

Last line: `store steps/s: <store> <N>, ...` (each store's steps/s).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any, NoReturn

import lmdb
import rocksdict

from worker.core.engine import Engine
from worker.core.state_codec import dump_ticket
from worker.presets import load_presets
from worker.replay import Replay
from worker.traffic import synthetic_stream

CLOCK = "\x00clock"
"""The partition's clock record: sorts first, never a ticket id in practice (LMDB refuses
the empty key the changelog uses)."""

PLACEHOLDER = b"@@ID@@"
START_US = 1_796_000_000_000_000


# --- the stores -------------------------------------------------------------------------


class Store:
    """One partition's state: put/delete a batch and the clock record atomically, read one
    ticket, scan all."""

    durability = ""

    def open(self, path: Path) -> None:
        raise NotImplementedError

    def write(self, puts: list[tuple[str, bytes]], deletes: list[str], clock: bytes) -> None:
        """One atomic, committed batch."""
        raise NotImplementedError

    def crash_mid_batch(self, puts: list[tuple[str, bytes]], clock: bytes) -> NoReturn:
        """Start a batch, write the clock record and then `puts`, and exit before the
        commit."""
        raise NotImplementedError

    def get(self, key: str) -> bytes | None:
        raise NotImplementedError

    def scan(self) -> Iterator[tuple[str, bytes]]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class DictStore(Store):
    durability = "none (RAM; restored from the changelog)"

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def open(self, path: Path) -> None:
        pass

    def write(self, puts: list[tuple[str, bytes]], deletes: list[str], clock: bytes) -> None:
        data = self.data
        for key, value in puts:
            data[key] = value
        for key in deletes:
            data.pop(key, None)
        data[CLOCK] = clock

    def get(self, key: str) -> bytes | None:
        return self.data.get(key)

    def scan(self) -> Iterator[tuple[str, bytes]]:
        return iter(self.data.items())

    def close(self) -> None:
        pass


class RocksStore(Store):
    def __init__(self, sync: bool) -> None:
        self.sync = sync
        self.durability = (
            "WAL fdatasync per commit" if sync else "WAL written, not synced (process-crash safe)"
        )

    def open(self, path: Path) -> None:
        options = rocksdict.Options(raw_mode=True)
        options.create_if_missing(True)
        self.db = rocksdict.Rdict(str(path), options)
        self.write_options = rocksdict.WriteOptions()
        self.write_options.sync = self.sync

    def _batch(self, puts: list[tuple[str, bytes]], clock: bytes) -> rocksdict.WriteBatch:
        batch = rocksdict.WriteBatch(raw_mode=True)
        batch.put(CLOCK.encode(), clock)
        for key, value in puts:
            batch.put(key.encode(), value)
        return batch

    def write(self, puts: list[tuple[str, bytes]], deletes: list[str], clock: bytes) -> None:
        batch = self._batch(puts, clock)
        for key in deletes:
            batch.delete(key.encode())
        self.db.write(batch, self.write_options)

    def crash_mid_batch(self, puts: list[tuple[str, bytes]], clock: bytes) -> NoReturn:
        self._batch(puts, clock)
        os._exit(17)

    def get(self, key: str) -> bytes | None:
        value = self.db.get(key.encode())
        assert value is None or isinstance(value, bytes)
        return value

    def scan(self) -> Iterator[tuple[str, bytes]]:
        for key, value in self.db.items():
            assert isinstance(key, bytes) and isinstance(value, bytes)
            yield key.decode(), value

    def close(self) -> None:
        self.db.close()


class LmdbStore(Store):
    MAP_SIZE = 64 << 30  # address space, not disk: the file grows with the pages in use

    def __init__(self, sync: bool, metasync: bool) -> None:
        self.sync = sync
        self.metasync = metasync
        if not sync:
            self.durability = "no sync (a system crash can corrupt)"
        elif not metasync:
            self.durability = "data fdatasync per commit, meta page not"
        else:
            self.durability = "data + meta fdatasync per commit"

    def open(self, path: Path) -> None:
        self.env = lmdb.open(
            str(path), map_size=self.MAP_SIZE, sync=self.sync, metasync=self.metasync
        )

    def write(self, puts: list[tuple[str, bytes]], deletes: list[str], clock: bytes) -> None:
        txn = self.env.begin(write=True)
        try:
            txn.put(CLOCK.encode(), clock)
            for key, value in puts:
                txn.put(key.encode(), value)
            for key in deletes:
                txn.delete(key.encode())
        except BaseException:
            txn.abort()
            raise
        txn.commit()

    def crash_mid_batch(self, puts: list[tuple[str, bytes]], clock: bytes) -> NoReturn:
        txn = self.env.begin(write=True)
        txn.put(CLOCK.encode(), clock)
        for key, value in puts:
            txn.put(key.encode(), value)
        os._exit(17)

    def get(self, key: str) -> bytes | None:
        with self.env.begin() as txn:
            return txn.get(key.encode())

    def scan(self) -> Iterator[tuple[str, bytes]]:
        with self.env.begin() as txn:
            for key, value in txn.cursor():
                yield key.decode(), value

    def close(self) -> None:
        self.env.close()


class SqliteStore(Store):
    def __init__(self, synchronous: str) -> None:
        self.synchronous = synchronous
        self.durability = (
            "WAL fsync per commit"
            if synchronous == "FULL"
            else "WAL synced at checkpoints (process-crash safe)"
        )

    def open(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path / "state.db", isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(f"PRAGMA synchronous={self.synchronous}")
        self.db.execute("CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value BLOB)")

    UPSERT = (
        "INSERT INTO state (key, value) VALUES (?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
    )

    def write(self, puts: list[tuple[str, bytes]], deletes: list[str], clock: bytes) -> None:
        db = self.db
        db.execute("BEGIN")
        try:
            db.execute(self.UPSERT, (CLOCK, clock))
            db.executemany(self.UPSERT, puts)
            db.executemany("DELETE FROM state WHERE key = ?", [(key,) for key in deletes])
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def crash_mid_batch(self, puts: list[tuple[str, bytes]], clock: bytes) -> NoReturn:
        self.db.execute("BEGIN")
        self.db.execute(self.UPSERT, (CLOCK, clock))
        self.db.executemany(self.UPSERT, puts)
        os._exit(17)

    def get(self, key: str) -> bytes | None:
        row = self.db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def scan(self) -> Iterator[tuple[str, bytes]]:
        yield from self.db.execute("SELECT key, value FROM state")

    def close(self) -> None:
        self.db.close()


STORES: dict[str, Callable[[], Store]] = {
    "dict": DictStore,
    "rocksdb-sync": lambda: RocksStore(sync=True),
    "rocksdb": lambda: RocksStore(sync=False),
    "lmdb-sync": lambda: LmdbStore(sync=True, metasync=True),
    "lmdb-nometasync": lambda: LmdbStore(sync=True, metasync=False),
    "lmdb-nosync": lambda: LmdbStore(sync=False, metasync=False),
    "sqlite-full": lambda: SqliteStore("FULL"),
    "sqlite-normal": lambda: SqliteStore("NORMAL"),
}
DEFAULT = [name for name in STORES if name != "lmdb-nometasync"]


# --- the workload -----------------------------------------------------------------------


def build_pool(size: int, seed: int, start: datetime | None = None) -> list[tuple[bytes, bytes]]:
    """Realistic stored values, as (prefix, suffix) around the ticket id (`start`: of the
    stream replayed; default `worker.traffic.START`)."""
    if start is None:
        lines, _ = synthetic_stream(size * 10, size, seed)
    else:
        lines, _ = synthetic_stream(size * 10, size, seed, start=start)
    replay = Replay(Engine(load_presets()), lambda event: None, lambda rejection: None)
    replay.feed(lines[: len(lines) * 6 // 10])
    pool = []
    for ticket in replay.tickets.values():
        stored = {**dump_ticket(ticket), "p": 0}
        stored["id"] = PLACEHOLDER.decode()
        prefix, suffix = json.dumps(stored, separators=(",", ":")).encode().split(PLACEHOLDER)
        pool.append((prefix, suffix))
    return pool


def ticket_id(n: int) -> str:
    return f"T-{n:08d}"


def clock_value(step: int) -> bytes:
    offsets = {"tickets": step * 110}
    return json.dumps({"event_time_us": START_US + step * 1_000_000, "offsets": offsets}).encode()


class Workload:
    """The same tickets, steps and reads in every child (seeded)."""

    def __init__(self, pool: list[tuple[bytes, bytes]], tickets: int, seed: int) -> None:
        self.pool = pool
        self.tickets = tickets
        self.rng = random.Random(seed)

    def value(self, key: str, variant: int) -> bytes:
        prefix, suffix = self.pool[variant % len(self.pool)]
        return prefix + key.encode() + suffix

    def bulk(self, chunk: int) -> Iterator[list[tuple[str, bytes]]]:
        order = list(range(self.tickets))
        self.rng.shuffle(order)
        for start in range(0, len(order), chunk):
            yield [
                (ticket_id(n), self.value(ticket_id(n), n)) for n in order[start : start + chunk]
            ]

    def steps(self, count: int) -> Iterator[tuple[list[tuple[str, bytes]], list[str]]]:
        """(puts, deletes) of each step: 90 updates, 10 new tickets, 10 deletes."""
        rng, fresh = self.rng, self.tickets
        live = self.live = list(range(self.tickets))  # as of the last step yielded
        for _ in range(count):
            chosen = rng.sample(range(len(live)), 100)
            puts = [(ticket_id(live[i]), b"") for i in chosen[:90]]
            puts = [(key, self.value(key, rng.randrange(len(self.pool)))) for key, _ in puts]
            deletes = [ticket_id(live[i]) for i in chosen[90:]]
            for i in sorted(chosen[90:], reverse=True):
                live[i] = live[-1]
                live.pop()
            for _ in range(10):
                key = ticket_id(fresh)
                puts.append((key, self.value(key, fresh)))
                live.append(fresh)
                fresh += 1
            yield puts, deletes

    def reads(self, count: int) -> list[str]:
        return [ticket_id(n) for n in self.rng.choices(self.live, k=count)]


# --- measuring ----------------------------------------------------------------------------


def memory() -> dict[str, int]:
    """KiB: VmRSS, RssAnon, RssFile (/proc/self/status) and getrusage's peak."""
    found = {"maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
            found[name] = int(rest.split()[0])
    return found


def written_bytes() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    return 0


def allocated(path: Path) -> int:
    return sum(p.stat().st_blocks * 512 for p in path.rglob("*") if p.is_file())


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def scan_all(store: Store) -> tuple[float, int, int]:
    start = time.perf_counter()
    records = size = 0
    for _, value in store.scan():
        records += 1
        size += len(value)
    return time.perf_counter() - start, records, size


def timed_reads(store: Store, keys: list[str]) -> float:
    start = time.perf_counter()
    for key in keys:
        if store.get(key) is None:
            raise AssertionError(f"{key} missing")
    return time.perf_counter() - start


@dataclass
class Args:
    tickets: int
    steps: int
    reads: int
    chunk: int
    seed: int
    max_step_seconds: float


def child_load(name: str, path: Path, pool: list[tuple[bytes, bytes]], a: Args) -> dict[str, Any]:
    """Phases 1-4 in this process; the reopen's read keys are left in `path`.keys."""
    store = STORES[name]()
    work = Workload(pool, a.tickets, a.seed)
    out: dict[str, Any] = {"durability": store.durability, "rss_start": memory()}
    store.open(path)
    load = 0.0
    for n, chunk in enumerate(work.bulk(a.chunk)):
        start = time.perf_counter()
        store.write(chunk, [], clock_value(-1 - n))
        load += time.perf_counter() - start
    out["bulk_s"] = load
    batches = work.steps(a.steps)
    latencies: list[float] = []
    written, began = written_bytes(), time.perf_counter()
    for step, (puts, deletes) in enumerate(batches, start=1):
        clock = clock_value(step)
        start = time.perf_counter()
        store.write(puts, deletes, clock)
        latencies.append(time.perf_counter() - start)
        if time.perf_counter() - began > a.max_step_seconds:
            break  # `work.live` is as of the last step written
    out["steps"] = len(latencies)
    out["steps_per_s"] = len(latencies) / sum(latencies)
    out["step_p50_ms"] = percentile(latencies, 0.50) * 1000
    out["step_p99_ms"] = percentile(latencies, 0.99) * 1000
    out["written_per_step"] = (written_bytes() - written) / len(latencies)
    keys = work.reads(a.reads)
    out["reads_per_s"] = len(keys) / timed_reads(store, keys)
    seconds, records, size = scan_all(store)
    out["scan_s"], out["records"], out["value_bytes"] = seconds, records, size
    out["rss_open"] = memory()
    start = time.perf_counter()
    store.close()
    out["close_s"] = time.perf_counter() - start
    if name != "dict":
        out["disk"] = allocated(path)
    path.with_suffix(".keys").write_text("\n".join(keys))
    return out


def child_reopen(name: str, path: Path, pool: list[tuple[bytes, bytes]], a: Args) -> dict[str, Any]:
    store = STORES[name]()
    keys = path.with_suffix(".keys").read_text().split("\n")
    out: dict[str, Any] = {"rss_before": memory()}
    start = time.perf_counter()
    if name == "dict":  # today's restart: rebuild the dict (values made here, no Kafka)
        assert isinstance(store, DictStore)
        work = Workload(pool, a.tickets, a.seed)
        for n, chunk in enumerate(work.bulk(a.chunk)):
            store.write(chunk, [], clock_value(-1 - n))
        for step, (puts, deletes) in enumerate(work.steps(a.steps), start=1):
            store.write(puts, deletes, clock_value(step))
    else:
        store.open(path)
    assert store.get(CLOCK) is not None
    out["reopen_s"] = time.perf_counter() - start
    out["rss_opened"] = memory()
    out["reads_per_s"] = len(keys) / timed_reads(store, keys)
    out["rss_read"] = memory()
    out["scan_s"], out["records"], _ = scan_all(store)
    out["rss_scanned"] = memory()
    if name == "dict":  # the peer: what a restore pays per value beyond the scan
        values = [value for key, value in store.scan() if key != CLOCK]
        start = time.perf_counter()
        for value in values:
            json.loads(value)
        out["json_loads_s"] = time.perf_counter() - start
    store.close()
    return out


# --- crash probes -----------------------------------------------------------------------

PROBE_KEYS = 3000


def probe_step(step: int) -> tuple[list[tuple[str, bytes]], list[str]]:
    """Step 0 writes every key; later steps 100 puts and 10 deletes of random keys. Each
    value names its step, so the contents show which steps they reflect."""
    rng = random.Random(step)
    if step == 0:
        keys = [ticket_id(n) for n in range(PROBE_KEYS)]
        return [(key, probe_value(key, 0)) for key in keys], []
    chosen = rng.sample(range(PROBE_KEYS), 110)
    puts = [(ticket_id(n), probe_value(ticket_id(n), step)) for n in chosen[:100]]
    return puts, [ticket_id(n) for n in chosen[100:]]


def probe_value(key: str, step: int) -> bytes:
    return json.dumps({"id": key, "step": step, "pad": "x" * 700}).encode()


def probe_clock(step: int) -> bytes:
    return json.dumps({"step": step}).encode()


def child_crash(name: str, path: Path, mode: str) -> None:
    store = STORES[name]()
    store.open(path)
    for step in range(4 if mode == "exit" else 10**9):
        puts, deletes = probe_step(step)
        store.write(puts, deletes, probe_clock(step))
        if step == 0:
            print("ready", flush=True)
    big = [(ticket_id(n), probe_value(ticket_id(n), 4)) for n in range(5000)]
    store.crash_mid_batch(big, probe_clock(4))


def check_probe(name: str, path: Path) -> tuple[bool, int, float]:
    """(contents == the state after the clock's step, that step, reopen seconds)."""
    store = STORES[name]()
    start = time.perf_counter()
    store.open(path)
    clock = store.get(CLOCK)
    reopen = time.perf_counter() - start
    step = -1 if clock is None else int(json.loads(clock)["step"])
    expected: dict[str, bytes] = {}
    for s in range(step + 1):
        puts, deletes = probe_step(s)
        expected.update(puts)
        for key in deletes:
            expected.pop(key, None)
    contents = {key: value for key, value in store.scan() if key != CLOCK}
    store.close()
    return step >= 0 and contents == expected, step, reopen


def crash_probes(name: str, work: Path, rng: random.Random) -> str:
    results = []
    for mode in ("exit", "kill"):
        path = work / f"crash-{mode}-{name}"
        proc = subprocess.Popen(
            [sys.executable, __file__, "--child", f"crash-{mode}", "--store", name, str(path)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        if mode == "kill":
            time.sleep(rng.uniform(0.3, 1.0))
            proc.send_signal(signal.SIGKILL)
        code = proc.wait(timeout=60)
        expected_code = -signal.SIGKILL if mode == "kill" else 17
        ok, step, reopen = check_probe(name, path)
        ok = ok and code == expected_code and (mode != "exit" or step == 3)
        verdict = "ok" if ok else "FAILED"
        results.append(f"{mode}: {verdict} at step {step} (reopen {reopen * 1000:.0f} ms)")
    return "; ".join(results)


# --- the parent ---------------------------------------------------------------------------


def run_child(kind: str, name: str, path: Path, pool_file: Path, a: Args) -> dict[str, Any]:
    args = [
        *("--child", kind, "--store", name, "--pool-file", str(pool_file)),
        *("--tickets", str(a.tickets), "--steps", str(a.steps), "--reads", str(a.reads)),
        *("--chunk", str(a.chunk), "--seed", str(a.seed)),
        *("--max-step-seconds", str(a.max_step_seconds), str(path)),
    ]
    done = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"{kind} {name} failed:\n{done.stdout}\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def mib(kib: int) -> str:
    return f"{kib / 1024:,.0f}"


def report(results: dict[str, dict[str, Any]], a: Args) -> None:
    floor = results.get("dict")
    print()
    print(
        "| store | durability | bulk load tickets/s | steps/s | step p50 / p99 ms "
        "| written per step KiB | reads/s | scan s | reopen s | reads/s after reopen "
        "| disk MiB | RSS after reopen MiB (anon + file) | RSS after scan MiB (anon + file) "
        "| peak RSS (load) MiB |"
    )
    print("|---|---|" + "---:|" * 12)
    for name, r in results.items():
        load, re = r["load"], r["reopen"]
        opened, scanned = re["rss_opened"], re["rss_scanned"]
        disk = "—" if "disk" not in load else f"{load['disk'] / 2**20:,.0f}"
        reopen = "— (full restore)" if name == "dict" else f"{re['reopen_s']:.3f}"
        print(
            f"| {name} | {load['durability']} | {a.tickets / load['bulk_s']:,.0f} "
            f"| {load['steps_per_s']:,.0f} "
            f"| {load['step_p50_ms']:.3f} / {load['step_p99_ms']:.3f} "
            f"| {load['written_per_step'] / 1024:,.0f} | {load['reads_per_s']:,.0f} "
            f"| {load['scan_s']:.2f} | {reopen} | {re['reads_per_s']:,.0f} | {disk} "
            f"| {mib(opened['VmRSS'])} ({mib(opened['RssAnon'])} + {mib(opened['RssFile'])}) "
            f"| {mib(scanned['VmRSS'])} ({mib(scanned['RssAnon'])} + {mib(scanned['RssFile'])}) "
            f"| {mib(load['rss_open']['maxrss'])} |"
        )
    if floor is not None:
        print()
        print("Ratios, store / dict (time per operation; > 1 is slower than the dict):")
        print("| store | bulk load | step | read | scan | reads after reopen |")
        print("|---|---:|---:|---:|---:|---:|")
        fl, fr = floor["load"], floor["reopen"]
        for name, r in results.items():
            load, re = r["load"], r["reopen"]
            print(
                f"| {name} | {load['bulk_s'] / fl['bulk_s']:,.1f} "
                f"| {fl['steps_per_s'] / load['steps_per_s']:,.1f} "
                f"| {fl['reads_per_s'] / load['reads_per_s']:,.1f} "
                f"| {load['scan_s'] / fl['scan_s']:,.1f} "
                f"| {fr['reads_per_s'] / re['reads_per_s']:,.1f} |"
            )
    print()
    for name, r in results.items():
        re = r["reopen"]
        extra = f"; crash probes: {r['crash']}" if "crash" in r else ""
        if "json_loads_s" in re:
            extra += f"; json.loads of every value (a restore's decode) {re['json_loads_s']:.2f} s"
        print(
            f"{name}: {r['load']['steps']} steps; scan after reopen {re['scan_s']:.2f} s "
            f"({re['records']:,} records); RSS before open "
            f"{mib(re['rss_before']['VmRSS'])} MiB{extra}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=500_000)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--reads", type=int, default=20_000)
    parser.add_argument("--chunk", type=int, default=10_000, help="tickets per bulk commit")
    parser.add_argument("--pool", type=int, default=5_000, help="tickets replayed for values")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--stores", default=",".join(DEFAULT), help=f"of {', '.join(STORES)}")
    parser.add_argument("--max-step-seconds", type=float, default=5.0)
    parser.add_argument("--keep", action="store_true", help="leave the stores on disk")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    parser.add_argument("--pool-file", help=argparse.SUPPRESS)
    parser.add_argument("dir", nargs="?", help="where the stores go (default: a new temp dir)")
    args = parser.parse_args()
    a = Args(args.tickets, args.steps, args.reads, args.chunk, args.seed, args.max_step_seconds)

    if args.child:
        path = Path(args.dir)
        if args.child.startswith("crash-"):
            child_crash(args.store, path, args.child.removeprefix("crash-"))
            return
        pool = [
            (prefix.encode(), suffix.encode())
            for prefix, suffix in json.loads(Path(args.pool_file).read_text())
        ]
        run = child_load if args.child == "load" else child_reopen
        print(json.dumps(run(args.store, path, pool, a)))
        return

    names = args.stores.split(",")
    unknown = set(names) - set(STORES)
    if unknown:
        parser.error(f"unknown stores {sorted(unknown)}; known: {', '.join(STORES)}")
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="store-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    pool = build_pool(args.pool, args.seed)
    sizes = [len(prefix) + len(suffix) + 10 for prefix, suffix in pool]
    pool_file = work / "pool.json"
    pool_file.write_text(json.dumps([[p.decode(), s.decode()] for p, s in pool]))
    print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {a.tickets:,} tickets, {a.steps:,} steps, "
        f"{a.reads:,} reads; values: pool of {len(pool):,} ticket states, mean "
        f"{sum(sizes) / len(sizes):,.0f} bytes, max {max(sizes):,} (built in "
        f"{time.perf_counter() - began:.1f} s); in {work}"
    )
    print(
        f"python {sys.version.split()[0]}, rocksdict {version('rocksdict')}, "
        f"py-lmdb {lmdb.__version__} (LMDB {'.'.join(map(str, lmdb.version()))}), "
        f"SQLite {sqlite3.sqlite_version}"
    )
    results: dict[str, dict[str, Any]] = {}
    rng = random.Random(args.seed)
    try:
        for name in names:
            t0 = time.perf_counter()
            path = work / name
            load = run_child("load", name, path, pool_file, a)
            reopen = run_child("reopen", name, path, pool_file, a)
            results[name] = {"load": load, "reopen": reopen}
            if name != "dict":
                results[name]["crash"] = crash_probes(name, work, rng)
            if not args.keep:
                shutil.rmtree(path, ignore_errors=True)
            print(f"{name}: done in {time.perf_counter() - t0:.1f} s", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    report(results, a)
    print(f"whole run {time.perf_counter() - began:.0f} s")
    rates = ", ".join(f"{name} {r['load']['steps_per_s']:,.0f}" for name, r in results.items())
    print(f"store steps/s: {rates}")
    if any("FAILED" in r.get("crash", "") for r in results.values()):
        raise SystemExit(1)  # a store lost atomicity: a smoke run must fail


if __name__ == "__main__":
    main()
