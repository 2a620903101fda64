"""Which ticket comes due next: a min-heap of (due instant, ticket id).

Replay keeps one for the whole stream; the Kafka worker keeps one per owned partition.
Rescheduling a ticket does not search the heap: the new entry is pushed and the old one
is recognised as stale when it surfaces, because it no longer matches `_due[ticket]`.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from datetime import datetime


class DueIndex:
    def __init__(self) -> None:
        self._heap: list[tuple[datetime, str]] = []
        self._due: dict[str, datetime] = {}

    def __len__(self) -> int:
        return len(self._due)

    def schedule(self, ticket_id: str, due: datetime | None) -> None:
        """Set (or, with None, clear) when `ticket_id` next needs `Engine.advance`."""
        if due is None:
            self._due.pop(ticket_id, None)
            return
        if self._due.get(ticket_id) == due:
            return
        self._due[ticket_id] = due
        heapq.heappush(self._heap, (due, ticket_id))
        if len(self._heap) > 4 * len(self._due) + 1024:
            # Stale entries outnumber live ones: rebuild so memory tracks live tickets.
            self._heap = [(d, t) for t, d in self._due.items()]
            heapq.heapify(self._heap)

    def get(self, ticket_id: str) -> datetime | None:
        """When `ticket_id` is scheduled (None: not scheduled)."""
        return self._due.get(ticket_id)

    def peek(self) -> datetime | None:
        """The earliest due instant, or None when nothing is scheduled."""
        heap = self._heap
        while heap:  # `_drop_stale`, inlined: replay peeks once per event
            due, ticket_id = heap[0]
            if self._due.get(ticket_id) == due:
                return due
            heapq.heappop(heap)
        return None

    def pop_due(self, now: datetime, *, inclusive: bool = True) -> Iterator[tuple[str, datetime]]:
        """Remove and yield (ticket id, due) for everything due by `now`, earliest first.

        With `inclusive=False`, only what is due strictly before `now`. Tickets
        rescheduled while iterating are seen again if their new due is also by `now`.
        """
        while True:
            self._drop_stale()
            if not self._heap:
                return
            due, ticket_id = self._heap[0]
            if due > now or (due == now and not inclusive):
                return
            heapq.heappop(self._heap)
            del self._due[ticket_id]
            yield ticket_id, due

    def _drop_stale(self) -> None:
        heap = self._heap
        while heap and self._due.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)

    def until(self, horizon: datetime) -> Iterator[tuple[str, datetime]]:
        """(ticket id, due) of everything due at or before `horizon`, in no set order,
        without removing anything: the at-risk query's candidates.

        A heap's children are never earlier than their parent, so a walk from the root
        that stops at entries later than `horizon` visits only the entries due by it
        (and stale ones among them): O(answer), not O(tickets).
        """
        heap, due_of = self._heap, self._due
        stack = [0] if heap else []
        while stack:
            i = stack.pop()
            due, ticket_id = heap[i]
            if due > horizon:
                continue
            if due_of.get(ticket_id) == due:
                yield ticket_id, due
            child = 2 * i + 1
            if child < len(heap):
                stack.append(child)
                if child + 1 < len(heap):
                    stack.append(child + 1)
