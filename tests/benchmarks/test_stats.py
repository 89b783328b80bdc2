"""benchmarks/_stats.py, the helper every benchmark reports its spread with: intervals hold
the median, are reproducible, pair the rounds, and rounds rotate the order fairly."""

from __future__ import annotations

import importlib.util
import statistics
import sys
from pathlib import Path

import hypothesis.strategies as st
import pytest
from hypothesis import given

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "_stats.py"
_SPEC = importlib.util.spec_from_file_location("bench_stats", _PATH)
assert _SPEC is not None
assert _SPEC.loader is not None
stats = importlib.util.module_from_spec(_SPEC)
sys.modules["bench_stats"] = stats
_SPEC.loader.exec_module(stats)

samples = st.lists(
    st.floats(min_value=0.001, max_value=1e6, allow_nan=False), min_size=1, max_size=30
)


@given(samples)
def test_the_interval_holds_the_median_and_is_reproducible(values: list[float]) -> None:
    """The 90 % interval contains the median, and the same samples give the same interval
    (the bootstrap is seeded), so a re-run of the report does not move it."""
    summary = stats.spread(values)
    assert summary.low <= summary.median <= summary.high
    assert summary.median == statistics.median(values)
    assert stats.spread(values) == summary
    assert summary.rounds == len(values)


@given(st.lists(st.tuples(samples.map(len), st.floats(0.5, 2.0)), min_size=1, max_size=20))
def test_ratio_is_taken_within_each_round(pairs: list[tuple[int, float]]) -> None:
    """``ratio`` divides each round's numerator by the same round's denominator: a contender
    twice as slow in every round reads 2.0 however much the rounds differ from each other."""
    denominators = [float(size) for size, _ in pairs]
    numerators = [2.0 * d for d in denominators]
    summary = stats.ratio(numerators, denominators)
    assert summary.median == pytest.approx(2.0)
    assert summary.low == pytest.approx(2.0)
    assert summary.high == pytest.approx(2.0)


def test_ratio_refuses_rounds_that_do_not_pair() -> None:
    """Unequal numbers of rounds are a mistake in the benchmark, named, not a silent zip."""
    with pytest.raises(ValueError, match="3 numerators for 2 denominators"):
        stats.ratio([1.0, 2.0, 3.0], [1.0, 2.0])


@given(st.integers(1, 6), st.integers(1, 20))
def test_interleave_runs_everyone_once_per_round_in_rotating_order(n: int, rounds: int) -> None:
    """Every contender runs once per round; over ``n`` rounds each one goes first exactly once
    (a slow start or a warming machine does not always fall on the same contender)."""
    calls: list[str] = []
    names = [f"c{i}" for i in range(n)]
    contenders = {name: (lambda name=name: calls.append(name) or len(calls)) for name in names}
    out = stats.interleave(contenders, rounds)
    assert all(len(values) == rounds for values in out.values())
    firsts = [calls[r * n] for r in range(rounds)]
    for start in range(0, rounds - n + 1, n):
        assert sorted(firsts[start : start + n]) == sorted(names)


def test_figures_give_the_median_and_its_interval_to_run_py() -> None:
    """The JSON a script writes has ``key`` = the median and ``key_ci90`` = [low, high], the
    shape ``run.py`` reads and prints next to each other."""
    summary = stats.ratio([2.0, 4.0, 6.0, 8.0, 10.0], [1.0, 2.0, 3.0, 4.0, 4.0])
    out = stats.figures("x_ratio", summary, "python benchmarks/x.py --quick")
    assert out["x_ratio"] == {"value": 2.0, "command": "python benchmarks/x.py --quick"}
    low, high = out["x_ratio_ci90"]["value"]
    assert low <= 2.0 <= high
    assert "5 rounds" in out["x_ratio_ci90"]["note"]
