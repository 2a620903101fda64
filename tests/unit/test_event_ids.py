"""Warning and breach ids are UUIDv5: consumers deduplicate on them across releases."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from worker.core.events import EVENT_ID_NAMESPACE, emission_id


@given(
    ticket_id=st.text(min_size=1, max_size=40),
    metric=st.sampled_from(["first_response", "follow_up"]),
    cycle=st.integers(min_value=1, max_value=10_000),
    kind=st.sampled_from(["breach", "warning@0.5", "warning@0.75", "warning@0.9"]),
)
def test_emission_id_is_uuid5_of_the_timer_point(
    ticket_id: str, metric: str, cycle: int, kind: str
) -> None:
    name = f"{ticket_id}\x1f{metric}\x1f{cycle}\x1f{kind}"
    assert emission_id(ticket_id, metric, cycle, kind) == str(uuid.uuid5(EVENT_ID_NAMESPACE, name))


def test_emission_id_never_changes() -> None:
    # Pinned: a different id for the same timer point would double a breach downstream.
    assert emission_id("EX-100", "first_response", 1, "breach") == (
        "9de70fe2-b283-5bbf-b714-814c146ba03e"
    )
