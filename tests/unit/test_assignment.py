"""The group's assignment plan (`worker.kafka.assignment`) as pure functions: who runs
each partition (stickiness first, then a caught-up standby, then anyone with room) and
who keeps it warm as a standby (never its active owner, spread evenly); and the assignor
as the group's leader runs it, with members of this version and of an older one."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from aiokafka.coordinator.protocol import ConsumerProtocolMemberMetadata
from hypothesis import given
from hypothesis import strategies as st

from worker.kafka.assignment import ACCEPTABLE_LAG, plan, plan_standbys, ticket_assignor


def balanced(layout: dict[str, list[int]], partitions: int) -> bool:
    counts = [len(ps) for ps in layout.values()]
    every = sorted(p for ps in layout.values() for p in ps)
    return every == list(range(partitions)) and max(counts) - min(counts) <= 1


# --- active partitions -----------------------------------------------------------------------


def test_a_partition_nobody_owns_goes_to_its_caught_up_standby() -> None:
    # b died; a keeps 0-2; 3-5 go to c, whose standbys of them are caught up.
    layout = plan(6, {"a": [0, 1, 2], "c": []}, {"c": {3: 0, 4: 12, 5: 0}})
    assert layout == {"a": [0, 1, 2], "c": [3, 4, 5]}
    # Without lags, the same members: the first with room takes the lowest partition.
    assert plan(6, {"a": [], "c": []}) == {"a": [0, 1, 2], "c": [3, 4, 5]}
    assert plan(6, {"a": [], "c": []}, {"c": {0: 0, 1: 0, 2: 0}}) == {
        "a": [3, 4, 5],
        "c": [0, 1, 2],
    }


def test_stickiness_comes_before_a_caught_up_standby() -> None:
    layout = plan(2, {"a": [0], "b": [1]}, {"b": {0: 0}, "a": {1: 0}})
    assert layout == {"a": [0], "b": [1]}


def test_the_least_behind_standby_wins_and_one_too_far_behind_counts_as_none() -> None:
    lags = {"a": {0: 500}, "b": {0: 20}, "c": {0: ACCEPTABLE_LAG + 1, 1: 0}}
    layout = plan(3, {"a": [], "b": [], "c": []}, lags)
    assert layout["b"] == [0] and layout["c"] == [1] and layout["a"] == [2]


def test_balance_comes_before_a_caught_up_standby() -> None:
    # c is caught up on everything, but gets its share only.
    lags = {"c": {p: 0 for p in range(6)}}
    layout = plan(6, {"a": [], "b": [], "c": []}, lags)
    assert balanced(layout, 6) and layout["c"] == [0, 1]


@given(
    st.integers(0, 12),
    st.dictionaries(
        st.sampled_from("abcde"),
        st.tuples(
            st.lists(st.integers(-1, 13), max_size=6),
            st.dictionaries(st.integers(-1, 13), st.integers(-5, 20_000), max_size=6),
        ),
        min_size=1,
    ),
)
def test_any_announcement_gives_every_partition_once_and_balanced(
    partitions: int, announced: dict[str, tuple[list[int], dict[int, int]]]
) -> None:
    owned = {m: o for m, (o, _) in announced.items()}
    lags = {m: lag for m, (_, lag) in announced.items()}
    layout = plan(partitions, owned, lags)
    assert set(layout) == set(announced) and balanced(layout, partitions)


# --- standbys ----------------------------------------------------------------------------------


def test_a_standby_is_never_on_its_active_owner_and_standbys_are_spread_evenly() -> None:
    layout = {"a": [0, 1], "b": [2, 3], "c": [4, 5]}
    standbys = plan_standbys(layout, 1)
    for member, ps in standbys.items():
        assert not set(ps) & set(layout[member])
    assert sorted(p for ps in standbys.values() for p in ps) == list(range(6))
    assert {len(ps) for ps in standbys.values()} == {2}


def test_more_replicas_than_other_members_gives_each_other_member_one() -> None:
    layout = {"a": [0, 1, 2], "b": [3, 4, 5]}
    assert plan_standbys(layout, 3) == {"a": [3, 4, 5], "b": [0, 1, 2]}
    assert plan_standbys({"a": [0, 1]}, 2) == {"a": []}  # alone: nobody to keep one
    assert plan_standbys(layout, 0) == {"a": [], "b": []}


def test_a_member_keeps_the_standbys_it_has_where_it_can() -> None:
    layout = {"a": [0, 1], "b": [2, 3], "c": [4, 5]}
    kept = {"c": [0, 1], "a": [2, 3], "b": [4, 5]}
    assert plan_standbys(layout, 1, kept) == kept


def test_members_joining_and_leaving_move_only_what_they_must() -> None:
    # One worker with everything; a second joins: it takes half, and keeps the other
    # half warm; the first keeps the half it gave away warm (it held that state).
    first = plan(4, {"a": [0, 1, 2, 3], "b": []})
    assert first == {"a": [0, 1], "b": [2, 3]}
    assert plan_standbys(first, 1, {"a": [2, 3]}) == {"a": [2, 3], "b": [0, 1]}
    # b leaves: a takes 2 and 3, its caught-up standbys.
    assert plan(4, {"a": [0, 1]}, {"a": {2: 0, 3: 3}}) == {"a": [0, 1, 2, 3]}
    # c joins a and b, with standbys of 0 and 1 caught up: it gets one of them... but
    # stickiness first: a keeps 0 and 1 up to its share (2 of 4 over 3 members).
    three = plan(4, {"a": [0, 1], "b": [2, 3], "c": []}, {"c": {0: 0, 1: 0}})
    assert balanced(three, 4) and three["a"] == [0, 1] and three["c"] == [3]


@given(st.integers(0, 12), st.integers(1, 6), st.integers(0, 8))
def test_standbys_for_any_group(partitions: int, members: int, replicas: int) -> None:
    names = [f"m{i}" for i in range(members)]
    layout = plan(partitions, {m: [] for m in names})
    standbys = plan_standbys(layout, replicas)
    per_partition = Counter(p for ps in standbys.values() for p in ps)
    for p in range(partitions):
        assert per_partition[p] == min(replicas, members - 1)
    for member, ps in standbys.items():
        assert not set(ps) & set(layout[member]) and len(ps) == len(set(ps))
    counts = [len(ps) for ps in standbys.values()]
    assert not counts or max(counts) - min(counts) <= 1


@given(st.integers(0, 12), st.integers(1, 6), st.integers(0, 8), st.data())
def test_standbys_go_only_to_eligible_members(
    partitions: int, members: int, replicas: int, data: st.DataObject
) -> None:
    names = [f"m{i}" for i in range(members)]
    eligible = data.draw(st.sets(st.sampled_from(names)))
    layout = plan(partitions, {m: [] for m in names})
    standbys = plan_standbys(layout, replicas, eligible=eligible)
    for member, ps in standbys.items():
        assert member in eligible or ps == []
        assert not set(ps) & set(layout[member]) and len(ps) == len(set(ps))
    per_partition = Counter(p for ps in standbys.values() for p in ps)
    for p in range(partitions):
        owner = next(m for m in names if p in layout[m])
        assert per_partition[p] == min(replicas, len(eligible - {owner}))
    counts = [len(standbys[m]) for m in eligible]
    assert not counts or max(counts) - min(counts) <= 1


# --- the assignor, as the group's leader runs it -------------------------------------------


class Cluster:
    def partitions_for_topic(self, topic: str) -> set[int]:
        return {0, 1, 2, 3}


def metadata(user_data: dict[str, Any]) -> ConsumerProtocolMemberMetadata:
    return ConsumerProtocolMemberMetadata(0, ["tickets"], json.dumps(user_data).encode())


def test_the_assignor_sends_lags_and_hands_out_no_standbys_to_members_of_an_older_version() -> None:
    learned: dict[str, Any] = {}
    assignor = ticket_assignor(
        "http://a:6066",
        lambda: [0, 1],
        lambda owners: learned.update(owners=owners),
        standby_replicas=1,
        standby_lags=lambda: {2: 7},
        on_standbys=lambda standbys: learned.update(standbys=standbys),
    )
    sent = json.loads(assignor.metadata(["tickets"]).user_data)
    assert sent == {"url": "http://a:6066", "owned": [0, 1], "standby_lags": {"2": 7}}

    members = {
        "a": metadata(sent),
        # An older worker: no standby_lags in its metadata.
        "b": metadata({"url": "http://b:6066", "owned": [2, 3]}),
    }
    assignment = assignor.assign(Cluster(), members)
    assert assignment["a"].assignment == [("tickets", [0, 1])]
    assert assignment["b"].assignment == [("tickets", [2, 3])]
    assignor.on_assignment(assignment["a"])
    assert learned["standbys"] == [2, 3]
    assert learned["owners"] == {
        0: "http://a:6066",
        1: "http://a:6066",
        2: "http://b:6066",
        3: "http://b:6066",
    }
    # An older worker reads `owners` and would ignore standbys: it is given none.
    assert json.loads(assignment["b"].user_data)["standby"] == []


def test_an_assignment_from_an_older_leader_means_no_standbys() -> None:
    learned: dict[str, Any] = {"standbys": None}
    assignor = ticket_assignor(
        "u", list, lambda owners: None, on_standbys=lambda s: learned.update(standbys=s)
    )
    old = type("A", (), {"user_data": json.dumps({"owners": {"0": "u"}}).encode()})()
    assignor.on_assignment(old)
    assert learned["standbys"] == []


def test_garbage_in_a_members_metadata_is_ignored() -> None:
    assignor = ticket_assignor("u", list, lambda owners: None, standby_replicas=1)
    members = {
        # '²' is a digit to str.isdigit, and int('²') raises: ignored, like "y".
        "a": metadata({"owned": ["x", 1, True], "standby_lags": {"y": 1, "2": "z", "²": 1}}),
        "b": ConsumerProtocolMemberMetadata(0, ["tickets"], b"not json"),
    }
    assignment = assignor.assign(Cluster(), members)
    assert assignment["a"].assignment == [("tickets", [0, 1])]
