"""Metrics (windowed percentiles, error rate, EWMAs, bounded memory) and feature flags."""

from __future__ import annotations

import random

import hypothesis.strategies as st
from hypothesis import given

from gleitzeit_core import FailureClass, ResourceMetrics
from gleitzeit_core._config import FeaturesConfig
from gleitzeit_core._features import FeatureFlags
from gleitzeit_core._status import to_json


@given(st.lists(st.floats(min_value=0.0, max_value=10.0), min_size=1, max_size=600))
def test_percentiles_match_a_sorted_window(durations: list[float]) -> None:
    """p50/p95/p99 equal the nearest-rank percentiles of the last `window` successes."""
    metrics = ResourceMetrics(window=64)
    for i, duration in enumerate(durations):
        metrics.record(duration, None, float(i))
    window = sorted(d * 1000 for d in durations[-64:])
    snap = metrics.snapshot(float(len(durations)))

    def nearest(q: float) -> float:
        import math

        return round(window[max(1, math.ceil(q * len(window))) - 1], 3)

    assert snap.p50_ms == nearest(0.5)
    assert snap.p95_ms == nearest(0.95)
    assert snap.p99_ms == nearest(0.99)
    assert snap.window_calls == min(64, len(durations))
    assert snap.requests == len(durations)


@given(st.lists(st.sampled_from([None, *FailureClass]), min_size=1, max_size=300))
def test_error_rate_counts_only_errors_in_the_window(outcomes: list[FailureClass | None]) -> None:
    """The error rate is the share of real errors (not caller 4xx, cancels or misroutes)
    among the calls in the window, kept in O(1) by subtract-on-evict."""
    metrics = ResourceMetrics(window=32)
    for i, outcome in enumerate(outcomes):
        metrics.record(0.01, outcome, float(i))
    last = outcomes[-32:]
    benign = {FailureClass.CLIENT_ERROR, FailureClass.CANCELLED, FailureClass.MISROUTED}
    errors = sum(1 for o in last if o is not None and o not in benign)
    assert abs(metrics.error_rate - errors / len(last)) < 1e-9
    assert metrics.successes == outcomes.count(None)
    assert sum(metrics.failures.values()) == len(outcomes) - outcomes.count(None)


def test_peak_ewma_jumps_up_and_decays() -> None:
    """The peak EWMA takes a slow sample at once and forgets it as time passes."""
    metrics = ResourceMetrics()
    for t in range(10):
        metrics.record(0.010, None, float(t))
    metrics.record(1.0, None, 10.0)
    assert metrics.peak_ewma == 1.0
    metrics.record(0.010, None, 40.0)  # 30 s later, three time constants
    assert metrics.peak_ewma is not None
    assert metrics.peak_ewma < 0.1
    assert metrics.latency_ewma is not None
    assert 0.01 < metrics.latency_ewma < 1.0


def test_snapshot_unstructures_to_plain_json() -> None:
    """A snapshot turns into plain JSON types with failure classes by name."""
    metrics = ResourceMetrics()
    metrics.record(0.5, FailureClass.TIMEOUT, 1.0)
    data = to_json(metrics.snapshot(2.0))
    assert data["failures"] == {"timeout": 1}
    assert data["error_rate"] == 1.0


def test_memory_is_bounded_by_the_window() -> None:
    """Recording a million calls does not grow the metrics object."""
    import sys

    metrics = ResourceMetrics(window=256)
    before = sys.getsizeof(metrics._latency) + sys.getsizeof(metrics._time)
    for i in range(100_000):
        metrics.record(0.001, None, float(i))
    after = sys.getsizeof(metrics._latency) + sys.getsizeof(metrics._time)
    assert after == before


def test_rollout_off_switches() -> None:
    """The hub path is off when the architecture flag is off or the provider is not listed."""
    off = FeatureFlags(FeaturesConfig(use_hub_architecture=False))
    assert not off.hub_enabled_for("llm/v1")
    listed = FeatureFlags(FeaturesConfig(hub_architecture_providers=["llm/v1"]))
    assert listed.hub_enabled_for("llm/v1")
    assert not listed.hub_enabled_for("python/v1")


@given(st.floats(min_value=0, max_value=100), st.lists(st.text(max_size=8), max_size=50))
def test_rollout_is_stable_per_key(percent: float, keys: list[str]) -> None:
    """With a key, the rollout decision is the same every time for that key."""
    flags = FeatureFlags(FeaturesConfig(rollout_percent=percent))
    for key in keys:
        first = flags.hub_enabled_for("llm/v1", key)
        assert all(flags.hub_enabled_for("llm/v1", key) == first for _ in range(3))


def test_rollout_share_matches_the_percentage() -> None:
    """About rollout_percent of distinct keys take the hub path."""
    flags = FeatureFlags(FeaturesConfig(rollout_percent=30.0), random.Random(1))
    share = sum(flags.hub_enabled_for("llm/v1", f"user-{i}") for i in range(10_000)) / 10_000
    assert 0.27 < share < 0.33
    random_share = sum(flags.hub_enabled_for("llm/v1") for _ in range(10_000)) / 10_000
    assert 0.27 < random_share < 0.33


@given(
    st.lists(
        st.tuples(st.floats(min_value=0.0, max_value=5.0), st.sampled_from([None, *FailureClass])),
        min_size=1,
        max_size=120,
    ),
    st.integers(min_value=-1, max_value=130),
)
def test_snapshot_since_covers_only_the_later_calls_in_the_window(
    calls: list[tuple[float, FailureClass | None]], cut: int
) -> None:
    """``snapshot(now, since=t)`` computes percentiles, error rate and call count over the
    window's calls that finished after ``t`` only (a dashboard's one-second samples); the
    totals are the same as without ``since``."""
    import math

    metrics = ResourceMetrics(window=50)
    for i, (duration, outcome) in enumerate(calls):
        metrics.record(duration, outcome, float(i))
    now = float(len(calls))
    snap = metrics.snapshot(now, since=cut + 0.5)
    kept = [(i, d, o) for i, (d, o) in enumerate(calls) if i >= len(calls) - 50 and i > cut + 0.5]
    successes = sorted(d * 1000 for _, d, o in kept if o is None)
    errors = sum(1 for _, _, o in kept if o is not None and o.counts_as_error)

    def nearest(q: float) -> float | None:
        if not successes:
            return None
        return round(successes[max(1, math.ceil(q * len(successes))) - 1], 3)

    assert snap.window_calls == len(kept)
    assert snap.p50_ms == nearest(0.5)
    assert snap.p99_ms == nearest(0.99)
    assert snap.error_rate == (round(errors / len(kept), 6) if kept else 0.0)
    whole = metrics.snapshot(now)
    assert (snap.requests, snap.successes, snap.failures) == (
        whole.requests,
        whole.successes,
        whole.failures,
    )
