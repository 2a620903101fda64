"""What the worker must publish for a log: replay's output, which the broker tests
compare with what the worker published (`fault_log.published`) as exact sets of ids."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tests.integration.workers import FAST
from tests.replaying import run_replay
from worker.core.policy import Policy


def expected(
    lines: list[bytes], until: datetime, policy: Policy = FAST
) -> dict[str, dict[str, Any]]:
    """{event_id: warning or breach} that replay emits for `lines` (in this order) with
    the clock advanced to `until`; every line must be applicable."""
    result = run_replay([line.decode() for line in lines], policy, until.isoformat())
    assert not result.rejections, result.rejections
    return {event["event_id"]: event for event in result.events}
