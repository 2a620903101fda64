"""`sla-worker audit`: the replay engine straight over Kafka's history, and a check of
what the live worker published against it.

The audit reads every input partition read-only from its first record to its end when
the run starts (`worker.kafka.history`), merges them into event-time order and feeds the
records to the same `Replay` as `sla-worker replay`, one lane per partition: each
partition has its own event-time clock, as in the worker, so every rule that reads a
clock (what fires before an event, `too-old`, when a finished ticket leaves state) judges
a ticket exactly as the worker that owned its partition did, however the tickets are
spread over partitions. A record the worker dead-letters for its key (`missing-key`,
`key-mismatch`) is rejected here too.

`--from` and `--to` choose the window that is written and judged, never what is read: a
partition's event time and a ticket's whole history before the window decide what falls
due in it. `--verify` then reads the warnings and breaches topics (read_committed) and
compares by `event_id` the records due in the judged window (`Window`) of tickets whose
`ticket-created` the audit read:

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

from worker.core.engine import Engine
from worker.core.events import SlaEvent, SlaTimerFinished
from worker.core.limits import InputLimits
from worker.core.policy import Policy
from worker.core.reasons import Reason
from worker.kafka.access import check_access
from worker.kafka.history import Record, merged_batches, merged_history, partition_counts
from worker.kafka.topics import client_options, default_partition
from worker.replay import Rejection, Replay, Summary
from worker.settings import AuditSettings, parse_instant


def parse_bound(value: str, open_word: str) -> datetime | None:
    """`beginning`/`end` (None) or an RFC 3339 timestamp with an offset."""
    if value == open_word:
        return None
    return parse_instant(value)


def instant_of(record: dict[str, Any]) -> datetime:
    """When a record came due: a warning or breach at its `due_at`, a finished timer when
    it stopped (`finished_at`)."""
    return datetime.fromisoformat(record.get("due_at") or record["finished_at"])


@dataclass(frozen=True)
class Window:
    """The records an audit writes and judges: due (or finished) from `start` through
    `end` (None: open), and never after `clock`, the instant the audit's clock reached.

    `end` is `--to` when given, else `--now` (the worker never fires before the wall
    clock, so nothing due after `--now` can be out yet); `clock` is set once the replay
    finished: with `--to end` the last applied event's time. What falls due after it is
    what the worker fired on the wall clock after the last event, which the log cannot
    tell; it is counted as outside, never judged.
    """

    start: datetime | None
    end: datetime
    clock: datetime | None = None

    def contains(self, at: datetime) -> bool:
        if self.start is not None and at < self.start:
            return False
        return at <= self.end and (self.clock is None or at <= self.clock)

    def __str__(self) -> str:
        start = "the beginning" if self.start is None else self.start.isoformat()
        end = self.end if self.clock is None else min(self.end, self.clock)
        return f"due from {start} through {end.isoformat()}"


@dataclass
class Verification:
    missing: list[dict[str, Any]] = field(default_factory=list)
    unexpected: list[dict[str, Any]] = field(default_factory=list)
    different: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)
    compared: int = 0
    outside: int = 0  # tickets not created in the log, or due outside the window

    @property
    def clean(self) -> bool:
        return not (self.missing or self.unexpected or self.different)

    def __str__(self) -> str:
        return (
            f"verify: {self.compared} published records compared; missing "
            f"{len(self.missing)}, unexpected {len(self.unexpected)}, different "
            f"{len(self.different)}; {self.outside} outside the window (tickets whose "
            "ticket-created the log does not hold, or due outside the judged window)"
        )

    def records(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = [{"kind": "missing", "expected": e} for e in self.missing]
        rows += [{"kind": "unexpected", "published": e} for e in self.unexpected]
        rows += [{"kind": "different", "expected": e, "published": p} for e, p in self.different]
        return rows


def verify(
    expected: dict[str, dict[str, Any]],
    published: list[dict[str, Any]],
    complete: set[str],
    window: Window,
) -> Verification:
    """Compare published records with the replay's (pure): those of `complete` tickets
    (whose `ticket-created` the audit read) that fall in `window`."""
    result = Verification()
    seen: set[str] = set()
    for event in published:
        if event["ticket_id"] not in complete or not window.contains(instant_of(event)):
            result.outside += 1
            continue
        result.compared += 1
        event_id = event["event_id"]
        want = expected.get(event_id)
        if event_id in seen:
            # A repeat (a redelivery) is the same event; one with other content is not,
            # and is judged like the first (an expected one is told apart by content).
            if want is not None and want != event:
                result.different.append((want, event))
            continue
        seen.add(event_id)
        if want is None:
            result.unexpected.append(event)
        elif want != event:
            result.different.append((want, event))
    result.missing = [
        e
        for event_id, e in expected.items()
        if event_id not in seen and window.contains(instant_of(e))
    ]
    return result


class Audit:
    """Replay of the merged history, one lane per partition, with the tickets it saw
    created recorded for `verify`."""

    def __init__(
        self, policy: Policy, settings: AuditSettings, now: datetime, window: Window
    ) -> None:
        self.settings = settings
        self.window = window
        self.expected: dict[str, dict[str, Any]] = {}
        self.complete: set[str] = set()  # tickets whose ticket-created was applied
        self.incomplete: set[str] = set()
        self.placement: int | None = None  # with --events: the input topics' partitions
        self.unplaced = 0  # keyed records not where the default partitioner puts their key
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
            self._on_finished if wanted else None, on_created=self.complete.add,
        )  # fmt: skip

    def write_to(self, write: Callable[[str], object]) -> None:
        self._outputs.append(write)

    def feed(self, record: Record) -> None:
        self.lines += 1
        placement = self.placement
        key = record.key
        if placement is not None and key and default_partition(key, placement) != record.partition:
            self.unplaced += 1
        self.replay.feed_record(self.lines, record.value, record.partition, record.key)

    def finish(self, until: datetime | None) -> Summary:
        """Advance every partition's clock to `until` (None: the last applied event;
        never back, since the audit reads past `--to`), and bound the window by it."""
        last = self.replay.clock
        end = last if until is None or (last is not None and last > until) else until
        summary = self.replay.finish(end)
        self.window = Window(self.window.start, self.window.end, end)
        return summary

    def _on_event(self, event: SlaEvent) -> None:
        if not self.window.contains(event.due_at):
            return
        text = event.model_dump_json()
        if self.settings.verify:
            self.expected[event.event_id] = json.loads(text)
        for write in self._outputs:
            write(text + "\n")

    def _on_finished(self, record: SlaTimerFinished) -> None:
        if not self.window.contains(record.finished_at):
            return
        text = record.model_dump_json()
        if self._expect_finished:
            self.expected[record.event_id] = json.loads(text)
        if self._write_finished:
            for write in self._outputs:
                write(text + "\n")

    def _on_reject(self, rejection: Rejection) -> None:
        if rejection.reason == Reason.UNKNOWN_TICKET and rejection.ticket_id is not None:
            self.incomplete.add(rejection.ticket_id)


def window_of(settings: AuditSettings, now: datetime) -> Window:
    """The window `--from`, `--to` and `--now` ask for (`AuditSettings` refuses a `--to`
    after `--now`)."""
    end = parse_bound(settings.end, "end")
    return Window(parse_bound(settings.start, "beginning"), now if end is None else end)


async def run_audit(
    settings: AuditSettings,
    policy: Policy,
    output: IO[str],
    events: IO[bytes] | None,
    progress: IO[str] | None,
) -> tuple[Audit, Summary, Verification | None]:
    now = datetime.now(UTC) if settings.now is None else parse_instant(settings.now)
    window = window_of(settings, now)
    until = parse_bound(settings.end, "end")
    await check_access(settings)
    audit = Audit(policy, settings, now, window)
    audit.write_to(output.write)
    options = client_options(settings)
    if events is not None:
        counts = set((await partition_counts(options, settings.input_topics)).values())
        audit.placement = counts.pop() if len(counts) == 1 else None

    def report(read: int, total: int) -> None:
        if progress is not None:
            share = read / total if total else 1.0
            bar = "#" * int(share * 30)
            progress.write(f"\rreading {read:,} of {total:,} records [{bar:<30}]")
            progress.flush()

    feed = audit.feed
    # Everything up to the end offsets, whatever the window (see the module doc).
    async for batch in merged_batches(options, settings.input_topics, None, None, report):
        if events is not None:
            events.writelines(record.value.replace(b"\n", b" ") + b"\n" for record in batch)
        for record in batch:
            feed(record)
    if progress is not None:
        progress.write("\n")
    summary = audit.finish(until)
    result = None
    if settings.verify:
        published = []
        outputs = [settings.warnings_topic, settings.breaches_topic]
        if settings.finished_timers_topic is not None:
            outputs.append(settings.finished_timers_topic)
        # From the beginning: a forged record's Kafka time says nothing of its due instant.
        async for record in merged_history(options, outputs, None, None):
            published.append(json.loads(record.value))
        result = verify(audit.expected, published, audit.complete, audit.window)
    return audit, summary, result
