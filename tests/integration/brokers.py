"""A private Kafka broker that a test may stop and bring back, with scripts/kafka-local.

The session's shared broker (conftest's `kafka_bootstrap`) must stay up for every other
test; a test about broker outages gets its own, in its own run directory, and restarts it
on the same address with the same data (`start --resume`), as a broker comes back after
maintenance; tests of secured listeners start theirs with `--security sasl_ssl|mtls`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

KAFKA_LOCAL = Path(__file__).resolve().parents[2] / "scripts" / "kafka-local"


@dataclass
class LocalBroker:
    home: Path
    bootstrap: str = ""

    def _run(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, str(KAFKA_LOCAL), *args],
            env={**os.environ, "SLA_KAFKA_HOME": str(self.home)},
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if done.returncode != 0:
            raise AssertionError(
                f"kafka-local {' '.join(args)} failed ({done.returncode}):\n"
                f"{done.stdout}\n{done.stderr}"
            )
        return done.stdout.strip().splitlines()[-1]

    def start(self, *options: str) -> str:
        """Start it (`options`: more `kafka-local start` flags, e.g. `--security mtls`)."""
        # --owner-pid: the broker goes when this pytest process dies without teardown.
        self.bootstrap = self._run("start", "--owner-pid", str(os.getpid()), *options)
        return self.bootstrap

    def client(self) -> dict[str, str]:
        """What a client needs (`client.json`: sla-worker's setting names and values)."""
        loaded: dict[str, str] = json.loads((self.home / "client.json").read_text())
        return loaded

    def stop(self) -> float:
        """Stop it; the monotonic instant it was down."""
        self._run("stop")
        return time.monotonic()

    def resume(self) -> None:
        address = self._run("start", "--resume")
        assert address == self.bootstrap, f"resumed on {address}, not {self.bootstrap}"
