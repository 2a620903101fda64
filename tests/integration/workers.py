"""Run `sla-worker worker` as a real subprocess, the way an operator does."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worker.settings import worker_command

ROOT = Path(__file__).parent.parent.parent
FAST_POLICY = ROOT / "tests" / "data" / "fast-policy.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def log_tail(path: Path, lines: int) -> str:
    """The last lines of a subprocess's log, for assertion messages."""
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class WorkerProcess:
    bootstrap: str
    app_id: str
    directory: Path
    partitions: int = 3
    input_topics: tuple[str, ...] = ("tickets",)
    policy: Path | None = FAST_POLICY
    extra: tuple[str, ...] = ()
    # Added to the worker's environment (fault injection, see tests/integration/faults).
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    _log: Any = None

    @property
    def log_path(self) -> Path:
        return self.directory / f"worker-{self.port}.log"

    def args(self) -> list[str]:
        settings: dict[str, object] = {
            "bootstrap_servers": self.bootstrap,
            "app_id": self.app_id,
            "partitions": self.partitions,
            "input_topics": self.input_topics,
            "web_host": "127.0.0.1",
            "web_port": self.port,
            "timer_interval_seconds": 0.1,
        }
        if self.policy is not None:
            settings["policies"] = self.policy
        return [*worker_command(**settings), *self.extra]

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._close_log()
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.args(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.directory,
            env={**os.environ, **self.env},
        )
        self.starts += 1

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def get(self, path: str) -> tuple[int, Any]:
        url = f"http://127.0.0.1:{self.port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    async def ready(self, timeout: float = 120) -> float:
        """Wait for /readyz to answer 200; return the seconds it took."""
        return await self.readyz(200, timeout)

    async def readyz(self, wanted: int, timeout: float = 120) -> float:
        """Wait for /readyz to answer `wanted` (200 ready, 503 not); return the seconds
        it took. A worker that exits meanwhile fails the wait at once."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited {self.process.returncode}:\n{self.tail()}")
            try:
                status, _ = await asyncio.to_thread(self.get, "/readyz")
                if status == wanted:
                    return time.monotonic() - started
            except (OSError, ValueError):
                pass
            await asyncio.sleep(0.25)
        raise AssertionError(f"/readyz did not answer {wanted} within {timeout} s:\n{self.tail()}")

    def terminate(self, timeout: float = 60) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)

    def tail(self, lines: int = 40) -> str:
        return log_tail(self.log_path, lines)

    def stop_quietly(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._close_log()
