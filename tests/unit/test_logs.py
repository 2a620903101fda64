"""The log limiter: library chatter once per window, counted; the worker's own lines always.
And the group coordinator's start, which is no error."""

from __future__ import annotations

import logging
from pathlib import Path

from worker.logs import (
    BROKER_LOGGER,
    COORDINATOR_LOGGER,
    CoordinatorStarting,
    RepeatLimiter,
    quiet_coordinator_start,
)


def record(name: str, msg: str, *args: object, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_repeated_library_line_passes_once_per_window_and_says_how_many_were_held() -> None:
    clock = FakeClock()
    limiter = RepeatLimiter(window=30, clock=clock)
    template = "Unable connect to node with id %s: %s"
    passed = [limiter.filter(record("aiokafka", template, 1, f"try {n}")) for n in range(1000)]
    assert passed.count(True) == 1
    assert limiter.held_back() == 999
    clock.now = 30.0
    later = record("aiokafka", template, 1, "again")
    assert limiter.filter(later)
    assert later.suppressed == 999  # type: ignore[attr-defined]
    assert limiter.held_back() == 0


def test_kinds_are_templates_per_logger_and_level() -> None:
    limiter = RepeatLimiter(window=30, clock=FakeClock())
    assert limiter.filter(record("aiokafka", "Unable to update metadata from %s", [1]))
    assert limiter.filter(record("aiokafka", "Unable to update metadata from %s", [1], level=30))
    assert limiter.filter(record("aiokafka.consumer", "Unable to update metadata from %s", [1]))
    assert not limiter.filter(record("aiokafka", "Unable to update metadata from %s", [2]))


def test_the_workers_own_lines_are_never_held_back_but_its_broker_lines_are() -> None:
    limiter = RepeatLimiter(window=30, clock=FakeClock())
    for _ in range(5):
        assert limiter.filter(record("sla_worker", "dead-lettered: %s", "bad json"))
    template = "could not commit a step of partition %d (%s)"
    assert limiter.filter(record(BROKER_LOGGER, template, 1, "KafkaTimeoutError"))
    assert not limiter.filter(record(BROKER_LOGGER, template, 1, "KafkaTimeoutError"))
    # Another partition's failure is never hidden behind the first one's.
    assert limiter.filter(record(BROKER_LOGGER, template, 2, "fenced by another owner"))


# --- the group coordinator that is still starting -----------------------------------------


def test_a_coordinator_not_available_yet_is_info_then_a_warning_after_the_grace() -> None:
    from aiokafka.errors import GroupCoordinatorNotAvailableError

    clock = FakeClock()
    starting = CoordinatorStarting(grace=60, clock=clock)
    first = record(
        COORDINATOR_LOGGER, CoordinatorStarting.TEMPLATE, GroupCoordinatorNotAvailableError()
    )
    assert starting.filter(first)
    assert (first.levelno, first.levelname) == (logging.INFO, "INFO")
    assert first.getMessage() == (
        "group coordinator not available yet (GroupCoordinatorNotAvailableError), retrying; "
        "waited 0 s"
    )
    clock.now = 59.0
    still = record(
        COORDINATOR_LOGGER, CoordinatorStarting.TEMPLATE, GroupCoordinatorNotAvailableError()
    )
    assert starting.filter(still) and still.levelno == logging.INFO
    clock.now = 61.0
    stuck = record(
        COORDINATOR_LOGGER, CoordinatorStarting.TEMPLATE, GroupCoordinatorNotAvailableError()
    )
    assert starting.filter(stuck) and stuck.levelno == logging.WARNING
    assert stuck.getMessage().endswith("waited 61 s")
    # Much later (after a quiet grace period), a new episode starts at INFO again.
    clock.now = 1000.0
    again = record(
        COORDINATOR_LOGGER, CoordinatorStarting.TEMPLATE, GroupCoordinatorNotAvailableError()
    )
    assert starting.filter(again) and again.levelno == logging.INFO


def test_other_aiokafka_errors_stay_errors() -> None:
    from aiokafka.errors import GroupAuthorizationFailedError, NotCoordinatorError

    starting = CoordinatorStarting(clock=FakeClock())
    for line in (
        record(COORDINATOR_LOGGER, CoordinatorStarting.TEMPLATE, NotCoordinatorError()),
        record(COORDINATOR_LOGGER, CoordinatorStarting.TEMPLATE, GroupAuthorizationFailedError()),
        record(COORDINATOR_LOGGER, "Error sending JoinGroupRequest_v%s to node %s [%s]", 5, 1, "x"),
        record("aiokafka", CoordinatorStarting.TEMPLATE, "GroupCoordinatorNotAvailableError"),
    ):
        before = (line.levelno, line.msg, line.args)
        assert starting.filter(line)
        assert (line.levelno, line.msg, line.args) == before


def test_the_filter_knows_aiokafka_s_own_line_and_reaches_the_handler_at_its_new_level() -> None:
    """The template is aiokafka's (an upgrade that rewords it fails here, not silently in
    production), and the filter sits on the logger: a handler at WARNING drops the INFO."""
    import aiokafka.consumer.group_coordinator as coordinator
    from aiokafka.errors import GroupCoordinatorNotAvailableError

    source = Path(coordinator.__file__).read_text()
    assert f'log.error("{CoordinatorStarting.TEMPLATE}", err)' in source
    assert coordinator.log.name == COORDINATOR_LOGGER

    logger = logging.getLogger(COORDINATOR_LOGGER)
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    info, warning = Keep(logging.INFO), Keep(logging.WARNING)
    propagate, level = logger.propagate, logger.level
    logger.addHandler(info)
    logger.addHandler(warning)
    logger.propagate = False
    logger.setLevel(logging.WARNING)  # as configure_logging sets aiokafka's
    try:
        quiet_coordinator_start()
        quiet_coordinator_start()  # idempotent
        assert sum(isinstance(f, CoordinatorStarting) for f in logger.filters) == 1
        logger.error(CoordinatorStarting.TEMPLATE, GroupCoordinatorNotAvailableError())
    finally:
        logger.removeHandler(info)
        logger.removeHandler(warning)
        logger.propagate, logger.level = propagate, level
        for f in [f for f in logger.filters if isinstance(f, CoordinatorStarting)]:
            logger.removeFilter(f)
    assert [r.levelname for r in seen] == ["INFO"]  # once: the WARNING handler dropped it
