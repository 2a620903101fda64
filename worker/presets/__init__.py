"""The built-in policy presets shipped with the package (see presets.yaml)."""

from __future__ import annotations

from importlib.resources import files

from worker.core.policy import Policy
from worker.policy_file import load_policy


def presets_text() -> str:
    return files(__name__).joinpath("presets.yaml").read_text(encoding="utf-8")


def load_presets() -> Policy:
    return load_policy(str(files(__name__).joinpath("presets.yaml")))
