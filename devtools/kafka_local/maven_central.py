"""One artifact from a Maven repository, accepted only with exactly its pinned checksums.

No Maven: a plain HTTPS GET of the artifact's repository path, hashed while it streams to
a temporary file, which becomes the target only when both SHA-1 (as the repository
publishes it) and SHA-256 (pinned in jars.lock) match. SLA_KAFKA_MAVEN_REPO names another
repository (a mirror; the tests serve one from a temporary directory).
"""

from __future__ import annotations

import hashlib
import os
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

from devtools.kafka_local.errors import KafkaLocalError
from devtools.kafka_local.manifest import Artifact

CENTRAL = "https://repo1.maven.org/maven2"
ATTEMPTS = 3
TIMEOUT = 60.0
CHUNK = 1 << 16


class ChecksumMismatch(KafkaLocalError):
    """The bytes served are not the bytes pinned: never retried, never kept."""


def repository(environ: Mapping[str, str] = os.environ) -> str:
    return (environ.get("SLA_KAFKA_MAVEN_REPO") or CENTRAL).rstrip("/")


def artifact_url(base: str, artifact: Artifact) -> str:
    return f"{base}/{artifact.repository_path}"


def copy_hashed(source: BinaryIO, target: BinaryIO) -> tuple[str, str, int]:
    """Copy `source` to `target`; the SHA-1 and SHA-256 of what passed, and its size."""
    sha1, sha256, size = hashlib.sha1(), hashlib.sha256(), 0
    while chunk := source.read(CHUNK):
        sha1.update(chunk)
        sha256.update(chunk)
        target.write(chunk)
        size += len(chunk)
    return sha1.hexdigest(), sha256.hexdigest(), size


def verify(artifact: Artifact, sha1: str, sha256: str) -> None:
    if (sha1, sha256) != (artifact.sha1, artifact.sha256):
        raise ChecksumMismatch(
            f"{artifact.coordinates}: got sha1 {sha1} sha256 {sha256}, pinned sha1 "
            f"{artifact.sha1} sha256 {artifact.sha256} (scripts/kafka/jars.lock)"
        )


def file_matches(path: Path, artifact: Artifact) -> bool:
    """A jar already on disk (e.g. from a Maven-built cache) that is exactly the pinned one."""
    try:
        with open(path, "rb") as handle:
            sha256 = hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError:
        return False
    return sha256 == artifact.sha256


def download(artifact: Artifact, target: Path, base: str) -> int:
    """Fetch `artifact` to `target` (verified, atomically); its size in bytes.

    Network errors are retried with a short back-off; a checksum mismatch is not (a
    different answer next time would be no more trustworthy).
    """
    url = artifact_url(base, artifact)
    partial = target.with_name(target.name + ".partial")
    for attempt in range(1, ATTEMPTS + 1):
        try:
            with (
                urllib.request.urlopen(url, timeout=TIMEOUT) as response,
                open(partial, "wb") as out,
            ):
                sha1, sha256, size = copy_hashed(response, out)
            verify(artifact, sha1, sha256)
            partial.replace(target)
            return size
        except (urllib.error.URLError, OSError) as exc:
            partial.unlink(missing_ok=True)
            # A 404 will not change: the pin names an artifact the repository lacks.
            missing = isinstance(exc, urllib.error.HTTPError) and exc.code == 404
            if missing or attempt == ATTEMPTS:
                raise KafkaLocalError(f"cannot fetch {url}: {exc}") from exc
            time.sleep(attempt)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    raise AssertionError("unreachable")
