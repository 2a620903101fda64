"""One vocabulary of reasons: the code uses only the enum, every code is used, and the
docs' table is the enum's."""

from __future__ import annotations

import re
from pathlib import Path

from worker.core.reasons import MEANINGS, Reason, markdown_table

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [p for p in (ROOT / "worker").rglob("*.py") if p.name != "reasons.py"]


def test_rejections_and_dead_letters_name_a_reason_never_a_bare_string() -> None:
    bare = []
    for path in SOURCES:
        text = path.read_text()
        for call in re.finditer(r"(?:Rejected|InvalidEvent|DeadLetter)\(", text):
            arguments = text[call.end() : call.end() + 200]
            if re.match(r'\s*(?:\w+,\s*)?"[a-z]+(?:-[a-z]+)+"', arguments):
                bare.append(f"{path.relative_to(ROOT)}: {call.group(0)}{arguments[:40]}")
    assert bare == []


def test_every_reason_is_given_somewhere_and_means_something() -> None:
    used = set()
    for path in SOURCES:
        used.update(re.findall(r"Reason\.([A-Z_]+)", path.read_text()))
    assert used == {reason.name for reason in Reason}
    assert set(MEANINGS) == set(Reason)


def test_the_docs_table_is_generated_from_the_enum() -> None:
    text = (ROOT / "docs" / "semantics.md").read_text()
    assert markdown_table() in text, "regenerate it: python -m worker.core.reasons"
