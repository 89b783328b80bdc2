"""The pass-through breaker honours the Breaker protocol and the core's BreakerContract."""

from __future__ import annotations

from gleitzeit_core import Breaker, ManualClock, PassThroughBreaker
from gleitzeit_core.testing import BreakerContract


class TestPassThroughBreaker(BreakerContract):
    trips = False
    max_trial_permits = None

    def make_breaker(self, clock: ManualClock) -> Breaker:
        return PassThroughBreaker(clock=clock)


def test_pass_through_is_a_breaker() -> None:
    """PassThroughBreaker satisfies the runtime-checkable Breaker protocol."""
    assert isinstance(PassThroughBreaker(), Breaker)
