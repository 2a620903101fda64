"""The functional core stays pure: no adapter imports, no wall clock."""

from __future__ import annotations

import ast
from pathlib import Path

import worker.core

CORE = Path(worker.core.__file__).parent
FORBIDDEN_IMPORTS = ("faust", "mode", "aiokafka", "aiohttp", "prometheus_client", "click", "yaml")
ALLOWED_WORKER_IMPORTS = "worker.core"


def core_modules() -> list[Path]:
    return sorted(CORE.glob("*.py"))


def test_core_imports_no_adapter() -> None:
    offenders = []
    for path in core_modules():
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top in FORBIDDEN_IMPORTS or (
                    top == "worker" and not name.startswith(ALLOWED_WORKER_IMPORTS)
                ):
                    offenders.append(f"{path.name}: {name}")
    assert offenders == []


def test_core_never_reads_the_clock() -> None:
    for path in core_modules():
        source = path.read_text()
        for call in ("now(", "utcnow(", "today(", "time.time(", "monotonic("):
            assert call not in source, f"{path.name} calls {call}"


def test_the_worker_never_imports_faust() -> None:
    """faust-streaming is a benchmark peer only (bench/faust_floor.py)."""
    package = CORE.parent
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            else:
                continue
            assert not [n for n in names if n.split(".")[0] in ("faust", "mode")], path
