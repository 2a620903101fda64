"""The AsyncAPI 3 document of every topic the worker reads and writes.

The JSON Schemas (`worker.schemas`) say what one event looks like; a consumer also needs
the contract of the topics: which topic carries what, keys, headers (the CloudEvents
headers of the outputs, the `sla-dlq-*` headers of dead letters), and the delivery
guarantee (one Kafka transaction per partition step, `read_committed`, deterministic
`event_id`s). AsyncAPI is the format a consumer's tooling reads that in.

Built from the same models as the JSON Schemas (embedded, so the document stands alone),
from the settings' defaults, the dead-letter reasons and the CloudEvents header function's
constants: `sla-worker schemas export` writes it to `schemas/asyncapi.yaml`, and
`tests/unit/test_asyncapi.py` fails when the committed file is stale or when the AsyncAPI
project's own parser finds an error in it.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import yaml

from worker import __version__
from worker.core.events import INBOUND_TYPES
from worker.core.reasons import Reason
from worker.schemas import schemas
from worker.settings import WorkerSettings
from worker.tasks import cloudevents
from worker.tasks.partition import DEAD_LETTER_PREFIX

FILE_NAME = "asyncapi.yaml"
KAFKA_BINDING = "0.5.0"
OUTBOUND_TYPES = ("sla-warning", "sla-breach", "sla-timer-finished")

_DELIVERY = (
    "Every record the worker writes (warnings, breaches, finished timers, dead letters, "
    "changelog) is written in one Kafka transaction per partition step, together with the "
    "consumed input offsets. Read with `isolation.level=read_committed`: then each record "
    "arrives once. A `read_uncommitted` consumer also sees records of aborted transactions; "
    "their committed repeats carry the same bytes and headers and the same `event_id`, which "
    "is deterministic (a UUIDv5 of the ticket, metric, cycle and timer point), so "
    "deduplicating on `event_id` makes that safe too."
)

_DESCRIPTION = f"""\
SLA timers for help desks: the worker consumes ticket events, keyed by ticket id, and
publishes a warning when a configured fraction of an SLA target has elapsed, a breach when
the deadline passes, and (optionally) a record for every timer that stops, met or breached.

{textwrap.fill("**Delivery guarantee.** " + _DELIVERY, 90)}

**Keys.** Inputs must be keyed by their `ticket_id` (UTF-8), and warnings, breaches and
finished-timer records are, so one ticket's records stay in order within a partition; a
dead letter keeps the key of the input it is.

**CloudEvents.** Warnings, breaches and finished-timer records are CloudEvents 1.0 in the
binary content mode of the Kafka protocol binding: the attributes are `ce_*` headers (and
`content-type`), the value is the JSON payload. Dead letters and the changelog are not.

Topic names are the worker's defaults; each is a setting (`sla-worker worker --help`).
The payload schemas are the JSON Schemas of `schemas/*.json`, embedded. See docs/worker.md.
"""


def document() -> dict[str, Any]:
    """The AsyncAPI 3.0 document, as plain data (`render` writes it as YAML)."""
    return {
        "asyncapi": "3.0.0",
        "id": "urn:sla-worker",
        "info": {
            "title": "sla-worker",
            "version": __version__,
            "description": _DESCRIPTION,
            "license": {
                "name": "Apache-2.0",
                "url": "https://www.apache.org/licenses/LICENSE-2.0",
            },
        },
        "servers": {
            "kafka": {
                "host": "{bootstrap}",
                "protocol": "kafka",
                "description": "The Kafka cluster: `--bootstrap-servers`; PLAINTEXT, SSL "
                "(with mutual TLS) or SASL_SSL per `--security-protocol` (docs/worker.md).",
                "variables": {
                    "bootstrap": {
                        "default": _default("bootstrap_servers"),
                        "description": "A bootstrap server, host:port.",
                    }
                },
            }
        },
        "defaultContentType": cloudevents.CONTENT_TYPE,
        "channels": _channels(),
        "operations": _operations(),
        "components": {
            "schemas": _payload_schemas(),
            "messages": _messages(),
        },
    }


def render(doc: dict[str, Any]) -> str:
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


def export(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / FILE_NAME
    path.write_text(render(document()), encoding="utf-8")
    return path


# --- channels and operations -----------------------------------------------------------


def _default(setting: str) -> Any:
    """A setting's default, not its value here: the document is the same on every machine."""
    return WorkerSettings.model_fields[setting].get_default(call_default_factory=True)


def _camel(name: str) -> str:
    """`sla-timer-finished` -> `slaTimerFinished`: a message's id."""
    first, *rest = name.split("-")
    return first + "".join(part.title() for part in rest)


def _ref(*path: str) -> dict[str, str]:
    return {"$ref": "#/" + "/".join(path)}


def _kafka_channel(topic: str | None, compact: bool = False) -> dict[str, Any]:
    """The topic as the worker creates it when missing: `--partitions` partitions (the
    default here), `--replication-factor` replicas; only the changelog is configured
    (compacted), the others get the brokers' defaults."""
    binding: dict[str, Any] = {} if topic is None else {"topic": topic}
    binding["partitions"] = _default("partitions")
    binding["replicas"] = _default("replication_factor")
    if compact:
        binding["topicConfiguration"] = {"cleanup.policy": ["compact"]}
    binding["bindingVersion"] = KAFKA_BINDING
    return {"kafka": binding}


def _output_delivery() -> dict[str, Any]:
    """How a consumer of an output topic reads it (no AsyncAPI field says this)."""
    return {
        "transactional": True,
        "isolationLevel": "read_committed",
        "deduplicateOn": "$message.payload#/event_id",
    }


_OUTPUT_CHANNELS = {
    "sla-warning": ("slaWarnings", "warnings_topic", "Warnings"),
    "sla-breach": ("slaBreaches", "breaches_topic", "Breaches"),
    "sla-timer-finished": ("slaTimersFinished", "finished_timers_topic", "Finished timers"),
}


def _channels() -> dict[str, Any]:
    channels: dict[str, Any] = {
        "tickets": {
            "address": _default("input_topics")[0],
            "title": "Ticket events",
            "description": "What happened to tickets, keyed by `ticket_id`: one topic "
            "carrying every event type, or one topic per type (`--input-topics`, "
            "comma-separated); all must have the same partition count as the changelog. "
            "Read `read_committed`, in the consumer group `--app-id`; the consumed offsets "
            "are committed in the transaction of the step that applied them. Headers are not "
            "read (a dead letter keeps them).",
            "messages": {
                _camel(t): _ref("components", "messages", _camel(t)) for t in INBOUND_TYPES
            },
            "bindings": _kafka_channel(_default("input_topics")[0]),
        }
    }
    for event_type, (channel, setting, title) in _OUTPUT_CHANNELS.items():
        topic = _default(setting)
        optional = (
            " Off by default: published only with `--finished-timers-topic`, to that topic."
            if topic is None
            else f" Topic: `--{setting.replace('_', '-')}`."
        )
        channels[channel] = {
            "address": topic,
            "title": title,
            "description": f"`{event_type}` records, keyed by `ticket_id`, as CloudEvents "
            f"(binary content mode).{optional} Written in transactions: read with "
            "`isolation.level=read_committed`, or deduplicate on `event_id` (the document's "
            "description says why).",
            "messages": {_camel(event_type): _ref("components", "messages", _camel(event_type))},
            "bindings": _kafka_channel(topic),
            "x-delivery": _output_delivery(),
        }
    channels["deadLetters"] = {
        "address": _default("dead_letter_topic"),
        "title": "Dead letters",
        "description": "Every input that cannot be applied: the original key, bytes and "
        "headers, plus `sla-dlq-*` headers saying why and where it came from. Written in the "
        "transaction of the step that consumed it. No CloudEvents headers of the worker's "
        "(a dead letter is the input message, not an event of the worker).",
        "messages": {"deadLetter": _ref("components", "messages", "deadLetter")},
        "bindings": _kafka_channel(_default("dead_letter_topic")),
    }
    changelog = f"{_default('app_id')}-tickets-changelog"
    channels["changelog"] = {
        "address": changelog,
        "title": "State changelog (internal)",
        "description": "Internal: each ticket's state and each partition's event time and "
        "input offsets, compacted; `<app-id>-tickets-changelog`. Its format is the worker's "
        "own and changes between versions without notice: do not consume it.",
        "messages": {"changelogRecord": _ref("components", "messages", "changelogRecord")},
        "bindings": _kafka_channel(changelog, compact=True),
    }
    return channels


def _operations() -> dict[str, Any]:
    group = {
        "type": "string",
        "default": _default("app_id"),
        "description": "`--app-id`.",
    }
    operations: dict[str, Any] = {
        "consumeTicketEvents": {
            "action": "receive",
            "channel": _ref("channels", "tickets"),
            "summary": "Apply ticket events to the tickets' SLA timers.",
            "messages": [_ref("channels", "tickets", "messages", _camel(t)) for t in INBOUND_TYPES],
            "bindings": {"kafka": {"groupId": group, "bindingVersion": KAFKA_BINDING}},
        }
    }
    for event_type, (channel, _, _) in _OUTPUT_CHANNELS.items():
        message = _camel(event_type)
        operations[f"publish{message[0].upper()}{message[1:]}"] = {
            "action": "send",
            "channel": _ref("channels", channel),
            "summary": f"Publish `{event_type}` records.",
            "description": "On the partition's transactional producer "
            "(`<app-id>-state-<partition>`), in the step's transaction.",
            "messages": [_ref("channels", channel, "messages", message)],
        }
    operations["publishDeadLetter"] = {
        "action": "send",
        "channel": _ref("channels", "deadLetters"),
        "summary": "Dead-letter an input that cannot be applied.",
        "messages": [_ref("channels", "deadLetters", "messages", "deadLetter")],
    }
    operations["writeChangelog"] = {
        "action": "send",
        "channel": _ref("channels", "changelog"),
        "summary": "Internal: store the changed tickets' state and the partition's clock.",
        "messages": [_ref("channels", "changelog", "messages", "changelogRecord")],
    }
    operations["restoreChangelog"] = {
        "action": "receive",
        "channel": _ref("channels", "changelog"),
        "summary": "Internal: restore a partition taken over.",
        "messages": [_ref("channels", "changelog", "messages", "changelogRecord")],
    }
    return operations


# --- messages ----------------------------------------------------------------------------


def _payload_schemas() -> dict[str, Any]:
    """The JSON Schemas of `schemas/`, by file stem. Their dialect is the AsyncAPI Schema
    Object's (a superset of draft 07, whose keywords are the only ones they use), so the
    `$schema` line is left out; `$id` names the file."""
    return {
        name.removesuffix(".json"): {k: v for k, v in schema.items() if k != "$schema"}
        for name, schema in schemas().items()
    }


_TICKET_KEY = {"type": "string", "description": "The event's `ticket_id`, UTF-8."}


def _messages() -> dict[str, Any]:
    payloads = _payload_schemas()
    messages: dict[str, Any] = {}
    for event_type in INBOUND_TYPES:
        payload = payloads[f"in.{event_type}"]
        messages[_camel(event_type)] = {
            "name": event_type,
            "title": event_type,
            "summary": payload["description"],
            "contentType": "application/json",
            "payload": _ref("components", "schemas", f"in.{event_type}"),
            "bindings": {"kafka": {"key": _TICKET_KEY, "bindingVersion": KAFKA_BINDING}},
        }
    for event_type in OUTBOUND_TYPES:
        payload = payloads[f"out.{event_type}"]
        messages[_camel(event_type)] = {
            "name": event_type,
            "title": event_type,
            "summary": payload["description"],
            "contentType": cloudevents.CONTENT_TYPE,
            "headers": _cloudevents_headers(event_type),
            "payload": _ref("components", "schemas", f"out.{event_type}"),
            "bindings": {"kafka": {"key": _TICKET_KEY, "bindingVersion": KAFKA_BINDING}},
        }
    messages["deadLetter"] = {
        "name": "dead-letter",
        "title": "dead letter",
        "summary": "An input message that cannot be applied, as it came, with the reason.",
        "contentType": "application/octet-stream",
        "headers": _dead_letter_headers(),
        "payload": {
            "description": "The input message's value, byte for byte; of one larger than "
            f"`--max-message-bytes` (`too-large`), its first {DEAD_LETTER_PREFIX} bytes "
            "(`sla-dlq-truncated-from` says so). Usually one of the ticket events, but it may "
            "be anything, not even JSON (`invalid-json`)."
        },
        "bindings": {
            "kafka": {
                "key": {
                    "type": ["string", "null"],
                    "description": "The input message's key, byte for byte (none for "
                    "`missing-key`; not necessarily UTF-8).",
                },
                "bindingVersion": KAFKA_BINDING,
            }
        },
    }
    messages["changelogRecord"] = {
        "name": "changelog-record",
        "title": "changelog record (internal)",
        "summary": "Internal: a ticket's state, or a partition's clock; not a contract.",
        "payload": {
            "type": ["object", "null"],
            "description": "The worker's own JSON (null: a tombstone, the ticket left state).",
        },
        "bindings": {
            "kafka": {
                "key": {
                    "type": "string",
                    "description": "A ticket id, or the empty key for the partition's event "
                    "time and input offsets.",
                },
                "bindingVersion": KAFKA_BINDING,
            }
        },
    }
    return messages


def _cloudevents_headers(event_type: str) -> dict[str, Any]:
    """The headers `worker.tasks.cloudevents.headers` writes on a record of `event_type`."""
    time_field = "finished_at" if event_type == "sla-timer-finished" else "due_at"
    properties: dict[str, Any] = {
        "ce_specversion": {"type": "string", "const": cloudevents.SPEC_VERSION},
        "ce_id": {"type": "string", "description": "The payload's `event_id`."},
        "ce_type": {"type": "string", "const": cloudevents.event_type(event_type)},
        "ce_source": {
            "type": "string",
            "format": "uri",
            "description": f"`{cloudevents.SOURCE_PREFIX}<app-id>`: the deployment "
            "(`--app-id`, percent-encoded); the same for every worker of a group.",
            "examples": [cloudevents.source(_default("app_id"))],
        },
        "ce_time": {
            "type": "string",
            "format": "date-time",
            "description": f"When it happened: the payload's `{time_field}`, as written there.",
        },
        "ce_subject": {"type": "string", "description": "The ticket: the payload's `ticket_id`."},
        "ce_dataschema": {"type": "string", "const": cloudevents.data_schema(event_type)},
        "content-type": {"type": "string", "const": cloudevents.CONTENT_TYPE},
    }
    return {
        "type": "object",
        "description": "CloudEvents 1.0 attributes, Kafka protocol binding, binary content "
        "mode (UTF-8 header values).",
        "required": list(properties),
        "properties": properties,
    }


def _dead_letter_headers() -> dict[str, Any]:
    number = {"type": "string", "pattern": "^[0-9]+$"}
    return {
        "type": "object",
        "description": "The input message's own headers first, then these (UTF-8).",
        "required": [
            "sla-dlq-reason",
            "sla-dlq-detail",
            "sla-dlq-source-topic",
            "sla-dlq-source-partition",
            "sla-dlq-source-offset",
        ],
        "properties": {
            "sla-dlq-reason": {
                "type": "string",
                "enum": [str(reason) for reason in Reason],
                "description": "Why, as a stable code (codes are added, never renamed); "
                "their meanings: docs/semantics.md, Duplicates and rejections, and "
                "docs/worker.md, Dead letters.",
            },
            "sla-dlq-detail": {
                "type": "string",
                "description": "A sentence for a person (which field, which value); at most "
                "4096 bytes.",
            },
            "sla-dlq-source-topic": {"type": "string", "description": "Where it came from."},
            "sla-dlq-source-partition": {**number, "description": "Its partition there."},
            "sla-dlq-source-offset": {**number, "description": "Its offset there."},
            "sla-dlq-truncated-from": {
                **number,
                "description": "Only on a `too-large` input: its full size in bytes (the "
                "value keeps a prefix).",
            },
        },
        "additionalProperties": True,
    }


class _Dumper(yaml.SafeDumper):
    """Block scalars for text of several lines, so the descriptions read as written; no
    anchors and aliases for values used twice, so each message reads on its own."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)
