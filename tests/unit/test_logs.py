"""The log limiter: library chatter once per window, counted; the worker's own lines always."""

from __future__ import annotations

import logging

from worker.logs import BROKER_LOGGER, RepeatLimiter


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
