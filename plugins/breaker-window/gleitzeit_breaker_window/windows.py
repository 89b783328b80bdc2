"""Sliding windows of call outcomes with O(1) updates and memory bounded by the window size.

Both keep running totals (calls, failures, slow calls) and subtract what falls out of the window,
so reading a rate never walks the window.
"""

from __future__ import annotations

import math
from typing import Protocol

from gleitzeit_core import Clock

__all__ = ["CountWindow", "OutcomeWindow", "TimeWindow"]

_FAILED = 1
_SLOW = 2


class OutcomeWindow(Protocol):
    """Running totals over the calls currently inside the window."""

    calls: int
    failures: int
    slow: int

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
    """The calls recorded in the last ``size`` seconds, in one-second buckets.

    A call belongs to the bucket of the whole second it was recorded in; the window holds the
    current second and the ``size - 1`` before it.
    """

    __slots__ = (
        "_calls",
        "_clock",
        "_edge",
        "_failures",
        "_head",
        "_index",
        "_size",
        "_slow",
        "calls",
        "failures",
        "slow",
    )

    def __init__(self, size: int, clock: Clock) -> None:
        self._size = size
        self._clock = clock
        self.clear()

    def add(self, failed: bool, slow: bool) -> None:
        now = self._clock.now()
        if now >= self._edge:  # a new second began: one float comparison on the common path
            self._roll(math.floor(now))
        i = self._index
        self._calls[i] += 1
        self.calls += 1
        if failed:
            self._failures[i] += 1
            self.failures += 1
        if slow:
            self._slow[i] += 1
            self.slow += 1

    def expire(self) -> None:
        now = self._clock.now()
        if now >= self._edge:
            self._roll(math.floor(now))

    def clear(self) -> None:
        size = self._size
        self._calls = [0] * size
        self._failures = [0] * size
        self._slow = [0] * size
        self.calls = self.failures = self.slow = 0
        self._move_head(math.floor(self._clock.now()))

    def _move_head(self, second: int) -> None:
        self._head = second  # the newest second the buckets describe
        self._index = second % self._size
        self._edge = float(second + 1)

    def _roll(self, second: int) -> None:
        # Each bucket is emptied at most once per pass, so a roll costs at most `size` steps and
        # amortises to O(1) per second of clock time.
        if second - self._head >= self._size:
            self.clear()
            self._move_head(second)
            return
        calls, failures, slow, size = self._calls, self._failures, self._slow, self._size
        for s in range(self._head + 1, second + 1):
            i = s % size
            self.calls -= calls[i]
            self.failures -= failures[i]
            self.slow -= slow[i]
            calls[i] = failures[i] = slow[i] = 0
        self._move_head(second)
