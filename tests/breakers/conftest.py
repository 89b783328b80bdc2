"""Fixtures shared by the breaker plugins' tests: a manual clock and a transition log."""

from __future__ import annotations

import pytest

from gleitzeit_core import BreakerState, BreakerTransition, ManualClock


class TransitionLog:
    """Collects a breaker's transitions; subscribe it with ``breaker.subscribe(log)``."""

    def __init__(self) -> None:
        self.events: list[BreakerTransition] = []

    def __call__(self, event: BreakerTransition) -> None:
        self.events.append(event)

    @property
    def states(self) -> list[BreakerState]:
        """The state entered by each transition, in order."""
        return [event.new for event in self.events]


@pytest.fixture
def clock() -> ManualClock:
    """A clock that only moves when the test advances it."""
    return ManualClock()


@pytest.fixture
def log() -> TransitionLog:
    """An empty transition log."""
    return TransitionLog()
