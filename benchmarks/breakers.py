"""Per-call cost of admit + record: the three breaker plugins against pybreaker, in one run.

Each contender protects the same trivial function. Ours run the hub's sequence
(``acquire()``, call, ``record(permit, outcome, duration)``); pybreaker runs ``cb.call(fn, i)``
and ``with cb.calling(): fn(i)``. Two paths are measured, both in closed state:

* ``success``: every call succeeds;
* ``mixed``: every tenth call raises, which stays below every contender's opening threshold
  (5 consecutive failures, a 50 % failure rate, k = 2 for the adaptive throttle).

Contenders are interleaved: each round runs every contender once (in a rotated order, with the
garbage collector off), and the table shows the median over the rounds; each headline ratio is
the median of the per-round ratios with its 90 % bootstrap interval (``..._ci90``). ``bare`` is
the loop with the function call alone; ``overhead`` subtracts it. Ratios are ours / pybreaker on
the raw per-call figures (the conservative choice: the shared loop cost pulls ratios toward 1).

    python benchmarks/breakers.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import gc
import platform
import random
import statistics
import sys
from collections.abc import Callable
from importlib.metadata import version
from time import perf_counter_ns
from typing import Any

import pybreaker
from _stats import figures as figures_of  # benchmarks/_stats.py
from _stats import ratio, rotated, write_json
from gleitzeit_breaker_adaptive.breaker import AdaptiveThrottlingBreaker
from gleitzeit_breaker_consecutive.breaker import ConsecutiveFailuresBreaker
from gleitzeit_breaker_window.breaker import SlidingWindowBreaker

from gleitzeit_core import BaseBreaker, BreakerState, CallOutcome

SUCCESS, FAILURE = CallOutcome.SUCCESS, CallOutcome.FAILURE
PATHS = {"success": 0, "mixed": 10}  # path -> every how many calls one fails (0: never)
OURS: dict[str, Callable[[], BaseBreaker]] = {
    "consecutive": lambda: ConsecutiveFailuresBreaker(),
    "window": lambda: SlidingWindowBreaker(),
    "window (time)": lambda: SlidingWindowBreaker(window_type="time", window_size=30),
    "adaptive": lambda: AdaptiveThrottlingBreaker(rng=random.Random(0)),
}
HEADLINE = ("consecutive", "window", "adaptive")  # the ratios reported under their own keys

Runner = Callable[[int], int]  # runs n calls, returns elapsed nanoseconds


class Boom(Exception):
    """What the protected function raises on the failing calls."""


def make_work(fail_every: int) -> Callable[[int], None]:
    if not fail_every:

        def work(i: int) -> None:
            return None

        return work

    def failing_work(i: int) -> None:
        if i % fail_every == fail_every - 1:
            raise Boom

    return failing_work


def bare(work: Callable[[int], None]) -> Runner:
    def run(n: int) -> int:
        start = perf_counter_ns()
        for i in range(n):
            try:  # noqa: SIM105 (contextlib.suppress would cost more than what is measured)
                work(i)
            except Boom:
                pass
        return perf_counter_ns() - start

    return run


def ours(breaker: BaseBreaker, work: Callable[[int], None]) -> Runner:
    acquire, record = breaker.acquire, breaker.record

    def run(n: int) -> int:
        refused = 0
        start = perf_counter_ns()
        for i in range(n):
            permit = acquire()
            if permit is None:
                refused += 1
                continue
            try:
                work(i)
            except Boom:
                record(permit, FAILURE, 0.001)
            else:
                record(permit, SUCCESS, 0.001)
        elapsed = perf_counter_ns() - start
        if refused:
            raise SystemExit(f"{type(breaker).__name__} refused {refused} calls: not closed-path")
        return elapsed

    return run


def pybreaker_call(cb: pybreaker.CircuitBreaker, work: Callable[[int], None]) -> Runner:
    call = cb.call

    def run(n: int) -> int:
        start = perf_counter_ns()
        for i in range(n):
            try:  # noqa: SIM105 (as in `bare`)
                call(work, i)
            except Boom:
                pass
        return perf_counter_ns() - start

    return run


def pybreaker_calling(cb: pybreaker.CircuitBreaker, work: Callable[[int], None]) -> Runner:
    calling = cb.calling

    def run(n: int) -> int:
        start = perf_counter_ns()
        for i in range(n):
            try:
                with calling():
                    work(i)
            except Boom:
                pass
        return perf_counter_ns() - start

    return run


def contenders(fail_every: int) -> tuple[dict[str, Runner], list[Any]]:
    work = make_work(fail_every)
    runners: dict[str, Runner] = {"bare": bare(work)}
    breakers: list[Any] = []
    for name, make in OURS.items():
        breaker = make()
        breakers.append(breaker)
        runners[name] = ours(breaker, work)
    styles = (("pybreaker.call", pybreaker_call), ("pybreaker.calling", pybreaker_calling))
    for name, wrap in styles:
        cb = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=60)
        breakers.append(cb)
        runners[name] = wrap(cb, work)
    return runners, breakers


def measure(runners: dict[str, Runner], n: int, rounds: int) -> dict[str, list[float]]:
    """ns per call of every contender, one figure per interleaved round."""
    names = list(runners)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds + 1):  # round 0 warms up and is dropped
        for name in rotated(names, r):
            gc.collect()
            gc.disable()
            try:
                elapsed = runners[name](n)
            finally:
                gc.enable()
            if r:
                samples[name].append(elapsed / n)
    return samples


def still_closed(breakers: list[Any]) -> None:
    for breaker in breakers:
        state = breaker.state if isinstance(breaker, BaseBreaker) else breaker.current_state
        if state not in (BreakerState.CLOSED, pybreaker.STATE_CLOSED):
            raise SystemExit(f"{breaker!r} left the closed state ({state}): the path is wrong")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a short run (less precise)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    n, rounds = (20_000, 7) if args.quick else (100_000, 15)

    figures: dict[str, dict[str, float]] = {}
    per_round: dict[str, dict[str, list[float]]] = {}
    for path, fail_every in PATHS.items():
        runners, breakers = contenders(fail_every)
        per_round[path] = measure(runners, n, rounds)
        figures[path] = {name: statistics.median(v) for name, v in per_round[path].items()}
        still_closed(breakers)

    ratios: dict[str, dict[str, dict[str, float]]] = {}
    print(f"{n:,} calls x {rounds} interleaved rounds per contender and path; median ns/call")
    print(f"Python {platform.python_version()}, pybreaker {version('pybreaker')}")
    print()
    header = f"{'path':<8} {'contender':<18} {'ns/call':>8} {'overhead':>9} {'/ .call':>8}"
    print(header + f" {'/ .calling':>11}")
    print("-" * (len(header) + 12))
    for path, row in figures.items():
        base = row["bare"]
        ratios[path] = {}
        for name, ns in row.items():
            line = f"{path:<8} {name:<18} {ns:>8.0f} {ns - base:>9.0f}"
            if name in OURS:
                vs_call = ns / row["pybreaker.call"]
                vs_calling = ns / row["pybreaker.calling"]
                ratios[path][name] = {"vs_call": vs_call, "vs_calling": vs_calling}
                line += f" {vs_call:>8.2f} {vs_calling:>11.2f}"
            print(line)
    print()
    headline: dict[str, Any] = {}
    success = per_round["success"]
    # against the faster of pybreaker's two styles in each round, on the success path
    pairs = zip(success["pybreaker.call"], success["pybreaker.calling"], strict=True)
    best = [min(a, b) for a, b in pairs]
    command = "python benchmarks/breakers.py" + (" --quick" if args.quick else "")
    for name in HEADLINE:
        summary = ratio(success[name], best)
        headline.update(figures_of(f"breaker_vs_pybreaker_ratio_{name}", summary, command))
        print(f"breaker_vs_pybreaker_ratio_{name} = {summary.text()}")
    cheaper = all(
        ns < min(row["pybreaker.call"], row["pybreaker.calling"])
        for row in figures.values()
        for name, ns in row.items()
        if name in OURS
    )
    print("target (each of ours cheaper per call than pybreaker on both paths):", cheaper)

    if args.json:
        out = {
            **headline,
            "ns_per_call": figures,
            "ratios": ratios,
            "calls_per_round": n,
            "rounds": rounds,
            "python": platform.python_version(),
            "pybreaker": version("pybreaker"),
        }
        write_json(args.json, out, sort_keys=True)
    return 0 if cheaper else 1


if __name__ == "__main__":
    sys.exit(main())
