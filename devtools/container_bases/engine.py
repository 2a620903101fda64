"""The engine: podman (rootful) and mmdebstrap, installed with apt-get when missing."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from devtools.container_bases.common import CONTAINERS_CONF, BasesError, info

LABEL = "dev.sla-worker.base-digest"

# What the engine needs: {command or file: Debian package}.
ENGINE_NEEDS = {
    "podman": "podman",
    "runc": "runc",
    "/usr/lib/podman/netavark": "netavark",
    "/usr/lib/podman/aardvark-dns": "aardvark-dns",
    "iptables": "iptables",
    "mmdebstrap": "mmdebstrap",
}


def run(command: list[str], *, what: str) -> str:
    """Run a command; its output on success, a BasesError with the output tail otherwise."""
    done = subprocess.run(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
        env=engine_env(),
    )
    if done.returncode != 0:
        tail = "\n".join(done.stdout.strip().splitlines()[-40:])
        raise BasesError(f"{what} failed (exit {done.returncode}): {' '.join(command)}\n{tail}")
    return done.stdout


SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")


def search_path() -> str:
    """PATH with the sbin directories (runc, iptables, chroot live there), if it lacks them."""
    parts = os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep)
    return os.pathsep.join([*parts, *(d for d in SBIN if d not in parts)])


def engine_env() -> dict[str, str]:
    """The environment for podman and mmdebstrap: the project's containers.conf, unless
    CONTAINERS_CONF names another, and the sbin directories on PATH."""
    env = {**os.environ, "PATH": search_path()}
    env.setdefault("CONTAINERS_CONF", str(CONTAINERS_CONF))
    return env


def missing_packages() -> list[str]:
    missing = []
    for need, package in ENGINE_NEEDS.items():
        found = (
            Path(need).exists() if need.startswith("/") else shutil.which(need, path=search_path())
        )
        if not found and package not in missing:
            missing.append(package)
    return missing


def ensure_engine() -> None:
    """podman and mmdebstrap on this machine, installed with apt-get when root."""
    missing = missing_packages()
    if missing:
        is_root = os.geteuid() == 0
        if not is_root or shutil.which("apt-get") is None:
            raise BasesError(
                f"missing Debian packages: {' '.join(missing)}. The container tests build and "
                f"run images with podman (rootful) and mmdebstrap; as root: apt-get update && "
                f"apt-get install -y --no-install-recommends {' '.join(missing)}"
                + ("" if is_root else " (or run this script as root: it does exactly that)")
            )
        info(f"installing {' '.join(missing)} with apt-get ...")
        started = time.monotonic()
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for command in (
            ["apt-get", "update", "-qq"],
            [
                "apt-get",
                "install",
                "-y",
                "-qq",
                "-o",
                "DPkg::Lock::Timeout=300",
                "--no-install-recommends",
                *missing,
            ],
        ):
            done = subprocess.run(
                command,
                env=env,
                capture_output=True,
                text=True,
                check=False,
                stdin=subprocess.DEVNULL,
            )
            if done.returncode != 0:
                raise BasesError(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}")
        info(f"installed in {time.monotonic() - started:.0f} s")
        still = missing_packages()
        if still:
            raise BasesError(f"still missing after apt-get install: {' '.join(still)}")
    if os.geteuid() != 0:
        raise BasesError("building and running the images needs root (rootful podman)")
    run(["podman", "info", "--format", "{{.Host.OCIRuntime.Name}}"], what="podman info")


def image_digest_label(tag: str) -> str | None:
    done = subprocess.run(
        ["podman", "image", "inspect", "--format", f'{{{{index .Labels "{LABEL}"}}}}', tag],
        capture_output=True,
        text=True,
        check=False,
        env=engine_env(),
    )
    return done.stdout.strip() if done.returncode == 0 else None
