"""`sla-worker audit`: the audit's files and streams, the run over Kafka, the exit status."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import IO

from worker.audit import Audit, run_audit
from worker.core.policy import Policy
from worker.core.reasons import Reason
from worker.kafka.access import KafkaAccessError
from worker.replay import relaxed_garbage_collection
from worker.settings import AuditSettings

_KEY_REASONS = (Reason.MISSING_KEY, Reason.KEY_MISMATCH)


def run(settings: AuditSettings, policy: Policy) -> int:
    """Run the audit as the command line does; the exit status (1: no access, or
    `--verify` found a difference)."""
    output: IO[str] = sys.stdout if settings.output is None else settings.output.open("w")
    events = None if settings.events is None else settings.events.open("wb")
    progress = sys.stderr if sys.stderr.isatty() else None
    try:
        with relaxed_garbage_collection():  # as `sla-worker replay` runs
            audit, summary, result = asyncio.run(
                run_audit(settings, policy, output, events, progress)
            )
    except KafkaAccessError as exc:
        print(f"sla-worker audit: {exc}", file=sys.stderr)
        return 1
    finally:
        if output is not sys.stdout:
            output.close()
        if events is not None:
            events.close()
    print(str(summary), file=sys.stderr)
    print(
        f"tickets created in the log: {len(audit.complete)}; incomplete, not judged "
        f"(events for tickets whose ticket-created the log does not hold): "
        f"{len(audit.incomplete)}",
        file=sys.stderr,
    )
    if settings.events is not None:
        print(_reproduction(audit, settings), file=sys.stderr)
    if result is None:
        return 0
    print(f"verify: judged the records {audit.window}", file=sys.stderr)
    print(str(result), file=sys.stderr)
    if settings.differences is not None:
        with settings.differences.open("w") as out:
            for row in result.records():
                out.write(json.dumps(row) + "\n")
    return 0 if result.clean else 1


def _reproduction(audit: Audit, settings: AuditSettings) -> str:
    """How `sla-worker replay` of the `--events` file gives this output, or why it cannot:
    replay places lines by ticket id with the default partitioner and knows no keys."""
    by_key = sum(audit.replay.summary.rejected_by_reason.get(r, 0) for r in _KEY_REASONS)
    if audit.placement is None:
        return "events: the input topics differ in partition count; replay cannot place them"
    if audit.unplaced or by_key:
        return (
            f"events: {audit.unplaced} records are not on their key's default partition and "
            f"{by_key} have no key or another one than their ticket's; replay of the file "
            "cannot give this output"
        )
    until = (
        ""
        if settings.end == "end" or audit.window.clock is None
        else (f" --until {audit.window.clock.isoformat()}")
    )
    now = "" if audit.replay.now is None else f" --now {audit.replay.now.isoformat()}"
    window = settings.start != "beginning" or settings.end != "end"
    return (
        f"events: `sla-worker replay {settings.events} --partitions {audit.placement}{now}"
        f"{until}` gives this output{' before the window is applied' if window else ''}"
    )
