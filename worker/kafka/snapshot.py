"""Local snapshots of the partitions' state (`--state-dir`): a restart or a takeover
reads only the changelog's tail (Kafka Streams' state directory and `.checkpoint`).

One RocksDB per partition, `<state-dir>/<app-id>/<partition>/`, holding the partition's
changelog records as they were committed (key: the changelog key, value: the stored
state; the clock record too) and one record that says which changelog offset the store
reflects, with the app id, the partition, and a wall-clock stamp. Why RocksDB: measured
against LMDB and SQLite on the worker's own workload (bench/store_bench.py, BENCHMARKS.md
"Local state stores": about 1,800 steps/s against 130 with the same durability for a
process crash, an atomic `WriteBatch`, and what Kafka Streams and quix-streams use).

**Never ahead of Kafka.** A store is written only with what Kafka committed: after a
step's transaction committed (its changelog records and the new offset, in one atomic
`WriteBatch`), and, during a restore, with records read from the changelog with
read_committed. A crash before, during or after a write leaves the store at an offset
Kafka committed, or a little behind (the `WriteBatch` is all or nothing; the WAL is
written, not synced: a process crash loses nothing, a power loss at most the last
writes, never the store's consistency). Being behind costs only a longer tail to read.
During a restore the records read are written before the offset is: a crash in
between leaves records newer than the offset, all of them committed ones, which the next
restore reads and applies again in the same order (last write wins, as in compaction).

**Discarded** (the partition is read from the changelog's beginning, and the store
written afresh) when it:

- cannot be opened or read, or has no offset record (a restore was cut short);
- belongs to another app id or partition, or to another format version;
- reflects an offset the changelog does not have (beyond its end, or before its start:
  the topic was recreated or truncated);
- is older than the changelog's `delete.retention.ms` and behind its end: compaction
  may have removed a tombstone written after the snapshot, whose deletion the tail would
  then miss, and a deleted ticket would come back (Kafka Streams' KIP-1259). The stamp
  is taken before the step's transaction begins, so every record after the snapshot's
  offset is younger. A snapshot at the changelog's end has nothing after it to miss: it
  is used whatever its age.

A worker without `--state-dir` keeps no snapshot: every restore reads the changelog.
"""

from __future__ import annotations

import json
import logging
import shutil
import struct
import time
from collections.abc import Iterable, Iterator, MutableMapping
from dataclasses import asdict, dataclass
from pathlib import Path

import rocksdict

from worker.kafka import stored_index
from worker.kafka.stored_index import StoredDueIndex, read, scan, unavailable
from worker.tasks.partition import Partition, StateUnavailable

log = logging.getLogger("sla_worker")

FORMAT = 2
"""Version of the store's layout; a store of another version is discarded."""
RECORD = b"r"
"""Prefix of the changelog records' keys in the store (the clock record's is empty)."""
OFFSET = b"o"
"""Key of the record that says which changelog offset the store reflects."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """What a store reflects: the changelog's committed end (the next offset) up to which
    its records were applied."""

    app_id: str
    partition: int
    offset: int
    stamp_ms: int
    """Wall clock (ms since the epoch) no later than the commit of `offset`."""
    format: int = FORMAT

    def dump(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def load(cls, value: bytes) -> Checkpoint:
        data = json.loads(value)
        return cls(
            str(data["app_id"]),
            int(data["partition"]),
            int(data["offset"]),
            int(data["stamp_ms"]),
            int(data["format"]),
        )


class Store:
    """One partition's snapshot, open."""

    def __init__(self, path: Path, app_id: str, partition: int) -> None:
        self.path = path
        self.app_id = app_id
        self.partition = partition
        self.db = _open(path)
        self.write_options = rocksdict.WriteOptions()
        self.write_options.sync = False  # process-crash safe; see the module docstring

    def checkpoint(self) -> Checkpoint | None:
        value = self.db.get(OFFSET)
        return None if value is None else Checkpoint.load(bytes(value))

    def records(self) -> Iterator[tuple[bytes, bytes]]:
        """The changelog records the store holds (key, value), in key order. A failed
        read: `StateUnavailable` (never the records' end)."""
        try:
            it = self.db.iter()
            it.seek(RECORD)
            while it.valid():
                key = bytes(it.key())
                if not key.startswith(RECORD):
                    return
                yield key[len(RECORD) :], bytes(it.value())
                it.next()
            it.status()
        except StateUnavailable:
            raise
        except Exception as exc:
            raise unavailable("the stored states", exc) from exc

    def write(
        self,
        records: list[tuple[bytes, bytes | None]],
        offset: int | None,
        stamp_ms: int,
        indexes: Iterable[tuple[bytes, bytes | None]] = (),
    ) -> None:
        """Apply committed changelog records (None: a tombstone), the index entries
        derived from them (`worker.kafka.stored_index`: raw keys) and, if `offset` is
        given, record that the store now reflects the changelog up to it; atomically."""
        batch = rocksdict.WriteBatch(raw_mode=True)
        for key, value in records:
            if value is None:
                batch.delete(RECORD + key)
            else:
                batch.put(RECORD + key, value)
        for key, value in indexes:
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        if offset is not None:
            checkpoint = Checkpoint(self.app_id, self.partition, offset, stamp_ms)
            batch.put(OFFSET, checkpoint.dump())
        self.db.write(batch, self.write_options)

    def wipe(self) -> None:
        """Start afresh: an empty store (its offset record gone first)."""
        self.db.close()
        shutil.rmtree(self.path, ignore_errors=True)
        self.db = _open(self.path)

    def close(self) -> None:
        self.db.close()


_ABSENT = object()


class StoredStates(MutableMapping[str, bytes]):
    """A partition's ticket states (`Partition.tickets`) kept in its local store, not in
    RAM: the store's committed records, seen through an overlay of the writes not
    committed yet (Kafka Streams: RocksDB is the state, the changelog its backup).

    The store only ever holds what Kafka committed. A step writes here, into the
    overlay (a tombstone: None); reads see the overlay first, then the store. Once the
    step's transaction committed, the task manager writes its changelog records (with
    the new offset) to the store in one `WriteBatch` and calls `settle`, which empties
    the overlay of what reached the store. A step that fails to commit throws the whole
    `Partition` away, overlay included, and the partition is restored from the store
    (which still reflects the last committed step) and the changelog. A restore loads
    through the same overlay, one chunk of changelog records at a time.

    RAM: the overlay (one step's or one chunk's writes) and RocksDB's caches, whatever
    the number of tickets. `count`: the tickets, kept up to date once known (the store
    keeps it beside its indexes; a rebuild counts them), else counted when asked.
    """

    def __init__(self, store: Store, count: int | None = None) -> None:
        self.store = store
        self.overlay: dict[str, bytes | None] = {}
        self.count = count

    # --- reads ------------------------------------------------------------------------------

    def _read(self, ticket_id: str) -> bytes | None:
        # A damaged or vanished file: the step fails (StateUnavailable).
        return read(self.store.db, RECORD + ticket_id.encode(), f"ticket {ticket_id!r}")

    def get(self, ticket_id: str, default: bytes | None = None) -> bytes | None:  # type: ignore[override]
        value = self.overlay.get(ticket_id, _ABSENT)
        if value is _ABSENT:
            value = self._read(ticket_id)
        return default if value is None else value  # type: ignore[return-value]

    def __getitem__(self, ticket_id: str) -> bytes:
        value = self.get(ticket_id)
        if value is None:
            raise KeyError(ticket_id)
        return value

    def __contains__(self, ticket_id: object) -> bool:
        return isinstance(ticket_id, str) and self.get(ticket_id) is not None

    def __len__(self) -> int:
        if self.count is None:
            self.count = sum(1 for _ in self)
        return self.count

    def __iter__(self) -> Iterator[str]:
        """Every ticket id (keys only: no value is read), the store's then the
        overlay's new ones, as of the call."""
        overlay = dict(self.overlay)
        for key in scan(self.store.db, RECORD, RECORD, "the stored states"):
            if key == RECORD:  # the clock record
                continue
            ticket_id = key[len(RECORD) :].decode()
            if overlay and ticket_id in overlay:
                if overlay.pop(ticket_id) is not None:
                    yield ticket_id
                continue
            yield ticket_id
        for ticket_id, pending in overlay.items():
            if pending is not None:
                yield ticket_id

    def ids_after(self, after: str | None, limit: int) -> list[str]:
        """Up to `limit` of the store's ticket ids after `after` (None: from the first),
        in key order, read with an iterator of their own that is gone when this returns.
        What a caller that awaits between chunks uses (`Restorer.count_timers`): a live
        RocksDB iterator keeps its store open, and its LOCK held, after `close()`, so
        one held across an await could outlive the store's owner."""
        start = RECORD if after is None else RECORD + after.encode() + b"\x00"
        ids: list[str] = []
        keys = scan(self.store.db, start, RECORD, "the stored states")
        try:
            for key in keys:
                if key != RECORD:  # (the clock record)
                    ids.append(key[len(RECORD) :].decode())
                    if len(ids) >= limit:
                        break
        finally:
            keys.close()  # the iterator with it
        return ids

    def items(self) -> Iterator[tuple[str, bytes]]:  # type: ignore[override]
        """(ticket id, stored) of every ticket, the store's in key order, then the
        overlay's new ones (as of the call: the store's iterator reads one snapshot)."""
        overlay = dict(self.overlay)
        for key, value in self.store.records():
            if not key:  # the clock record
                continue
            ticket_id = key.decode()
            if overlay:
                pending = overlay.pop(ticket_id, _ABSENT)
                if pending is not _ABSENT:
                    if pending is not None:
                        yield ticket_id, pending  # type: ignore[misc]
                    continue
            yield ticket_id, value
        for ticket_id, pending in overlay.items():
            if pending is not None:
                yield ticket_id, pending

    # --- writes (into the overlay) ----------------------------------------------------------

    def __setitem__(self, ticket_id: str, value: bytes) -> None:
        if self.count is not None and self.get(ticket_id) is None:
            self.count += 1
        self.overlay[ticket_id] = value

    def __delitem__(self, ticket_id: str) -> None:
        if self.pop(ticket_id, None) is None:
            raise KeyError(ticket_id)

    def pop(self, ticket_id: str, default: bytes | None = None) -> bytes | None:  # type: ignore[override]
        value = self.get(ticket_id)
        if value is None:
            return default
        self.overlay[ticket_id] = None
        if self.count is not None:
            self.count -= 1
        return value

    def settle(self, written: Iterable[tuple[bytes, bytes | None]]) -> None:
        """These changelog records (key, value or None) reached the store: the overlay
        keeps only what differs (a write of this ticket after them)."""
        overlay = self.overlay
        if not overlay:
            return
        for key, value in written:
            if key:
                ticket_id = key.decode()
                if overlay.get(ticket_id, _ABSENT) == value:
                    del overlay[ticket_id]


def keep_in(partition: Partition, store: Store, count: int | None = None) -> None:
    """Make `partition` keep its tickets and its timer indexes in `store`
    (`StoredStates`, `StoredDueIndex`), with `count` tickets there (None: not known).
    Its indexes start as the store holds them: empty for a fresh store."""
    partition.tickets = StoredStates(store, count)
    partition.clock.due = StoredDueIndex(store.db, stored_index.DUE)
    partition.clock.holds = StoredDueIndex(store.db, stored_index.HOLDS)
    partition.retirements = StoredDueIndex(store.db, stored_index.RETIREMENTS)
    partition.breached_changes = {}


def store_of(partition: Partition) -> Store | None:
    """The store `partition` keeps its tickets in (None: RAM)."""
    return partition.tickets.store if isinstance(partition.tickets, StoredStates) else None


def index_ops(partition: Partition) -> list[tuple[bytes, bytes | None]]:
    """The store's writes that carry `partition`'s index changes since the last
    `settled` (and its ticket count); they join the `WriteBatch` of the records they
    derive from."""
    if not isinstance(partition.tickets, StoredStates):
        return []
    ops: list[tuple[bytes, bytes | None]] = []
    count = partition.tickets.count
    if count is not None:
        ops.append((stored_index.COUNT + RECORD, _COUNT.pack(count)))
    for index in (partition.clock.due, partition.clock.holds, partition.retirements):
        if isinstance(index, StoredDueIndex):
            ops += index.ops()
    for ticket_id, breached in (partition.breached_changes or {}).items():
        ops.append((stored_index.BREACHED + ticket_id.encode(), b"" if breached else None))
    return ops


def settled(partition: Partition, written: Iterable[tuple[bytes, bytes | None]]) -> None:
    """After `written` (changelog records) and `index_ops` reached the partition's
    store: its overlays let go of them."""
    if isinstance(partition.tickets, StoredStates):
        partition.tickets.settle(written)
        for index in (partition.clock.due, partition.clock.holds, partition.retirements):
            if isinstance(index, StoredDueIndex):
                index.settled()
        if partition.breached_changes:
            partition.breached_changes.clear()


def stored_count(store: Store) -> int | None:
    raw = read(store.db, stored_index.COUNT + RECORD, "the ticket count")
    return None if raw is None else int(_COUNT.unpack(raw)[0])


def breached(store: Store) -> Iterator[str]:
    """The at-risk index's breached tickets, as the store keeps them."""
    prefix = stored_index.BREACHED
    for key in scan(store.db, prefix, prefix, "the breached tickets"):
        yield key[len(prefix) :].decode()


_COUNT = struct.Struct(">Q")


WRITE_BUFFER_BYTES = 8 << 20
"""Per partition's store: RocksDB's default memtable is 64 MiB, which, times the
partitions a worker holds, would cost more RAM than the state itself; the store is
written a step at a time and read only on restore, so small memtables cost nothing."""


def _open(path: Path) -> rocksdict.Rdict:
    path.mkdir(parents=True, exist_ok=True)
    options = rocksdict.Options(raw_mode=True)
    options.create_if_missing(True)
    options.set_write_buffer_size(WRITE_BUFFER_BYTES)
    options.set_max_write_buffer_number(2)
    # After a power loss, recover to the last consistent point of the WAL (the store is
    # then behind Kafka: a longer tail to read), never refuse to open.
    options.set_wal_recovery_mode(rocksdict.DBRecoveryMode.point_in_time())
    return rocksdict.Rdict(str(path), options)


class Snapshots:
    """The state directory: opens each partition's store and judges whether it can be
    used (see the module docstring)."""

    def __init__(self, root: Path, app_id: str, tombstone_retention_ms: int) -> None:
        self.root = root
        self.app_id = app_id
        self.tombstone_retention_ms = tombstone_retention_ms

    def open(self, partition: int) -> Store | None:
        """The partition's store (created if missing); None when it cannot be opened even
        afresh (the partition is then restored and run without one)."""
        path = self.root / self.app_id / str(partition)
        try:
            return Store(path, self.app_id, partition)
        except Exception as exc:  # corrupt, locked by another process, no permission ...
            # RocksDB says "While lock file: <path>/LOCK: ..." when another process holds
            # it, "lock hold by current process" when this one still does (a store
            # closed while an iterator of it lived on); not just "lock": a corrupt
            # store's "block checksum mismatch" must be discarded, not kept.
            text = str(exc).lower()
            if "lock file" in text or "lock hold by current process" in text:
                # Someone has it open (two workers given one --state-dir, or a reader
                # of this process): its files are never removed under it. Run this
                # partition without a snapshot this time.
                log.warning(
                    "partition %d: the local snapshot in %s is in use (%s); running "
                    "without one: give each worker its own --state-dir",
                    partition,
                    path,
                    exc,
                )
                return None
            log.warning(
                "partition %d: the local snapshot in %s cannot be opened (%s: %s); discarding it",
                partition,
                path,
                type(exc).__name__,
                exc,
            )
        try:
            shutil.rmtree(path, ignore_errors=True)
            return Store(path, self.app_id, partition)
        except Exception as exc:
            log.warning(
                "partition %d: no local snapshot (%s: %s): every restore reads the changelog",
                partition,
                type(exc).__name__,
                exc,
            )
            return None

    def usable(self, store: Store, start: int, end: int) -> tuple[int | None, str]:
        """The offset to read the changelog from with this store's contents, or None
        and why it must be discarded. `start`, `end`: the changelog partition's first
        offset and committed end."""
        try:
            checkpoint = store.checkpoint()
        except Exception as exc:
            return None, f"cannot be read ({type(exc).__name__}: {exc})"
        if checkpoint is None:
            return None, "has no offset (empty, or a restore was cut short)"
        if checkpoint.format != FORMAT:
            return None, f"has format {checkpoint.format}, not {FORMAT}"
        if checkpoint.app_id != self.app_id or checkpoint.partition != store.partition:
            return None, (f"belongs to app {checkpoint.app_id!r} partition {checkpoint.partition}")
        if not start <= checkpoint.offset <= end:
            return None, (
                f"reflects offset {checkpoint.offset}, outside the changelog's {start}..{end}"
            )
        age_ms = int(time.time() * 1000) - checkpoint.stamp_ms
        # At the changelog's end, nothing was written after the snapshot: no tombstone
        # it could miss, however old it is (a quiet partition's, a long downtime's).
        if age_ms >= self.tombstone_retention_ms and checkpoint.offset != end:
            return None, (
                f"is {age_ms / 3_600_000:.1f} h old, not younger than the changelog's "
                f"delete.retention.ms ({self.tombstone_retention_ms / 3_600_000:.1f} h)"
            )
        return checkpoint.offset, "usable"
