"""What the worker must publish for a log: replay's output, which the broker tests
compare with what the worker published (`fault_log.published`) as exact sets of ids."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from tests.integration.workers import FAST
from worker.core.engine import Engine
from worker.core.policy import Policy
from worker.replay import Replay


def expected(
    lines: list[bytes], until: datetime, policy: Policy = FAST
) -> dict[str, dict[str, Any]]:
    """{event_id: warning or breach} that replay emits for `lines` (in this order) with
    the clock advanced to `until`; every line must be applicable."""
    events: dict[str, dict[str, Any]] = {}
    rejected: list[Any] = []
    replay = Replay(
        Engine(policy),
        lambda e: events.setdefault(e.event_id, json.loads(e.model_dump_json())),
        rejected.append,
    )
    replay.feed(line.decode() for line in lines)
    replay.finish(until)
    assert not rejected, rejected
    return events
