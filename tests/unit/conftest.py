"""Fixtures of the unit tests: the built-in presets, and replay with them."""

from __future__ import annotations

from typing import Any

import pytest

from tests.replaying import ReplayFn, ReplayResult, run_replay
from worker.core.policy import Policy
from worker.presets import load_presets


@pytest.fixture(scope="session")
def presets() -> Policy:
    return load_presets()


@pytest.fixture
def replay(presets: Policy) -> ReplayFn:
    """Replay events (dicts, or raw strings for malformed lines) with the presets."""

    def run(lines: list[dict[str, Any] | str], until: str | None = None) -> ReplayResult:
        return run_replay(lines, presets, until)

    return run
