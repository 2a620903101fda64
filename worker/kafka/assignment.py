"""Which worker owns which partition: Kafka's group protocol with our own assignor.

Kafka's consumer group decides ownership; this module only supplies the assignment
strategy that the group leader runs, as Kafka Streams does for the same two needs:

- **Co-partitioning.** Partition *p* of every input topic goes to one worker, since a
  ticket's events may arrive on several input topics and its state lives with *p*.
- **Stickiness.** Each worker announces the partitions it owns in its join metadata and
  keeps them where the balance allows, so a worker joining or leaving moves only the
  partitions it must, and the others keep their state without restoring it.
- **Caught-up members first.** Each worker also announces how far behind the changelog
  end the state of each partition it keeps as a warm standby is (`standby_lags`, records);
  a partition that no member keeps as active goes to a member whose standby is within
  `ACCEPTABLE_LAG` of it (the least behind first), where the balance allows, and to anyone
  with room otherwise. The rule, in order: stickiness (a member keeps its active
  partitions), then a caught-up standby, then any member with room.
- **Warm standbys** (`--standby-replicas N`, Kafka Streams' `num.standby.replicas`): the
  leader (with its own N) also gives each partition to up to N members other than its
  active owner, each member's standbys as even as possible, a member keeping the standbys
  it has where it can. A member learns its own in its assignment (`standby`).
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

ACCEPTABLE_LAG = 10_000
"""A standby at most this many changelog records behind is caught up: it may take its
partition over (Kafka Streams' `acceptable.recovery.lag` default)."""


def plan(
    partitions: int,
    owned: Mapping[str, Iterable[int]],
    lags: Mapping[str, Mapping[int, int]] | None = None,
) -> dict[str, list[int]]:
    """Spread partitions 0..n-1 over the members (ids sorted), keeping owned ones, and
    giving the others to caught-up standbys where the balance allows.

    Every member gets floor(n/m) or ceil(n/m) partitions (at most n mod m of them the
    ceiling). In order: a member keeps what it owns up to its share (a partition claimed
    twice, after a split brain, goes to the first); a partition left goes to the member
    whose standby of it is least behind (`lags`: member -> partition -> records behind),
    if at most `ACCEPTABLE_LAG` and the member has room; the rest go, lowest first, to the
    first member (by id) with room.
    """
    members = sorted(owned)
    if not members:
        return {}
    lags = lags or {}
    base, extra = divmod(partitions, len(members))
    result: dict[str, list[int]] = {member: [] for member in members}
    taken: set[int] = set()
    ceilings = extra  # how many members may still get base + 1

    def room(member: str) -> bool:
        return len(result[member]) < base or (len(result[member]) == base and ceilings > 0)

    def give(member: str, p: int) -> None:
        nonlocal ceilings
        if len(result[member]) == base:
            ceilings -= 1
        result[member].append(p)
        taken.add(p)

    for member in members:
        for p in sorted(set(owned[member])):
            if 0 <= p < partitions and p not in taken and room(member):
                give(member, p)
    for p in range(partitions):
        if p in taken:
            continue
        warm = [
            (lag, member)
            for member in members
            if (lag := lags.get(member, {}).get(p)) is not None
            and 0 <= lag <= ACCEPTABLE_LAG
            and room(member)
        ]
        if warm:
            give(min(warm)[1], p)
    for p in range(partitions):
        if p in taken:
            continue
        # The first member with room: `room` lets at most n mod m members past the
        # floor, so every member reaches it.
        give(next(m for m in members if room(m)), p)
    for member in members:
        result[member].sort()
    return result


def plan_standbys(
    layout: Mapping[str, Iterable[int]],
    replicas: int,
    kept: Mapping[str, Iterable[int]] | None = None,
    eligible: Iterable[str] | None = None,
) -> dict[str, list[int]]:
    """Given the active `layout` (member -> partitions), up to `replicas` standbys per
    partition, each on an `eligible` member (default: all; a member of an older version,
    which reads no standbys, is not) other than its active owner (so at most eligible
    members - 1), spread evenly over the eligible members: partition by partition, those
    with the fewest standbys so far, those already keeping that partition (`kept`:
    member -> partitions) first."""
    members = sorted(layout)
    result: dict[str, list[int]] = {member: [] for member in members}
    keepers = [m for m in members if eligible is None or m in set(eligible)]
    if replicas <= 0 or not keepers:
        return result
    kept_sets = {m: set((kept or {}).get(m, ())) for m in members}
    owner = {p: m for m in members for p in layout[m]}
    for p in sorted(owner):
        candidates = sorted(
            (m for m in keepers if m != owner[p]),
            key=lambda m: (p not in kept_sets[m], len(result[m]), members.index(m)),
        )
        for member in candidates[:replicas]:
            result[member].append(p)
    # The greedy pass can leave a member two behind another (its own partitions were the
    # ones left to place): move standbys from the fullest to the emptiest while one can.
    moved = True
    while moved:
        moved = False
        for high in sorted(keepers, key=lambda m: -len(result[m])):
            for low in sorted(keepers, key=lambda m: len(result[m])):
                if len(result[high]) - len(result[low]) <= 1:
                    continue
                movable = [q for q in result[high] if owner[q] != low and q not in result[low]]
                if movable:
                    # One it did not keep before, if any: stickiness where it costs nothing.
                    q = min(movable, key=lambda q: (q in kept_sets[high], q))
                    result[high].remove(q)
                    result[low].append(q)
                    moved = True
                    break
            if moved:
                break
    for member in members:
        result[member].sort()
    return result


def ticket_assignor(
    url: str,
    owned: Callable[[], list[int]],
    on_owners: Callable[[dict[int, str]], None],
    standby_replicas: int = 0,
    standby_lags: Callable[[], dict[int, int]] = dict,
    on_standbys: Callable[[list[int]], None] = lambda _: None,
) -> type[AbstractPartitionAssignor]:
    """The assignor class for one worker (aiokafka takes assignors as classes).

    `owned()`: the partitions this worker holds now (sent when it joins); `on_owners`:
    called with the group's map partition -> HTTP address after each assignment.
    `standby_lags()`: partition -> records behind, of the standbys this worker keeps (sent
    when it joins); `on_standbys`: called with this worker's standby partitions after each
    assignment (before the consumer's rebalance listener). `standby_replicas`: how many
    standbys per partition this worker gives out when it is the group's leader.

    A member of an older version sends no `standby_lags` and reads no `standby`: it is
    planned as a member without standbys, and is given none (`plan_standbys`' eligible).
    """

    class TicketPartitionAssignor(AbstractPartitionAssignor):  # type: ignore[misc]
        name = "sla-ticket-partitions"
        version = 0

        @classmethod
        def metadata(cls, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:
            data = json.dumps(
                {
                    "url": url,
                    "owned": owned(),
                    "standby_lags": {str(p): lag for p, lag in standby_lags().items()},
                }
            ).encode()
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
            lags = {m: _lags(a.get("standby_lags")) for m, a in announced.items()}
            layout = plan(
                partitions, {m: _numbers(a.get("owned")) for m, a in announced.items()}, lags
            )
            # A member of an older version announces no `standby_lags` and would ignore
            # the standbys it was given: it gets none.
            eligible = [m for m, a in announced.items() if "standby_lags" in a]
            standbys = plan_standbys(
                layout, standby_replicas, {m: list(lags[m]) for m in layout}, eligible
            )
            owners = {
                str(p): announced[member].get("url", "")
                for member, ps in layout.items()
                for p in ps
            }
            return {
                member: ConsumerProtocolMemberAssignment(
                    cls.version,
                    [(t, layout[member]) for t in topics],
                    json.dumps({"owners": owners, "standby": standbys[member]}).encode(),
                )
                for member in members
            }

        @classmethod
        def on_assignment(cls, assignment: ConsumerProtocolMemberAssignment) -> None:
            data = _decode(assignment.user_data)
            owners = data.get("owners", {})
            on_owners({int(p): str(u) for p, u in owners.items()})
            on_standbys(_numbers(data.get("standby")))

    return TicketPartitionAssignor


def _decode(data: bytes | None) -> dict[str, Any]:
    try:
        value = json.loads(data or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _numbers(value: Any) -> list[int]:
    """Partition numbers from a member's JSON (anything else is ignored)."""
    if not isinstance(value, list):
        return []
    return [p for p in value if isinstance(p, int) and not isinstance(p, bool)]


def _lags(value: Any) -> dict[int, int]:
    """A member's `standby_lags` (absent from an older version's metadata: none)."""
    if not isinstance(value, dict):
        return {}
    lags = {}
    for p, lag in value.items():
        if not isinstance(lag, int) or isinstance(lag, bool):
            continue
        try:  # not str.isdigit: '²' is a digit int() refuses
            lags[int(p)] = lag
        except ValueError:
            continue
    return lags
