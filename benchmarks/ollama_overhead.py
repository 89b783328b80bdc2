#!/usr/bin/env python
"""What the Ollama hub costs over a bare aiohttp client, and how each strategy spreads load.

Part 1 sends the same non-streamed ``/api/generate`` requests through the hub (``Runtime`` +
the ``llm/v1`` provider: validation, model-aware lease, failover wrapper, JSON) and through a
bare ``aiohttp`` session, against one simulator running in its own process, interleaved in
one run: at concurrency 1 (latency) and 32 (throughput).

Part 2 runs a pool of three simulators answering in 10, 30 and 90 ms under each strategy and
reports p50/p99 and the share of requests each instance got.

    python benchmarks/ollama_overhead.py [--quick] [--json PATH]

JSON keys: ``hub_vs_raw_latency_ratio`` (concurrency 1, p50 hub / p50 raw: the median over ten
blocks of paired requests), ``hub_vs_raw_throughput_ratio`` (concurrency 32, hub / raw: the
median over rounds of one batch each), each with its 90 % interval (``..._ci90``), ``overhead``
(all figures of part 1) and ``strategies`` (part 2, per strategy).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from _stats import figures, ratio, write_json  # benchmarks/_stats.py
from gateway import ms, percentile  # benchmarks/gateway.py
from gleitzeit_ollama.sim import SimConfig, SimProcess

from gleitzeit_core._runtime import Runtime

MODEL = "llama3.2"
TOKENS = 8
STRATEGIES = (
    "round_robin",
    "random",
    "least_loaded",
    "p2c",
    "peak_ewma",
    "least_latency",
    "model_aware",
)
HUB_PARAMS = {"model": MODEL, "prompt": "benchmark me", "max_tokens": TOKENS}
RAW_BODY = {
    "model": MODEL,
    "prompt": "benchmark me",
    "stream": False,
    "options": {"num_predict": TOKENS},
}

Call = Callable[[], Awaitable[Any]]


def start_sim(name: str, latency_ms: float, num_parallel: int) -> SimProcess:
    config = SimConfig(
        models=[MODEL],
        latency_ms=latency_ms,
        tokens_per_s=0.0,  # unpaced: the answer comes right after the latency
        load_ms=0.0,
        max_tokens=TOKENS,
        num_parallel=num_parallel,
        max_queue=4096,
        keep_alive=-1.0,
        name=name,
    )
    return SimProcess(config, host="127.0.0.1", port=0).start()


async def preload(session: aiohttp.ClientSession, url: str) -> None:
    body = {"model": MODEL, "keep_alive": -1}
    async with session.post(f"{url}/api/generate", json=body) as response:
        response.raise_for_status()
        await response.read()


def runtime_for(
    urls: list[str],
    strategy: str | dict[str, Any],
    num_parallel: int,
    state: dict[str, Any] | None = None,
) -> Runtime:
    """A runtime with one Ollama hub over ``urls``; ``strategy`` is a name or an options table;
    ``state``: a ``[state]`` table (a shared backend), else the in-process one."""
    return Runtime.from_config(
        {
            **({"state": state} if state is not None else {}),
            "hubs": {
                "llm": {
                    "kind": "ollama",
                    "discovery": ["static"],
                    "strategy": strategy,
                    "seed": 1,
                    "request_timeout": 120.0,
                    "queue_timeout": 120.0,
                    "health": {"interval": 5.0, "timeout": 2.0},
                    "resources": [
                        {"id": f"s{i}", "url": url, "num_parallel": num_parallel}
                        for i, url in enumerate(urls)
                    ],
                }
            },
        }
    )


async def batch(call: Call, total: int, concurrency: int) -> tuple[float, list[float]]:
    """Run ``total`` calls with ``concurrency`` workers; (elapsed seconds, latencies)."""
    remaining = total
    latencies: list[float] = []

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started, latencies


def summary(latencies: list[float], elapsed: float) -> dict[str, float]:
    return {
        "requests": len(latencies),
        "p50_ms": ms(percentile(latencies, 0.50)),
        "p99_ms": ms(percentile(latencies, 0.99)),
        "throughput_rps": round(len(latencies) / elapsed, 1),
    }


async def overhead(quick: bool) -> dict[str, Any]:
    """Part 1: hub vs bare client, interleaved, concurrency 1 and 32."""
    sim = await asyncio.to_thread(start_sim, "overhead", 20.0, 64)
    try:
        runtime = runtime_for([sim.url], "p2c", 64)
        connector = aiohttp.TCPConnector(limit=256)
        async with runtime, aiohttp.ClientSession(connector=connector) as session:
            await preload(session, sim.url)
            url = f"{sim.url}/api/generate"
            payload = json.dumps(RAW_BODY).encode()
            headers = {"Content-Type": "application/json"}

            async def raw() -> Any:
                async with session.post(url, data=payload, headers=headers) as response:
                    return json.loads(await response.read())

            async def hub() -> Any:
                return await runtime.execute("llm/generate", HUB_PARAMS)

            for call in (raw, hub):  # warm both paths: connections, caches, JIT-free but fair
                await batch(call, 100, 8)

            # concurrency 1: alternate the two paths request by request
            single: dict[str, list[float]] = {"hub": [], "raw": []}
            rounds = 150 if quick else 600
            for i in range(rounds):
                order = (("hub", hub), ("raw", raw)) if i % 2 == 0 else (("raw", raw), ("hub", hub))
                for name, call in order:
                    started = time.perf_counter()
                    await call()
                    single[name].append(time.perf_counter() - started)

            # concurrency 32: alternate batches, one pair per round
            many: dict[str, list[float]] = {"hub": [], "raw": []}
            spent = {"hub": 0.0, "raw": 0.0}
            per_round: dict[str, list[float]] = {"hub": [], "raw": []}
            size = 256 if quick else 1280
            for i in range(6 if quick else 10):
                order = (("hub", hub), ("raw", raw)) if i % 2 == 0 else (("raw", raw), ("hub", hub))
                for name, call in order:
                    elapsed, latencies = await batch(call, size, 32)
                    spent[name] += elapsed
                    per_round[name].append(size / elapsed)
                    many[name].extend(latencies)
    finally:
        await asyncio.to_thread(sim.terminate)
    c1 = {name: summary(values, sum(values)) for name, values in single.items()}
    c32 = {name: summary(many[name], spent[name]) for name in many}
    # concurrency 1: the paired requests cut into blocks (rounds); p50 hub / p50 raw of each
    blocks = 10
    size1 = len(single["hub"]) // blocks
    p50 = {
        name: [statistics.median(values[b * size1 : (b + 1) * size1]) for b in range(blocks)]
        for name, values in single.items()
    }
    return {
        "latency_ratio_c1_p50_spread": ratio(p50["hub"], p50["raw"]),
        "throughput_ratio_c32_spread": ratio(per_round["hub"], per_round["raw"]),
        "sim_latency_ms": 20.0,
        "concurrency_1": c1,
        "concurrency_32": c32,
        "latency_ratio_c1_p50": round(c1["hub"]["p50_ms"] / c1["raw"]["p50_ms"], 4),
        "latency_ratio_c1_p99": round(c1["hub"]["p99_ms"] / c1["raw"]["p99_ms"], 4),
        "latency_ratio_c32_p50": round(c32["hub"]["p50_ms"] / c32["raw"]["p50_ms"], 4),
        "throughput_ratio_c32": round(
            c32["hub"]["throughput_rps"] / c32["raw"]["throughput_rps"], 4
        ),
    }


async def strategies(quick: bool) -> dict[str, Any]:
    """Part 2: three instances at 10/30/90 ms under every strategy."""
    latencies_ms = (10.0, 30.0, 90.0)
    sims = [
        await asyncio.to_thread(start_sim, f"pool-{int(lat)}ms", lat, 8) for lat in latencies_ms
    ]
    results: dict[str, Any] = {}
    try:
        urls = [sim.url for sim in sims]
        async with aiohttp.ClientSession() as session:
            for url in urls:
                await preload(session, url)
        total = 240 if quick else 1200
        for strategy in STRATEGIES:
            runtime = runtime_for(urls, strategy, 8)
            served: Counter[str] = Counter()

            async def call(rt: Runtime = runtime, counts: Counter[str] = served) -> None:
                reply = await rt.execute("llm/generate", HUB_PARAMS)
                counts[reply["gleitzeit"]["instance"]] += 1

            async with runtime:
                await batch(call, 24, 12)  # let latency-aware strategies measure everyone
                served.clear()
                elapsed, values = await batch(call, total, 12)
            figures = summary(values, elapsed)
            figures["share"] = {
                f"s{i} ({int(lat)} ms)": round(served[f"s{i}"] / total, 3)
                for i, lat in enumerate(latencies_ms)
            }
            results[strategy] = figures
    finally:
        for sim in sims:
            await asyncio.to_thread(sim.terminate)
    return results


def show(report: dict[str, Any]) -> None:
    over = report["overhead"]
    print(f"Hub vs bare aiohttp, one simulator at {over['sim_latency_ms']:g} ms (non-streamed)")
    print(f"{'':18}{'p50 ms':>10}{'p99 ms':>10}{'req/s':>10}")
    for level in ("concurrency_1", "concurrency_32"):
        for name in ("raw", "hub"):
            row = over[level][name]
            label = f"c={level.split('_')[1]:<3} {name}"
            print(
                f"{label:18}{row['p50_ms']:>10.2f}{row['p99_ms']:>10.2f}{row['throughput_rps']:>10.1f}"
            )
    print(
        f"ratios hub/raw: latency c=1 p50 {over['latency_ratio_c1_p50']:.3f}, "
        f"p99 {over['latency_ratio_c1_p99']:.3f}; c=32 p50 {over['latency_ratio_c32_p50']:.3f}; "
        f"throughput c=32 {over['throughput_ratio_c32']:.3f} (all requests pooled)"
    )
    for key in ("hub_vs_raw_latency_ratio", "hub_vs_raw_throughput_ratio"):
        low, high = report[f"{key}_ci90"]["value"]
        print(
            f"{key} = {report[key]['value']:.3f} (median of rounds; 90 % CI {low:.3f}-{high:.3f})"
        )
    print()
    print("Pool of three simulators (10/30/90 ms), concurrency 12, num_parallel 8 each")
    print(f"{'strategy':15}{'p50 ms':>9}{'p99 ms':>9}{'req/s':>9}   share 10/30/90 ms")
    for name, row in report["strategies"].items():
        shares = " / ".join(f"{v:.2f}" for v in row["share"].values())
        print(
            f"{name:15}{row['p50_ms']:>9.2f}{row['p99_ms']:>9.2f}{row['throughput_rps']:>9.1f}"
            f"   {shares}"
        )


async def main(quick: bool) -> dict[str, Any]:
    started = time.perf_counter()
    over = await overhead(quick)
    pool = await strategies(quick)
    command = "python benchmarks/ollama_overhead.py" + (" --quick" if quick else "")
    latency = over.pop("latency_ratio_c1_p50_spread")
    throughput = over.pop("throughput_ratio_c32_spread")
    return {
        **figures("hub_vs_raw_latency_ratio", latency, command),
        **figures("hub_vs_raw_throughput_ratio", throughput, command),
        "overhead": over,
        "strategies": pool,
        "quick": quick,
        "seconds": round(time.perf_counter() - started, 1),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests (under a minute)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args()
    os.environ.setdefault("GLEITZEIT_LOAD_PLUGINS", "ollama")  # measure this plugin alone
    report = asyncio.run(main(args.quick))
    show(report)
    print(f"\n({report['seconds']} s)", file=sys.stderr)
    if args.json:
        write_json(args.json, report)
