"""Per-resource request metrics, O(1) to record, and the one snapshot shape every hub reports.

Recording a call touches a handful of counters, two EWMAs and one slot of a fixed-size ring, so
it costs the same at the millionth request as at the first and memory stays bounded by the
window. Percentiles are computed only when a snapshot is taken.
"""

from __future__ import annotations

import math
from array import array

import attrs

from ._outcomes import FailureClass

__all__ = ["MetricsSnapshot", "ResourceMetrics"]


@attrs.frozen
class MetricsSnapshot:
    """Numbers about one resource at one moment. Latencies are in milliseconds."""

    requests: int
    successes: int
    failures: dict[str, int]
    in_flight: int
    latency_ewma_ms: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    error_rate: float
    window_calls: int
    rate_per_s: float


class ResourceMetrics:
    """Counters, gauges, EWMAs and a sliding window of the most recent calls of one resource."""

    __slots__ = (
        "_count",
        "_failed",
        "_latency",
        "_next",
        "_time",
        "_window_errors",
        "alpha",
        "failures",
        "in_flight",
        "latency_ewma",
        "peak_ewma",
        "peak_stamp",
        "peak_tau",
        "requests",
        "successes",
        "window",
    )

    def __init__(self, window: int = 256, *, alpha: float = 0.3, peak_tau: float = 10.0) -> None:
        if window < 1:
            msg = f"metrics window must hold at least one call, got {window}"
            raise ValueError(msg)
        self.window = window
        self.alpha = alpha
        self.peak_tau = peak_tau
        self.requests = 0
        self.successes = 0
        self.failures: dict[FailureClass, int] = {}
        self.in_flight = 0
        self.latency_ewma: float | None = None  # seconds
        self.peak_ewma: float | None = None  # seconds; jumps up on a slow call, decays with time
        self.peak_stamp = 0.0
        self._latency = array("d", bytes(8 * window))
        self._time = array("d", bytes(8 * window))
        self._failed = bytearray(window)
        self._next = 0
        self._count = 0
        self._window_errors = 0

    def record(self, duration: float, failure: FailureClass | None, now: float) -> None:
        """Account one finished call that took ``duration`` seconds."""
        self.requests += 1
        if failure is None:
            self.successes += 1
            self._observe_latency(duration, now)
        else:
            self.failures[failure] = self.failures.get(failure, 0) + 1
        slot = self._next
        is_error = failure is not None and failure.counts_as_error
        if self._count == self.window:
            self._window_errors -= self._failed[slot] & 1
        else:
            self._count += 1
        # bit 0: counts as an error; bit 1: failed at all (its latency is not a service time)
        self._failed[slot] = (1 if is_error else 0) | (2 if failure is not None else 0)
        self._window_errors += 1 if is_error else 0
        self._latency[slot] = duration
        self._time[slot] = now
        self._next = slot + 1 if slot + 1 < self.window else 0

    def _observe_latency(self, duration: float, now: float) -> None:
        ewma = self.latency_ewma
        self.latency_ewma = duration if ewma is None else ewma + self.alpha * (duration - ewma)
        peak = self.peak_ewma
        if peak is None or duration > peak:
            self.peak_ewma = duration
        else:
            # decay towards the new sample with a time constant, so an idle resource forgets
            # an old spike at the same rate however rarely it is called
            weight = math.exp(-max(0.0, now - self.peak_stamp) / self.peak_tau)
            self.peak_ewma = peak * weight + duration * (1.0 - weight)
        self.peak_stamp = now

    @property
    def error_rate(self) -> float:
        return self._window_errors / self._count if self._count else 0.0

    def snapshot(self, now: float, since: float | None = None) -> MetricsSnapshot:
        """The numbers at ``now``; with ``since``, the window's figures (percentiles, error
        rate, calls, rate) cover only the calls in the window that finished after ``since``
        (a dashboard's one-second samples), the totals stay totals."""
        n = self._count
        if since is None:
            slots: range | list[int] = range(n)
            errors = self._window_errors
            oldest = min((self._time[i] for i in range(n)), default=now)
        else:
            slots = [i for i in range(n) if self._time[i] > since]
            errors = sum(self._failed[i] & 1 for i in slots)
            oldest = since
        calls = len(slots)
        latencies = sorted(self._latency[i] * 1000.0 for i in slots if not self._failed[i] & 2)
        span = now - oldest
        ewma = self.latency_ewma
        return MetricsSnapshot(
            requests=self.requests,
            successes=self.successes,
            failures={k.value: v for k, v in sorted(self.failures.items(), key=_by_value)},
            in_flight=self.in_flight,
            latency_ewma_ms=None if ewma is None else round(ewma * 1000.0, 3),
            p50_ms=_percentile(latencies, 0.50),
            p95_ms=_percentile(latencies, 0.95),
            p99_ms=_percentile(latencies, 0.99),
            error_rate=round(errors / calls, 6) if calls else 0.0,
            window_calls=calls,
            rate_per_s=round(calls / max(span, 1.0), 3),
        )


def _by_value(item: tuple[FailureClass, int]) -> str:
    return item[0].value


def _percentile(ordered: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an already sorted list."""
    if not ordered:
        return None
    rank = max(1, math.ceil(q * len(ordered)))
    return round(ordered[rank - 1], 3)
