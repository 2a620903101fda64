"""Which worker owns which partition: Kafka's group protocol with our own assignor.

Kafka's consumer group decides ownership; this module only supplies the assignment
strategy that the group leader runs, as Kafka Streams does for the same two needs:

- **Co-partitioning.** Partition *p* of every input topic goes to one worker, since a
  ticket's events may arrive on several input topics and its state lives with *p*.
- **Stickiness.** Each worker announces the partitions it owns in its join metadata and
  keeps them where the balance allows, so a worker joining or leaving moves only the
  partitions it must, and the others keep their state without restoring it.
- **Who answers for a ticket.** Each worker announces its HTTP address; the leader sends
  every member the full map partition -> address, so any worker can forward
  `GET /tickets/{id}` to the owner.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.protocol import (
    ConsumerProtocolMemberAssignment,
    ConsumerProtocolMemberMetadata,
)


def plan(partitions: int, owned: Mapping[str, Iterable[int]]) -> dict[str, list[int]]:
    """Spread partitions 0..n-1 over the members (ids sorted), keeping owned ones.

    Every member gets floor(n/m) or ceil(n/m) partitions; a member keeps what it owns up
    to its share (a partition claimed twice, after a split brain, goes to the first).
    """
    members = sorted(owned)
    if not members:
        return {}
    base, extra = divmod(partitions, len(members))
    quota = {member: base + (1 if i < extra else 0) for i, member in enumerate(members)}
    result: dict[str, list[int]] = {member: [] for member in members}
    taken: set[int] = set()
    for member in members:
        for p in sorted(set(owned[member])):
            if 0 <= p < partitions and p not in taken and len(result[member]) < quota[member]:
                result[member].append(p)
                taken.add(p)
    free = [p for p in range(partitions) if p not in taken]
    for member in members:
        while len(result[member]) < quota[member] and free:
            result[member].append(free.pop(0))
        result[member].sort()
    return result


def ticket_assignor(
    url: str,
    owned: Callable[[], list[int]],
    on_owners: Callable[[dict[int, str]], None],
) -> type[AbstractPartitionAssignor]:
    """The assignor class for one worker (aiokafka takes assignors as classes).

    `owned()`: the partitions this worker holds now (sent when it joins); `on_owners`:
    called with the group's map partition -> HTTP address after each assignment.
    """

    class TicketPartitionAssignor(AbstractPartitionAssignor):  # type: ignore[misc]
        name = "sla-ticket-partitions"
        version = 0

        @classmethod
        def metadata(cls, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:
            data = json.dumps({"url": url, "owned": owned()}).encode()
            return ConsumerProtocolMemberMetadata(cls.version, sorted(topics), data)

        @classmethod
        def assign(
            cls, cluster: Any, members: Mapping[str, ConsumerProtocolMemberMetadata]
        ) -> dict[str, ConsumerProtocolMemberAssignment]:
            topics = sorted({t for meta in members.values() for t in meta.subscription})
            counts = [len(cluster.partitions_for_topic(t) or ()) for t in topics]
            # Input topics are checked at start to have one partition count; the
            # smallest keeps a mismatch created later from assigning missing partitions.
            partitions = min(counts, default=0)
            announced = {member: _decode(meta.user_data) for member, meta in members.items()}
            layout = plan(partitions, {m: a.get("owned", []) for m, a in announced.items()})
            owners = {
                str(p): announced[member].get("url", "")
                for member, ps in layout.items()
                for p in ps
            }
            data = json.dumps({"owners": owners}).encode()
            return {
                member: ConsumerProtocolMemberAssignment(
                    cls.version, [(t, layout[member]) for t in topics], data
                )
                for member in members
            }

        @classmethod
        def on_assignment(cls, assignment: ConsumerProtocolMemberAssignment) -> None:
            owners = _decode(assignment.user_data).get("owners", {})
            on_owners({int(p): str(u) for p, u in owners.items()})

    return TicketPartitionAssignor


def _decode(data: bytes | None) -> dict[str, Any]:
    try:
        value = json.loads(data or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
