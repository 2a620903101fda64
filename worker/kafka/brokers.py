"""The broker watch: are the Kafka brokers reachable?

A probe asks the brokers for metadata every few seconds; after two failures in a row the
brokers count as unreachable and `on_lost` runs (the worker turns not ready and pauses
every input, so no transaction is begun that cannot commit and no timer fires on a
partition whose input cannot be read). When a probe succeeds again, `on_back` runs (the
inputs resume where they were). The process never exits for an outage: a restart could
do nothing better, and would have to read the changelogs again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("sla_worker")

PROBE_INTERVAL_SECONDS = 2.0
PROBE_TIMEOUT_SECONDS = 5.0
PROBE_FAILURES = 2
"""Consecutive failed metadata probes after which the brokers count as unreachable."""


class BrokerWatch:
    """Probes the brokers; says when they are lost and when they are back."""

    def __init__(
        self,
        probe: Callable[[], Awaitable[Any]],
        on_lost: Callable[[], Awaitable[None]],
        on_back: Callable[[], Awaitable[None]],
    ) -> None:
        self.probe = probe
        self.on_lost = on_lost
        self.on_back = on_back
        self.reachable = True
        self.failures = 0
        self.unreachable_since = 0.0  # monotonic, while unreachable

    async def run(self) -> None:
        """Probe until cancelled."""
        while True:
            await asyncio.sleep(PROBE_INTERVAL_SECONDS)
            try:
                await asyncio.wait_for(self.probe(), PROBE_TIMEOUT_SECONDS)
            except Exception as exc:  # any failure is a failed probe
                self.failures += 1
                if self.failures == PROBE_FAILURES and self.reachable:
                    await self.lost(f"{type(exc).__name__}: {exc}")
            else:
                self.failures = 0
                if not self.reachable:
                    await self.back()

    async def lost(self, why: str) -> None:
        self.reachable = False
        self.unreachable_since = time.monotonic()
        log.error(
            "the Kafka brokers are unreachable (%s): not ready; processing is paused and "
            "resumes by itself when they answer again",
            why,
        )
        await self.on_lost()

    async def back(self) -> None:
        self.reachable = True
        await self.on_back()
        log.warning(
            "the Kafka brokers answer again after %.0f s: processing resumes",
            time.monotonic() - self.unreachable_since,
        )
