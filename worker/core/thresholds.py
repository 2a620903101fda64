"""Warning fractions, checked the same way wherever a policy names them."""

from __future__ import annotations


def warning_fractions(values: list[float]) -> list[float]:
    """`values` sorted, or ValueError. Each fraction lies strictly between 0 and 1 (a
    warning at 0 would be due at the start, one at 1 or beyond at or after the breach)
    and none repeats (two warnings at one instant would share one deterministic id). The
    engine walks a timer's points in this order and stops at the first not yet due, so
    an unsorted list would hold an earlier warning back until a later one."""
    for value in values:
        if not 0 < value < 1:
            raise ValueError(f"warning fraction {value} must be between 0 and 1 (exclusive)")
    if len(set(values)) != len(values):
        raise ValueError("warning fractions must not repeat")
    return sorted(values)
