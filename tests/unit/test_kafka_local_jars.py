"""The pinned jar set: its manifest, its checksum-verified download, and the cache that
makes later starts offline. Downloads come from a repository served on 127.0.0.1 out of
a temporary directory, as Maven Central lays one out."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.kafka_local import jars, layout, manifest, maven_central, pin
from devtools.kafka_local.errors import KafkaLocalError
from devtools.kafka_local.manifest import Artifact, Manifest

POM_SHA256 = "ab" * 32


def artifact_of(
    group: str, name: str, version: str, data: bytes, which: str = "broker"
) -> Artifact:
    sha1, sha256 = hashlib.sha1(data).hexdigest(), hashlib.sha256(data).hexdigest()
    return Artifact(group, name, version, sha1, sha256, which)


# --------------------------------------------------------------------------- the manifest


def test_the_manifest_reads_back_what_it_writes() -> None:
    pinned = Manifest(
        POM_SHA256,
        (
            artifact_of("org.example", "b", "1.0", b"b"),
            artifact_of("org.example", "a", "2.0", b"a"),
            artifact_of("org.example", "t", "2.0", b"t", "tools"),
        ),
    )
    text = manifest.format_manifest(pinned)
    back = manifest.parse(text)
    assert back.pom_sha256 == POM_SHA256
    assert set(back.artifacts) == set(pinned.artifacts)
    assert [a.artifact for a in back.of("broker")] == ["a", "b"]  # sorted
    assert manifest.format_manifest(back) == text


@pytest.mark.parametrize(
    "line",
    [
        "broker org.example:a 0123456789012345678901234567890123456789 " + "0" * 64,
        "broker org.example:a:1.0 abc " + "0" * 64,
        "nightly org.example:a:1.0 " + "0" * 40 + " " + "0" * 64,
        "broker org.exa mple:a:1.0",
    ],
)
def test_a_bad_line_is_refused(line: str) -> None:
    with pytest.raises(KafkaLocalError, match=r"jars\.lock"):
        manifest.parse(f"pom-sha256 {POM_SHA256}\n{line}\n")


def test_a_manifest_without_its_pom_digest_is_refused() -> None:
    with pytest.raises(KafkaLocalError, match="pom-sha256"):
        manifest.parse("broker org.example:a:1.0 " + "0" * 40 + " " + "0" * 64 + "\n")


def test_the_repository_path_is_mavens() -> None:
    jar = artifact_of("com.github.luben", "zstd-jni", "1.5.6-10", b"")
    assert jar.repository_path == "com/github/luben/zstd-jni/1.5.6-10/zstd-jni-1.5.6-10.jar"


def test_the_checked_in_manifest_is_pinned_from_the_checked_in_pom() -> None:
    """A pom changed without `scripts/kafka-local pin` would run the old jars."""
    pinned, _ = jars.load_manifest()
    assert pinned.pom_sha256 == hashlib.sha256(layout.POM.read_bytes()).hexdigest()
    version = layout.kafka_version()
    assert pinned.version_of("org.apache.kafka", "kafka_2.13") == version
    assert pinned.version_of("org.apache.kafka", "kafka-server") == version
    assert [a.coordinates for a in pinned.of("tools")] == [
        f"org.apache.kafka:kafka-tools:{version}"
    ]


def test_mavens_dependency_list_is_read_with_the_published_checksums(tmp_path: Path) -> None:
    jar = tmp_path / "repo" / "org" / "example" / "a" / "1.0" / "a-1.0.jar"
    jar.parent.mkdir(parents=True)
    jar.write_bytes(b"jar bytes")
    listing = (
        "\nThe following files have been resolved:\n"
        f"   org.example:a:jar:1.0:compile:{jar} -- module a (auto)\n"
        "   org.example:pom-only:pom:1.0:compile:/x/pom-only-1.0.pom\n"
    )
    [resolved] = pin.parse_dependency_list(listing)
    assert (resolved.group, resolved.artifact, resolved.version, resolved.path) == (
        "org.example",
        "a",
        "1.0",
        jar,
    )
    (jar.parent / "a-1.0.jar.sha1").write_text(hashlib.sha1(b"jar bytes").hexdigest() + "\n")
    assert pin.pinned(resolved, "broker") == artifact_of("org.example", "a", "1.0", b"jar bytes")
    (jar.parent / "a-1.0.jar.sha1").write_text("0" * 40)
    with pytest.raises(KafkaLocalError, match="published SHA-1"):
        pin.pinned(resolved, "broker")


def test_a_classified_artifact_cannot_be_pinned() -> None:
    with pytest.raises(KafkaLocalError, match="classified"):
        pin.parse_dependency_list("   org.example:a:jar:linux:1.0:runtime:/r/a-1.0-linux.jar\n")


# --------------------------------------------------------------------------- downloads


class Repository:
    """A Maven repository on 127.0.0.1, served from a directory; counts the GETs."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[str] = []
        repository = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self) -> None:
                repository.requests.append(self.path)
                super().do_GET()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(Handler, directory=str(root))
        )
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/maven2"

    def publish(self, artifact: Artifact, data: bytes) -> None:
        path = self.root / "maven2" / artifact.repository_path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def repository(tmp_path: Path) -> Iterator[Repository]:
    served = Repository(tmp_path / "served")
    yield served
    served.close()


def test_a_download_is_kept_when_both_checksums_match(
    repository: Repository, tmp_path: Path
) -> None:
    jar = artifact_of("org.example", "a", "1.0", b"the jar")
    repository.publish(jar, b"the jar")
    target = tmp_path / jar.file_name
    assert maven_central.download(jar, target, repository.url) == len(b"the jar")
    assert target.read_bytes() == b"the jar"
    assert repository.requests == ["/maven2/org/example/a/1.0/a-1.0.jar"]


def test_other_bytes_are_refused_and_leave_nothing(repository: Repository, tmp_path: Path) -> None:
    jar = artifact_of("org.example", "a", "1.0", b"the jar")
    repository.publish(jar, b"a tampered jar")
    with pytest.raises(maven_central.ChecksumMismatch, match="pinned sha1"):
        maven_central.download(jar, tmp_path / jar.file_name, repository.url)
    assert list(tmp_path.iterdir()) == [tmp_path / "served"]
    assert len(repository.requests) == 1  # a mismatch is not retried


def test_a_missing_artifact_is_an_error_at_once(repository: Repository, tmp_path: Path) -> None:
    jar = artifact_of("org.example", "absent", "1.0", b"")
    with pytest.raises(KafkaLocalError, match="404"):
        maven_central.download(jar, tmp_path / jar.file_name, repository.url)
    assert len(repository.requests) == 1


# --------------------------------------------------------------------------- the cache


@pytest.fixture
def pinned_set(
    tmp_path: Path, repository: Repository, monkeypatch: pytest.MonkeyPatch
) -> list[Artifact]:
    """A Kafka 9.9.9 of three jars, pinned in a manifest of its own and published."""
    artifacts = [
        artifact_of("org.apache.kafka", "kafka_2.13", "9.9.9", b"broker"),
        artifact_of("org.apache.kafka", "kafka-server", "9.9.9", b"server"),
        artifact_of("org.example", "dependency", "1.2", b"dependency"),
        artifact_of("org.apache.kafka", "kafka-tools", "9.9.9", b"tools", "tools"),
    ]
    for artifact, data in zip(
        artifacts, [b"broker", b"server", b"dependency", b"tools"], strict=True
    ):
        repository.publish(artifact, data)
    lock = tmp_path / "jars.lock"
    lock.write_text(manifest.format_manifest(Manifest(POM_SHA256, tuple(artifacts))))
    monkeypatch.setattr(layout, "MANIFEST", lock)
    monkeypatch.setattr(layout, "kafka_version", lambda: "9.9.9")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("SLA_KAFKA_MAVEN_REPO", repository.url)
    return artifacts


def test_the_first_fill_downloads_and_later_ones_are_offline(
    pinned_set: list[Artifact], repository: Repository, tmp_path: Path
) -> None:
    libs = jars.ensure("broker")
    assert libs == tmp_path / "cache" / "sla-worker" / "kafka-9.9.9" / "libs"
    assert sorted(p.name for p in libs.iterdir()) == sorted(
        a.file_name for a in pinned_set if a.set == "broker"
    )
    stamp = json.loads((libs.parent / "libs.complete").read_text())
    assert stamp["version"] == "9.9.9" and len(stamp["jars"]) == 3
    assert len(repository.requests) == 3
    repository.close()  # nothing served from now on
    assert jars.ensure("broker") == libs


def test_the_tools_set_has_a_cache_of_its_own(pinned_set: list[Artifact]) -> None:
    libs = jars.ensure("tools")
    assert libs.parent.name == "kafka-tools-9.9.9"
    assert [p.name for p in libs.iterdir()] == ["kafka-tools-9.9.9.jar"]


def test_a_cache_filled_before_is_adopted_jar_by_jar(
    pinned_set: list[Artifact], repository: Repository, tmp_path: Path
) -> None:
    """A libs dir without a current stamp (Maven filled it, or a download was cut short):
    the jars that are the pinned bytes stay, only the rest is fetched."""
    libs = tmp_path / "cache" / "sla-worker" / "kafka-9.9.9" / "libs"
    libs.mkdir(parents=True)
    (libs / "kafka_2.13-9.9.9.jar").write_bytes(b"broker")
    (libs / "kafka-server-9.9.9.jar").write_bytes(b"stale server")
    (libs.parent / "libs.complete").write_text(json.dumps({"pom_sha256": "old", "jars": []}))
    assert jars.ensure("broker") == libs
    assert sorted(repository.requests) == [
        "/maven2/org/apache/kafka/kafka-server/9.9.9/kafka-server-9.9.9.jar",
        "/maven2/org/example/dependency/1.2/dependency-1.2.jar",
    ]
    assert (libs / "kafka-server-9.9.9.jar").read_bytes() == b"server"


def test_a_failed_fill_leaves_no_stamp_and_no_partial_dir(
    pinned_set: list[Artifact], repository: Repository, tmp_path: Path
) -> None:
    repository.publish(pinned_set[2], b"tampered")
    with pytest.raises(maven_central.ChecksumMismatch):
        jars.ensure("broker")
    base = tmp_path / "cache" / "sla-worker" / "kafka-9.9.9"
    assert sorted(p.name for p in base.iterdir()) == [".lock"]


def test_a_stamp_counts_only_for_its_manifest_with_all_its_jars() -> None:
    stamp = json.dumps({"manifest_sha256": "m1", "jars": ["a.jar", "b.jar"]})
    assert jars.stamp_is_complete(stamp, "m1", {"a.jar", "b.jar", "c.jar"})
    assert not jars.stamp_is_complete(stamp, "m2", {"a.jar", "b.jar"})
    assert not jars.stamp_is_complete(stamp, "m1", {"a.jar"})
    assert not jars.stamp_is_complete("not json", "m1", {"a.jar"})
    assert not jars.stamp_is_complete(json.dumps({"manifest_sha256": "m1"}), "m1", set())
