"""The rules every breaker's stateful test shares: concurrent callers, out-of-order outcomes,
waits and operator actions, applied to the breaker and to a reference model in lock step.

A test subclasses ``BreakerMachine``, sets the strategies it draws from (``OUTCOMES``,
``DURATIONS``, ``ADVANCES``), builds ``self.breaker`` and ``self.model`` in an ``@initialize``
rule, implements the ``model_*`` hooks and checks the two against each other in ``check``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import hypothesis.strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from gleitzeit_core import BreakerState, CallOutcome, ManualClock, Permit

__all__ = ["BreakerMachine"]


class BreakerMachine(RuleBasedStateMachine):
    OUTCOMES: ClassVar[st.SearchStrategy[CallOutcome]]
    DURATIONS: ClassVar[st.SearchStrategy[float]]
    ADVANCES: ClassVar[st.SearchStrategy[float]]

    breaker: Any
    model: Any

    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock()
        self.outstanding: list[tuple[Permit, Any]] = []
        self.seen: list[tuple[BreakerState, BreakerState]] = []

    def watch(self) -> None:
        """Record the breaker's transitions (call after building it)."""
        self.breaker.subscribe(lambda e: self.seen.append((e.old, e.new)))

    # -- hooks --------------------------------------------------------------------------------
    def model_acquire(self) -> Any:
        """The model's ticket for one admitted call, or None when it refuses."""
        raise NotImplementedError

    def model_record(self, ticket: Any, outcome: CallOutcome, duration: float) -> None:
        raise NotImplementedError

    def model_operator(self, action: str) -> None:
        raise NotImplementedError

    def check_permit(self, permit: Permit, ticket: Any) -> None:
        """Compare an admitted permit with the model's ticket (a trial or not)."""

    def check(self) -> None:
        """Compare the breaker with the model after every step."""
        raise NotImplementedError

    # -- shared steps -------------------------------------------------------------------------
    def _acquire_one(self) -> bool:
        ticket = self.model_acquire()
        permit = self.breaker.acquire()
        assert (permit is not None) == (ticket is not None)
        if permit is None or ticket is None:
            return False
        self.check_permit(permit, ticket)
        self.outstanding.append((permit, ticket))
        return True

    def _finish_one(self, index: int, outcome: CallOutcome, duration: float) -> None:
        permit, ticket = self.outstanding.pop(index)
        self.model_record(ticket, outcome, duration)
        self.breaker.record(permit, outcome, duration)

    @rule(count=st.integers(1, 5))
    def acquire(self, count: int) -> None:
        """Several callers ask at once; their calls stay outstanding until `finish`."""
        for _ in range(count):
            self._acquire_one()

    @precondition(lambda self: self.outstanding)
    @rule(pick=st.integers(0, 1_000), data=st.data())
    def finish(self, pick: int, data: st.DataObject) -> None:
        """An outstanding call (any of them, so calls end out of order) reports its outcome."""
        outcome = data.draw(self.OUTCOMES, label="outcome")
        duration = data.draw(self.DURATIONS, label="duration")
        self._finish_one(pick % len(self.outstanding), outcome, duration)

    @rule(data=st.data())
    def calls(self, data: st.DataObject) -> None:
        """Back-to-back calls, each finished before the next one asks."""
        outcomes = data.draw(st.lists(self.OUTCOMES, min_size=1, max_size=6), label="outcomes")
        duration = data.draw(self.DURATIONS, label="duration")
        for outcome in outcomes:
            if self._acquire_one():
                self._finish_one(len(self.outstanding) - 1, outcome, duration)

    @rule(data=st.data())
    def advance(self, data: st.DataObject) -> None:
        self.clock.advance(data.draw(self.ADVANCES, label="seconds"))

    # An operator acts on about one step in twenty, so most runs stay in the automatic states.
    @rule(
        action=st.sampled_from(["reset", "reset", "force_open", "disable"]), roll=st.integers(0, 19)
    )
    def operator(self, action: str, roll: int) -> None:
        if roll != 13:
            return
        self.model_operator(action)
        getattr(self.breaker, action)()

    @invariant()
    def agrees_with_model(self) -> None:
        self.check()
