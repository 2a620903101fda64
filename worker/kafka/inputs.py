"""What the worker last saw of its input partitions: positions, ends and fetch stamps.

From them, `caught_up` says as of when the worker has read everything a partition's
inputs held (the instant timers may fire up to, worker/tasks/clocks.py), and the
read-only view shows them on GET /readyz.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka.structs import TopicPartition

from worker.kafka.clients import GroupConsumer
from worker.metrics import Metrics


@dataclass
class InputView:
    """What the worker last saw of one input partition."""

    position: int | None = None  # the next offset to read
    end: int | None = None  # the last stable offset of the latest fetch response
    fetch_ms: int | None = None  # when the client processed that response
    previous_fetch_ms: int | None = None  # ... and the one before it

    def observe(self, position: int, end: int | None, fetch_ms: int | None) -> None:
        self.position, self.end = position, end
        if fetch_ms is not None and fetch_ms != self.fetch_ms:
            self.previous_fetch_ms, self.fetch_ms = self.fetch_ms, fetch_ms


class InputWatch:
    """The input partitions of each partition number, and what was seen of them."""

    def __init__(self, consumer: GroupConsumer, topics: list[str], metrics: Metrics) -> None:
        self.consumer = consumer
        self.topics = topics
        self.metrics = metrics
        self.seen: dict[TopicPartition, InputView] = {}

    def of(self, number: int) -> list[TopicPartition]:
        return [TopicPartition(t, number) for t in self.topics]

    def view(self, tp: TopicPartition) -> InputView:
        return self.seen.get(tp, InputView())

    def forget(self, number: int) -> None:
        """What was seen belongs to an earlier ownership: fetches count afresh."""
        for tp in self.of(number):
            self.seen.pop(tp, None)

    async def caught_up(self, number: int) -> datetime | None:
        """As of when has this worker read everything its input partitions held? None
        while any input is behind its last stable offset (clocks.py).

        The client stamps a fetch response when it processes it, after the broker took
        the response's last stable offset: the stamp can be later than what the
        response shows, by the network and by however long the loop was busy. The
        stamp of the response *before* it cannot: the client sends the next fetch only
        after processing the previous response, so the broker's later snapshot is newer
        than that. So each input counts as read as of its previous fetch's stamp (one
        idle fetch, 0.1 s, of extra lateness), and the partition as of the oldest."""
        read_through, behind = None, False
        for tp in self.of(number):
            try:
                end = self.consumer.last_stable_offset(tp)
                position = await self.consumer.position(tp)
                fetched_ms = self.consumer.last_poll_timestamp(tp)
            except Exception:  # not assigned any more (a rebalance is starting)
                return None
            seen = self.seen.setdefault(tp, InputView())
            seen.observe(position, end, fetched_ms)
            if end is None:
                behind = True
                continue
            self.metrics.consumer_lag_of(tp.topic, number, max(end - position, 0))
            behind = behind or position < end
            if seen.previous_fetch_ms is None:
                behind = True  # no two fetches seen since we took the partition
                continue
            fetched = datetime.fromtimestamp(seen.previous_fetch_ms / 1000, UTC)
            read_through = fetched if read_through is None else min(read_through, fetched)
        return None if behind else read_through
