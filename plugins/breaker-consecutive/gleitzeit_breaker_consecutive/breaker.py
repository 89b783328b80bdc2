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

from gleitzeit_core import BreakerState, CallOutcome, GatedBreaker, InvalidValue, at_least, seconds

__all__ = ["ConsecutiveFailuresBreaker"]

_CLOSED = BreakerState.CLOSED
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
class ConsecutiveFailuresBreaker(GatedBreaker):
    """Opens after ``failures`` consecutive failures; see the module docstring for the cycle."""

    failures: int = attrs.field(default=5, validator=at_least(1))
    open_for: float = attrs.field(default=30.0, validator=seconds())
    backoff: float = attrs.field(default=2.0, validator=at_least(1.0, "a factor"))
    max_open_for: float = attrs.field(default=300.0, validator=[seconds(), _not_below_open_for])
    half_open_permits: int = attrs.field(default=1, validator=at_least(1))
    successes_to_close: int = attrs.field(default=1, validator=at_least(1))

    _failed: int = attrs.field(init=False, default=0)  # failures in a row while closed

    # -- GatedBreaker hooks -------------------------------------------------------------------
    def judge_call(self, outcome: CallOutcome, duration: float) -> None:
        if outcome is _FAILURE:
            self._failed += 1
            if self._failed >= self.failures:
                # Opening from closed starts from open_for again: a close forgets the backoff.
                self.trip(self.open_for, f"{self._failed} consecutive failures")
        elif outcome is _SUCCESS:
            self._failed = 0

    def judge_trial(self, outcome: CallOutcome, duration: float) -> None:
        if outcome is _SUCCESS:
            # trials_done counts only successes here: the first failed trial reopens
            if self.trials_done >= self.successes_to_close:
                self.transition(_CLOSED, f"{self.trials_done} trial call(s) succeeded")
        else:
            longer = min(self.open_duration * self.backoff, self.max_open_for)
            self.trip(longer, "a trial call failed")

    def on_open(self) -> None:
        self._failed = 0

    def forget(self) -> None:
        super().forget()
        self._failed = 0
