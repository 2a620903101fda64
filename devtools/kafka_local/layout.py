"""Where things are: the pinned files of the checkout, the jar cache, the run directory."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

from devtools.kafka_local.errors import KafkaLocalError

CHECKOUT = Path(__file__).resolve().parents[2]
KAFKA_DIR = CHECKOUT / "scripts" / "kafka"
POM = KAFKA_DIR / "pom.xml"
MANIFEST = KAFKA_DIR / "jars.lock"
SERVER_TEMPLATE = KAFKA_DIR / "server.properties.template"
LOG4J_CONFIG = KAFKA_DIR / "log4j2.properties"
VENV = CHECKOUT / ".venv"

HOST = "127.0.0.1"


def info(message: str) -> None:
    print(f"kafka-local: {message}", file=sys.stderr, flush=True)


def env_float(name: str, default: float, environ: Mapping[str, str] = os.environ) -> float:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise KafkaLocalError(f"{name}={raw!r} is not a number") from exc


def pom_version(pom_text: str) -> str:
    """`<kafka.version>` of the pom: the single place the broker version is pinned."""
    match = re.search(r"<kafka\.version>\s*([^<\s]+)\s*</kafka\.version>", pom_text)
    if not match:
        raise KafkaLocalError(f"no <kafka.version> in {POM}")
    return match.group(1)


def kafka_version() -> str:
    return pom_version(POM.read_text())


def cache_root(environ: Mapping[str, str] = os.environ) -> Path:
    base = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "sla-worker"


def run_dir(environ: Mapping[str, str] = os.environ) -> Path:
    configured = environ.get("SLA_KAFKA_HOME")
    return Path(configured).expanduser().resolve() if configured else cache_root(environ) / "run"


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive flock on `path`: one start/stop per run dir, one download per cache."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
