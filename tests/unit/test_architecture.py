"""The functional core stays pure: no adapter imports, no wall clock; and every
exception of ours derives from one base."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import worker
import worker.core
from worker.core.engine import Rejected
from worker.core.errors import SlaWorkerError
from worker.core.policy import PolicyError
from worker.core.reasons import Reason

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


def exception_classes() -> list[type[BaseException]]:
    """Every exception class defined in a module of `worker` (found by importing them all:
    a new module or class needs no entry here)."""
    found = []
    package = CORE.parent
    for path in sorted(package.rglob("*.py")):  # not pkgutil: worker.kafka has no __init__
        name = ".".join(path.relative_to(package.parent).with_suffix("").parts)
        if name == "worker.__main__":  # importing it runs the command line
            continue
        module = importlib.import_module(name.removesuffix(".__init__"))
        found += [
            value
            for value in vars(module).values()
            if isinstance(value, type)
            and issubclass(value, BaseException)
            and value.__module__ == module.__name__
        ]
    return found


def test_every_exception_of_ours_derives_from_one_base() -> None:
    classes = exception_classes()
    assert len(classes) >= 9  # a broken walk would find none, and pass
    assert [c.__qualname__ for c in classes if not issubclass(c, SlaWorkerError)] == []
    # From the source: a module compiled with mypyc has no __doc__.
    tree = ast.get_docstring(ast.parse((CORE / "errors.py").read_text())) or ""
    assert [c.__qualname__ for c in classes if c.__qualname__ not in tree] == []


def test_a_rejection_is_a_sla_worker_error_in_either_build() -> None:
    # Rejected is compiled with mypyc in the compiled build (and its base with it), while
    # PolicyError stays interpreted and derives from the compiled base.
    assert isinstance(Rejected(Reason.UNKNOWN_TICKET, "no such ticket"), SlaWorkerError)
    assert isinstance(Rejected(Reason.UNKNOWN_TICKET, "no such ticket"), ValueError)
    assert isinstance(PolicyError("policies.yaml", ["plans: required"]), SlaWorkerError)
