"""Legacy path vs hub path of the compatibility shim: the same workload, interleaved, in one run.

Three Ollama simulators on loopback sockets serve an ``OllamaPoolProvider`` (the old API,
``gleitzeit-legacy``). Every request is an ``llm/generate`` call; consecutive requests
alternate between the two paths of the shim's dual mode, so both see the same simulators, the
same moment and the same load:

* ``hub``: ``runtime.execute("llm/generate", ...)`` - the llm/v1 provider and the Ollama hub
  (model tiers, per-model slots, breaker, outlier ejection, failover to untried instances);
* ``legacy``: the old single-pass selection (``least_loaded``, ties to the first configured
  instance) and a direct HTTP call, with the shim's fixes (no retry on the same instance,
  timeouts enforced).

Two phases: ``clean`` (no faults) and ``faults`` (the first simulator answers HTTP 500 to a
share of its requests). For each path: latency p50/p99 of successful requests, the request
error rate, and extra attempts per request (failovers). ``legacy_vs_hub_latency_ratio`` is hub
p50 / legacy p50 in the clean phase (target <= 1.05); under faults the hub should not fail
more requests than the legacy path.

A third phase, ``hub_era``, measures what the migration plan's hub-era adapters cost: the same
calls, interleaved, through ``OllamaPoolProvider("era", hub=OllamaHub(...))`` with
``FEATURES["use_hub_architecture"] = True`` (flag check, old parameters, old result shape,
per-path figures) and straight through that hub's runtime (``runtime.execute``).
``hub_era_vs_hub_latency_ratio`` is adapter p50 / direct p50 (target <= 1.05).

Both headline ratios come from ``--rounds`` further rounds of ``--requests`` each (7 quick,
15 full): the median of the per-round p50 ratios, with its 90 % interval (``..._ci90``).

    python benchmarks/legacy_vs_hub.py [--quick] [--json PATH] [--requests N] [--rounds N]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import sys
import tempfile
import time
import warnings
from typing import Any

from _stats import Summary, figures, ratio, write_json  # benchmarks/_stats.py
from gleitzeit_ollama.sim import OllamaSimulator, SimConfig

MODEL = "llama3.2"
PATHS = ("hub", "legacy")


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


async def start_sims(latency_ms: float) -> list[OllamaSimulator]:
    sims = []
    for index in range(3):
        sim = OllamaSimulator(
            SimConfig(
                models=[MODEL],
                latency_ms=latency_ms,
                tokens_per_s=0.0,  # the answer at once: latency is the simulated work
                max_tokens=8,
                load_ms=1.0,
                num_parallel=8,
                name=f"bench-{index}",
            )
        )
        await sim.start("127.0.0.1", 0)
        sims.append(sim)
    return sims


async def preload(sims: list[OllamaSimulator]) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        for sim in sims:
            body = {"model": MODEL, "keep_alive": "1h"}
            async with session.post(f"{sim.url}/api/generate", json=body) as response:
                response.raise_for_status()


async def run_phase(
    provider: Any, requests: int, concurrency: int, fault_sim: OllamaSimulator | None
) -> dict[str, Any]:
    """``requests`` calls, alternating hub/legacy, ``concurrency`` at a time."""
    if fault_sim is not None:
        fault_sim.set_faults(error_rate=0.3, error_status=500, seed=7)
    results: dict[str, dict[str, Any]] = {
        path: {"latencies": [], "errors": 0, "attempts": 0, "calls": 0} for path in PATHS
    }
    queue: asyncio.Queue[str] = asyncio.Queue()
    for index in range(requests):
        queue.put_nowait(PATHS[index % 2])

    async def worker() -> None:
        while True:
            try:
                path = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            record = results[path]
            call = provider.build("llm/generate", {"prompt": "benchmark", "model": MODEL})
            started = time.perf_counter()
            try:
                raw = await provider.shim.run(call, path)
            except Exception:
                record["errors"] += 1
                record["attempts"] += 1
            else:
                record["latencies"].append((time.perf_counter() - started) * 1000.0)
                record["attempts"] += int(raw.get("gleitzeit", {}).get("attempts", 1))
            record["calls"] += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    if fault_sim is not None:
        fault_sim.clear_faults()
    out: dict[str, Any] = {"seconds": round(elapsed, 3)}
    for path, record in results.items():
        calls = record["calls"]
        out[path] = {
            "calls": calls,
            "p50_ms": _round(percentile(record["latencies"], 0.50)),
            "p99_ms": _round(percentile(record["latencies"], 0.99)),
            "error_rate": round(record["errors"] / calls, 4) if calls else None,
            "extra_attempts_per_request": round(record["attempts"] / calls - 1.0, 4)
            if calls
            else None,
        }
    return out


async def run_hub_era(
    provider: Any, runtime: Any, requests: int, concurrency: int
) -> dict[str, Any]:
    """``requests`` calls alternating the hub-era adapter and the runtime it adapts."""
    ways = ("adapter", "direct")
    latencies: dict[str, list[float]] = {way: [] for way in ways}
    errors = dict.fromkeys(ways, 0)
    queue: asyncio.Queue[str] = asyncio.Queue()
    for index in range(requests):
        queue.put_nowait(ways[index % 2])
    params = {"prompt": "benchmark", "model": MODEL}

    async def worker() -> None:
        while True:
            try:
                way = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            started = time.perf_counter()
            try:
                if way == "adapter":
                    await provider.execute("llm/generate", params)
                else:
                    await runtime.execute("llm/generate", params)
            except Exception:
                errors[way] += 1
            else:
                latencies[way].append((time.perf_counter() - started) * 1000.0)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {
        way: {
            "calls": len(latencies[way]) + errors[way],
            "p50_ms": _round(percentile(latencies[way], 0.50)),
            "p99_ms": _round(percentile(latencies[way], 0.99)),
            "errors": errors[way],
        }
        for way in ways
    }


async def hub_era_phase(sims: list[OllamaSimulator], args: argparse.Namespace) -> dict[str, Any]:
    from gleitzeit_legacy.features import FEATURES
    from gleitzeit_legacy.ollama_hub import OllamaHub
    from gleitzeit_legacy.ollama_providers import OllamaPoolProvider

    os.environ["OLLAMA_HOSTS"] = ",".join(sim.url for sim in sims)  # what auto-discovery finds
    hub = OllamaHub("bench-hub", auto_discover=True)
    provider = OllamaPoolProvider("era", hub=hub)
    FEATURES["use_hub_architecture"] = True
    try:
        await provider.initialize()
        await run_hub_era(provider, hub.runtime, 2 * args.concurrency, args.concurrency)
        era = await run_hub_era(provider, hub.runtime, args.requests, args.concurrency)
        rounds = [
            await run_hub_era(provider, hub.runtime, args.requests, args.concurrency)
            for _ in range(args.rounds)
        ]
        era["p50_ratio_rounds"] = per_round_ratio(rounds, "adapter", "direct")
        return era
    finally:
        FEATURES.reset()
        await provider.shutdown()
        await hub.stop()


def per_round_ratio(rounds: list[dict[str, Any]], num: str, den: str) -> Summary:
    """p50 of ``num`` over p50 of ``den`` within each round (the two alternate request by
    request in a round), as a median with its 90 % interval."""
    return ratio([r[num]["p50_ms"] for r in rounds], [r[den]["p50_ms"] for r in rounds])


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else round(a / b, 4)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    from gleitzeit_legacy.ollama_providers import OllamaPoolProvider

    sims = await start_sims(args.latency_ms)
    await preload(sims)
    instances = [
        {"id": f"i{index}", "url": sim.url, "models": [MODEL], "max_concurrent": 8}
        for index, sim in enumerate(sims)
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        provider = OllamaPoolProvider(
            "bench",
            instances,
            {"strategy": "least_loaded", "failover": True, "retry_attempts": 3},
            {"failure_threshold": 5, "recovery_timeout": 5, "half_open_requests": 1},
            timeout=30,
        )
    await provider.initialize()
    try:
        await run_phase(provider, 2 * args.concurrency, args.concurrency, None)  # warm-up
        for sim in sims:
            sim.reset_stats()
        clean = await run_phase(provider, args.requests, args.concurrency, None)
        rounds = [
            await run_phase(provider, args.requests, args.concurrency, None)
            for _ in range(args.rounds)
        ]
        clean_ratio = per_round_ratio(rounds, "hub", "legacy")
        faults = await run_phase(provider, args.requests, args.concurrency, sims[0])
        era = await hub_era_phase(sims, args)
    finally:
        await provider.shutdown()
        for sim in sims:
            await sim.stop()
    return {
        "benchmark": "legacy_vs_hub",
        "python": platform.python_version(),
        "platform": platform.platform(),
        "requests_per_phase": args.requests,
        "concurrency": args.concurrency,
        "simulated_latency_ms": args.latency_ms,
        "clean": clean,
        "faults": faults,
        **figures("legacy_vs_hub_latency_ratio", clean_ratio, args.command),
        "legacy_vs_hub_p99_ratio": _ratio(clean["hub"]["p99_ms"], clean["legacy"]["p99_ms"]),
        "faults_latency_ratio": _ratio(faults["hub"]["p50_ms"], faults["legacy"]["p50_ms"]),
        "hub_error_rate": clean["hub"]["error_rate"],
        "legacy_error_rate": clean["legacy"]["error_rate"],
        "hub_error_rate_with_faults": faults["hub"]["error_rate"],
        "legacy_error_rate_with_faults": faults["legacy"]["error_rate"],
        "hub_extra_attempts_with_faults": faults["hub"]["extra_attempts_per_request"],
        "legacy_extra_attempts_with_faults": faults["legacy"]["extra_attempts_per_request"],
        **figures("hub_era_vs_hub_latency_ratio", era.pop("p50_ratio_rounds"), args.command),
        "hub_era": era,
        "hub_era_vs_hub_p99_ratio": _ratio(era["adapter"]["p99_ms"], era["direct"]["p99_ms"]),
    }


def show(report: dict[str, Any]) -> None:
    print(
        f"legacy vs hub: {report['requests_per_phase']} requests per phase, "
        f"{report['concurrency']} at a time, simulators at {report['simulated_latency_ms']} ms"
    )
    header = (
        f"{'phase':<8} {'path':<7} {'p50 ms':>9} {'p99 ms':>9} {'errors':>8} {'retries/req':>12}"
    )
    print(header)
    print("-" * len(header))
    for phase in ("clean", "faults"):
        for path in PATHS:
            row = report[phase][path]
            print(
                f"{phase:<8} {path:<7} {row['p50_ms']!s:>9} {row['p99_ms']!s:>9} "
                f"{row['error_rate']:>8.2%} {row['extra_attempts_per_request']:>12.3f}"
            )
    clean = report["legacy_vs_hub_latency_ratio"]["value"]
    low, high = report["legacy_vs_hub_latency_ratio_ci90"]["value"]
    met = "met" if clean <= 1.05 else "MISSED"
    print(f"\nhub/legacy p50 (clean): {clean} (90 % CI {low}-{high}; target <= 1.05: {met})")
    print(f"hub/legacy p99 (clean): {report['legacy_vs_hub_p99_ratio']}")
    print(f"hub/legacy p50 (faults): {report['faults_latency_ratio']}")
    hub_err = report["hub_error_rate_with_faults"]
    legacy_err = report["legacy_error_rate_with_faults"]
    verdict = (
        "met"
        if hub_err is not None and legacy_err is not None and hub_err <= legacy_err
        else "MISSED"
    )
    print(
        f"error rate under faults: hub {hub_err:.2%} vs legacy {legacy_err:.2%} "
        f"(target: hub fewer or equal: {verdict})"
    )
    era = report["hub_era"]
    era_ratio = report["hub_era_vs_hub_latency_ratio"]["value"]
    era_low, era_high = report["hub_era_vs_hub_latency_ratio_ci90"]["value"]
    era_met = "met" if era_ratio <= 1.05 else "MISSED"
    print(
        f"\nhub-era adapters vs the hub path: p50 {era['adapter']['p50_ms']} vs "
        f"{era['direct']['p50_ms']} ms, p99 {era['adapter']['p99_ms']} vs "
        f"{era['direct']['p99_ms']} ms, errors {era['adapter']['errors']} vs "
        f"{era['direct']['errors']}"
    )
    print(f"hub-era/hub p50: {era_ratio} (90 % CI {era_low}-{era_high}; target <= 1.05: {era_met})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run (smoke test)")
    parser.add_argument("--json", dest="json_path", default=None, help="write the figures here")
    parser.add_argument("--requests", type=int, default=None, help="requests per phase")
    parser.add_argument("--rounds", type=int, default=None, help="rounds for the p50 ratios")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    args = parser.parse_args()
    if args.requests is None:
        args.requests = 100 if args.quick else 1000
    if args.rounds is None:
        args.rounds = 7 if args.quick else 15
    args.command = "python benchmarks/legacy_vs_hub.py" + (" --quick" if args.quick else "")
    # the shim's runtimes use only these plugins; no user or file config leaks in
    os.environ.setdefault("GLEITZEIT_LOAD_PLUGINS", "ollama,breaker-consecutive,legacy")
    os.environ.pop("GLEITZEIT_CONFIG", None)
    os.environ.setdefault("XDG_CONFIG_HOME", tempfile.mkdtemp(prefix="gleitzeit-bench-"))
    report = asyncio.run(main_async(args))
    show(report)
    if args.json_path:
        write_json(args.json_path, report)
        print(f"\nwrote {args.json_path}", file=sys.stderr)


if __name__ == "__main__":
    main()
