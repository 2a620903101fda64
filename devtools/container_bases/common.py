"""What every part of container-bases shares: its error, its messages, its cache (its
lock is kafka-local's `layout.locked`)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from devtools.kafka_local.layout import CHECKOUT

ROOT = CHECKOUT
CONTAINERS_DIR = ROOT / "scripts" / "containers"
CONTAINERS_CONF = CONTAINERS_DIR / "containers.conf"
KAFKA_LOG4J = ROOT / "scripts" / "kafka" / "log4j2.properties"


class BasesError(Exception):
    """A failure with a message meant for the user."""


def info(message: str) -> None:
    print(f"container-bases: {message}", file=sys.stderr, flush=True)


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "sla-worker" / "container-bases"
