"""The functional core stays pure: no adapter imports, no wall clock. Adapters are wired
in one place, the composition root (`worker/bootstrap/`), no module imports itself
back through others, and every exception of ours derives from one base."""

from __future__ import annotations

import ast
import graphlib
import importlib
import tomllib
from collections import Counter
from pathlib import Path

import worker
import worker.core
from worker.core.engine import Rejected
from worker.core.errors import SlaWorkerError
from worker.core.policy import PolicyError
from worker.core.reasons import Reason

CORE = Path(worker.core.__file__).parent
PACKAGE = CORE.parent
ROOT = "worker.bootstrap"
# What only the composition root puts together: the live worker, its HTTP server, its metrics.
LIVE_WORKER_PARTS = ("worker.kafka.service", "worker.kafka.web", "worker.metrics")
FORBIDDEN_IMPORTS = ("faust", "mode", "aiokafka", "aiohttp", "prometheus_client", "click", "yaml")
ALLOWED_WORKER_IMPORTS = "worker.core"


def core_modules() -> list[Path]:
    return sorted(CORE.glob("*.py"))


def imports_of(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


def test_core_imports_no_adapter() -> None:
    offenders = []
    for path in core_modules():
        for name in imports_of(path):
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


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def runtime_imports(path: Path) -> set[str]:
    """The `worker` modules `path` imports when it runs (at the top or in a function);
    `from package import module` names the module. `if TYPE_CHECKING:` blocks are left
    out: they never run."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING"):
            node.body = []
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    modules = {module_name(p) for p in PACKAGE.rglob("*.py")}
    return {name for name in names if name in modules}


def worker_modules() -> dict[str, set[str]]:
    return {module_name(p): runtime_imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def test_only_the_composition_root_builds_the_live_worker() -> None:
    """The worker's own parts import one another; every other module, the command line
    included, reaches the live worker through `worker.bootstrap.live`."""
    offenders = [
        f"{module}: {name}"
        for module, imported in worker_modules().items()
        if not module.startswith((ROOT, "worker.kafka"))
        for name in sorted(imported)
        if name in LIVE_WORKER_PARTS
    ]
    assert offenders == []


def test_the_command_line_reaches_kafka_only_through_the_root() -> None:
    imported = worker_modules()["worker.cli"]
    assert not [n for n in imported if n.startswith(("worker.kafka", "worker.audit"))]


def test_only_the_demo_runs_the_worker_through_the_harness() -> None:
    """`worker.harness` drives the worker from outside, as an operator would: the demo uses
    it (and the tests and benchmarks, through `devtools.harness`); nothing the worker
    itself runs may."""
    offenders = [
        module
        for module, imported in worker_modules().items()
        if not module.startswith("worker.harness")
        and module != "worker.demo"
        and any(name.startswith("worker.harness") for name in imported)
    ]
    assert offenders == []


def test_the_installed_package_needs_no_source_checkout() -> None:
    """The wheel and the image hold `worker` only (pyproject.toml); the contributor's tools
    (`devtools`: the local broker, the container bases, the test harness) find files of a
    checkout and stay out of it, so nothing in `worker` may import them."""
    pyproject = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())
    assert pyproject["tool"]["setuptools"]["packages"]["find"]["include"] == ["worker*"]
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        offenders += [
            f"{module_name(path)}: {n}"
            for n in imports_of(path)
            if n.split(".")[0] in ("devtools", "tests", "bench")
        ]
    assert offenders == []


def test_no_import_cycles() -> None:
    graph = {module: imported - {module} for module, imported in worker_modules().items()}
    graphlib.TopologicalSorter(graph).prepare()  # CycleError names the cycle


def test_tests_share_helpers_through_modules_not_conftest_or_other_tests() -> None:
    """A helper two test files need lives in a module of its own (tests/promql.py,
    tests/replaying.py, tests/integration/fault_log.py, devtools.harness ...): a test
    that imports another test file runs that file's tests' module code, and a conftest is
    pytest's to load. Type-only imports (`if TYPE_CHECKING:`) are allowed."""
    tests = CORE.parents[1] / "tests"
    offenders = []
    for path in sorted(tests.rglob("*.py")):
        for node in ast.parse(path.read_text()).body:  # top level: TYPE_CHECKING is an If
            module = node.module if isinstance(node, ast.ImportFrom) else None
            if module and module.startswith("tests."):
                last = module.rsplit(".", 1)[-1]
                if last == "conftest" or last.startswith("test_"):
                    offenders.append(f"{path.relative_to(tests)}: {module}")
    assert offenders == []


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


def test_no_two_test_files_share_a_name() -> None:
    """pytest imports test files by their base name (tests/ has no __init__.py): two
    files of one name in different folders stop the whole collection ("import file
    mismatch"), which only a full run shows."""
    names = Counter(path.name for path in (PACKAGE.parent / "tests").rglob("test_*.py"))
    assert [name for name, count in names.items() if count > 1] == []


def test_the_task_layer_and_the_metrics_know_no_kafka() -> None:
    """`worker.tasks` is a partition's work without I/O, and `worker.metrics` reads its
    outcomes: neither imports a Kafka, HTTP or clock-reading adapter, so unit tests drive
    them with plain values, and the Kafka layer can be rebuilt around them."""
    offenders = []
    for path in [*sorted((PACKAGE / "tasks").glob("*.py")), PACKAGE / "metrics.py"]:
        for name in imports_of(path):
            top = name.split(".")[0]
            if top in ("aiokafka", "aiohttp") or name.startswith("worker.kafka"):
                offenders.append(f"{module_name(path)}: {name}")
    assert offenders == []
    for path in sorted((PACKAGE / "tasks").glob("*.py")):
        for call in ("now(", "utcnow(", "time.time(", "monotonic("):
            assert call not in path.read_text(), f"{path.name} calls {call}"
