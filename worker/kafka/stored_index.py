"""A partition's timer indexes kept in its local store (`--state-dir`), read lazily: a
restart from the snapshot rebuilds nothing, and RAM holds only what changed since the
last commit (#23).

`StoredDueIndex` answers what `worker.core.due_index.DueIndex` answers (schedule, get,
peek, pop_due, until, len) for one of the partition's indexes (the due index, the holds
of events waiting for their ticket, the retirements of finished tickets), from two sets
of keys in the partition's RocksDB:

- forward: `prefix + be64(instant) + ticket id` -> b"": in time order, so the earliest is
  the first key after a seek, and what is due by an instant one range scan;
- reverse: `prefix.lower() + ticket id` -> be64(instant): when a ticket is scheduled.

Changes go to an overlay (`pending`: ticket -> instant, None: unscheduled) and a small
heap of the overlay's instants; reads merge the overlay with the store (a store entry
whose ticket the overlay holds is overridden). `ops` turns the overlay into the store's
writes, which join the commit's `WriteBatch`, with the changelog records they derive
from: the store's indexes always describe its records (a crash leaves both at the same
point). `settled` then empties the overlay.

An index is derived data: after a commit, an entry may have moved without a state write
(a ticket taken as due that had nothing to fire is filed at its exact instant); the
store's entry is then written with the next commit, and until then the overlay holds
it. Never later than the truth is what matters, and that holds for the overlay and the
store alike.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import heapq
import importlib
import struct
import zoneinfo
from collections.abc import Generator, Iterator
from datetime import datetime, timedelta
from enum import Enum
from pathlib import Path

import holidays
from pydantic import BaseModel

from worker.core.engine import DUE_RULES_VERSION
from worker.core.state_codec import from_us, to_us
from worker.tasks.partition import StateUnavailable

_BIAS = 1 << 63
"""Added to an instant (µs, signed) so that unsigned big-endian bytes sort in time order."""
_PACK = struct.Struct(">Q")
_ABSENT = object()

DUE, HOLDS, RETIREMENTS = b"D", b"H", b"T"
"""Prefixes of the three indexes' forward keys (the reverse keys': the lower case)."""
BREACHED = b"B"
"""Prefix of the at-risk index's breached tickets (`prefix + ticket id` -> b"")."""
COUNT = b"n"
"""`COUNT + index prefix` -> be64 number of tickets the index holds."""


def unavailable(what: str, exc: Exception) -> StateUnavailable:
    """A store read that failed (a damaged block, a vanished file, a closed store), as
    the step's callers handle it: the store is given up and the partition restored from
    the changelog. Never a raw RocksDB error: one would leave the loop and stop the
    worker, and, as a restart from the snapshot reads no index key, stop it again at the
    first step after every restart."""
    return StateUnavailable(f"{what}: {type(exc).__name__}: {exc}")


def read(db: object, key: bytes, what: str) -> bytes | None:
    """`db.get(key)`, a failure raised as `StateUnavailable`."""
    try:
        raw = db.get(key)  # type: ignore[attr-defined]
    except Exception as exc:
        raise unavailable(what, exc) from exc
    return None if raw is None else bytes(raw)


def scan(db: object, start: bytes, prefix: bytes, what: str) -> Generator[bytes, None, None]:
    """The keys from `start` on that begin with `prefix`, in order; a failure (of the
    seek, of a step, or one the iterator met and stopped at: its `status`) raised as
    `StateUnavailable`, so a damaged block never reads as the index's end."""
    try:
        it = db.iter()  # type: ignore[attr-defined]
        it.seek(start)
        while it.valid():
            key = bytes(it.key())
            if not key.startswith(prefix):
                return
            yield key
            it.next()
        it.status()
    except StateUnavailable:
        raise
    except Exception as exc:
        raise unavailable(what, exc) from exc


def _instant(us: int) -> bytes:
    return _PACK.pack(us + _BIAS)


def _us(raw: bytes) -> int:
    return int(_PACK.unpack(raw)[0]) - _BIAS


class StoredDueIndex:
    """One timer index of a partition, in its store, with an overlay of what changed."""

    def __init__(self, db: object, prefix: bytes) -> None:
        self.db = db  # a rocksdict.Rdict (raw mode)
        self.prefix = prefix
        self.reverse = prefix.lower()
        self.pending: dict[str, int | None] = {}
        self._heap: list[tuple[int, str]] = []  # instants of `pending`, maybe stale
        self.what = f"timer index {prefix.decode()!r}"
        raw = read(db, COUNT + prefix, self.what)
        self._count = 0 if raw is None else _PACK.unpack(raw)[0]
        # No entry before this instant (µs) in the store that the overlay does not
        # override: where a look for the earliest starts (the store keeps deleted keys a
        # while, and the earliest entries are the ones deleted most).
        self._low: int | None = None

    def __len__(self) -> int:
        return self._count

    # --- reads ------------------------------------------------------------------------------

    def _get_us(self, ticket_id: str) -> int | None:
        value = self.pending.get(ticket_id, _ABSENT)
        if value is not _ABSENT:
            return value  # type: ignore[return-value]
        raw = read(self.db, self.reverse + ticket_id.encode(), self.what)
        return None if raw is None else _us(raw)

    def get(self, ticket_id: str) -> datetime | None:
        us = self._get_us(ticket_id)
        return None if us is None else from_us(us)

    def _stored(self, upto: int | None = None) -> Iterator[tuple[int, str, bytes]]:
        """(instant, ticket, key) of the store's entries not overridden by the overlay,
        in time order (up to `upto` µs, inclusive). A failed read: `StateUnavailable`."""
        prefix, pending = self.prefix, self.pending
        start = prefix if self._low is None else prefix + _instant(self._low)
        for key in scan(self.db, start, prefix, self.what):
            us = _us(key[1:9])
            if upto is not None and us > upto:
                return
            ticket_id = key[9:].decode()
            if ticket_id not in pending:
                yield us, ticket_id, key

    def _pending_head(self) -> tuple[int, str] | None:
        heap, pending = self._heap, self.pending
        while heap:
            us, ticket_id = heap[0]
            if pending.get(ticket_id) == us:
                return us, ticket_id
            heapq.heappop(heap)
        return None

    def _head(self) -> tuple[int, str] | None:
        pending = self._pending_head()
        stored = next(self._stored(), None)
        if stored is not None:
            self._low = stored[0]  # every entry before it is overridden
        if stored is None:
            return pending
        if pending is None or (stored[0], stored[1]) < pending:
            return stored[0], stored[1]
        return pending

    def peek(self) -> datetime | None:
        head = self._head()
        return None if head is None else from_us(head[0])

    def pop_due(self, now: datetime, *, inclusive: bool = True) -> Iterator[tuple[str, datetime]]:
        """As `DueIndex.pop_due`: remove and yield what is due by `now`, earliest first;
        a ticket rescheduled meanwhile is seen again if its new instant is due too."""
        limit = to_us(now)
        while True:
            head = self._head()
            if head is None:
                return
            us, ticket_id = head
            if us > limit or (us == limit and not inclusive):
                return
            self.pending[ticket_id] = None
            self._count -= 1
            yield ticket_id, from_us(us)

    def until(self, horizon: datetime) -> Iterator[tuple[str, datetime]]:
        """(ticket, instant) of everything due by `horizon`, removing nothing."""
        limit = to_us(horizon)
        for ticket_id, us in list(self.pending.items()):
            if us is not None and us <= limit:
                yield ticket_id, from_us(us)
        for us, ticket_id, _ in self._stored(limit):
            yield ticket_id, from_us(us)

    def stored_until(
        self, after: tuple[str, datetime] | None, horizon: datetime, limit: int
    ) -> list[tuple[str, datetime]]:
        """Up to `limit` (ticket, instant) of the store's entries due by `horizon`, in
        time order, after the entry `after` (None: from the first); overlay ignored. Read
        with an iterator of its own that is gone when this returns: for a caller that
        awaits between chunks (a live iterator keeps a closed store open)."""
        start = self.prefix
        if after is not None:
            start += _instant(to_us(after[1])) + after[0].encode() + b"\x00"
        limit_us, out = to_us(horizon), list[tuple[str, datetime]]()
        keys = scan(self.db, start, self.prefix, self.what)
        try:
            for key in keys:
                us = _us(key[1:9])
                if us > limit_us or len(out) >= limit:
                    break
                out.append((key[9:].decode(), from_us(us)))
        finally:
            keys.close()
        return out

    def items(self) -> Iterator[tuple[str, datetime]]:
        """Every (ticket, instant), in no set order (tests, diagnostics)."""
        for ticket_id, us in list(self.pending.items()):
            if us is not None:
                yield ticket_id, from_us(us)
        low, self._low = self._low, None
        try:
            for us, ticket_id, _ in self._stored():
                yield ticket_id, from_us(us)
        finally:
            self._low = low

    # --- writes (into the overlay) ----------------------------------------------------------

    def schedule(self, ticket_id: str, due: datetime | None) -> None:
        us = None if due is None else to_us(due)
        current = self._get_us(ticket_id)
        if current == us:
            return
        self._count += (us is not None) - (current is not None)
        self.pending[ticket_id] = us
        if us is not None:
            heapq.heappush(self._heap, (us, ticket_id))

    def ops(self) -> list[tuple[bytes, bytes | None]]:
        """The store's writes that make it hold what the overlay says (None: delete)."""
        if not self.pending:
            return []
        out: list[tuple[bytes, bytes | None]] = []
        db, prefix, reverse = self.db, self.prefix, self.reverse
        for ticket_id, us in self.pending.items():
            key = ticket_id.encode()
            old = read(db, reverse + key, self.what)
            if old is not None:
                if us is not None and _us(old) == us:
                    continue
                out.append((prefix + old + key, None))
            if us is None:
                if old is not None:
                    out.append((reverse + key, None))
            else:
                when = _instant(us)
                out.append((prefix + when + key, b""))
                out.append((reverse + key, when))
        out.append((COUNT + prefix, _PACK.pack(self._count)))
        return out

    def settled(self) -> None:
        """`ops` reached the store: the overlay is empty again. An entry it moved
        earlier than where the store's earliest was is the store's earliest now."""
        if self._low is not None:
            moved = [us for us in self.pending.values() if us is not None]
            if moved:
                self._low = min(self._low, *moved)
        self.pending.clear()
        self._heap.clear()


FINGERPRINT = b"f"
"""Key of the fingerprint of what the stored indexes were computed with (policy,
retention, due rules, holiday and time-zone data): indexes computed under another one
are discarded and rebuilt."""
INDEX_PREFIXES = (DUE, DUE.lower(), HOLDS, HOLDS.lower(), RETIREMENTS, RETIREMENTS.lower())


def clear(db: object) -> None:
    """Remove every stored index entry, breached ticket, count and the fingerprint (the
    records stay): a rebuild writes them again."""
    for prefix in (*INDEX_PREFIXES, BREACHED, COUNT, FINGERPRINT):
        db.delete_range(prefix, bytes([prefix[0] + 1]))  # type: ignore[attr-defined]


def fingerprint(engine: object) -> bytes | None:
    """What the timer indexes depend on beyond the states, as a digest: the policy
    (every version, calendars with their full specification), the retention, and what
    turns them into instants: the engine's due rules (`DUE_RULES_VERSION`), the
    `holidays` package's tables (its version: a calendar names a country, not its
    dates) and the IANA time-zone data (its version). An upgrade that changes any of
    them rebuilds the indexes at the next start. None when some part cannot be written
    out faithfully, or the time-zone data's version is not known (the indexes are then
    always rebuilt)."""
    tz = tz_data_version()
    if tz is None:
        return None
    rules = (DUE_RULES_VERSION, str(getattr(holidays, "__version__", "")), tz)
    try:
        text = repr(_canonical((engine.policy, engine.retention, rules)))  # type: ignore[attr-defined]
    except TypeError:  # a part not written out: the indexes are always rebuilt (safe)
        return None
    return hashlib.sha256(text.encode()).hexdigest().encode()


@functools.cache
def tz_data_version() -> str | None:
    """The version of the time-zone data `zoneinfo` reads, searched as it searches: the
    first `zoneinfo.TZPATH` directory with zone files (its `tzdata.zi` says `# version
    2025b`; the OS package's), else the `tzdata` package's; None when not known (a
    directory of zones without `tzdata.zi`). Once per process: zoneinfo caches the
    zones it read, so newer files would not be used before a restart anyway."""
    for root in zoneinfo.TZPATH:
        directory = Path(root)
        try:
            with (directory / "tzdata.zi").open("rb") as file:
                first = file.readline()
        except OSError:
            if (directory / "UTC").is_file():
                return None  # zones, no version
            continue
        if not first.startswith(b"# version"):
            return None
        return first.removeprefix(b"# version").strip().decode() or None
    try:
        package = importlib.import_module("tzdata")
    except ImportError:
        return None
    return str(getattr(package, "IANA_VERSION", "")) or None


def _canonical(value: object) -> object:
    """A plain, deterministic form of a policy's parts (no memory addresses, no hash
    order), with every field: a calendar by its whole specification, not its repr."""
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return value
    if isinstance(value, (datetime, timedelta, Enum)):
        return repr(value)
    spec = getattr(value, "spec", None)
    if isinstance(spec, BaseModel):  # a Calendar: its name and its whole definition
        return (type(value).__name__, getattr(value, "name", None), spec.model_dump_json())
    if isinstance(value, BaseModel):
        return (type(value).__name__, value.model_dump_json())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = dataclasses.fields(value)
        return (
            type(value).__name__,
            [(f.name, _canonical(getattr(value, f.name))) for f in fields],
        )
    if isinstance(value, dict):
        return sorted((repr(_canonical(k)), _canonical(v)) for k, v in value.items())
    if isinstance(value, (frozenset, set)):
        return sorted(repr(_canonical(v)) for v in value)
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    slots = getattr(type(value), "__slots__", None)
    if isinstance(slots, (tuple, list)):  # a plain class of slots (a goal matcher)
        return (type(value).__name__, [(n, _canonical(getattr(value, n, None))) for n in slots])
    raise TypeError(f"no canonical form for {type(value).__name__}")
