"""The stand-in images: each one's Debian packages, files, commands and settings, and the
digest of all that goes into it (the name of its cached root file system)."""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from devtools.container_bases.common import (
    CONTAINERS_DIR,
    KAFKA_LOG4J,
    ROOT,
    BasesError,
    cache_dir,
)
from devtools.kafka_local import jars
from devtools.kafka_local.layout import kafka_version

# Part of every digest: bump it when the way images are built changes.
BASES_VERSION = 1
SUITE = "bookworm"
MIRRORS = (
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
)
# The host's extra trust anchors (e.g. a TLS-inspecting proxy's): pip inside an image
# build verifies PyPI against the image's bundle, so they go into the Python image.
EXTRA_CA_DIR = Path("/usr/local/share/ca-certificates")
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def prometheus_tag() -> str:
    """The prom/prometheus tag docker-compose.yml names (the stand-in carries that name)."""
    text = (ROOT / "docker-compose.yml").read_text()
    match = re.search(r"image:\s*(prom/prometheus:\S+)", text)
    if not match:
        raise BasesError("docker-compose.yml names no prom/prometheus image")
    return match.group(1)


@dataclass(frozen=True)
class Base:
    """One stand-in image: Debian packages, files copied in, commands, image settings."""

    tag: str
    packages: tuple[str, ...]
    # (host path, path in the image): copied in after the packages are installed.
    copies: tuple[tuple[Path, str], ...] = ()
    # Shell commands run in the image (chroot) after the copies.
    commands: tuple[str, ...] = ()
    # podman import --change instructions.
    changes: tuple[str, ...] = ()
    # Extra inputs of the digest that are not files (e.g. jar lists).
    notes: tuple[str, ...] = field(default=())

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-zA-Z0-9.-]+", "_", self.tag)

    def digest(self) -> str:
        hasher = hashlib.sha256()
        recipe = {
            "version": BASES_VERSION,
            "suite": SUITE,
            "mirrors": MIRRORS,
            "tag": self.tag,
            "packages": self.packages,
            "copies": [target for _, target in self.copies],
            "commands": self.commands,
            "changes": self.changes,
            "notes": self.notes,
        }
        hasher.update(json.dumps(recipe, sort_keys=True).encode())
        for source, _ in self.copies:
            for path in sorted(source.rglob("*")) if source.is_dir() else [source]:
                if path.is_file():
                    hasher.update(str(path.relative_to(source.parent)).encode())
                    hasher.update(hashlib.sha256(path.read_bytes()).digest())
                    hasher.update(b"x" if os.access(path, os.X_OK) else b"-")
        return hasher.hexdigest()[:16]

    def cached_tar(self) -> Path:
        return cache_dir() / f"{self.slug}-{self.digest()}.tar"


def python_base() -> Base:
    cas = tuple(sorted(EXTRA_CA_DIR.glob("*.crt"))) if EXTRA_CA_DIR.is_dir() else ()
    return Base(
        tag=tags()["python"],
        packages=(
            "ca-certificates",
            "netbase",
            "tzdata",
            "passwd",
            "python3",
            "python3-pip",
            "python3-venv",
            "python-is-python3",
            "python3-dev",
        ),
        copies=tuple((ca, f"/usr/local/share/ca-certificates/{ca.name}") for ca in cas),
        commands=(
            # The official image lets root `pip install` into the system Python.
            "rm -f /usr/lib/python3*/EXTERNALLY-MANAGED",
            "update-ca-certificates >/dev/null",
        ),
        changes=(f"ENV {PATH_ENV}", "ENV LANG=C.UTF-8", 'CMD ["python3"]'),
    )


def kafka_base() -> Base:
    version = kafka_version()
    # The jars scripts/kafka-local runs, and kafka-tools (BrokerApiVersionsCommand, the
    # compose health check's): both pinned in scripts/kafka/jars.lock, fetched once.
    libs = jars.ensure("broker")
    tools = jars.ensure("tools")
    return Base(
        tag=tags()["kafka"],
        packages=("openjdk-17-jre-headless", "netbase"),
        copies=(
            (libs, "/opt/kafka/libs"),
            (tools, "/opt/kafka/libs"),
            (CONTAINERS_DIR / "kafka" / "bin", "/opt/kafka/bin"),
            (CONTAINERS_DIR / "kafka" / "run", "/etc/kafka/docker/run"),
            (KAFKA_LOG4J, "/opt/kafka/config/log4j2.properties"),
        ),
        changes=(
            f"ENV {PATH_ENV}:/opt/kafka/bin",
            "WORKDIR /opt/kafka",
            "EXPOSE 9092",
            'ENTRYPOINT ["/etc/kafka/docker/run"]',
        ),
        notes=(version,),
    )


def prometheus_base() -> Base:
    return Base(
        tag=tags()["prometheus"],
        packages=("prometheus", "ca-certificates"),
        commands=(
            "mkdir -p /prometheus /etc/prometheus",
            "chown nobody:nogroup /prometheus",
        ),
        changes=(
            "USER nobody",
            "WORKDIR /prometheus",
            "EXPOSE 9090",
            'ENTRYPOINT ["/usr/bin/prometheus"]',
            'CMD ["--config.file=/etc/prometheus/prometheus.yml", '
            '"--storage.tsdb.path=/prometheus"]',
        ),
    )


RECIPES = {"python": python_base, "kafka": kafka_base, "prometheus": prometheus_base}


def tags() -> dict[str, str]:
    """Each stand-in's image name: the ones the Dockerfile and docker-compose.yml use
    (tests/unit/test_container_bases.py checks that they are exactly those)."""
    return {
        "python": "python:3.11-slim",
        "kafka": f"apache/kafka:{kafka_version()}",
        "prometheus": prometheus_tag(),
    }
