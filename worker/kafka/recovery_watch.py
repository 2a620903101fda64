"""Restart a table recovery that stopped receiving the changelog records it waits for.

Why this exists: a race in faust-streaming 0.15.3 (our scale-out test hit it in 1 run of
12 with four running at once). A fetch issued before a rebalance holds a live reference to
the consumer's set of active partitions. The next assignment adds changelog partitions to
that set and recovery seeks them to the offsets it needs; the old fetch then returns their
records while the consumer's flow is stopped. faust drops such records and seeks only the
*stream* partitions back to their committed offsets (a changelog partition has none), so
recovery waits forever for records that were already fetched and thrown away. The log
says "No event received for active tp ... since recovery start" and the worker never
becomes ready.

The remedy is what recovery itself does when it starts: seek the changelog partitions that
still have records to apply back to the offset recovery has reached. Records already
applied may be read again, which is harmless: applying a changelog record only sets the key
to its value.

`RecoveryWatch` decides (pure, tested in tests/unit/test_recovery_watch.py); the faust
task in `worker.kafka.app` polls recovery's progress and performs the seeks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Generic, TypeVar

Partition = TypeVar("Partition")


class RecoveryWatch(Generic[Partition]):
    """Detects a recovery that made no progress for `stall_seconds`."""

    def __init__(self, stall_seconds: float) -> None:
        self.stall_seconds = stall_seconds
        self._offsets: dict[Partition, int] | None = None
        self._since = 0.0

    def idle(self) -> None:
        """No recovery is running: the next one starts a fresh watch."""
        self._offsets = None

    def observe(
        self, now: float, offsets: Mapping[Partition, int], remaining: Mapping[Partition, int]
    ) -> dict[Partition, int]:
        """Offsets to seek to, or {} while recovery progresses (or has only just stalled).

        `offsets`: the last changelog offset recovery applied per partition (-1: none yet);
        `remaining`: records still to apply per partition. After a restart the watch waits
        another full `stall_seconds` before it acts again.
        """
        behind = {tp: offsets.get(tp, -1) for tp, left in remaining.items() if left > 0}
        if not behind:
            self._offsets = None
            return {}
        if self._offsets != behind:
            # First look, or some partition advanced (or the assignment changed).
            self._offsets = dict(behind)
            self._since = now
            return {}
        if now - self._since < self.stall_seconds:
            return {}
        self._since = now
        # Recovery's own seek goes to the last applied offset (re-reading it), and to 0
        # when nothing was applied yet; do the same.
        return {tp: max(offset, 0) for tp, offset in behind.items()}
