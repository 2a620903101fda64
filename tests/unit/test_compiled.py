"""The hot path ships compiled, and compiled and pure Python give the same results.

mypyc compiles worker/replay.py and parts of worker/core/ (setup.py). The Python source
stays the specification: these tests run one stream, rich in edge cases, through both
builds and require byte-identical warnings, breaches, rejections and summaries.
"""

from __future__ import annotations

import ast
import importlib.machinery
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from worker.compiled import COMPILED_MODULES, compiled_modules, describe, stale_modules
from worker.traffic import synthetic_stream

ROOT = Path(__file__).resolve().parents[2]


def test_setup_compiles_exactly_the_modules_worker_compiled_names() -> None:
    tree = ast.parse((ROOT / "setup.py").read_text())
    assigned = next(
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "COMPILED" for t in node.targets)
    )
    paths = ast.literal_eval(assigned)
    assert [p.removesuffix(".py").replace("/", ".") for p in paths] == list(COMPILED_MODULES)


COMPILED_INSTALL = os.environ.get("SLA_WORKER_COMPILED", "") not in ("", "0")


def test_the_installed_hot_path_is_the_build_asked_for() -> None:
    # Pure Python by default; SLA_WORKER_COMPILED=1 (make, pip) asks for the compiled
    # one, and a missing C compiler must then not silently give a slower product.
    want = dict.fromkeys(COMPILED_MODULES, COMPILED_INSTALL)
    assert compiled_modules() == want, describe()


def _stream(tmp_path: Path) -> Path:
    """Synthetic traffic plus what a real stream also holds: junk, redeliveries, events
    out of order, an event for a ticket nobody created, a ticket created twice."""
    lines, _ = synthetic_stream(6_000, 600, seed=11)
    rng = random.Random(11)
    mixed: list[bytes] = []
    for line in lines:
        mixed.append(line)
        roll = rng.random()
        if roll < 0.02:
            mixed.append(line)  # redelivered
        elif roll < 0.03:
            mixed.append(b'{"event_id": "junk", "type": "reply-sent"')
        elif roll < 0.04 and len(mixed) > 3:
            mixed[-1], mixed[-3] = mixed[-3], mixed[-1]  # arrives out of order
    mixed.append(
        b'{"event_id": "x1", "type": "reply-sent", "ticket_id": "NOBODY", '
        b'"occurred_at": "2026-12-01T10:00:00+01:00", "author": "agent"}'
    )
    mixed.append(lines[0])  # a second ticket-created under a new event id below
    mixed[-1] = mixed[-1].replace(b'"event_id": "', b'"event_id": "again-', 1)
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(mixed) + b"\n")
    return path


def _replay(pythonpath: Path, events: Path, out: Path) -> tuple[bytes, bytes, bytes, str]:
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    args = [sys.executable, "-m", "worker"]
    version = subprocess.run(
        [*args, "--version"], env=env, cwd=out, capture_output=True, text=True, check=True
    ).stdout
    run = subprocess.run(
        [
            *args,
            "replay",
            str(events),
            "--until",
            "2027-01-31T00:00:00Z",
            "--now",  # a reproducible run: rejection details name the clock
            "2027-01-15T00:00:00Z",
            "--output",
            str(out / "out.jsonl"),
            "--rejects",
            str(out / "rejects.jsonl"),
        ],
        env=env,
        cwd=out,
        capture_output=True,
        check=True,
    )
    output, rejects = (out / "out.jsonl").read_bytes(), (out / "rejects.jsonl").read_bytes()
    return output, rejects, run.stderr, version


@pytest.fixture(scope="module")
def compiled_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory to put on PYTHONPATH for the compiled hot path: the checkout when it is
    installed compiled, else a wheel built here with SLA_WORKER_COMPILED=1 (what the
    container image does; about a minute) and unpacked, once for this module's tests."""
    if all(compiled_modules().values()):
        return ROOT
    tmp_path = tmp_path_factory.mktemp("build")
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "worker", source / "worker", ignore=shutil.ignore_patterns("*.so", "__pycache__")
    )
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    env = {**os.environ, "SLA_WORKER_COMPILED": "1"}
    wheels, target = tmp_path / "wheels", tmp_path / "compiled"
    subprocess.run(
        [*pip, "wheel", "--no-deps", "-w", str(wheels), str(source)], env=env, check=True
    )
    (wheel,) = wheels.glob("*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True)
    return target


def test_pure_python_and_compiled_replay_agree_byte_for_byte(
    tmp_path: Path, compiled_build: Path
) -> None:
    events = _stream(tmp_path)
    pure = tmp_path / "pure"
    shutil.copytree(
        ROOT / "worker", pure / "worker", ignore=shutil.ignore_patterns("*.so", "__pycache__")
    )

    compiled_run = _replay(compiled_build, events, tmp_path / "compiled-out")
    pure_run = _replay(pure, events, tmp_path / "pure-out")

    assert "compiled" in compiled_run[3] and "pure Python" in pure_run[3]
    assert compiled_run[:3] == pure_run[:3]
    output, rejects, summary, _ = compiled_run
    assert output.count(b"\n") > 100 and rejects.count(b"\n") > 50
    assert b"duplicates:" in summary


def test_compiled_and_interpreted_exceptions_share_the_compiled_base(
    compiled_build: Path,
) -> None:
    # Rejected is compiled, and so is its base; PolicyError, interpreted, derives from
    # that compiled base too. mypyc refuses interpreted subclasses of most native
    # classes, so this is what has to keep working.
    check = (
        "from worker.compiled import describe\n"
        "from worker.core.engine import Rejected\n"
        "from worker.core.errors import SlaWorkerError\n"
        "from worker.core.policy import PolicyError\n"
        "from worker.core.reasons import Reason\n"
        "assert describe() == 'hot path compiled with mypyc', describe()\n"
        "assert isinstance(Rejected(Reason.UNKNOWN_TICKET, 'x'), SlaWorkerError)\n"
        "assert isinstance(Rejected(Reason.UNKNOWN_TICKET, 'x'), ValueError)\n"
        "assert isinstance(PolicyError('p.yaml', ['x']), SlaWorkerError)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(compiled_build)}
    subprocess.run([sys.executable, "-c", check], env=env, cwd=compiled_build, check=True)


def test_an_extension_older_than_its_source_is_reported_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "fakepkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    source = package / "hot.py"
    source.write_text("X = 1\n")
    extension = package / f"hot{importlib.machinery.EXTENSION_SUFFIXES[0]}"
    extension.write_bytes(b"")  # found, never loaded: only its mtime matters
    monkeypatch.syspath_prepend(str(tmp_path))

    os.utime(source, (1_000, 1_000))
    os.utime(extension, (2_000, 2_000))
    assert stale_modules(("fakepkg.hot",)) == []

    os.utime(source, (3_000, 3_000))  # edited after the build
    assert stale_modules(("fakepkg.hot",)) == ["fakepkg.hot"]
