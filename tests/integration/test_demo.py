"""The README's run command: `sla-worker demo` against the test broker."""

from __future__ import annotations

import subprocess
import sys

from devtools.harness import free_port


def test_demo_prints_warnings_and_stops_cleanly(kafka_bootstrap: str) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "worker",
            "demo",
            "--bootstrap-servers",
            kafka_bootstrap,
            "--duration",
            "45",
            "--web-port",
            str(free_port()),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "worker ready" in result.stdout
    assert "new ticket HD-1001" in result.stdout
    # HD-1001 is vip priority 1 (1 minute): its 50 % warning comes 30 s in.
    assert "HD-1001  vip P1  first_response #1  target PT1M" in result.stdout
    assert "worker stopped (exit 0)" in result.stdout
