"""Reusable hypothesis strategies: candidate pools, request streams, breaker operation sequences.

Plugin authors use them to property-test their own strategies and breakers with the same
generators the core's contracts use.
"""

from __future__ import annotations

from hypothesis import strategies as st

from .._request import Request
from .fakes import FakeCandidate

__all__ = [
    "breaker_operations",
    "candidate_pools",
    "candidates",
    "request_keys",
    "requests",
    "weights",
]

weights = st.floats(min_value=0.1, max_value=10.0, allow_nan=False, allow_infinity=False)
latencies = st.none() | st.floats(min_value=0.0001, max_value=30.0, allow_nan=False)
labels = st.frozensets(st.sampled_from(["gpu", "cpu", "eu", "us", "big"]), max_size=3)
request_keys = st.text(
    alphabet=st.characters(codec="ascii", categories=["L", "N"]), min_size=1, max_size=12
)


@st.composite
def candidates(draw: st.DrawFn, candidate_id: str | None = None) -> FakeCandidate:
    """One candidate with random weight, load, latencies, tier and labels."""
    latency = draw(latencies)
    return FakeCandidate(
        id=candidate_id if candidate_id is not None else draw(request_keys),
        weight=draw(weights),
        in_flight=draw(st.integers(min_value=0, max_value=64)),
        latency_ewma=latency,
        peak_ewma=None if latency is None else latency * draw(st.floats(1.0, 3.0)),
        priority=draw(st.integers(min_value=0, max_value=2)),
        labels=draw(labels),
        healthy=draw(st.booleans()),
    )


@st.composite
def candidate_pools(draw: st.DrawFn, min_size: int = 1, max_size: int = 20) -> list[FakeCandidate]:
    """A pool of candidates with distinct ids."""
    size = draw(st.integers(min_value=min_size, max_value=max_size))
    ids = draw(st.lists(request_keys, min_size=size, max_size=size, unique=True))
    return [draw(candidates(candidate_id=cid)) for cid in ids]


@st.composite
def requests(draw: st.DrawFn) -> Request:
    """A request, with or without an affinity key."""
    return Request(key=draw(st.none() | request_keys))


def breaker_operations(max_size: int = 60) -> st.SearchStrategy[list[tuple[str, float]]]:
    """Sequences of (operation, value): acquire a permit, finish an outstanding call as a
    success, failure or ignored outcome with a duration, or advance the clock."""
    operation = st.one_of(
        st.tuples(st.just("acquire"), st.just(0.0)),
        st.tuples(st.sampled_from(["success", "failure", "ignored"]), st.floats(0.0, 120.0)),
        st.tuples(st.just("advance"), st.floats(0.0, 120.0)),
    )
    return st.lists(operation, max_size=max_size)
