"""Every built-in strategy passes the core's StrategyContract."""

from __future__ import annotations

import random

from gleitzeit_core import (
    ConsistentHashStrategy,
    LeastLatencyStrategy,
    LeastLoadedStrategy,
    PeakEwmaStrategy,
    PowerOfTwoChoicesStrategy,
    PriorityStrategy,
    RandomStrategy,
    RoundRobinStrategy,
    Strategy,
    WeightedRandomStrategy,
    WeightedRoundRobinStrategy,
)
from gleitzeit_core.testing import StrategyContract


class TestRoundRobin(StrategyContract):
    def make_strategy(self, rng: random.Random) -> Strategy:
        return RoundRobinStrategy(rng=rng)


class TestWeightedRoundRobin(StrategyContract):
    weight_tolerance = 0.01

    def make_strategy(self, rng: random.Random) -> Strategy:
        return WeightedRoundRobinStrategy(rng=rng)


class TestRandom(StrategyContract):
    def make_strategy(self, rng: random.Random) -> Strategy:
        return RandomStrategy(rng=rng)


class TestWeightedRandom(StrategyContract):
    def make_strategy(self, rng: random.Random) -> Strategy:
        return WeightedRandomStrategy(rng=rng)


class TestLeastLoaded(StrategyContract):
    def make_strategy(self, rng: random.Random) -> Strategy:
        return LeastLoadedStrategy(rng=rng)


class TestPowerOfTwoChoices(StrategyContract):
    def make_strategy(self, rng: random.Random) -> Strategy:
        return PowerOfTwoChoicesStrategy(rng=rng)


class TestLeastLatency(StrategyContract):
    def make_strategy(self, rng: random.Random) -> Strategy:
        return LeastLatencyStrategy(rng=rng)


class TestPeakEwma(StrategyContract):
    def make_strategy(self, rng: random.Random) -> Strategy:
        return PeakEwmaStrategy(rng=rng)


class TestConsistentHash(StrategyContract):
    def make_strategy(self, rng: random.Random) -> Strategy:
        return ConsistentHashStrategy(rng=rng)


class TestPriority(StrategyContract):
    def make_strategy(self, rng: random.Random) -> Strategy:
        return PriorityStrategy(rng=rng)


def test_builtin_names_match_the_classes() -> None:
    """The names the built-in plugin registers (as lazy references) are the strategies' own
    ``name``s, and every built-in strategy is registered."""
    from gleitzeit_core import BUILTIN_STRATEGIES
    from gleitzeit_core._plugins import PluginManager

    manager = PluginManager(autoload=False).load()
    registry = manager.registries.strategies
    assert set(registry.names()) == {cls.name for cls in BUILTIN_STRATEGIES}  # type: ignore[attr-defined]
    for cls in BUILTIN_STRATEGIES:
        assert registry.get(cls.name) is cls  # type: ignore[attr-defined]
