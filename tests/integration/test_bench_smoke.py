"""Every benchmark runs, on tiny inputs, as `make test` goes: a benchmark that nobody runs
rots. (bench/ is type-checked too: `make typecheck`.) The numbers are not looked at here;
BENCHMARKS.md has real runs. The soak has a test of its own (test_soak.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

OFFLINE = {
    "at_risk_bench.py": ["--tickets", "3000", "--requests", "20"],
    "board_bench.py": ["--rows", "200", "--polls", "3"],
    "calendar_bench.py": ["--n", "500"],
    "replay_bench.py": ["--events", "3000", "--tickets", "300"],
    # Four of the stores (the others differ only in sync flags), crash probes included.
    "store_bench.py": [
        *("--tickets", "3000", "--steps", "20", "--reads", "500", "--pool", "300"),
        *("--stores", "dict,rocksdb,lmdb-sync,sqlite-normal"),
    ],
}
ON_KAFKA = {
    "audit_bench.py": ["--events", "3000", "--tickets", "300", "--customers", "5"],
    "worker_bench.py": ["--events", "2000", "--two-workers"],
    "eos_floor.py": ["--events", "2000"],
    "restart_bench.py": ["--tickets", "3000", "--pool", "100", "--partitions", "2"],
    "producers_bench.py": ["--partitions", "4", "--seconds", "1"],
    # Three restarts (rolling) and two joins (scale-out) of workers holding a few tickets.
    "rolling_bench.py": [*("--tickets", "600", "--window", "40", "--lead", "8", "--spread", "6")],
    "scaleout_bench.py": [*("--tickets", "600", "--window", "40", "--lead", "8", "--spread", "8")],
    "timers_bench.py": [
        *("--tickets", "500", "--finished", "500", "--window", "50"),
        *("--window-delay", "8", "--window-spread", "4"),
    ],
}


def run(script: str, args: list[str]) -> str:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, f"{script} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.parametrize("script", sorted(OFFLINE))
def test_an_offline_benchmark_runs(script: str) -> None:
    assert run(script, OFFLINE[script]).strip()


@pytest.mark.parametrize("script", sorted(ON_KAFKA))
def test_a_live_benchmark_runs(script: str, kafka_bootstrap: str) -> None:
    out = run(script, [*ON_KAFKA[script], "--bootstrap", kafka_bootstrap])
    last = out.strip().splitlines()[-1]
    assert last.startswith(
        (
            "worker/faust-table-floor ratio:",
            "timers:",
            "audit/file-replay ratio:",
            "worker/eos-floor ratio:",
            "restart-to-ready seconds:",
            "producers 4:",
            "rolling:",
            "scale-out:",
        )
    ), out
