"""`scripts/kafka-local pin`: write scripts/kafka/jars.lock from what Maven resolves.

The one step that needs Maven, run by whoever changes scripts/kafka/pom.xml (a new Kafka
version). Maven lists the runtime classpath of the pom with each jar's path in its local
repository, where it also keeps the `.sha1` file it downloaded from Maven Central beside
the jar: that published SHA-1 must match the jar's bytes, and goes into the manifest with
a SHA-256 computed here.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from devtools.kafka_local import layout, manifest
from devtools.kafka_local.errors import KafkaLocalError
from devtools.kafka_local.manifest import Artifact, Manifest

DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"


@dataclass(frozen=True)
class Resolved:
    """One line of `mvn dependency:list -DoutputAbsoluteArtifactFilename=true`."""

    group: str
    artifact: str
    version: str
    path: Path


def parse_dependency_list(text: str) -> list[Resolved]:
    """Pure: the jars of a dependency:list output file, in its order.

    Lines look like `   g:a:jar:v:scope:/abs/path.jar -- module m (auto)`; a line with a
    classifier (six fields before the path) is refused, since the cache names jars
    `<artifact>-<version>.jar`.
    """
    resolved = []
    for raw in text.splitlines():
        line = raw.split(" -- ", 1)[0].strip()
        if not line or ":" not in line or line.startswith("The following"):
            continue
        fields = line.split(":")
        starts = [i for i, field in enumerate(fields) if field.startswith("/")]
        if not starts or len(fields) < 3 or fields[2] != "jar":
            continue
        head, path = fields[: starts[0]], ":".join(fields[starts[0] :])
        if len(head) != 5:
            raise KafkaLocalError(f"a classified artifact cannot be pinned: {line}")
        group, artifact, _, version, _scope = head
        resolved.append(Resolved(group, artifact, version, Path(path)))
    return resolved


def published_sha1(jar: Path) -> str:
    """The `.sha1` Maven downloaded beside the jar (hex, maybe followed by a file name)."""
    try:
        return jar.with_name(jar.name + ".sha1").read_text().split()[0].lower()
    except (OSError, IndexError) as exc:
        raise KafkaLocalError(f"no published SHA-1 beside {jar} in Maven's repository") from exc


def pinned(resolved: Resolved, which: str) -> Artifact:
    data = resolved.path.read_bytes()
    sha1 = hashlib.sha1(data).hexdigest()
    if sha1 != published_sha1(resolved.path):
        raise KafkaLocalError(f"{resolved.path} does not match its published SHA-1")
    sha256 = hashlib.sha256(data).hexdigest()
    return Artifact(resolved.group, resolved.artifact, resolved.version, sha1, sha256, which)


def maven(*args: str) -> None:
    mvn = os.environ.get("SLA_KAFKA_MVN", "mvn")
    if shutil.which(mvn) is None:
        raise KafkaLocalError(f"pin needs Maven ({mvn!r}); starting the broker does not")
    done = subprocess.run(
        [mvn, "-B", "-q", "-Dstyle.color=never", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise KafkaLocalError(f"Maven failed (exit {done.returncode}):\n{done.stdout}")


def resolve() -> Manifest:
    version = layout.kafka_version()
    with tempfile.TemporaryDirectory() as tmp:
        listing = Path(tmp) / "list.txt"
        maven(
            "-f",
            str(layout.POM),
            f"{DEPENDENCY_PLUGIN}:list",
            "-DincludeScope=runtime",
            "-DoutputAbsoluteArtifactFilename=true",
            f"-DoutputFile={listing}",
        )
        broker = parse_dependency_list(listing.read_text())
        # kafka-tools alone (not its dependencies): the stand-in image's health check tool.
        maven(
            f"{DEPENDENCY_PLUGIN}:copy",
            f"-Dartifact=org.apache.kafka:kafka-tools:{version}",
            f"-DoutputDirectory={tmp}/tools",
        )
    if not broker:
        raise KafkaLocalError("Maven listed no jars for scripts/kafka/pom.xml")
    # Maven's local repository: the first jar's path less its repository path.
    first = broker[0]
    sample = Artifact(first.group, first.artifact, first.version, "", "")
    local_repo = Path(str(first.path).removesuffix("/" + sample.repository_path))
    tools_jar = Artifact("org.apache.kafka", "kafka-tools", version, "", "", "tools")
    tools = Resolved(
        "org.apache.kafka", "kafka-tools", version, local_repo / tools_jar.repository_path
    )
    artifacts = [pinned(r, "broker") for r in broker] + [pinned(tools, "tools")]
    pom_sha256 = hashlib.sha256(layout.POM.read_bytes()).hexdigest()
    return Manifest(pom_sha256, tuple(artifacts))


def write() -> Path:
    text = manifest.format_manifest(resolve())
    manifest.parse(text)  # what is written must read back
    layout.MANIFEST.write_text(text)
    return layout.MANIFEST
