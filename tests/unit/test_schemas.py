"""The committed JSON Schemas are exactly what the models generate."""

from __future__ import annotations

import json
from pathlib import Path

from worker.core.events import INBOUND_TYPES
from worker.schemas import render, schemas

SCHEMAS = Path(__file__).parent.parent.parent / "schemas"


def test_committed_schemas_are_current() -> None:
    generated = schemas()
    committed = {p.name for p in SCHEMAS.glob("*.json")}
    assert committed == set(generated), "run `sla-worker schemas export`"
    for name, schema in generated.items():
        assert (SCHEMAS / name).read_text() == render(schema), (
            f"schemas/{name} is stale: run `sla-worker schemas export`"
        )


def test_one_schema_per_event_type() -> None:
    names = set(schemas())
    assert names == {f"in.{t}.json" for t in INBOUND_TYPES} | {
        "out.sla-warning.json",
        "out.sla-breach.json",
        "out.sla-timer-finished.json",
    }


def test_outbound_target_is_an_iso_duration_string() -> None:
    breach = json.loads((SCHEMAS / "out.sla-breach.json").read_text())
    assert breach["properties"]["target"]["type"] == "string"
    assert "deadline" in breach["required"]


def test_customer_id_is_optional_and_never_null_in_outputs() -> None:
    for name in ("out.sla-warning.json", "out.sla-breach.json", "out.sla-timer-finished.json"):
        schema = json.loads((SCHEMAS / name).read_text())
        assert schema["properties"]["customer_id"] == {
            "description": "The ticket's customer_id; absent when its ticket-created had none.",
            "title": "Customer Id",
            "type": "string",
        }
        assert "customer_id" not in schema["required"]
    finished = json.loads((SCHEMAS / "out.sla-timer-finished.json").read_text())
    assert finished["properties"]["result"]["enum"] == ["met", "breached"]


def test_inbound_timestamp_requires_an_offset_in_its_description() -> None:
    created = json.loads((SCHEMAS / "in.ticket-created.json").read_text())
    assert created["properties"]["occurred_at"]["format"] == "date-time"
    assert set(created["required"]) >= {"event_id", "type", "ticket_id", "occurred_at", "plan"}


def test_replay_output_and_example_input_validate_against_the_schemas() -> None:
    import jsonschema
    from click.testing import CliRunner

    from worker.cli import main

    examples = SCHEMAS.parent / "examples" / "tickets.jsonl"
    result = CliRunner().invoke(
        main, ["replay", str(examples), "--until", "2026-12-05T00:00:00Z", "--finished-timers"]
    )
    outputs = [json.loads(line) for line in result.stdout.splitlines()]
    assert {o["type"] for o in outputs} == {"sla-warning", "sla-breach", "sla-timer-finished"}
    for event in outputs:
        schema = json.loads((SCHEMAS / f"out.{event['type']}.json").read_text())
        jsonschema.validate(event, schema, format_checker=jsonschema.FormatChecker())
    for line in examples.read_text().splitlines()[:20]:
        event = json.loads(line)
        schema = json.loads((SCHEMAS / f"in.{event['type']}.json").read_text())
        jsonschema.validate(event, schema)
