"""Fault injection for worker subprocesses: on PYTHONPATH, Python imports this at start.

With SLA_FAULT_LOSE_CHANGELOG_FETCH=1, the first table recovery that has changelog
records to read loses them the way faust-streaming's fetch race does (docs/worker.md,
"Stalled recoveries are restarted"): right after recovery seeks its changelog partitions,
their position jumps past the records it needs, as if those had been fetched and dropped.
The race itself cannot be triggered on demand; its effect can.
"""

from __future__ import annotations

import os
from typing import Any

if os.environ.get("SLA_FAULT_LOSE_CHANGELOG_FETCH") == "1":
    from faust.tables.recovery import Recovery

    _seek_offsets = Recovery._seek_offsets
    _injected = False

    async def _seek_then_lose(self: Any, consumer: Any, tps: Any, offsets: Any, title: str) -> None:
        global _injected
        await _seek_offsets(self, consumer, tps, offsets, title)
        if title != "active" or _injected:
            return
        ends = {
            tp: self.active_highwaters[tp] + 1
            for tp in tps
            if (self.active_highwaters.get(tp) or -1) > max(offsets[tp], -1)
        }
        if ends:
            _injected = True
            print(f"fault injected: changelog records lost for {sorted(ends)}", flush=True)
            await consumer.seek_wait(ends)

    Recovery._seek_offsets = _seek_then_lose  # type: ignore[method-assign]
