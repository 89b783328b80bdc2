"""``BucketRing``: the sliding time window of counters that breakers share."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from gleitzeit_core import BucketRing, ManualClock

OPS = st.lists(
    st.integers(0, 2)  # count one event on counter 0, 1 or 2
    | st.sampled_from([0.25, 0.5, 1.0, 2.0])
    | st.floats(0.0, 12.0),  # or wait
    max_size=80,
)


@given(width=st.sampled_from([0.5, 1.0, 2.0]), buckets=st.integers(1, 6), ops=OPS)
def test_totals_match_a_recount_of_the_live_buckets(
    width: float, buckets: int, ops: list[Any]
) -> None:
    """After any mix of counts and waits each running total equals a recount of a plain list
    of every event whose bucket is among the last ``buckets``, and ``clear`` empties them."""
    clock = ManualClock()
    ring = BucketRing(width, buckets, 3, clock.now())
    events: list[tuple[int, int]] = []
    for op in ops:
        if isinstance(op, int):
            if clock.now() >= ring.edge:
                ring.roll(clock.now())
            ring.add(op)
            events.append((int(clock.now() // width), op))
        else:
            clock.advance(op)
            ring.roll(clock.now())
        oldest = int(clock.now() // width) - buckets + 1
        live = [counter for bucket, counter in events if bucket >= oldest]
        assert ring.totals == [live.count(c) for c in range(3)]
    ring.clear(clock.now())
    assert ring.totals == [0, 0, 0]
