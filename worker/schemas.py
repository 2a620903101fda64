"""JSON Schemas of every event in and out, generated from the pydantic models.

`sla-worker schemas export` writes them to `schemas/`; a unit test regenerates them and
fails when the committed files differ, so the published contract cannot drift.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter

from worker.core.events import (
    PriorityChanged,
    ReplySent,
    SlaBreach,
    SlaTimerFinished,
    SlaWarning,
    StatusChanged,
    TicketCreated,
    TicketUpdated,
)

SCHEMA_BASE_URI = "urn:sla-worker:schemas:"

_INBOUND: dict[str, type[Any]] = {
    "ticket-created": TicketCreated,
    "reply-sent": ReplySent,
    "priority-changed": PriorityChanged,
    "status-changed": StatusChanged,
    "ticket-updated": TicketUpdated,
}
_OUTBOUND: dict[str, type[BaseModel]] = {
    "sla-warning": SlaWarning,
    "sla-breach": SlaBreach,
    "sla-timer-finished": SlaTimerFinished,
}


def schemas() -> dict[str, dict[str, Any]]:
    """File name -> JSON Schema (draft 2020-12) for each event type."""
    result: dict[str, dict[str, Any]] = {}
    for direction, models, mode in (
        ("in", _INBOUND, "validation"),
        ("out", _OUTBOUND, "serialization"),
    ):
        for name, model in models.items():
            schema = TypeAdapter(model).json_schema(mode=mode)  # type: ignore[arg-type]
            file_name = f"{direction}.{name}.json"
            result[file_name] = {
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "$id": SCHEMA_BASE_URI + file_name,
                **schema,
            }
    return result


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def export(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for file_name, schema in schemas().items():
        path = directory / file_name
        path.write_text(render(schema), encoding="utf-8")
        written.append(path)
    return written
