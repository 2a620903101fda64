"""schemas/asyncapi.yaml is what the models generate, the AsyncAPI project's own parser
finds no error in it, and the headers it promises are the headers the worker writes.

The parser is @asyncapi/parser from npm, run on Node.js by tests/asyncapi/validate.mjs;
scripts/ensure-asyncapi-parser installs it (and, as root, Node.js). Without it this test
fails, never skips.
"""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from worker.asyncapi import FILE_NAME, document, render
from worker.core.events import INBOUND_TYPES, SlaBreach, SlaTimerFinished, SlaWarning
from worker.core.reasons import Reason
from worker.schemas import schemas
from worker.tasks import cloudevents
from worker.tasks.processor import DeadLetter, Source

ROOT = Path(__file__).parent.parent.parent
COMMITTED = ROOT / "schemas" / FILE_NAME
T0 = datetime(2026, 11, 24, 10, tzinfo=UTC)


def test_the_committed_document_is_current() -> None:
    assert COMMITTED.read_text() == render(document()), (
        "schemas/asyncapi.yaml is stale: run `sla-worker schemas export`"
    )


def test_the_asyncapi_parser_finds_no_error() -> None:
    ensured = subprocess.run(
        [ROOT / "scripts" / "ensure-asyncapi-parser"], capture_output=True, text=True, check=False
    )
    assert ensured.returncode == 0, f"no AsyncAPI parser for this test:\n{ensured.stderr}"
    parsed = subprocess.run(
        ["node", ROOT / "tests" / "asyncapi" / "validate.mjs", COMMITTED],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    diagnostics = [json.loads(line) for line in parsed.stdout.splitlines()]
    errors = [d for d in diagnostics if d["severity"] == 0]
    assert errors == [] and parsed.returncode == 0, (errors, parsed.stderr)
    # Nothing worse than the advice to move to the latest minor version either.
    assert [d["code"] for d in diagnostics if d["severity"] <= 1] == []


def committed() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(COMMITTED.read_text())
    return doc


def test_every_topic_and_event_type_is_there() -> None:
    doc = committed()
    assert doc["asyncapi"].startswith("3.")
    channels = doc["channels"]
    assert {c["address"] for c in channels.values()} == {
        "tickets",
        "sla-warnings",
        "sla-breaches",
        None,  # finished timers: off unless --finished-timers-topic names one
        "sla-dead-letter",
        "sla-worker-tickets-changelog",
    }
    names = {m["name"] for m in doc["components"]["messages"].values()}
    assert names >= {*INBOUND_TYPES, "sla-warning", "sla-breach", "sla-timer-finished"}
    assert channels["changelog"]["bindings"]["kafka"]["topicConfiguration"] == {
        "cleanup.policy": ["compact"]
    }
    assert "Internal" in channels["changelog"]["description"]
    assert "read_committed" in doc["info"]["description"]
    for operation in doc["operations"].values():
        for message in operation["messages"]:
            assert message["$ref"].startswith(operation["channel"]["$ref"] + "/messages/")


def test_the_payloads_are_the_json_schemas() -> None:
    embedded = committed()["components"]["schemas"]
    for name, schema in schemas().items():
        without_dialect = {k: v for k, v in schema.items() if k != "$schema"}
        assert embedded[name.removesuffix(".json")] == without_dialect
        jsonschema.Draft7Validator.check_schema(without_dialect)  # the AsyncAPI dialect's base


def outputs() -> list[SlaWarning | SlaBreach | SlaTimerFinished]:
    common: dict[str, Any] = {
        "event_id": "id-1",
        "ticket_id": "HD-1",
        "plan": "vip",
        "priority": 1,
        "metric": "first_response",
        "cycle": 1,
        "started_at": T0,
        "target": timedelta(hours=1),
        "calendar": "clock",
        "deadline": T0 + timedelta(hours=1),
        "policy_version": "1",
    }
    return [
        SlaWarning(**common, due_at=T0 + timedelta(minutes=30), threshold=0.5),
        SlaBreach(**common, due_at=T0 + timedelta(hours=1)),
        SlaTimerFinished(
            **common,
            result="breached",
            finished_at=T0 + timedelta(hours=2),
            finished_by="solved",
            business_time=timedelta(hours=2),
        ),
    ]


def headers_as_text(headers: list[tuple[str, bytes]] | tuple[tuple[str, bytes], ...]) -> Any:
    return {name: value.decode() for name, value in headers}


def test_the_documented_headers_are_the_written_ones() -> None:
    messages = committed()["components"]["messages"]
    message_of = {m["name"]: m for m in messages.values()}
    checker = jsonschema.FormatChecker()
    for event in outputs():
        schema = message_of[event.type]["headers"]
        written = headers_as_text(cloudevents.headers(event, cloudevents.source("sla-worker")))
        jsonschema.validate(written, schema, format_checker=checker)
        assert tuple(schema["properties"]) == cloudevents.HEADER_NAMES == tuple(written)
        assert schema["required"] == list(cloudevents.HEADER_NAMES)
        other = next(t for t in ("sla-warning", "sla-breach") if t != event.type)
        assert not jsonschema.Draft7Validator(message_of[other]["headers"]).is_valid(written)

    letter = DeadLetter(
        Source("tickets", 2, 41, b"HD-1", b"{", (("traceparent", b"00-ab"),)),
        Reason.INVALID_JSON,
        "not valid JSON",
    )
    schema = message_of["dead-letter"]["headers"]
    written = headers_as_text(letter.headers())
    jsonschema.validate(written, schema)
    assert set(schema["required"]) == {n for n in written if n.startswith("sla-dlq-")}
    assert set(schema["properties"]["sla-dlq-reason"]["enum"]) == set(Reason)
