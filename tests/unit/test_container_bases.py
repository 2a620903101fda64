"""scripts/container-bases stands in for exactly the images the project's files name.

No engine needed: the recipes are imported (devtools.container_bases.recipes), not built
(building is tested by tests/integration/containers/).
"""

from __future__ import annotations

import re
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from devtools.container_bases import recipes

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def bases() -> ModuleType:
    return recipes


def test_the_stand_ins_are_the_images_the_dockerfile_and_compose_pull(bases: ModuleType) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    pulled = {m.group(1) for m in re.finditer(r"^FROM (\S+)", dockerfile, re.MULTILINE)}
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    pulled |= {s["image"] for s in services.values() if "build" not in s}
    # Grafana cannot be had without a registry (docs/development.md#containers).
    pulled -= {services["grafana"]["image"]}
    assert set(bases.tags().values()) == pulled
    assert set(bases.tags()) == set(bases.RECIPES)


def test_the_python_recipe_digest_is_stable_and_follows_its_inputs(
    bases: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe = bases.python_base()
    digest = recipe.digest()
    assert recipe.tag == "python:3.11-slim"
    assert bases.python_base().digest() == digest
    assert re.fullmatch(r"[0-9a-f]{16}", digest)
    assert recipe.cached_tar().name == f"python_3.11-slim-{digest}.tar"
    monkeypatch.setattr(bases, "BASES_VERSION", bases.BASES_VERSION + 1)
    assert bases.python_base().digest() != digest


def test_the_images_the_tests_run_need_no_grafana(bases: ModuleType) -> None:
    # The compose test starts these services; each uses a stand-in or the worker's build.
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for name in ("kafka", "worker", "prometheus"):
        service = services[name]
        assert "build" in service or service["image"] in bases.tags().values(), name
