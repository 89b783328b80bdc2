"""Client-side adaptive throttling (Google SRE book, "Handling Overload") as a breaker.

Over the last ``window`` seconds the breaker counts *requests* (every call attempted through
``acquire``, including those it refused itself) and *accepts* (calls the backend answered: a
success, or an ignored outcome such as the caller's own 4xx). Each attempt is refused locally
with probability ``max(0, (requests - k * accepts) / (requests + 1))``, computed from the counts
before that attempt. A healthy backend (accepts == requests) is never throttled; one that
accepts less than 1/k of the attempts is throttled more the longer it fails, yet always gets a
share of traffic, which is how the breaker notices that it healed. There is no OPEN state: the
state stays CLOSED unless an operator forces it open or disables it.

A refused attempt is counted when it is refused; an admitted one when its outcome is recorded
(as a request, plus an accept unless it failed). Counting admitted calls up front, as the book's
short RPCs allow, would make calls still in flight look like rejections: four concurrent
minute-long LLM calls to a healthy server would see p = 1/2, 2/3, 3/4 before any had finished.
"""

from __future__ import annotations

import random

import attrs

from gleitzeit_core import BaseBreaker, BucketRing, CallOutcome, Permit, at_least, seconds

__all__ = ["AdaptiveThrottlingBreaker"]

_FAILURE = CallOutcome.FAILURE
# the ring's two counters
_REQUESTS = 0
_ACCEPTS = 1


# on_setattr=NO_OP: options are validated once, at construction; without it attrs would route
# every write through a Python-level __setattr__.
@attrs.define(kw_only=True, eq=False, on_setattr=attrs.setters.NO_OP)
class AdaptiveThrottlingBreaker(BaseBreaker):
    """Refuses calls at random, more often the more the backend has been failing lately."""

    window: float = attrs.field(default=120.0, validator=seconds())
    buckets: int = attrs.field(default=120, validator=at_least(1))
    # k < 1 would throttle a backend that answers everything.
    k: float = attrs.field(default=2.0, validator=at_least(1.0, "a multiplier"))
    rng: random.Random = attrs.field(factory=random.Random, repr=False)

    # Built after validation (in __attrs_post_init__), so bad options read as config errors.
    _counts: BucketRing = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self._counts = BucketRing(self.window / self.buckets, self.buckets, 2, self.clock.now())

    # -- read-only views ------------------------------------------------------------------------
    @property
    def rejection_probability(self) -> float:
        """The chance that the next attempt is refused locally (admin states aside)."""
        requests, accepts = self._roll().totals
        p = (requests - self.k * accepts) / (requests + 1)
        return p if p > 0.0 else 0.0

    @property
    def requests(self) -> int:
        """Attempts counted in the window right now (refused, or admitted and finished)."""
        return self._roll().totals[_REQUESTS]

    @property
    def accepts(self) -> int:
        """Calls the backend answered, counted in the window right now."""
        return self._roll().totals[_ACCEPTS]

    # -- BaseBreaker template methods ----------------------------------------------------------
    def admits(self) -> bool:
        # Never draws from the rng: peeking must not change which later attempts are refused.
        return self.rejection_probability < 1.0

    def admit(self) -> Permit | None:
        counts = self._roll()
        requests, accepts = counts.totals
        excess = requests - self.k * accepts
        # Draw only when throttling: a healthy backend costs no randomness at all.
        if excess > 0.0 and self.rng.random() < excess / (requests + 1):
            counts.add(_REQUESTS)
            return None
        return self.issue_permit(trial=False)  # counted when its outcome arrives

    def judge(self, permit: Permit, outcome: CallOutcome, duration: float) -> None:
        if not self.is_current(permit):
            return  # admitted before a reset (or while disabled): not part of these counts
        counts = self._roll()
        counts.add(_REQUESTS)
        if outcome is not _FAILURE:
            counts.add(_ACCEPTS)

    def forget(self) -> None:
        self._counts.clear(self.clock.now())

    # -- internals ------------------------------------------------------------------------------
    def _roll(self) -> BucketRing:
        """The counts, with the window brought up to the clock's now."""
        counts = self._counts
        now = self.clock.now()
        if now >= counts.edge:
            counts.roll(now)
        return counts
