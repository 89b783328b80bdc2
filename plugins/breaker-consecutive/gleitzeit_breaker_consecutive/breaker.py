"""A consecutive-failures circuit breaker with a bounded half-open gate and growing open time.

CLOSED counts failures in a row (a success resets the count, an ignored outcome leaves it alone)
and opens after ``failures`` of them. OPEN refuses every call for ``open_for`` seconds, then lets
up to ``half_open_permits`` trial calls run at the same time (HALF_OPEN). ``successes_to_close``
successful trials close it; any failed trial reopens it for ``backoff`` times as long as the last
open period, up to ``max_open_for``. Closing forgets the backoff.

Outcomes are applied only to the episode their permit was issued in (``Permit.generation``):
a success that arrives after the breaker opened, or a trial of an earlier half-open episode,
changes nothing.
"""

from __future__ import annotations

from typing import Any

import attrs

from gleitzeit_core import BaseBreaker, BreakerState, CallOutcome, Permit
from gleitzeit_core.validators import InvalidValue, at_least, seconds

__all__ = ["ConsecutiveFailuresBreaker"]

_CLOSED = BreakerState.CLOSED
_OPEN = BreakerState.OPEN
_HALF_OPEN = BreakerState.HALF_OPEN
_SUCCESS = CallOutcome.SUCCESS
_FAILURE = CallOutcome.FAILURE


def _not_below_open_for(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    # attrs runs validators after every field is set, so open_for is already there; the core's
    # config loader also calls validators field by field without an instance: skip then.
    if instance is not None and value < instance.open_for:
        expected = f"a number of seconds >= open_for ({instance.open_for:g})"
        raise InvalidValue(attribute.name, expected, value)


# on_setattr=NO_OP: options are validated once, at construction; without it attrs would route
# every write to the counters below through a Python-level __setattr__ (~8x slower).
@attrs.define(kw_only=True, eq=False, on_setattr=attrs.setters.NO_OP)
class ConsecutiveFailuresBreaker(BaseBreaker):
    """Opens after ``failures`` consecutive failures; see the module docstring for the cycle."""

    failures: int = attrs.field(default=5, validator=at_least(1))
    open_for: float = attrs.field(default=30.0, validator=seconds())
    backoff: float = attrs.field(default=2.0, validator=at_least(1.0, "a factor"))
    max_open_for: float = attrs.field(default=300.0, validator=[seconds(), _not_below_open_for])
    half_open_permits: int = attrs.field(default=1, validator=at_least(1))
    successes_to_close: int = attrs.field(default=1, validator=at_least(1))

    _failed: int = attrs.field(init=False, default=0)  # failures in a row while closed
    _open_duration: float = attrs.field(init=False, default=0.0)  # the current/last open period
    _open_until: float = attrs.field(init=False, default=0.0)
    _trials: int = attrs.field(init=False, default=0)  # trial calls outstanding in this episode
    _trial_successes: int = attrs.field(init=False, default=0)

    @property
    def half_open_at(self) -> float | None:
        """Clock time at which an OPEN breaker starts admitting trial calls (else ``None``)."""
        return self._open_until if self.state is _OPEN else None

    # -- BaseBreaker hooks ----------------------------------------------------------------------
    def _tick(self) -> None:
        if self._state is _OPEN and self.clock.now() >= self._open_until:
            self._trials = 0
            self._trial_successes = 0
            self._transition(
                _HALF_OPEN,
                f"open for {self._open_duration:g} s; admitting up to "
                f"{self.half_open_permits} concurrent trial call(s)",
            )

    def _available(self) -> bool:
        if self._state is _OPEN:
            self._tick()
        state = self._state
        if state is _CLOSED:
            return True
        return state is _HALF_OPEN and self._trials < self.half_open_permits

    def _acquire(self) -> Permit | None:
        state = self._state
        if state is _CLOSED:
            return self._permit(trial=False)
        if state is _OPEN:
            self._tick()
            if self._state is not _HALF_OPEN:
                return None
        # Counted here, not when the call ends: concurrent callers cannot slip past the limit.
        if self._trials >= self.half_open_permits:
            return None
        self._trials += 1
        return self._permit(trial=True)

    def _record(self, permit: Permit, outcome: CallOutcome, duration: float) -> None:
        if permit.generation != self._generation:
            return  # issued before the last state change: says nothing about this episode
        if permit.trial:
            self._record_trial(outcome)
        elif outcome is _FAILURE:
            self._failed += 1
            if self._failed >= self.failures:
                # Opening from closed starts from open_for again: a close forgets the backoff.
                self._open(self.open_for, f"{self._failed} consecutive failures")
        elif outcome is _SUCCESS:
            self._failed = 0

    def _clear(self) -> None:
        self._failed = 0
        self._open_duration = 0.0
        self._open_until = 0.0
        self._trials = 0
        self._trial_successes = 0

    # -- internals ------------------------------------------------------------------------------
    def _record_trial(self, outcome: CallOutcome) -> None:
        self._trials -= 1
        if outcome is _SUCCESS:
            self._trial_successes += 1
            if self._trial_successes >= self.successes_to_close:
                self._failed = 0
                self._transition(_CLOSED, f"{self._trial_successes} trial call(s) succeeded")
        elif outcome is _FAILURE:
            longer = min(self._open_duration * self.backoff, self.max_open_for)
            self._open(longer, "a trial call failed")
        # IGNORED: the slot is free again and nothing was learnt.

    def _open(self, duration: float, reason: str) -> None:
        self._failed = 0
        self._open_duration = duration
        self._open_until = self.clock.now() + duration
        self._transition(_OPEN, f"{reason}; open for {duration:g} s")
