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

from devtools.harness.topics import end_offsets
from worker.harness.process import WorkerProcess


async def settled(
    workers: Sequence[WorkerProcess],
    until: datetime,
    *,
    input_topics: Sequence[str] | None = None,
    timeout: float = 120,
    poll: float = 0.2,
) -> float:
    """Until the `workers`, together, have applied every record their input topics held
    when the wait began and fired every timer due by `until`; the seconds it took,
    counted from `until` (which is reached on the wall clock first: timers fire on it).

    Each worker's `/readyz` shows, per input partition it owns, its read position,
    `caught_up`, the earliest due instant of a timer not fired yet (`next_due`) and of
    a held event's expiry (`held_until`), and whether a step is under way (`busy`; when
    none is, what it shows is committed). Settled: in one answer per worker, every input
    partition is owned by exactly one ready worker, whose position reached the end
    taken here (the high watermark: every record written, in transactions committed
    before the call too), which is caught up, and whose next due instant and held
    events' expiry are after `until`. Then every warning, breach and dead letter that
    input gives up to `until` is in the output topics (`read_all` sees it), and no
    later step can add one. For after the input stops: while records keep arriving,
    a worker is rarely found between steps. An input transaction left open keeps it
    from settling.
    """
    if not workers:
        raise ValueError("settled needs at least one worker")
    topics = input_topics or sorted({t for w in workers for t in w.input_topics})
    ends = await end_offsets(workers[0].bootstrap, list(topics), committed=False)
    if (wait := (until - datetime.now(UTC)).total_seconds()) > 0:
        await asyncio.sleep(wait)
    started = time.monotonic()
    missing: list[str] = ["no answer yet"]
    while time.monotonic() - started < timeout:
        answers = await asyncio.gather(*(_readyz(worker) for worker in workers))
        missing = unsettled(answers, ends, until)
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


def unsettled(
    answers: Sequence[tuple[int, Any]], ends: dict[tuple[str, int], int], until: datetime
) -> list[str]:
    """What keeps these `/readyz` answers from being settled, in words (empty: nothing).

    `ends`: {(input topic, partition): offset every record must be read up to}."""
    problems: list[str] = []
    rows: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for status, body in answers:
        if status != 200:
            problems.append(f"a worker answers /readyz {status}")
        elif body["busy"]:
            problems.append("a worker is in a step")
        else:
            for row in body["inputs"]:
                rows.setdefault((row["topic"], row["partition"]), []).append(row)
    for (topic, partition), end in sorted(ends.items()):
        owners = rows.get((topic, partition), [])
        where = f"{topic}[{partition}]"
        if len(owners) != 1:
            problems.append(f"{where}: {len(owners)} ready workers own it, not 1")
            continue
        row = owners[0]
        if row["position"] is None or row["position"] < end:
            problems.append(f"{where}: read to {row['position']}, not {end}")
        elif not row["caught_up"]:
            problems.append(f"{where}: not caught up")
        for name, what in (("next_due", "a timer due"), ("held_until", "a hold ending")):
            if row[name] is not None and datetime.fromisoformat(row[name]) <= until:
                problems.append(f"{where}: {what} {row[name]} has not been acted on")
    return problems
