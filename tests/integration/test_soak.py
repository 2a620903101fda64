"""The chaos soak, two minutes of it: bench/soak.py as an operator runs it.

Live traffic on the minute-scale demo policy, two workers, and on a seeded schedule a
SIGKILL, a SIGTERM, a third worker joining and leaving, and a broker restart; then
everything published is compared with `sla-worker replay` of the input as exact sets of
`event_id`s. The ten-minute run is a benchmark (BENCHMARKS.md).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAST_LINE = re.compile(
    r"soak: missing (\d+), invented (\d+), duplicates (\d+), lateness p99 ([\d.]+) s"
)


@pytest.mark.kafka  # runs its own broker, which it restarts
def test_a_two_minute_chaos_soak_publishes_exactly_what_replay_emits(
    record_property: Any,
) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "soak.py"), "--minutes", "2", "--seed", "7"],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
        check=False,
    )
    report = [line for line in done.stdout.splitlines() if line.strip()]
    print("\n".join(report))
    match = LAST_LINE.fullmatch(report[-1]) if report else None
    assert match, f"exit {done.returncode}\n{done.stdout}\n{done.stderr[-3000:]}"
    missing, invented, duplicates = (int(match.group(n)) for n in (1, 2, 3))
    record_property("lateness_p99_seconds", float(match.group(4)))
    record_property("duplicates", duplicates)
    assert (missing, invented, duplicates) == (0, 0, 0), "\n".join(report)
    # Also: no content differs, nothing published early, every hostile line dead-lettered
    # once, every kind of fault ran, and enough was expected to prove anything.
    assert done.returncode == 0, "\n".join(report)
