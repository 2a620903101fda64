"""Hostile lines mixed into a valid stream change nothing for the valid tickets.

Whatever an adversary writes to the input — random bytes, invalid UTF-8, a BOM, JSON
nested 10,000 deep, 10 MB values, 100,000-character ids, numbers for strings, NaN,
duplicate keys, instants in year 1 or 9999 or at 23:59:60, offsets of ±23:59, far-future
and far-past timestamps, unknown fields — replay must publish, for the valid stream's
tickets, exactly what it publishes without the hostile lines: nothing invented, nothing
lost. Every line is accounted for: read = applied + duplicates + rejected.

A hostile line may also be a *valid* event for a ticket of its own (a ticket created in
1980, say); its outputs are its own business, so outputs are compared per valid ticket.
Duplicate JSON keys: the last occurrence wins (as in Python's and JavaScript's parsers),
so a line whose last reading is a valid event for a valid ticket is a valid event, not a
hostile one; the lines below make the last reading invalid or another ticket's.
"""

from __future__ import annotations

import json
import random
import tracemalloc
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from worker.core.engine import Engine
from worker.core.events import SlaEvent
from worker.core.policy import Policy
from worker.replay import Rejection, Replay, Summary
from worker.traffic import synthetic_stream

NOW = datetime(2026, 12, 3, tzinfo=UTC)  # the valid stream runs through November 2026
UNTIL = datetime(2027, 1, 1, tzinfo=UTC)  # past every timer of every ticket
VALID, _ = synthetic_stream(300, 30, seed=5)
VALID_TICKETS = {json.loads(line)["ticket_id"] for line in VALID}


def reply(ticket: str, at: str, event_id: str = "h-1", **extra: Any) -> dict[str, Any]:
    body = {"event_id": event_id, "type": "reply-sent", "ticket_id": ticket, "occurred_at": at}
    return {**body, "author": "agent", **extra}


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


ticket = st.sampled_from(sorted(VALID_TICKETS))
bad_instant = st.sampled_from(
    [
        "0001-01-01T00:00:00+23:59",
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59-23:59",
        "9999-12-31T23:59:59Z",
        "2026-11-30T23:59:60Z",
        "2026-11-30T10:00:00+24:00",
        "2026-11-30T10:00:00",  # naive
        "2099-01-01T00:00:00Z",  # far future: beyond the clock skew
        "2026-12-03T00:05:01Z",  # just beyond the skew
        "1969-12-31T23:59:59Z",
    ]
)


@st.composite
def hostile_line(draw: st.DrawFn) -> bytes:
    target = draw(ticket)
    kind = draw(st.integers(0, 12))
    if kind == 0:
        return draw(st.binary(min_size=1, max_size=300))
    if kind == 1:  # invalid UTF-8 around a valid-looking event
        return b"\xff\xfe" + encode(reply(target, "2026-11-15T10:00:00Z"))
    if kind == 2:  # a BOM before a valid-looking event
        return b"\xef\xbb\xbf" + encode(reply(target, "2026-11-15T10:00:00Z"))
    if kind == 3:
        depth = draw(st.sampled_from([500, 10_000]))
        return b'{"a":' * depth + b"1" + b"}" * depth
    if kind == 4:  # 10 MB
        return b'{"event_id": "' + b"x" * 10_000_000 + b'"}'
    if kind == 5:
        return encode(reply("T" * 100_000, "2026-11-15T10:00:00Z"))
    if kind == 6:  # numbers where strings belong
        field = draw(st.sampled_from(["event_id", "ticket_id", "occurred_at", "author"]))
        return encode({**reply(target, "2026-11-15T10:00:00Z"), field: 12345})
    if kind == 7:  # NaN / Infinity where a number belongs
        value = draw(st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999"]))
        body = {"event_id": "h-p", "type": "priority-changed", "ticket_id": target}
        raw = encode({**body, "occurred_at": "2026-11-15T10:00:00Z", "priority": 0})
        return raw.replace(b'"priority": 0', b'"priority": ' + value.encode())
    if kind == 8:  # duplicate keys: the last reading is invalid
        raw = encode(reply(target, "2026-11-15T10:00:00Z"))
        return raw[:-1] + b', "occurred_at": "not a time"}'
    if kind == 9:  # duplicate keys: the last reading names a ticket that does not exist
        raw = encode(reply(target, "2026-11-15T10:00:00Z"))
        return raw[:-1] + b', "ticket_id": "NO-SUCH-TICKET"}'
    if kind == 10:
        return encode(reply(target, draw(bad_instant)))
    if kind == 11:  # unknown fields on an event for an unknown ticket
        return encode(reply("NO-SUCH", "2026-11-15T10:00:00Z", surprise={"nested": [1, 2]}))
    # far past, for an existing ticket: before its last event
    return encode(reply(target, "1980-01-01T00:00:00Z"))


def run(lines: list[bytes], policy: Policy) -> tuple[dict[str, list[str]], Summary]:
    by_ticket: dict[str, list[str]] = {}

    def on_event(event: SlaEvent) -> None:
        by_ticket.setdefault(event.ticket_id, []).append(event.model_dump_json())

    def on_reject(rejection: Rejection) -> None:
        pass

    replay = Replay(Engine(policy), on_event, on_reject, now=NOW)
    replay.feed(lines)
    return by_ticket, replay.finish(UNTIL)


def valid_only(by_ticket: dict[str, list[str]]) -> dict[str, list[str]]:
    return {t: events for t, events in by_ticket.items() if t in VALID_TICKETS}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile=st.lists(hostile_line(), min_size=1, max_size=12), seed=st.integers(0, 2**32))
def test_hostile_lines_change_nothing_for_the_valid_tickets(
    presets: Policy, hostile: list[bytes], seed: int
) -> None:
    expected, clean = run(VALID, presets)
    mixed = list(VALID)
    rng = random.Random(seed)
    for line in hostile:
        mixed.insert(rng.randrange(len(mixed) + 1), line.replace(b"\n", b" "))
    got, summary = run(mixed, presets)

    assert valid_only(got) == expected
    assert summary.read == len(VALID) + len(hostile) - sum(1 for h in hostile if h.isspace())
    assert summary.read == summary.applied + summary.duplicates + summary.rejected
    assert summary.rejected == sum(summary.rejected_by_reason.values())
    assert summary.applied >= clean.applied  # hostile lines may create tickets of their own


def test_a_10_mb_line_is_rejected_without_being_parsed(presets: Policy) -> None:
    huge = b'{"event_id": "' + b"x" * 10_000_000 + b'"}'
    rejections: list[Rejection] = []
    replay = Replay(Engine(presets), lambda e: None, rejections.append, now=NOW)
    tracemalloc.start()
    try:
        replay.feed([huge, huge])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [r.reason for r in rejections] == ["too-large", "too-large"]
    assert peak < 1_000_000  # no copy, no parse of the 10 MB


def test_the_reasons_of_hostile_lines(presets: Policy) -> None:
    target = sorted(VALID_TICKETS)[0]
    cases = {
        b"\xff\xfe{": "invalid-json",
        b"\xef\xbb\xbf" + encode(reply(target, "2026-11-15T10:00:00Z")): "invalid-json",
        b"[" * 10_000 + b"]" * 10_000: "invalid-json",
        encode(reply(target, "0001-01-01T00:00:00+23:59")): "invalid-field",
        encode(reply(target, "9999-12-31T23:59:59-23:59")): "invalid-field",
        encode(reply(target, "2026-11-30T23:59:60Z")): "invalid-field",
        encode(reply(target, "2099-01-01T00:00:00Z")): "future-timestamp",
        encode(reply(target, "1980-01-01T00:00:00Z")): "out-of-order",
        encode(reply("T" * 100_000, "2026-11-15T10:00:00Z")): "invalid-field",
        b'{"event_id": "' + b"x" * 2_000_000 + b'"}': "too-large",
    }
    rejections: list[Rejection] = []
    replay = Replay(Engine(presets), lambda e: None, rejections.append, now=NOW)
    replay.feed([*VALID, *cases])
    assert [r.reason for r in rejections] == list(cases.values())
