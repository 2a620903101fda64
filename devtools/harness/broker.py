"""A private Kafka broker from `scripts/kafka-local`, that its owner may stop and resume.

A test or benchmark about broker outages needs a broker of its own (others share theirs):
in its own run directory (`SLA_KAFKA_HOME`), brought back on the same address with the
same data (`start --resume`), as a broker comes back after maintenance; a test of secured
listeners starts one with `--security sasl_ssl|mtls`. It runs the checkout's
`scripts/kafka-local` (this package lives beside it: it is never installed).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from devtools.kafka_local.layout import CHECKOUT
from worker.core.errors import SlaWorkerError

KAFKA_LOCAL = CHECKOUT / "scripts" / "kafka-local"
START_TIMEOUT = 900.0
"""A first start on a machine without the jar cache downloads ~45 MB (slowly, at worst)."""


class BrokerError(SlaWorkerError, RuntimeError):
    """`scripts/kafka-local` failed; the message carries its output."""


@dataclass
class LocalBroker:
    home: Path
    env: dict[str, str] = field(default_factory=dict)  # e.g. SLA_KAFKA_HEAP
    bootstrap: str = ""

    def _run(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, str(KAFKA_LOCAL), *args],
            env={**os.environ, **self.env, "SLA_KAFKA_HOME": str(self.home)},
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT,
            check=False,
        )
        if done.returncode != 0:
            raise BrokerError(
                f"kafka-local {' '.join(args)} failed ({done.returncode}):\n"
                f"{done.stdout}\n{done.stderr}"
            )
        lines = done.stdout.strip().splitlines()
        return lines[-1] if lines else ""

    def start(self, *options: str) -> str:
        """Start it and return its address (`options`: more `kafka-local start` flags)."""
        # --owner-pid: the broker goes when this process dies without stopping it.
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
        """Start it again on its address, with its data."""
        address = self._run("start", "--resume")
        if address != self.bootstrap:
            raise BrokerError(f"resumed on {address}, not {self.bootstrap}")
