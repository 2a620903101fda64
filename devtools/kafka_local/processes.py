"""Our processes: found by the marker on their command line, stopped politely, then not.

The broker and its watchdog carry `-D<MARKER>=<run dir>` on their command lines: how
`stop` and `status` recognise them, and what `pgrep -f sla.worker.kafka.home` finds.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from pathlib import Path

from devtools.kafka_local.errors import KafkaLocalError
from devtools.kafka_local.layout import HOST, info

MARKER = "sla.worker.kafka.home"


def marker_flag(home: Path) -> str:
    return f"-D{MARKER}={home}"


def state_letter(stat: str) -> str:
    """The state of a /proc/<pid>/stat line: it follows the parenthesised command name,
    which may itself hold spaces and parentheses."""
    return stat[stat.rfind(")") + 2 :][:1]


def pid_alive(pid: int) -> bool:
    """True for a live process; False for no process or a zombie nobody has reaped yet."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state_letter(stat) not in ("Z", "X", "")


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def marked_pids(home: Path) -> list[int]:
    """Live processes (broker and watchdog) carrying our marker for this run dir."""
    flag = marker_flag(home)
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            pid = int(entry.name)
            if flag in cmdline(pid) and pid_alive(pid):
                found.append(pid)
    return sorted(found)


def terminate(pids: list[int], timeout: float) -> None:
    """SIGTERM, wait up to `timeout` seconds, then SIGKILL whatever is left."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
        pids = [pid for pid in pids if pid_alive(pid)]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while pids and time.monotonic() < deadline:
            time.sleep(0.1)
            pids = [pid for pid in pids if pid_alive(pid)]
        if not pids:
            return
        if sig == signal.SIGTERM:
            info(f"pid(s) {pids} ignored SIGTERM for {timeout:.0f} s: sending SIGKILL")
    raise KafkaLocalError(f"could not kill pid(s) {pids}")


def port_listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((HOST, port)) == 0


def free_ports(count: int) -> list[int]:
    """Ports the kernel hands out as free (held open together, so they are distinct)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((HOST, 0))
            sockets.append(sock)
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()
