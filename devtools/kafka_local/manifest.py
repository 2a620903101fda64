"""The pinned jar set: every artifact the broker runs on, with its checksums.

`scripts/kafka/jars.lock` lists what Maven resolves for `scripts/kafka/pom.xml` (the
`broker` set: the 46 jars of the classpath) and the one `kafka-tools` jar the Kafka
stand-in image adds (the `tools` set), each with the SHA-1 Maven Central publishes beside
it and a SHA-256 computed when it was pinned. A start fetches exactly these files and
refuses any byte that differs, so no Maven is needed to run the broker; `pin` (with Maven)
writes the file again after the pom changed. Pure: text in, text out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from devtools.kafka_local.errors import KafkaLocalError

SETS = ("broker", "tools")
HEADER = """\
# The jars of scripts/kafka-local's broker, pinned: what Maven resolves for
# scripts/kafka/pom.xml (set `broker`) plus kafka-tools for the Kafka stand-in image
# (set `tools`). Each line: set, group:artifact:version, the SHA-1 Maven Central publishes
# beside the jar, and its SHA-256. Written by `scripts/kafka-local pin` (needs Maven);
# every start fetches exactly these bytes (docs/development.md#how-the-broker-is-assembled).
"""
_HEX40 = re.compile(r"[0-9a-f]{40}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class Artifact:
    """One jar of Maven Central, by coordinates, with the checksums it must have."""

    group: str
    artifact: str
    version: str
    sha1: str
    sha256: str
    set: str = "broker"

    @property
    def file_name(self) -> str:
        """As `dependency:copy-dependencies` names it (no classifiers in this set)."""
        return f"{self.artifact}-{self.version}.jar"

    @property
    def repository_path(self) -> str:
        """Its path in a Maven repository: group dots become directories."""
        group = self.group.replace(".", "/")
        return f"{group}/{self.artifact}/{self.version}/{self.file_name}"

    @property
    def coordinates(self) -> str:
        return f"{self.group}:{self.artifact}:{self.version}"


@dataclass(frozen=True)
class Manifest:
    pom_sha256: str
    artifacts: tuple[Artifact, ...]

    def of(self, which: str) -> tuple[Artifact, ...]:
        return tuple(a for a in self.artifacts if a.set == which)

    def version_of(self, group: str, artifact: str) -> str:
        for pinned in self.artifacts:
            if (pinned.group, pinned.artifact) == (group, artifact):
                return pinned.version
        raise KafkaLocalError(f"{group}:{artifact} is not pinned")


def parse(text: str) -> Manifest:
    """The manifest from its text; a KafkaLocalError names the first bad line."""
    pom_sha256 = ""
    artifacts: list[Artifact] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if fields[0] == "pom-sha256" and len(fields) == 2 and _HEX64.fullmatch(fields[1]):
            pom_sha256 = fields[1]
            continue
        if len(fields) != 4 or fields[0] not in SETS:
            raise KafkaLocalError(f"jars.lock line {number}: {raw!r} is not an artifact line")
        which, coordinates, sha1, sha256 = fields
        parts = coordinates.split(":")
        if len(parts) != 3 or not all(_NAME.fullmatch(part) for part in parts):
            raise KafkaLocalError(f"jars.lock line {number}: bad coordinates {coordinates!r}")
        if not _HEX40.fullmatch(sha1) or not _HEX64.fullmatch(sha256):
            raise KafkaLocalError(f"jars.lock line {number}: bad checksums for {coordinates}")
        artifacts.append(Artifact(parts[0], parts[1], parts[2], sha1, sha256, which))
    if not pom_sha256:
        raise KafkaLocalError("jars.lock has no pom-sha256 line")
    names = [(a.set, a.file_name) for a in artifacts]
    if len(set(names)) != len(names):
        # Two coordinates that would land on one file name in the flat libs dir.
        raise KafkaLocalError("jars.lock names one jar file twice")
    return Manifest(pom_sha256, tuple(artifacts))


def format_manifest(manifest: Manifest) -> str:
    """The text `parse` reads back: sets in order, artifacts sorted by coordinates."""
    lines = [HEADER.rstrip("\n"), f"pom-sha256 {manifest.pom_sha256}"]
    for which in SETS:
        for pinned in sorted(manifest.of(which), key=lambda a: a.coordinates):
            lines.append(f"{which} {pinned.coordinates} {pinned.sha1} {pinned.sha256}")
    return "\n".join(lines) + "\n"
