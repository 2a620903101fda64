"""Running podman and podman-compose as the container tests do: with the project's
containers.conf, sbin on PATH, from the repository root, and a failure that carries the
command's output."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
CONTAINERS_CONF = ROOT / "scripts" / "containers" / "containers.conf"


def engine_env() -> dict[str, str]:
    """podman's environment: the project's containers.conf, and sbin on PATH (runc,
    iptables), as scripts/container-bases gives it."""
    path = os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep)
    path += [d for d in ("/usr/local/sbin", "/usr/sbin", "/sbin") if d not in path]
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF), "PATH": os.pathsep.join(path)}


def podman(
    *args: str, timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run `podman ARGS`; with `check`, a failure is an AssertionError carrying its output."""
    return run_engine(["podman", *args], timeout=timeout, check=check)


def run_engine(
    command: list[str], *, timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run a podman (or podman-compose) command in podman's environment, from the
    repository root; with `check`, a failure is an AssertionError carrying its output."""
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=engine_env(),
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )
    if check and done.returncode != 0:
        raise AssertionError(
            f"{' '.join(command)} exited {done.returncode}\n"
            f"--- stdout ---\n{done.stdout[-4000:]}\n--- stderr ---\n{done.stderr[-4000:]}"
        )
    return done
