"""Gleitzeit's testing kit: hypothesis strategies, contract test classes and fakes.

Plugin authors subclass the contracts in their own test suites::

    from gleitzeit_core.testing import StrategyContract

    class TestSticky(StrategyContract):
        def make_strategy(self, rng):
            return StickyStrategy(rng=rng)

Needs the ``testing`` extra (hypothesis, pytest): ``pip install gleitzeit-core[testing]``.
"""

from .._clock import ManualClock
from . import strategies
from .breaker_contract import BreakerContract
from .fakes import FakeCandidate
from .probe_contract import ProbeContract
from .strategy_contract import StrategyContract

__all__ = [
    "BreakerContract",
    "FakeCandidate",
    "ManualClock",
    "ProbeContract",
    "StrategyContract",
    "strategies",
]
