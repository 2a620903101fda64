"""`sla-worker audit`: the audit's files and streams, the run over Kafka, the exit status."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import IO

from worker.audit import run_audit
from worker.core.policy import Policy
from worker.kafka.access import KafkaAccessError
from worker.replay import relaxed_garbage_collection
from worker.settings import AuditSettings


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
        f"tickets created in the window: {len(audit.window_tickets)}; incomplete, not "
        f"judged (events for tickets created before the window, or never): "
        f"{len(audit.incomplete)}",
        file=sys.stderr,
    )
    if result is None:
        return 0
    print(str(result), file=sys.stderr)
    if settings.differences is not None:
        with settings.differences.open("w") as out:
            for row in result.records():
                out.write(json.dumps(row) + "\n")
    return 0 if result.clean else 1
