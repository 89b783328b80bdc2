"""Requests and accepts over a sliding time window, in fixed-width buckets.

Running totals are kept next to the buckets and reduced as buckets fall out of the window, so
counting and reading are O(1) (a roll empties each bucket at most once per window of time).
"""

from __future__ import annotations

__all__ = ["RollingCounts"]


class RollingCounts:
    """Totals of the last ``buckets`` buckets of ``width`` seconds, ending with the current one.

    A count goes into bucket ``floor(now / width)``. Callers bring the window up to ``now``
    before counting or reading: ``if now >= counts.edge: counts.roll(now)`` (the comparison is
    the whole cost while the current bucket lasts).
    """

    __slots__ = (
        "_accepts",
        "_buckets",
        "_head",
        "_index",
        "_requests",
        "_width",
        "accepts",
        "edge",
        "requests",
    )

    def __init__(self, width: float, buckets: int, now: float) -> None:
        self._width = width
        self._buckets = buckets
        self.clear(now)

    def roll(self, now: float) -> None:
        """Drop the buckets that ``now`` pushed out of the window."""
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
        self._move_head(bucket)

    def add_request(self) -> None:
        """Count a request the backend did not accept (it failed, or was never sent)."""
        self._requests[self._index] += 1
        self.requests += 1

    def add_accepted(self) -> None:
        """Count a request the backend accepted: one request and one accept."""
        i = self._index
        self._requests[i] += 1
        self._accepts[i] += 1
        self.requests += 1
        self.accepts += 1

    def clear(self, now: float) -> None:
        self._requests = [0] * self._buckets
        self._accepts = [0] * self._buckets
        self.requests = 0
        self.accepts = 0
        self._move_head(int(now // self._width))

    def _move_head(self, bucket: int) -> None:
        self._head = bucket  # number of the newest bucket
        self._index = bucket % self._buckets
        self.edge = (bucket + 1) * self._width  # where the next bucket starts
