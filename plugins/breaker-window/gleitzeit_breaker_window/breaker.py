"""A failure-rate and slow-call-rate circuit breaker over a sliding window (resilience4j-style).

CLOSED records every counted call (successes and failures; ignored outcomes are not calls) in a
count window (the last ``window_size`` calls) or a time window (the last ``window_size`` seconds,
one-second buckets). Once the window holds at least ``minimum_calls`` calls it opens as soon as
the failure rate reaches ``failure_rate_threshold`` percent or the share of calls slower than
``slow_call_duration`` reaches ``slow_call_rate_threshold`` percent.

OPEN refuses calls for ``open_for`` seconds. HALF_OPEN then hands out exactly
``half_open_permits`` trial calls (an ignored trial gives its permit back) and judges them as a
window of their own once all of them have returned: below both thresholds it closes with an
empty window, otherwise it opens again.

Outcomes only count in the episode their permit was issued in (``Permit.generation``).
"""

from __future__ import annotations

from typing import Any

import attrs

from gleitzeit_core import (
    BreakerState,
    CallOutcome,
    GatedBreaker,
    InvalidValue,
    at_least,
    one_of,
    seconds,
)

from .windows import CountWindow, OutcomeWindow, TimeWindow

__all__ = ["SlidingWindowBreaker"]

_CLOSED = BreakerState.CLOSED
_FAILURE = CallOutcome.FAILURE
_IGNORED = CallOutcome.IGNORED
_PERCENTAGE = "a percentage > 0 and <= 100"


def _percentage(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and 0 < value <= 100
    if not ok:
        raise InvalidValue(attribute.name, _PERCENTAGE, value)


_percentage.expected = _PERCENTAGE  # type: ignore[attr-defined]  # read by config errors


def _fits_count_window(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    # A count window never holds more than window_size calls: a larger minimum could never trip.
    # (The core's config loader also calls validators without an instance: skip then.)
    if instance is None:
        return
    if instance.window_type == "count" and value > instance.window_size:
        expected = f"an integer <= window_size ({instance.window_size}) for a count window"
        raise InvalidValue(attribute.name, expected, value)


def _exceeds(count: int, calls: int, threshold: float) -> bool:
    """Whether ``count`` of ``calls`` is at least ``threshold`` percent (no division)."""
    return count * 100 >= threshold * calls


# on_setattr=NO_OP: options are validated once, at construction; without it attrs would route
# every write to the counters below through a Python-level __setattr__ (~8x slower).
@attrs.define(kw_only=True, eq=False, on_setattr=attrs.setters.NO_OP)
class SlidingWindowBreaker(GatedBreaker):
    """Opens on a high failure or slow-call rate; see the module docstring for the cycle."""

    TRIALS_PER_EPISODE = True  # a fixed batch of trials is judged as a window of its own

    window_type: str = attrs.field(default="count", validator=one_of("count", "time"))
    window_size: int = attrs.field(default=100, validator=at_least(1))
    minimum_calls: int = attrs.field(default=10, validator=[at_least(1), _fits_count_window])
    failure_rate_threshold: float = attrs.field(default=50.0, validator=_percentage)
    slow_call_rate_threshold: float = attrs.field(default=100.0, validator=_percentage)
    slow_call_duration: float = attrs.field(default=60.0, validator=seconds())
    open_for: float = attrs.field(default=30.0, validator=seconds())
    half_open_permits: int = attrs.field(default=5, validator=at_least(1))

    # Built after validation (in __attrs_post_init__), so a bad window_size reads as a config error.
    _window: OutcomeWindow = attrs.field(init=False, repr=False)
    _trial_failures: int = attrs.field(init=False, default=0)
    _trial_slow: int = attrs.field(init=False, default=0)

    def __attrs_post_init__(self) -> None:
        if self.window_type == "time":
            self._window = TimeWindow(self.window_size, self.clock)
        else:
            self._window = CountWindow(self.window_size)

    # -- read-only views ------------------------------------------------------------------------
    @property
    def calls_in_window(self) -> int:
        """Counted calls in the closed-state window right now."""
        self._window.expire()
        return self._window.calls

    @property
    def failure_rate(self) -> float:
        """Failure percentage over the closed-state window (0 when it is empty)."""
        window = self._window
        window.expire()
        return 100.0 * window.failures / window.calls if window.calls else 0.0

    @property
    def slow_call_rate(self) -> float:
        """Slow-call percentage over the closed-state window (0 when it is empty)."""
        window = self._window
        window.expire()
        return 100.0 * window.slow / window.calls if window.calls else 0.0

    # -- GatedBreaker hooks -------------------------------------------------------------------
    def judge_call(self, outcome: CallOutcome, duration: float) -> None:
        if outcome is _IGNORED:
            return
        window = self._window
        window.add(outcome is _FAILURE, duration > self.slow_call_duration)
        calls = window.calls
        if calls < self.minimum_calls:
            return
        # rate >= threshold, written without a division (and inline: this runs on every call)
        if window.failures * 100 >= self.failure_rate_threshold * calls:
            self._open(f"failure rate {100.0 * window.failures / calls:.1f}%", calls)
        elif window.slow * 100 >= self.slow_call_rate_threshold * calls:
            self._open(f"slow-call rate {100.0 * window.slow / calls:.1f}%", calls)

    def judge_trial(self, outcome: CallOutcome, duration: float) -> None:
        if outcome is _FAILURE:
            self._trial_failures += 1
        if duration > self.slow_call_duration:
            self._trial_slow += 1
        calls = self.trials_done
        if calls < self.half_open_permits:
            return  # decided only once every permitted trial has returned
        if _exceeds(self._trial_failures, calls, self.failure_rate_threshold):
            self._open(f"{self._trial_failures} of {calls} trial calls failed", calls)
        elif _exceeds(self._trial_slow, calls, self.slow_call_rate_threshold):
            self._open(f"{self._trial_slow} of {calls} trial calls were slow", calls)
        else:
            # The closed window starts empty: on_open cleared it and nothing counted since.
            self.transition(_CLOSED, f"{calls} trial calls below both thresholds")

    def on_open(self) -> None:
        self._window.clear()
        self._trial_failures = self._trial_slow = 0

    def half_open_reason(self) -> str:
        permits = self.half_open_permits
        return f"open for {self.open_duration:g} s; admitting {permits} trial call(s)"

    def forget(self) -> None:
        super().forget()
        self._window.clear()
        self._trial_failures = self._trial_slow = 0

    # -- internals ------------------------------------------------------------------------------
    def _open(self, why: str, calls: int) -> None:
        self.trip(self.open_for, f"{why} over {calls} calls")
