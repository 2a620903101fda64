"""The goal path's shortcuts against the plain definitions they replace.

`GoalMatcher` tests only the goals filed under a ticket's own attribute values; it must
pick exactly the goal that `match`, which tests every goal in order, picks. A timer's
`due_bound` stands in for its exact due instant until that bound comes due; it must never
be later than the exact instant (`instant_at`), or a point would fire late, and equal to
it where no calendar arithmetic is needed to know it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from worker.core.calendar import Calendar
from worker.core.engine import Ticket
from worker.core.goals import Goal, GoalMatcher, GoalTarget, match
from worker.core.timers import Timer

VALUES = {
    "plan": ["vip", "basic"],
    "priority": ["1", "2", "3"],
    "customer": ["acme", "globex", "initech"],
    "group": ["emea", "amer"],
    "channel": ["email", "chat"],
    "product_stage": ["ga", "beta"],
    "tags": ["red", "blue", "green"],
}
FIELDS = {"tier": ["gold", "silver"], "region": ["north", "south"]}
CLOCK = Calendar.always_open("clock")


@st.composite
def goals(draw: st.DrawFn) -> tuple[Goal, ...]:
    found = []
    for i in range(draw(st.integers(0, 12))):
        names = draw(st.lists(st.sampled_from(sorted(VALUES)), unique=True, max_size=3))
        conditions = tuple(
            (name, frozenset(draw(st.lists(st.sampled_from(VALUES[name]), min_size=1))))
            for name in names
        )
        fields = tuple(
            (name, frozenset(draw(st.lists(st.sampled_from(FIELDS[name]), min_size=1))))
            for name in draw(st.lists(st.sampled_from(sorted(FIELDS)), unique=True, max_size=1))
        )
        by = draw(st.sampled_from([None, "group", "customer"]))
        target = GoalTarget(timedelta(hours=1), CLOCK, by, {}, ())
        found.append(Goal(f"goal-{i}", conditions, fields, {"resolution": target}))
    return tuple(found)


@st.composite
def tickets(draw: st.DrawFn) -> Ticket:
    def maybe(name: str) -> str | None:
        return draw(st.one_of(st.none(), st.sampled_from(VALUES[name])))

    fields = {name: draw(st.sampled_from(values)) for name, values in FIELDS.items()}
    return Ticket(
        "T-1",
        draw(st.sampled_from(VALUES["plan"])),
        int(draw(st.sampled_from(VALUES["priority"]))),
        False,
        datetime(2026, 12, 7, tzinfo=UTC),
        customer_id=maybe("customer"),
        stage=draw(st.sampled_from(VALUES["product_stage"])),
        group=maybe("group"),
        channel=maybe("channel"),
        tags=tuple(draw(st.lists(st.sampled_from(VALUES["tags"]), unique=True))),
        fields=draw(st.one_of(st.none(), st.just(fields))),
    )


@settings(max_examples=500, deadline=None)
@given(goals(), st.lists(tickets(), min_size=1, max_size=5))
def test_the_matcher_picks_the_first_goal_that_matches(
    policy_goals: tuple[Goal, ...], candidates: list[Ticket]
) -> None:
    matcher = GoalMatcher(policy_goals)
    for ticket in candidates:
        assert matcher.match(ticket) == match(policy_goals, ticket)


def test_the_matcher_reads_the_attributes_of_conditions_and_calendar_maps() -> None:
    mapped = GoalTarget(timedelta(hours=1), CLOCK, "group", {}, ())
    fixed = GoalTarget(timedelta(hours=1), CLOCK, None, {}, ())
    policy_goals = (
        Goal("a", (("customer", frozenset({"acme"})),), (), {"resolution": fixed}),
        Goal("b", (("tags", frozenset({"red"})),), (("tier", frozenset({"gold"})),), {}),
        Goal("c", (), (), {"resolution": mapped}),
    )
    assert GoalMatcher(policy_goals).reads == {"customer", "tags", "fields", "group"}
    assert GoalMatcher(()).match(Ticket("T-1", "vip", 1, False, datetime.now(UTC))) == -1


BUSINESS = Calendar.from_spec(
    {
        "timezone": "Europe/Bratislava",
        "hours": {day: ["09:00-17:00"] for day in ("mon", "tue", "wed", "thu", "fri")},
        "holidays": {"country": "SK"},
    },
    name="biz",
)
CALENDARS = {"biz": BUSINESS, "clock": CLOCK}
START = datetime(2026, 3, 20, tzinfo=UTC)  # summer time begins in the ten days after it


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(1, 3_000), st.sampled_from(["biz", "clock"]), st.booleans()),
        min_size=1,
        max_size=6,
    ),
    st.integers(1, 6_000),
)
def test_a_due_bound_is_never_later_than_the_exact_instant(
    stretches: list[tuple[int, str, bool]], target_minutes: int
) -> None:
    # A timer run in stretches on changing calendars, paused between some of them.
    timer = Timer("resolution", 1, START)
    at = START
    for minutes, calendar, pause_after in stretches:
        timer.run(at, calendar)
        at += timedelta(minutes=minutes)
        if pause_after:
            timer.halt(at, CALENDARS)
            at += timedelta(minutes=minutes)
        else:
            timer.halt(at, CALENDARS)
    if not stretches[-1][2]:
        timer.run(at, stretches[-1][1])  # the last stretch still runs
    amount = timedelta(minutes=target_minutes)
    bound, exact = timer.due_bound(amount, CALENDARS), timer.instant_at(amount, CALENDARS)
    if exact is None:
        assert bound is None
        return
    assert bound is not None and bound <= exact
    if amount <= timer.banked or not timer.running or timer.segments[-1].calendar == "clock":
        assert bound == exact  # no business hours to skip: the bound is exact
