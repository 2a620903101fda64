"""Bounds on a single input, applied alike by replay and the live worker.

- **Size.** A message (or line) larger than `max_bytes` is rejected as `too-large`
  before it is parsed, so one hostile value cannot cost unbounded time or memory.
- **Future timestamps.** An event whose `occurred_at` is more than `max_clock_skew`
  ahead of the reader's clock is rejected as `future-timestamp`: applied, it would move
  event time ahead and could fire other tickets' timers before their deadlines. The
  reader's clock is passed in (the worker: the wall clock; replay: its start, or
  `--now`); nothing here reads it.
- **The message key.** A Kafka message must be keyed by its event's `ticket_id`: the
  worker keeps state per key and partition, so a message without a key (`missing-key`) or
  with another (`key-mismatch`) could be stored nowhere, or with another ticket. The
  worker and the audit, which read Kafka, check it alike (`check_key`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from worker.core.engine import Rejected
from worker.core.reasons import Reason

DEFAULT_MAX_BYTES = 1_000_000
"""Under Kafka's default message limit (1 MiB), leaving room for a dead letter's headers."""
DEFAULT_MAX_CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class InputLimits:
    max_bytes: int = DEFAULT_MAX_BYTES
    max_clock_skew: timedelta = DEFAULT_MAX_CLOCK_SKEW

    def check_size(self, size: int) -> None:
        """Raise `Rejected(Reason.TOO_LARGE)` for an input of `size` bytes over the limit."""
        if size > self.max_bytes:
            raise Rejected(
                Reason.TOO_LARGE,
                f"{size} bytes; the limit is {self.max_bytes} (--max-message-bytes)",
            )

    def check_time(self, occurred_at: datetime, now: datetime | None) -> None:
        """Raise `Rejected(Reason.FUTURE_TIMESTAMP)` for an event too far ahead of `now`."""
        if now is not None and occurred_at > now + self.max_clock_skew:
            ahead = occurred_at - now
            raise Rejected(
                Reason.FUTURE_TIMESTAMP,
                f"occurred_at {occurred_at.astimezone(UTC).isoformat()} is {ahead} ahead of "
                f"the clock ({now.astimezone(UTC).isoformat()}); at most "
                f"{self.max_clock_skew} is allowed (--max-clock-skew-seconds)",
            )


def check_key(key: bytes | None, ticket_id: str) -> None:
    """Raise `Rejected` unless a Kafka message's `key` is its event's `ticket_id`."""
    if not key:
        # No key, no partition of its own: its state could be stored nowhere.
        raise Rejected(
            Reason.MISSING_KEY,
            f"message has no key; it must be keyed by its ticket_id {ticket_id!r}",
        )
    if key != ticket_id.encode():
        raise Rejected(
            Reason.KEY_MISMATCH, f"message key {key!r} is not the ticket_id {ticket_id!r}"
        )
