"""Fixtures for the container tests: podman, the stand-in base images, the worker image.

`scripts/container-bases ensure` provides podman (apt-get as root when missing) and the
base images the Dockerfile and docker-compose.yml name (built from Debian packages, or
imported from their cached tars). If either cannot be had, every container test **fails**
with the script's output; none is skipped. podman runs with the project's
scripts/containers/containers.conf (docs/development.md#containers).
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.containers.engine import ROOT, podman

CONTAINER_BASES = ROOT / "scripts" / "container-bases"
# Cold: apt-get install of podman and mmdebstrap, three Debian bootstraps, Maven.
BASES_TIMEOUT_S = 1200.0
BUILD_TIMEOUT_S = 900.0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.containers)


@pytest.fixture(scope="session")
def container_bases() -> str:
    """podman is usable and the base images are present; the script's report."""
    started = time.monotonic()
    try:
        done = subprocess.run(
            [str(CONTAINER_BASES), "ensure"],
            capture_output=True,
            text=True,
            timeout=BASES_TIMEOUT_S,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(
            f"scripts/container-bases ensure took over {BASES_TIMEOUT_S:.0f} s: {exc}",
            pytrace=False,
        )
    if done.returncode != 0:
        pytest.fail(
            "scripts/container-bases ensure could not provide podman and the base images "
            f"(exit {done.returncode}); the container tests need them.\n"
            f"--- stdout ---\n{done.stdout}\n--- stderr ---\n{done.stderr}",
            pytrace=False,
        )
    return f"{done.stdout.strip()} ({time.monotonic() - started:.1f} s)"


@pytest.fixture(scope="session")
def worker_image(container_bases: str) -> Iterator[str]:
    """The project's Dockerfile, built as it is (a tag of this session, removed after)."""
    tag = f"localhost/sla-worker:test-{uuid.uuid4().hex[:10]}"
    # --format docker: podman's default OCI image format has no HEALTHCHECK.
    podman(
        "build", "--quiet", "--format", "docker", "--tag", tag, str(ROOT), timeout=BUILD_TIMEOUT_S
    )
    try:
        yield tag
    finally:
        podman("rmi", "--force", tag, check=False)
