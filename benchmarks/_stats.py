"""Figures with their spread: interleaved rounds, the median and a seeded 90 % bootstrap
interval. Shared by the benchmark scripts (see benchmarks/README.md, "Figures with their
spread").

    from _stats import interleave, ratio, spread, figures

    samples = interleave({"ours": run_ours, "theirs": run_theirs}, rounds=7)
    summary = ratio(samples["theirs"], samples["ours"])       # per-round ratios
    out.update(figures("theirs_vs_ours_ratio", summary, command))

A *round* runs every contender once, in an order that rotates from round to round, so slow
drift of a shared machine (another job starting, the CPU clock changing) falls on every
contender alike. A ratio is taken within each round (``num[i] / den[i]``) and summarised by
its median over the rounds and a 90 % percentile-bootstrap interval of that median
(resampled with a fixed seed, so the same samples always give the same interval).
"""

from __future__ import annotations

import json
import random
import statistics
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, NamedTuple, TypeVar

__all__ = [
    "MIN_ROUNDS",
    "Summary",
    "ainterleave",
    "bootstrap_interval",
    "figures",
    "interleave",
    "ratio",
    "rotated",
    "spread",
    "write_json",
]

T = TypeVar("T")
MIN_ROUNDS = 5  # fewer rounds give an interval too wide to tell a change from noise
LEVEL = 0.90
RESAMPLES = 2000
SEED = 16


class Summary(NamedTuple):
    """A median with its 90 % interval, over ``rounds`` values."""

    median: float
    low: float
    high: float
    rounds: int

    def text(self, digits: int = 3) -> str:
        return f"{self.median:.{digits}g} (90 % CI {self.low:.{digits}g}-{self.high:.{digits}g})"


def rotated(items: Sequence[T], round_number: int) -> list[T]:
    """``items`` starting at position ``round_number`` (mod len): the order of one round."""
    if not items:
        return []
    k = round_number % len(items)
    return [*items[k:], *items[:k]]


def interleave(contenders: Mapping[str, Callable[[], T]], rounds: int) -> dict[str, list[T]]:
    """Call every contender once per round, in rotating order; what each returned, per
    round."""
    names = list(contenders)
    out: dict[str, list[T]] = {name: [] for name in names}
    for r in range(rounds):
        for name in rotated(names, r):
            out[name].append(contenders[name]())
    return out


async def ainterleave(
    contenders: Mapping[str, Callable[[], Awaitable[T]]], rounds: int
) -> dict[str, list[T]]:
    """``interleave`` for coroutine functions (awaited one after the other)."""
    names = list(contenders)
    out: dict[str, list[T]] = {name: [] for name in names}
    for r in range(rounds):
        for name in rotated(names, r):
            out[name].append(await contenders[name]())
    return out


def bootstrap_interval(
    values: Sequence[float],
    stat: Callable[[Sequence[float]], float] = statistics.median,
    *,
    level: float = LEVEL,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> tuple[float, float]:
    """Percentile-bootstrap interval of ``stat(values)``; seeded, so reproducible."""
    if not values:
        raise ValueError("no values to summarise")
    if len(values) == 1:
        return values[0], values[0]
    rng = random.Random(seed)
    n = len(values)
    stats = sorted(stat([values[rng.randrange(n)] for _ in range(n)]) for _ in range(resamples))
    tail = (1 - level) / 2
    low = stats[int(tail * (resamples - 1))]
    high = stats[round((1 - tail) * (resamples - 1))]
    return low, high


def spread(values: Sequence[float]) -> Summary:
    """The median of ``values`` (one per round) with its 90 % interval."""
    low, high = bootstrap_interval(values)
    return Summary(statistics.median(values), low, high, len(values))


def ratio(numerator: Sequence[float], denominator: Sequence[float]) -> Summary:
    """Per-round ratios ``numerator[i] / denominator[i]`` (paired: measured in the same
    round), summarised by their median and its 90 % interval."""
    if len(numerator) != len(denominator):
        raise ValueError(f"{len(numerator)} numerators for {len(denominator)} denominators")
    ratios = [n / d for n, d in zip(numerator, denominator, strict=True) if d]
    if not ratios:
        raise ValueError("every denominator is zero")
    return spread(ratios)


def figures(name: str, summary: Summary, command: str, digits: int = 4) -> dict[str, Any]:
    """JSON figures for ``run.py``: ``name`` = the median, ``name_ci90`` = [low, high] (its
    note says over how many rounds)."""
    return {
        name: {"value": round(summary.median, digits), "command": command},
        f"{name}_ci90": {
            "value": [round(summary.low, digits), round(summary.high, digits)],
            "command": command,
            "note": f"90 % bootstrap interval of the median over {summary.rounds} rounds",
        },
    }


def write_json(path: str, data: Any, *, sort_keys: bool = False) -> None:
    """Write a benchmark's figures (``--json PATH``) as indented JSON ending in a newline,
    the form benchmarks/run.py collects."""
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, sort_keys=sort_keys)
        handle.write("\n")
