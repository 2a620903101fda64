"""Guards for the whole suite.

The hot path is compiled by mypyc into C extensions beside its sources (setup.py), and
Python loads an extension in preference to the .py next to it. An edit to such a source
would therefore have no effect on the tests until it is rebuilt: refuse to run instead
of testing old code.
"""

from __future__ import annotations

import pytest

from worker.compiled import stale_modules


def pytest_sessionstart(session: pytest.Session) -> None:
    stale = stale_modules()
    if stale:
        raise pytest.UsageError(
            f"compiled modules older than their source: {', '.join(stale)}; "
            "run `make unit` or `make test` (they rebuild them), or "
            "`.venv/bin/pip install --no-deps -e .`"
        )
