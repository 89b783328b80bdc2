"""``StrategyContract``: what every balancing strategy must hold, checked with hypothesis.

Subclass it and implement ``make_strategy(rng)``. The distribution property checked is taken
from the strategy's ``guarantees`` (override ``guarantees`` on the test class to state it
yourself): ``"cycle"``, ``"weights"`` (within ``weight_tolerance`` of the weight shares after
``weight_picks`` picks) or ``"sticky"`` (a key stays put; one membership change moves about 1/N
of the keys, within ``move_tolerance``).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .._balancing import Strategy
from .._errors import EmptyPool
from .._request import Request
from .fakes import FakeCandidate
from .strategies import candidate_pools, request_keys, requests

# The same test functions run once per subclass: that is the point of a contract.
_CONTRACT = settings(suppress_health_check=[HealthCheck.differing_executors])

__all__ = ["StrategyContract"]


class StrategyContract:
    guarantees: frozenset[str] | None = None
    weight_picks: int = 4_000
    weight_tolerance: float = 0.05
    move_tolerance: float = 0.12

    def make_strategy(self, rng: random.Random) -> Strategy:
        raise NotImplementedError

    def _guarantees(self) -> frozenset[str]:
        if self.guarantees is not None:
            return self.guarantees
        declared: Iterable[str] = getattr(
            self.make_strategy(random.Random(0)), "guarantees", frozenset()
        )
        return frozenset(declared)

    @settings(_CONTRACT)
    @given(candidate_pools(), st.lists(requests(), min_size=1, max_size=20), st.integers())
    def test_returns_one_of_the_candidates(
        self, pool: list[FakeCandidate], stream: list[Request], seed: int
    ) -> None:
        """Whatever the pool and the requests, the choice is one of the candidates given."""
        strategy = self.make_strategy(random.Random(seed))
        for request in stream:
            choice = strategy.select(pool, request)
            assert any(choice is candidate for candidate in pool)

    def test_empty_pool_raises_empty_pool(self) -> None:
        """Asked to choose from nothing, a strategy raises ``EmptyPool`` (a LookupError)."""
        strategy = self.make_strategy(random.Random(0))
        with pytest.raises(EmptyPool):
            strategy.select([], Request())
        with pytest.raises(LookupError):
            strategy.select([], Request(key="k"))

    @settings(_CONTRACT)
    @given(candidate_pools(), st.lists(requests(), min_size=1, max_size=30), st.integers())
    def test_seeded_rng_reproduces_choices(
        self, pool: list[FakeCandidate], stream: list[Request], seed: int
    ) -> None:
        """Two instances seeded alike make the same choices for the same inputs."""
        first = self.make_strategy(random.Random(seed))
        second = self.make_strategy(random.Random(seed))
        assert [first.select(pool, r).id for r in stream] == [
            second.select(pool, r).id for r in stream
        ]

    @settings(_CONTRACT)
    @given(candidate_pools(min_size=1, max_size=12), st.integers())
    def test_cycle_covers_every_candidate(self, pool: list[FakeCandidate], seed: int) -> None:
        """(cycle) N stable candidates are each chosen once in N consecutive picks."""
        if "cycle" not in self._guarantees():
            return
        strategy = self.make_strategy(random.Random(seed))
        strategy.select(pool, Request())  # start anywhere in the cycle
        picks = [strategy.select(pool, Request()).id for _ in pool]
        assert sorted(picks) == sorted(candidate.id for candidate in pool)

    @settings(_CONTRACT, max_examples=25, deadline=None)
    @given(candidate_pools(min_size=1, max_size=6), st.integers())
    def test_weights_converge(self, pool: list[FakeCandidate], seed: int) -> None:
        """(weights) each candidate's share of many picks approaches its share of the weight."""
        if "weights" not in self._guarantees():
            return
        strategy = self.make_strategy(random.Random(seed))
        counts = Counter(strategy.select(pool, Request()).id for _ in range(self.weight_picks))
        total = sum(candidate.weight for candidate in pool)
        for candidate in pool:
            share = counts[candidate.id] / self.weight_picks
            assert abs(share - candidate.weight / total) <= self.weight_tolerance, candidate.id

    @settings(_CONTRACT, max_examples=25, deadline=None)
    @given(
        candidate_pools(min_size=3, max_size=10),
        st.lists(request_keys, min_size=300, max_size=300, unique=True),
        st.integers(),
        st.data(),
    )
    def test_sticky_keys_move_little(
        self, pool: list[FakeCandidate], keys: list[str], seed: int, data: st.DataObject
    ) -> None:
        """(sticky) a key keeps its resource; removing one of N resources moves only that
        resource's keys, and adding one moves about 1/N of them."""
        if "sticky" not in self._guarantees():
            return
        for candidate in pool:
            candidate.weight = 1.0
        strategy = self.make_strategy(random.Random(seed))
        before = {key: strategy.select(pool, Request(key=key)).id for key in keys}
        assert before == {key: strategy.select(pool, Request(key=key)).id for key in keys}

        gone = data.draw(st.sampled_from(pool))
        rest = [candidate for candidate in pool if candidate is not gone]
        after = {key: strategy.select(rest, Request(key=key)).id for key in keys}
        for key in keys:
            if before[key] != gone.id:
                assert after[key] == before[key], "a key moved although its resource stayed"

        newcomer = FakeCandidate(id=f"{gone.id}-new")
        grown = {key: strategy.select([*pool, newcomer], Request(key=key)).id for key in keys}
        moved_keys = [key for key in keys if grown[key] != before[key]]
        assert all(grown[key] == newcomer.id for key in moved_keys), (
            "keys moved between old members"
        )
        moved = len(moved_keys) / len(keys)
        assert moved <= 1 / (len(pool) + 1) + self.move_tolerance
