"""Sliding windows of call outcomes with O(1) updates and memory bounded by the window size.

Both keep running totals (calls, failures, slow calls) and subtract what falls out of the window,
so reading a rate never walks the window.
"""

from __future__ import annotations

from typing import Protocol

from gleitzeit_core import BucketRing, Clock

__all__ = ["CountWindow", "OutcomeWindow", "TimeWindow"]

_FAILED = 1
_SLOW = 2


class OutcomeWindow(Protocol):
    """Running totals over the calls currently inside the window."""

    @property
    def calls(self) -> int: ...

    @property
    def failures(self) -> int: ...

    @property
    def slow(self) -> int: ...

    def add(self, failed: bool, slow: bool) -> None: ...

    def expire(self) -> None:
        """Drop what time pushed out of the window (a no-op for a count window)."""
        ...

    def clear(self) -> None: ...


class CountWindow:
    """The last ``size`` calls, as a ring of one-byte outcome codes."""

    __slots__ = ("_codes", "_next", "_size", "calls", "failures", "slow")

    def __init__(self, size: int) -> None:
        self._size = size
        self._codes = bytearray(size)
        self._next = 0
        self.calls = 0
        self.failures = 0
        self.slow = 0

    def add(self, failed: bool, slow: bool) -> None:
        i = self._next
        codes = self._codes
        old = codes[i]  # the call this one replaces; 0 (nothing to subtract) until full
        if old:
            if old & _FAILED:
                self.failures -= 1
            if old & _SLOW:
                self.slow -= 1
        code = 0
        if failed:
            code = _FAILED
            self.failures += 1
        if slow:
            code |= _SLOW
            self.slow += 1
        codes[i] = code
        if self.calls < self._size:
            self.calls += 1
        i += 1
        self._next = 0 if i == self._size else i

    def expire(self) -> None:
        return None

    def clear(self) -> None:
        self._codes = bytearray(self._size)
        self._next = 0
        self.calls = self.failures = self.slow = 0


class TimeWindow:
    """The calls recorded in the last ``size`` seconds, in one-second buckets of the core's
    ``BucketRing`` (counters: calls, failures, slow calls).

    A call belongs to the bucket of the whole second it was recorded in; the window holds the
    current second and the ``size - 1`` before it.
    """

    __slots__ = ("_clock", "_ring")

    def __init__(self, size: int, clock: Clock) -> None:
        self._clock = clock
        self._ring = BucketRing(1.0, size, 3, clock.now())

    @property
    def calls(self) -> int:
        return self._ring.totals[0]

    @property
    def failures(self) -> int:
        return self._ring.totals[1]

    @property
    def slow(self) -> int:
        return self._ring.totals[2]

    def add(self, failed: bool, slow: bool) -> None:
        ring = self._ring
        now = self._clock.now()
        if now >= ring.edge:  # a new second began: one float comparison on the common path
            ring.roll(now)
        ring.add(0)
        if failed:
            ring.add(1)
        if slow:
            ring.add(2)

    def expire(self) -> None:
        now = self._clock.now()
        if now >= self._ring.edge:
            self._ring.roll(now)

    def clear(self) -> None:
        self._ring.clear(self._clock.now())
