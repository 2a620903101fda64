"""Build hook: with SLA_WORKER_COMPILED=1, compile the replay's hot path to C with mypyc.

Everything about the package is declared in pyproject.toml; this file only adds the
extension modules. The modules below are ordinary, fully typed Python (mypy --strict
checks them like the rest); mypyc turns each into a C extension that the import system
prefers over the .py beside it. Per event, replay spends most of its time in the engine,
the due-index and replay itself, and compiling them is worth about 1.35x in throughput
(BENCHMARKS.md). worker/core/errors.py comes along because compiled classes derive from
its exception base: a native class gets a native base.

Compiling is opt-in (it needs a C compiler and 45-50 s per build): by default the
package installs as plain Python, with identical results (tests/unit/test_compiled.py
builds both and compares). The container image is built compiled.
"""

from __future__ import annotations

import os
from pathlib import Path

from setuptools import setup

# Keep in sync with worker/compiled.py (COMPILED_MODULES); a unit test checks it.
COMPILED = [
    "worker/core/errors.py",
    "worker/core/ticket.py",
    "worker/core/emissions.py",
    "worker/core/plan_path.py",
    "worker/core/goal_deadlines.py",
    "worker/core/goal_path.py",
    "worker/core/engine.py",
    "worker/core/goal_match.py",
    "worker/core/timers.py",
    "worker/core/due_index.py",
    "worker/replay.py",
]


def remove_stale_extensions() -> None:
    """Delete extensions an earlier compiled build left beside the sources.

    Python prefers them to the .py files, and they need the shared `sla_worker__mypyc`
    library that a pure-Python install no longer registers: left in place, they would
    either keep old code running or fail to import.
    """
    root = Path(__file__).parent
    for source in COMPILED:
        module = root / source
        for extension in module.parent.glob(f"{module.stem}.*.so"):
            extension.unlink()
    for shared in root.glob("sla_worker__mypyc.*.so"):
        shared.unlink()


def ext_modules() -> list[object]:
    if os.environ.get("SLA_WORKER_COMPILED", "") in ("", "0"):
        remove_stale_extensions()
        return []
    from mypyc.build import mypycify

    # The build environment has mypy but not the runtime dependencies: other modules
    # are followed silently and missing libraries are typed as Any. mypy --strict with
    # everything installed is `make typecheck`'s job.
    options = ["--config-file=", "--ignore-missing-imports", "--follow-imports=silent"]
    return list(mypycify([*options, *COMPILED], opt_level="3", group_name="sla_worker"))


setup(ext_modules=ext_modules())
