"""Structured logs: one JSON object per line on stderr, with repeats kept in check.

Fields besides the message go in `extra=` (ticket_id, partition, offset, ...), so a log
pipeline can filter on them without parsing prose.

While the broker is unreachable, the Kafka client logs every failed connection, metadata
refresh and fetch: thousands of lines a minute that bury the one line saying what is
wrong. `RepeatLimiter` lets each kind of such a line through once per window and counts
the rest; the next one let through says how many were held back
(`"suppressed": N`). Kinds are the message templates (`record.msg`, before its
arguments), so "cannot connect to node 1" and "... node 2" are one kind. It applies to
the libraries' loggers and to ours named `sla_worker.broker` (connectivity: one kind per
partition it names); the worker's own per-event lines (published, dead-lettered) are
never held back.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable

from pythonjsonlogger.json import JsonFormatter

LIMIT_WINDOW_SECONDS = 30.0
BROKER_LOGGER = "sla_worker.broker"


class RepeatLimiter(logging.Filter):
    """Pass each kind of library (or broker) log line at most once per window."""

    def __init__(
        self,
        window: float = LIMIT_WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.window = window
        self.clock = clock
        self._last: dict[tuple[str, int, str], float] = {}  # kind -> when last passed
        self._held: dict[tuple[str, int, str], int] = {}  # kind -> held back since

    @staticmethod
    def limits(record: logging.LogRecord) -> bool:
        name = record.name
        return name == BROKER_LOGGER or not (name == "sla_worker" or name.startswith("sla_worker."))

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.limits(record):
            return True
        kind = (record.name, record.levelno, str(record.msg))
        if record.name == BROKER_LOGGER and isinstance(record.args, tuple) and record.args:
            # The worker's own broker lines name a partition first: one kind per partition,
            # so one partition's failure never hides another's.
            kind = (*kind[:2], f"{kind[2]} [{record.args[0]}]")
        now = self.clock()
        last = self._last.get(kind)
        if last is not None and now - last < self.window:
            self._held[kind] = self._held.get(kind, 0) + 1
            return False
        self._last[kind] = now
        held = self._held.pop(kind, 0)
        if held:
            record.suppressed = held
        if len(self._last) > 10_000:  # templates are few; this only guards against a leak
            self._last.clear()
        return True

    def held_back(self) -> int:
        """Lines held back and not yet reported by a later line of their kind."""
        return sum(self._held.values())


def json_handler(level: str = "INFO") -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    )
    handler.setLevel(level)
    handler.addFilter(RepeatLimiter())
    return handler
