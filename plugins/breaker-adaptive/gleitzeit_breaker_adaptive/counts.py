"""Requests and accepts over a sliding time window, in fixed-width buckets.

Running totals are kept next to the buckets and reduced as buckets fall out of the window, so
counting and reading are O(1) (a roll empties each bucket at most once per window of time).
"""

from __future__ import annotations

__all__ = ["RollingCounts"]


class RollingCounts:
    """Totals of the last ``buckets`` buckets of ``width`` seconds, ending with the current one.

    A count goes into the bucket ``floor(now / width)``; callers ``roll(now)`` before counting
    or reading so the window ends at ``now``.
    """

    __slots__ = ("_accepts", "_buckets", "_head", "_requests", "_width", "accepts", "requests")

    def __init__(self, width: float, buckets: int, now: float) -> None:
        self._width = width
        self._buckets = buckets
        self._requests = [0] * buckets
        self._accepts = [0] * buckets
        self._head = int(now // width)  # number of the newest bucket
        self.requests = 0
        self.accepts = 0

    def roll(self, now: float) -> None:
        bucket = int(now // self._width)
        head = self._head
        if bucket <= head:
            return
        size = self._buckets
        if bucket - head >= size:
            self.clear(now)
            return
        requests, accepts = self._requests, self._accepts
        for b in range(head + 1, bucket + 1):
            i = b % size
            self.requests -= requests[i]
            self.accepts -= accepts[i]
            requests[i] = accepts[i] = 0
        self._head = bucket

    def add_request(self) -> None:
        """Count a request the backend did not accept (it failed, or was never sent)."""
        self._requests[self._head % self._buckets] += 1
        self.requests += 1

    def add_accepted(self) -> None:
        """Count a request the backend accepted: one request and one accept."""
        i = self._head % self._buckets
        self._requests[i] += 1
        self._accepts[i] += 1
        self.requests += 1
        self.accepts += 1

    def clear(self, now: float) -> None:
        self._requests = [0] * self._buckets
        self._accepts = [0] * self._buckets
        self._head = int(now // self._width)
        self.requests = 0
        self.accepts = 0
