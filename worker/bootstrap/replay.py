"""`sla-worker replay`: the engine over a file, its outputs to files or stderr."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import IO

import click

from worker.core.engine import Engine
from worker.core.events import SlaEvent, SlaTimerFinished
from worker.core.limits import InputLimits
from worker.core.policy import Policy
from worker.replay import Rejection, Replay, Summary, relaxed_garbage_collection


def run(
    events: IO[bytes],
    policy: Policy,
    output: IO[str],
    rejects: IO[str] | None,
    until: datetime | None,
    *,
    now: datetime | None,
    max_clock_skew_seconds: float,
    max_message_bytes: int,
    finished_retention_days: float,
    finished_timers: bool,
    partitions: int = 1,
) -> Summary:
    """Replay `events` under `policy` to `until`; the summary.

    Warnings and breaches (and with `finished_timers` the finished timers, in firing
    order among them) go to `output` as JSON Lines; rejected lines to `rejects` as JSON
    Lines, or to stderr as a sentence. `now` (default: the wall clock) judges future
    timestamps; `partitions` > 1 keeps a clock per partition of a topic of that many,
    where the default partitioner puts each ticket id. Raises `UntilBeforeLastEvent`.
    """

    def on_event(event: SlaEvent | SlaTimerFinished) -> None:
        output.write(event.model_dump_json())
        output.write("\n")

    def on_reject(rejection: Rejection) -> None:
        if rejects is not None:
            rejects.write(json.dumps(_rejection_record(rejection)) + "\n")
        else:
            click.echo(
                f"line {rejection.line}: rejected ({rejection.reason}): {rejection.detail}",
                err=True,
            )

    limits = InputLimits(max_message_bytes, timedelta(seconds=max_clock_skew_seconds))
    clock = now or datetime.now(UTC)
    retention = timedelta(days=finished_retention_days)
    engine = Engine(policy, retention, measure=finished_timers)
    on_finished = on_event if finished_timers else None
    partition_of = None
    if partitions > 1:
        # Imported here: a replay of one clock needs no Kafka client.
        from worker.kafka.topics import default_partition

        def partition_of(ticket_id: str) -> int:
            return default_partition(ticket_id.encode(), partitions)

    replay = Replay(engine, on_event, on_reject, clock, limits, on_finished, partition_of)
    with relaxed_garbage_collection():
        replay.feed(events)
        summary = replay.finish(until)
    output.flush()
    return summary


def _rejection_record(rejection: Rejection) -> dict[str, object]:
    return {
        "line": rejection.line,
        "reason": rejection.reason,
        "detail": rejection.detail,
        "event_id": rejection.event_id,
        "ticket_id": rejection.ticket_id,
    }
