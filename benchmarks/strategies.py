"""Cost per pick of every built-in strategy at 10, 100 and 1,000 candidates, next to a
``random.choice`` baseline measured in the same run, plus the full hub lease path.

    python benchmarks/strategies.py [--quick] [--json PATH]

Each figure is the best of several timed rounds (the least disturbed by the rest of the
machine), interleaved strategy by strategy so that all share the same conditions. Target:
``p2c`` within 4x of ``random.choice`` at 1,000 candidates; that ratio is measured on its own
in interleaved rounds (7 quick, 15 full) and reported as the median of the per-round ratios
with its 90 % interval (``..._ci90``).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections.abc import Callable

from _stats import Summary, figures, interleave, ratio, write_json  # benchmarks/_stats.py

from gleitzeit_core import BUILTIN_STRATEGIES, Request, ResourceSpec
from gleitzeit_core._hub import ResourceHub
from gleitzeit_core.testing import FakeCandidate

SIZES = (10, 100, 1000)


def pool(size: int, rng: random.Random) -> list[FakeCandidate]:
    return [
        FakeCandidate(
            id=f"r{i:04d}",
            weight=rng.choice([1.0, 2.0, 4.0]),
            in_flight=rng.randrange(8),
            latency_ewma=rng.uniform(0.01, 0.1),
            peak_ewma=rng.uniform(0.01, 0.2),
            priority=rng.randrange(2),
        )
        for i in range(size)
    ]


def best_ns(func: Callable[[], object], picks: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter_ns()
        for _ in range(picks):
            func()
        best = min(best, (time.perf_counter_ns() - started) / picks)
    return best


def measure(picks: int, rounds: int) -> dict[str, dict[int, float]]:
    rng = random.Random(7)
    results: dict[str, dict[int, float]] = {}
    for size in SIZES:
        candidates = pool(size, rng)
        keyed = [Request(key=f"session-{i}") for i in range(64)]
        plain = Request()
        choice = random.Random(1).choice
        results.setdefault("random.choice", {})[size] = best_ns(
            lambda c=candidates, ch=choice: ch(c), picks, rounds
        )
        for cls in BUILTIN_STRATEGIES:
            strategy = cls(rng=random.Random(1))
            name = cls.name  # type: ignore[attr-defined]
            if name == "consistent_hash":
                counter = iter(range(10**12))

                def pick(s=strategy, c=candidates, k=keyed, n=counter) -> object:
                    return s.select(c, k[next(n) % 64])
            else:

                def pick(s=strategy, c=candidates, r=plain) -> object:
                    return s.select(c, r)

            pick()  # warm caches (a hash ring builds on first use)
            results.setdefault(name, {})[size] = best_ns(pick, picks, rounds)
    return results


def headline(picks: int, rounds: int) -> Summary:
    """p2c over random.choice at 1,000 candidates, one ratio per interleaved round."""
    candidates = pool(1000, random.Random(7))
    choice = random.Random(1).choice
    p2c = {c.name: c for c in BUILTIN_STRATEGIES}["p2c"]  # type: ignore[attr-defined]
    strategy = p2c(rng=random.Random(1))
    request = Request()

    def per_pick(func: Callable[[], object]) -> Callable[[], float]:
        def timed() -> float:  # the least disturbed of 5 short blocks: a busy machine preempts
            return best_ns(func, picks // 5, 5)

        return timed

    samples = interleave(
        {
            "random.choice": per_pick(lambda: choice(candidates)),
            "p2c": per_pick(lambda: strategy.select(candidates, request)),
        },
        rounds,
    )
    return ratio(samples["p2c"], samples["random.choice"])


async def hub_lease_ns(size: int, picks: int) -> float:
    """The whole lease path of a hub (eligibility, p2c, breaker, in-flight, metrics)."""
    hub = ResourceHub("bench", rng=random.Random(1))
    for i in range(size):
        hub.add(ResourceSpec(id=f"r{i:04d}"))
    request = Request()
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter_ns()
        for _ in range(picks):
            lease, _ = hub.try_lease(request)
            assert lease is not None
            lease.succeed()
        best = min(best, (time.perf_counter_ns() - started) / picks)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    picks, rounds = (2_000, 3) if args.quick else (20_000, 5)
    results = measure(picks, rounds)
    baseline = results["random.choice"]
    print(f"{'strategy':<22}" + "".join(f"{f'{n} ns':>12}{f'x{n}':>8}" for n in SIZES))
    for name, by_size in results.items():
        row = f"{name:<22}"
        for size in SIZES:
            row += f"{by_size[size]:>12.0f}{by_size[size] / baseline[size]:>8.2f}"
        print(row)
    lease = {size: asyncio.run(hub_lease_ns(size, max(500, picks // 10))) for size in SIZES}
    print("hub lease (p2c, full path) ns:", {k: round(v) for k, v in lease.items()})
    summary = headline(picks * 5, 7 if args.quick else 15)
    print(f"p2c / random.choice at 1,000 candidates: {summary.text()} (target <= 4)")
    if args.json_path:
        command = "python benchmarks/strategies.py" + (" --quick" if args.quick else "")
        out = {
            **figures("p2c_pick_vs_random_choice_ratio_1000", summary, command),
            "strategy_pick_ns": {"value": results, "command": command},
            "hub_lease_ns": {"value": lease, "command": command},
        }
        write_json(args.json_path, out)


if __name__ == "__main__":
    main()
