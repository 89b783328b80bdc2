"""The example strategy honours the core's StrategyContract and sticks while it can."""

from __future__ import annotations

import random

from gleitzeit_sticky import StickyStrategy

from gleitzeit_core import Request
from gleitzeit_core.testing import FakeCandidate, StrategyContract


class TestStickyContract(StrategyContract):
    def make_strategy(self, rng: random.Random) -> StickyStrategy:
        return StickyStrategy(rng=rng)


def test_sticks_to_the_same_resource_while_eligible() -> None:
    """Consecutive picks return the same resource as long as it is among the candidates."""
    pool = [FakeCandidate(id=f"r{i}") for i in range(5)]
    strategy = StickyStrategy(rng=random.Random(3))
    first = strategy.select(pool, Request())
    assert all(strategy.select(pool, Request()) is first for _ in range(20))


def test_moves_when_the_current_resource_leaves() -> None:
    """When the current resource is no longer a candidate, it moves on and sticks again."""
    pool = [FakeCandidate(id=f"r{i}") for i in range(5)]
    strategy = StickyStrategy(rng=random.Random(3))
    first = strategy.select(pool, Request())
    rest = [c for c in pool if c is not first]
    second = strategy.select(rest, Request())
    assert second is not first
    assert all(strategy.select(rest, Request()) is second for _ in range(10))


def test_moves_when_the_current_resource_is_busy() -> None:
    """A resource at max_in_flight is not stuck to."""
    pool = [FakeCandidate(id="a"), FakeCandidate(id="b")]
    strategy = StickyStrategy(rng=random.Random(0), max_in_flight=2)
    first = strategy.select(pool, Request())
    first.in_flight = 2
    assert strategy.select(pool, Request()) is not first
