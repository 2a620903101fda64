"""`sla-worker worker` as a subprocess, the way an operator runs it."""

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
from typing import IO, Any

from worker.core.errors import SlaWorkerError
from worker.harness.scrape import Scrape
from worker.settings import worker_command


def free_port() -> int:
    """A loopback port nobody listens on now (another process may take it before we do)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def log_tail(path: Path, lines: int) -> str:
    """The last lines of a subprocess's log, for error messages."""
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


class WorkerExited(SlaWorkerError, RuntimeError):
    """The worker process ended while someone waited for it; the message has its log."""


@dataclass
class WorkerProcess:
    """One worker process, restartable (`start` after `kill` or `terminate`), with its
    own HTTP port and a log file that restarts append to."""

    bootstrap: str
    app_id: str
    directory: Path
    input_topics: tuple[str, ...] = ("tickets",)
    partitions: int = 3
    policy: Path | None = None  # None: the built-in presets
    # More settings, by WorkerSettings field name (`warnings_topic=...`), and more
    # command-line arguments as they are.
    settings: dict[str, object] = field(default_factory=dict)
    extra: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)  # added to the environment
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    started_at: float = 0.0  # time.perf_counter() of the last start
    _log: IO[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.directory / f"worker-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def args(self) -> list[str]:
        settings: dict[str, object] = {
            "bootstrap_servers": self.bootstrap,
            "app_id": self.app_id,
            "partitions": self.partitions,
            "input_topics": self.input_topics,
            "web_host": "127.0.0.1",
            "web_port": self.port,
            **self.settings,
        }
        if self.policy is not None:
            settings["policies"] = self.policy
        return [*worker_command(**settings), *self.extra]

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._close_log()
        self._log = self.log_path.open("ab")
        self.started_at = time.perf_counter()
        self.process = subprocess.Popen(
            self.args(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.directory,
            env={**os.environ, **self.env},
        )
        self.starts += 1

    # --- asking it ------------------------------------------------------------------------

    def fetch(self, path: str, timeout: float = 5) -> tuple[int, bytes]:
        """GET `path`: (status, body), also for 4xx and 5xx."""
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def get(self, path: str, timeout: float = 5) -> tuple[int, Any]:
        """GET `path`: (status, the JSON body)."""
        status, body = self.fetch(path, timeout)
        return status, json.loads(body or b"null")

    def scrape(self) -> Scrape | None:
        """Its /metrics now, or None while it does not answer."""
        try:
            status, body = self.fetch("/metrics", timeout=10)
        except (OSError, ValueError):
            return None
        return Scrape.parse(body.decode()) if status == 200 else None

    def wait_readyz(self, wanted: int = 200, timeout: float = 120, poll: float = 0.25) -> float:
        """Until /readyz answers `wanted` (200 ready, 503 not); the seconds it took. A
        worker that exits meanwhile ends the wait at once (`WorkerExited`)."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            self.check_alive()
            try:
                if self.fetch("/readyz", timeout=2)[0] == wanted:
                    return time.monotonic() - started
            except (OSError, ValueError):
                pass
            time.sleep(poll)
        raise TimeoutError(f"/readyz did not answer {wanted} within {timeout} s:\n{self.tail()}")

    async def readyz(self, wanted: int, timeout: float = 120) -> float:
        return await asyncio.to_thread(self.wait_readyz, wanted, timeout)

    async def ready(self, timeout: float = 120) -> float:
        """Until it is ready (joined, restored, brokers reachable); the seconds it took."""
        return await self.readyz(200, timeout)

    # --- its process ----------------------------------------------------------------------

    @property
    def pid(self) -> int:
        assert self.process is not None, "not started"
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def check_alive(self) -> None:
        if not self.alive():
            code = None if self.process is None else self.process.returncode
            raise WorkerExited(f"worker exited ({code}):\n{self.tail()}")

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM, the graceful stop; its exit status. One that does not exit within
        `timeout` is killed, and the wait fails."""
        assert self.process is not None, "not started"
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(30)
            raise
        finally:
            self._close_log()

    def kill(self) -> None:
        """SIGKILL: the crash, at whatever instant this is."""
        assert self.process is not None, "not started"
        self.process.kill()
        self.process.wait(10)

    def stop_quietly(self) -> None:
        """For clean-up: kill it if it runs, close its log."""
        if self.alive():
            self.kill()
        self._close_log()

    def rss_bytes(self) -> int:
        return _status_kib(self.pid, "VmRSS") * 1024

    def hwm_bytes(self) -> int:
        """Its peak resident set so far."""
        return _status_kib(self.pid, "VmHWM") * 1024

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def tail(self, lines: int = 40) -> str:
        return log_tail(self.log_path, lines)

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


def _status_kib(pid: int, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {name} in /proc/{pid}/status")
