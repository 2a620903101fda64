"""Why an input was not applied: one vocabulary for rejections, dead letters and metrics.

Each reason is a short, stable code: the `reason` label of `sla_events_consumed_total`
and `sla_dead_letters_total`, the `sla-dlq-reason` header of a dead letter, the
`reason` of a replay's rejection. Codes outlive releases (dashboards and consumers of
the dead-letter topic match on them), so one is added, never renamed.

docs/semantics.md's table of reasons is generated from here (`python -m
worker.core.reasons`); tests/unit/test_reasons.py keeps it so.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    INVALID_JSON = "invalid-json"
    UNKNOWN_TYPE = "unknown-type"
    NAIVE_TIMESTAMP = "naive-timestamp"
    INVALID_FIELD = "invalid-field"
    UNKNOWN_PLAN = "unknown-plan"
    UNKNOWN_PRIORITY = "unknown-priority"
    UNKNOWN_TICKET = "unknown-ticket"
    DUPLICATE_TICKET = "duplicate-ticket"
    OUT_OF_ORDER = "out-of-order"
    FUTURE_TIMESTAMP = "future-timestamp"
    TOO_OLD = "too-old"
    TOO_LARGE = "too-large"
    # The live worker only: Kafka's key, its stored state, itself.
    MISSING_KEY = "missing-key"
    KEY_MISMATCH = "key-mismatch"
    UNREADABLE_STATE = "unreadable-state"
    INTERNAL_ERROR = "internal-error"


WORKER_ONLY = frozenset({Reason.UNREADABLE_STATE, Reason.INTERNAL_ERROR})
KAFKA_ONLY = frozenset({Reason.MISSING_KEY, Reason.KEY_MISMATCH})
"""Reasons about a Kafka message's key: the audit, which reads Kafka, judges them too."""

MEANINGS: dict[Reason, str] = {
    Reason.INVALID_JSON: "the line is not JSON (or not UTF-8)",
    Reason.UNKNOWN_TYPE: "not an object, or `type` is missing or not one of the five inbound types",
    Reason.NAIVE_TIMESTAMP: "`occurred_at` has no UTC offset",
    Reason.INVALID_FIELD: "a field is missing or invalid (the detail names it)",
    Reason.UNKNOWN_PLAN: "`ticket-created` names a plan the policy does not have",
    Reason.UNKNOWN_PRIORITY: "a priority the ticket's plan does not have",
    Reason.UNKNOWN_TICKET: "an event for a ticket that was never created",
    Reason.DUPLICATE_TICKET: "a second `ticket-created` (with a new `event_id`) for one ticket",
    Reason.OUT_OF_ORDER: "`occurred_at` before the ticket's last applied event",
    Reason.FUTURE_TIMESTAMP: "`occurred_at` more than the allowed clock skew (default 5 "
    "minutes) ahead of the reader's clock: the worker's wall clock, replay's `--now` "
    "(default: when the run started)",
    Reason.TOO_OLD: "an event for a ticket not in state, dated more than the retention "
    "before its partition's event time (see above)",
    Reason.TOO_LARGE: "the message or line is over the size limit (default 1,000,000 "
    "bytes); not parsed",
    Reason.MISSING_KEY: "a Kafka message without a key (the worker partitions by ticket id)",
    Reason.KEY_MISMATCH: "the message key is not the event's `ticket_id`",
    Reason.UNREADABLE_STATE: "the ticket's stored state cannot be read by this version",
    Reason.INTERNAL_ERROR: "an unexpected error while processing this one message (a bug: "
    "please report it); the stream goes on",
}


def markdown_table() -> str:
    """The table of docs/semantics.md, "Duplicates and rejections"."""
    rows = ["| reason | meaning | where |", "|---|---|---|"]
    for reason in Reason:
        where = (
            "worker"
            if reason in WORKER_ONLY
            else "audit, worker"
            if reason in KAFKA_ONLY
            else "replay, audit, worker"
        )
        rows.append(f"| `{reason}` | {MEANINGS[reason]} | {where} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
