"""scripts/container-bases stands in for exactly the images the project's files name.

No engine needed: the script is imported, not run (building is tested by
tests/integration/containers/).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "container-bases"


@pytest.fixture(scope="module")
def bases() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("container_bases", str(SCRIPT))
    spec = importlib.util.spec_from_loader("container_bases", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["container_bases"] = module  # dataclasses look their module up
    try:
        loader.exec_module(module)
    finally:
        del sys.modules["container_bases"]
    return module


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
