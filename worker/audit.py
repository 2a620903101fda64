"""`sla-worker audit`: the replay engine straight over Kafka's history, and a check of
what the live worker published against it.

The audit reads the input topics read-only (`worker.kafka.history`), merges partitions
into event-time order and feeds the lines to the same `Replay` as `sla-worker replay`:
`--events` writes the merged lines, and `sla-worker replay` of that file prints the
audit's output byte for byte.

`--verify` then reads the warnings and breaches topics (read_committed) and compares by
`event_id`, for the tickets created inside the window (tickets created before it cannot
be judged from the window, and are reported as incomplete instead):

- missing: replay emits it, nothing was published;
- unexpected: published, not derivable from the input;
- different: the same id with other content.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import IO, Any

from pydantic_core import from_json

from worker.core.engine import Engine
from worker.core.events import SlaEvent, SlaTimerFinished
from worker.core.limits import InputLimits
from worker.core.policy import Policy
from worker.core.reasons import Reason
from worker.kafka.access import check_access
from worker.kafka.history import Record, merged_batches, merged_history
from worker.kafka.topics import client_options
from worker.replay import Rejection, Replay, Summary
from worker.settings import AuditSettings, parse_instant


def parse_bound(value: str, open_word: str) -> datetime | None:
    """`beginning`/`end` (None) or an RFC 3339 timestamp with an offset."""
    if value == open_word:
        return None
    return parse_instant(value)


@dataclass
class Verification:
    missing: list[dict[str, Any]] = field(default_factory=list)
    unexpected: list[dict[str, Any]] = field(default_factory=list)
    different: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)
    compared: int = 0
    outside: int = 0  # published for tickets created before the window, or due after it

    @property
    def clean(self) -> bool:
        return not (self.missing or self.unexpected or self.different)

    def __str__(self) -> str:
        return (
            f"verify: {self.compared} published records compared; missing "
            f"{len(self.missing)}, unexpected {len(self.unexpected)}, different "
            f"{len(self.different)}; {self.outside} outside the window (tickets created "
            "before it, or due after its end)"
        )

    def records(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = [{"kind": "missing", "expected": e} for e in self.missing]
        rows += [{"kind": "unexpected", "published": e} for e in self.unexpected]
        rows += [{"kind": "different", "expected": e, "published": p} for e, p in self.different]
        return rows


def verify(
    expected: dict[str, dict[str, Any]],
    published: list[dict[str, Any]],
    window_tickets: set[str],
    until: datetime | None,
) -> Verification:
    """Compare published events with the replay's, for the window's tickets (pure)."""
    result = Verification()
    seen: set[str] = set()
    for event in published:
        # A warning or breach is judged by when it came due, a finished timer by when it
        # stopped: outside the window, the replay cannot know it.
        due = datetime.fromisoformat(event.get("due_at") or event["finished_at"])
        if event["ticket_id"] not in window_tickets or (until is not None and due > until):
            result.outside += 1
            continue
        result.compared += 1
        if event["event_id"] in seen:
            continue  # a repeat (read_uncommitted or a redelivery): the same event
        seen.add(event["event_id"])
        want = expected.get(event["event_id"])
        if want is None:
            result.unexpected.append(event)
        elif want != event:
            result.different.append((want, event))
    result.missing = [e for event_id, e in expected.items() if event_id not in seen]
    return result


class Audit:
    """Replay of the merged history, with the window's tickets recorded for `verify`."""

    def __init__(self, policy: Policy, settings: AuditSettings, now: datetime) -> None:
        self.settings = settings
        self.expected: dict[str, dict[str, Any]] = {}
        self.window_tickets: set[str] = set()
        self.incomplete: set[str] = set()
        self.lines: int = 0
        self._outputs: list[Callable[[str], object]] = []
        limits = InputLimits(
            settings.max_message_bytes, timedelta(seconds=settings.max_clock_skew_seconds)
        )
        # Finished-timer records: written with --finished-timers, compared by --verify
        # when the worker publishes them (finished_timers_topic).
        self._write_finished = settings.finished_timers
        self._expect_finished = settings.verify and settings.finished_timers_topic is not None
        wanted = self._write_finished or self._expect_finished
        retention = timedelta(days=settings.finished_retention_days)
        engine = Engine(policy, retention, measure=wanted)
        self.replay = Replay(
            engine, self._on_event, self._on_reject, now, limits,
            self._on_finished if wanted else None,
        )  # fmt: skip

    def write_to(self, write: Callable[[str], object]) -> None:
        self._outputs.append(write)

    def feed(self, record: Record) -> None:
        self.lines += 1
        before = self.replay.summary.applied
        self.replay.feed_line(self.lines, record.value)
        if self.replay.summary.applied > before and b"ticket-created" in record.value:
            try:
                data = from_json(record.value)  # pydantic-core parses, as in history
            except ValueError:
                return
            if data.get("type") == "ticket-created":
                self.window_tickets.add(str(data.get("ticket_id")))

    def finish(self, until: datetime | None) -> Summary:
        return self.replay.finish(until)

    def _on_event(self, event: SlaEvent) -> None:
        text = event.model_dump_json()
        if self.settings.verify:
            self.expected[event.event_id] = json.loads(text)
        for write in self._outputs:
            write(text + "\n")

    def _on_finished(self, record: SlaTimerFinished) -> None:
        text = record.model_dump_json()
        if self._expect_finished:
            self.expected[record.event_id] = json.loads(text)
        if self._write_finished:
            for write in self._outputs:
                write(text + "\n")

    def _on_reject(self, rejection: Rejection) -> None:
        if rejection.reason == Reason.UNKNOWN_TICKET and rejection.ticket_id is not None:
            self.incomplete.add(rejection.ticket_id)


async def run_audit(
    settings: AuditSettings,
    policy: Policy,
    output: IO[str],
    events: IO[bytes] | None,
    progress: IO[str] | None,
) -> tuple[Audit, Summary, Verification | None]:
    start = parse_bound(settings.start, "beginning")
    end = parse_bound(settings.end, "end")
    now = datetime.now(UTC) if settings.now is None else parse_instant(settings.now)
    await check_access(settings)
    audit = Audit(policy, settings, now)
    audit.write_to(output.write)
    options = client_options(settings)

    def report(read: int, total: int) -> None:
        if progress is not None:
            share = read / total if total else 1.0
            bar = "#" * int(share * 30)
            progress.write(f"\rreading {read:,} of {total:,} records [{bar:<30}]")
            progress.flush()

    feed = audit.feed
    async for batch in merged_batches(options, settings.input_topics, start, end, report):
        if events is not None:
            events.writelines(record.value.replace(b"\n", b" ") + b"\n" for record in batch)
        for record in batch:
            feed(record)
    if progress is not None:
        progress.write("\n")
    summary = audit.finish(end)
    result = None
    if settings.verify:
        published = []
        outputs = [settings.warnings_topic, settings.breaches_topic]
        if settings.finished_timers_topic is not None:
            outputs.append(settings.finished_timers_topic)
        async for record in merged_history(options, outputs, start, None):
            published.append(json.loads(record.value))
        result = verify(audit.expected, published, audit.window_tickets, end)
    return audit, summary, result
