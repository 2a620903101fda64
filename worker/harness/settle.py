"""Wait for what the workers report, not for "long enough".

A test that sleeps until the worker has "probably" processed its input is slow when the
guess is generous and flaky when it is not. `settled` asks the workers instead.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from worker.harness.process import WorkerProcess
from worker.harness.topics import end_offsets


async def settled(
    workers: Sequence[WorkerProcess],
    input_topics: Sequence[str],
    until: datetime,
    *,
    timeout: float = 120,
    poll: float = 0.2,
) -> float:
    """Until the `workers`, together, have applied every record the input topics hold
    now and fired every timer due by `until`; the seconds it took.

    Each worker's `/readyz` shows, per input partition it owns, its read position, the
    earliest due instant of a timer not fired yet (`next_due`), and whether a step is
    under way (`busy`; when none is, what it shows is committed). When, in one answer per
    worker, every input partition is owned by a ready worker whose position reached the
    end offset taken here, which is caught up, and whose next due instant is after
    `until`, then every warning and breach due by `until` for that input is in the
    output topics' committed records, and no later step can add one: a reader of the
    outputs to their end sees exactly what there is to see. `until` is reached on the
    wall clock first (timers fire on it).
    """
    started = time.monotonic()
    ends = await end_offsets(workers[0].bootstrap, list(input_topics))
    if (wait := (until - datetime.now(UTC)).total_seconds()) > 0:
        await asyncio.sleep(wait)
    missing: list[str] = ["no answer yet"]
    while time.monotonic() - started < timeout:
        answers = await asyncio.gather(*(_readyz(worker) for worker in workers))
        missing = _unsettled(answers, ends, until)
        if not missing:
            return time.monotonic() - started
        await asyncio.sleep(poll)
    tails = "\n".join(f"--- worker {w.port} ---\n{w.tail(15)}" for w in workers)
    raise TimeoutError(f"not settled after {timeout} s: {'; '.join(missing[:5])}\n{tails}")


async def _readyz(worker: WorkerProcess) -> tuple[int, Any]:
    worker.check_alive()
    try:
        return await asyncio.to_thread(worker.get, "/readyz", 2)
    except (OSError, ValueError):
        return 0, None


def _unsettled(
    answers: list[tuple[int, Any]], ends: dict[tuple[str, int], int], until: datetime
) -> list[str]:
    """What is not settled yet, in words (empty: settled)."""
    problems: list[str] = []
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    for status, body in answers:
        if status != 200:
            problems.append(f"a worker answers /readyz {status}")
        elif body["busy"]:
            problems.append("a worker is in a step")
        else:
            rows.update({(row["topic"], row["partition"]): row for row in body["inputs"]})
    for (topic, partition), end in sorted(ends.items()):
        row = rows.get((topic, partition))
        where = f"{topic}[{partition}]"
        if row is None:
            problems.append(f"{where}: no ready worker owns it")
        elif row["position"] is None or row["position"] < end:
            problems.append(f"{where}: read to {row['position']}, not {end}")
        elif not row["caught_up"]:
            problems.append(f"{where}: not caught up")
        elif row["next_due"] is not None and datetime.fromisoformat(row["next_due"]) <= until:
            problems.append(f"{where}: a timer due {row['next_due']} has not fired")
    return problems
