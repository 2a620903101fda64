"""The jar cache: the pinned jars, fetched once, offline at every later start.

Layout (as when Maven filled it): ${XDG_CACHE_HOME:-~/.cache}/sla-worker/kafka-<version>/
holds `libs/` (the broker's classpath) and `libs.complete`, a stamp naming the manifest it
was filled from and its jars; a start that finds a stamp for the current manifest with all
its jars present touches no network. Filling it reuses every jar already there whose
SHA-256 is the pinned one (so a cache Maven assembled before needs no download either) and
fetches the rest. `tools` (the kafka-tools jar of the Kafka stand-in image) is cached the
same way in `kafka-tools-<version>/`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from devtools.kafka_local import layout, manifest, maven_central
from devtools.kafka_local.errors import KafkaLocalError
from devtools.kafka_local.manifest import Artifact, Manifest

PARALLEL_DOWNLOADS = 4
REQUIRED = ("kafka_2.13-{version}.jar", "kafka-server-{version}.jar")


def load_manifest() -> tuple[Manifest, str]:
    """The checked-in manifest and its SHA-256 (what a cache stamp names)."""
    text = layout.MANIFEST.read_text()
    return manifest.parse(text), hashlib.sha256(text.encode()).hexdigest()


def cache_dir(which: str, version: str, environ: Mapping[str, str] = os.environ) -> Path:
    name = f"kafka-{version}" if which == "broker" else f"kafka-{which}-{version}"
    return layout.cache_root(environ) / name


def stamp_is_complete(stamp_text: str, digest: str, present: set[str]) -> bool:
    """Pure: does the stamp say the cache was filled from manifest `digest`, and are all the
    jars it lists among `present`?"""
    try:
        data = json.loads(stamp_text)
    except ValueError:
        return False
    if not isinstance(data, dict):
        return False
    jars = data.get("jars") or []
    return data.get("manifest_sha256") == digest and bool(jars) and set(jars) <= present


def cached_libs(base: Path, digest: str) -> Path | None:
    """`base/libs` when its stamp says it is complete for manifest `digest`, else None."""
    libs = base / "libs"
    try:
        stamp = (base / "libs.complete").read_text()
        present = {p.name for p in libs.iterdir()}
    except OSError:
        return None
    return libs if stamp_is_complete(stamp, digest, present) else None


def fill(artifacts: tuple[Artifact, ...], staging: Path, reuse: Path, repo: str) -> int:
    """Put every artifact into `staging`: linked from `reuse` when it is the pinned file
    there, else downloaded. Returns the bytes downloaded."""
    staging.mkdir(parents=True)
    missing: list[Artifact] = []
    for pinned in artifacts:
        old = reuse / pinned.file_name
        if maven_central.file_matches(old, pinned):
            os.link(old, staging / pinned.file_name)
        else:
            missing.append(pinned)
    if not missing:
        return 0
    layout.info(f"fetching {len(missing)} pinned jar(s) from {repo} ...")
    with ThreadPoolExecutor(PARALLEL_DOWNLOADS) as pool:
        sizes = pool.map(
            lambda pinned: maven_central.download(pinned, staging / pinned.file_name, repo),
            missing,
        )
        return sum(sizes)


def ensure(which: str = "broker") -> Path:
    """The cached jars of set `which`, fetched (checksum-verified) only when incomplete."""
    pinned, digest = load_manifest()
    version = layout.kafka_version()
    artifacts = pinned.of(which)
    if not artifacts:
        raise KafkaLocalError(f"scripts/kafka/jars.lock pins no `{which}` jars")
    base = cache_dir(which, version)
    libs = cached_libs(base, digest)
    if libs is not None:
        layout.info(f"using cached Kafka {version} jars in {libs} (offline)")
        return libs
    with layout.locked(base / ".lock"):
        libs = cached_libs(base, digest)  # another process may have finished it meanwhile
        if libs is not None:
            return libs
        if which == "broker":
            names = {a.file_name for a in artifacts}
            for required in REQUIRED:
                if required.format(version=version) not in names:
                    raise KafkaLocalError(
                        f"jars.lock does not pin {required.format(version=version)}: it is "
                        f"stale for Kafka {version} (scripts/kafka-local pin writes it anew)"
                    )
        started = time.monotonic()
        staging = base / f"libs.partial-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        libs = base / "libs"
        try:
            fetched = fill(artifacts, staging, libs, maven_central.repository())
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        shutil.rmtree(libs, ignore_errors=True)
        staging.rename(libs)
        jars = sorted(a.file_name for a in artifacts)
        stamp = {"version": version, "manifest_sha256": digest, "jars": jars}
        tmp_stamp = base / "libs.complete.tmp"
        tmp_stamp.write_text(json.dumps(stamp, indent=1) + "\n")
        tmp_stamp.replace(base / "libs.complete")
        layout.info(
            f"cached {len(jars)} jars in {libs} in {time.monotonic() - started:.1f} s "
            f"({fetched / 2**20:.1f} MiB downloaded)"
        )
        return libs
