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

`CoordinatorStarting` re-levels one aiokafka ERROR that is no error: at every start, until
the broker has loaded its `__consumer_offsets` topic, the consumer's first group
coordinator lookups fail with GroupCoordinatorNotAvailable (or CoordinatorLoadInProgress)
and are retried; this clears by itself within seconds. Logged at ERROR, it teaches an
operator to ignore ERROR lines; it is INFO for a grace period, then WARNING.
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


COORDINATOR_LOGGER = "aiokafka.consumer.group_coordinator"
COORDINATOR_GRACE_SECONDS = 60.0
# The errors of a group coordinator that is still starting (both retriable; aiokafka
# retries them after `retry_backoff_ms`).
COORDINATOR_STARTING_ERRORS = frozenset(
    {"GroupCoordinatorNotAvailableError", "CoordinatorLoadInProgressError"}
)


class CoordinatorStarting(logging.Filter):
    """On aiokafka's group coordinator logger: its "Group Coordinator Request failed" ERROR
    for a coordinator that is not available yet becomes INFO, with a message that says so;
    still there after `grace` seconds (the broker cannot host the group: see its log), it
    is a WARNING. Every other record passes unchanged, other aiokafka errors included."""

    TEMPLATE = "Group Coordinator Request failed: %s"

    def __init__(
        self,
        grace: float = COORDINATOR_GRACE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.grace = grace
        self.clock = clock
        self._since: float | None = None  # first of the current run of these lines
        self._last = 0.0

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.starting(record):
            return True
        now = self.clock()
        if self._since is None or now - self._last > self.grace:
            self._since = now  # a new episode (a restart of the broker, say)
        self._last = now
        waited = now - self._since
        level = logging.INFO if waited < self.grace else logging.WARNING
        record.levelno, record.levelname = level, logging.getLevelName(level)
        record.msg = "group coordinator not available yet (%s), retrying; waited %.0f s"
        record.args = (type(record.args[0]).__name__, waited)  # type: ignore[index]
        return True

    def starting(self, record: logging.LogRecord) -> bool:
        return (
            record.name == COORDINATOR_LOGGER
            and record.levelno == logging.ERROR
            and record.msg == self.TEMPLATE
            and isinstance(record.args, tuple)
            and len(record.args) == 1
            and type(record.args[0]).__name__ in COORDINATOR_STARTING_ERRORS
        )


def quiet_coordinator_start() -> None:
    """Install `CoordinatorStarting` on aiokafka's coordinator logger (once). On the
    logger, not a handler: the handlers' level checks then see the new level."""
    logger = logging.getLogger(COORDINATOR_LOGGER)
    if not any(isinstance(f, CoordinatorStarting) for f in logger.filters):
        logger.addFilter(CoordinatorStarting())


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
