"""Whether the replay's hot path runs compiled, and whether a compiled module is stale.

setup.py compiles the modules below with mypyc; the import system then loads the C
extension and ignores the .py beside it. Two things follow that this module answers:
benchmarks and `sla-worker --version` say which of the two ran, and the test suite
refuses to run when a source was edited after its extension was built (the edit would
silently have no effect until the next `make`).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

# Keep in sync with setup.py (COMPILED); tests/unit/test_compiled.py checks it.
COMPILED_MODULES: tuple[str, ...] = (
    "worker.core.errors",  # the exception base of the compiled modules' exceptions
    "worker.core.ticket",  # the engine's state of a ticket: read and written per event
    "worker.core.emissions",
    "worker.core.plan_path",  # the engine, split by job (worker/core/engine.py says how)
    "worker.core.goal_deadlines",
    "worker.core.goal_path",
    "worker.core.engine",
    "worker.core.goal_match",  # goals matched and calendars chosen, per event
    "worker.core.timers",  # a goal policy's timers: read and written on every event
    "worker.core.due_index",
    "worker.replay",
)


def _origin(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ImportError(f"cannot locate {module}")
    return Path(spec.origin)


def compiled_modules() -> dict[str, bool]:
    """Each hot-path module, and whether it is loaded from a C extension."""
    return {module: _origin(module).suffix != ".py" for module in COMPILED_MODULES}


def stale_modules(modules: tuple[str, ...] = COMPILED_MODULES) -> list[str]:
    """Compiled modules whose .py source is newer than the extension built from it.

    Only a source tree can be stale: an installed wheel's files carry the times pip
    wrote them, in no useful order.
    """
    stale = []
    for module in modules:
        origin = _origin(module)
        if origin.suffix == ".py" or "site-packages" in origin.parts:
            continue
        source = origin.parent / (module.rsplit(".", 1)[-1] + ".py")
        if source.stat().st_mtime > origin.stat().st_mtime:
            stale.append(module)
    return stale


def describe() -> str:
    """One line for humans: which implementation of the hot path is running."""
    compiled = compiled_modules().values()
    if all(compiled):
        return "hot path compiled with mypyc"
    if any(compiled):
        return "hot path partly compiled"
    return "pure Python"
