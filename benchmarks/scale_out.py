#!/usr/bin/env python
"""Scale-out: what sharing state through Redis costs a request, and what replicas add.

Processes: three simulators (``SimProcess``, ``SIM_LATENCY_MS`` per answer), a private
``redis-server`` on a loopback port, and ``gleitzeit serve`` gateways over the three
simulators (each its own process and event loop); this script is the client (aiohttp).
Every request is a non-streamed ``/api/chat`` with a key that has ``requests_per_minute``
and ``max_concurrent`` (far above what the run asks for, so nothing is refused but both are
counted), and every instance has a ``num_parallel`` cap: with the Redis backend the request
meets Redis for the key's ``enter`` and ``take`` and for the instance's ``reserve``.

* latency: one gateway with the in-process backend (``local``) and one with ``redis``, the
  same config otherwise, at concurrency 16; interleaved rounds (>= 5), each round one batch
  per backend in alternating order. Per round, the ratio of the p50s (redis / local); the
  headline ``redis_vs_local_state_latency_ratio`` is the median over the rounds, with a 90 %
  bootstrap interval over the rounds (goal <= 1.10).
* throughput: three Redis-backed replicas; batches of requests at concurrency 48 spread over
  the first 1, 2 or 3 of them (interleaved rounds); requests per second for each
  (``scale_out_rps_1``, ``_2``, ``_3``) and ``scale_out_throughput_ratio_3_vs_1``. On one
  host the replicas share its CPUs with the client, the simulators and Redis: the figure says
  what one machine gains, not what three machines would.

    python benchmarks/scale_out.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
from gleitzeit_ollama.sim import SimConfig, SimProcess

from gleitzeit_core.testing.serve import GatewayProcess

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from _stats import write_json  # noqa: E402 - benchmarks/_stats.py

from tests.scaleout.redis_server import RedisServer  # noqa: E402

MODEL = "llama3.2"
SIM_LATENCY_MS = 10.0
CONCURRENCY = 16
THROUGHPUT_CONCURRENCY = 48
TOKEN = "bench-token"
CHAT = {
    "model": MODEL,
    "messages": [{"role": "user", "content": "hi"}],
    "stream": False,
    "options": {"num_predict": 4},
}


def start_sims() -> list[SimProcess]:
    sims = []
    for i in range(3):
        config = SimConfig(
            models=[MODEL],
            latency_ms=SIM_LATENCY_MS,
            tokens_per_s=0.0,  # unpaced: the answer follows the latency at once
            load_ms=0.0,
            max_tokens=4,
            num_parallel=64,
            max_queue=4096,
            keep_alive=-1.0,
            name=f"bench-{i}",
        )
        sims.append(SimProcess(config, host="127.0.0.1", port=0).start())
    return sims


def gateway_config(urls: list[str], state: str) -> str:
    """A gateway over the simulators with one limited key; ``state`` is the ``[state]`` table."""
    resources = "".join(
        f'[[hubs.llm.resources]]\nid = "s{i}"\nurl = "{url}"\nnum_parallel = 32\n'
        for i, url in enumerate(urls)
    )
    return f"""
[gateway.keys.bench]
token = "{TOKEN}"
requests_per_minute = 10000000
max_concurrent = 10000

[hubs.llm]
kind = "ollama"
discovery = ["static"]
request_timeout = 120.0
queue_timeout = 120.0

[hubs.llm.health]
interval = 5.0

{resources}
{state}
"""


def redis_state(url: str, namespace: str, replica: str) -> str:
    return (
        f'[state]\nbackend = "redis"\nurl = "{url}"\nnamespace = "{namespace}"\n'
        f'replica_id = "{replica}"\n'
    )


async def batch(
    http: aiohttp.ClientSession, urls: list[str], total: int, concurrency: int
) -> tuple[list[float], float, int]:
    """``total`` chats from ``concurrency`` workers, worker i on ``urls[i % len(urls)]``:
    (latencies in seconds, elapsed seconds, errors)."""
    remaining = total
    latencies: list[float] = []
    errors = 0
    headers = {"Authorization": f"Bearer {TOKEN}"}

    async def worker(url: str) -> None:
        nonlocal remaining, errors
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            async with http.post(f"{url}/api/chat", json=CHAT, headers=headers) as reply:
                await reply.read()
                if reply.status != 200:
                    errors += 1
                    continue
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker(urls[i % len(urls)]) for i in range(concurrency)))
    return latencies, time.perf_counter() - started, errors


def ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)


def interval90(values: list[float]) -> list[float]:
    """90 % bootstrap interval of the median of ``values``."""
    rng = random.Random(0)
    medians = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(1000))
    return [round(medians[50], 3), round(medians[949], 3)]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def latency(
    urls: dict[str, str], pids: dict[str, int], rounds: int, per_batch: int
) -> dict[str, Any]:
    names = list(urls)
    pooled: dict[str, list[float]] = {name: [] for name in names}
    ratios: list[float] = []
    cpu = dict.fromkeys(names, 0.0)
    errors = dict.fromkeys(names, 0)
    timeout = aiohttp.ClientTimeout(total=120)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
        for name in names:  # warm-up: connections, the models loaded, the scripts cached
            await batch(http, [urls[name]], CONCURRENCY * 4, CONCURRENCY)
        for r in range(rounds):
            p50: dict[str, float] = {}
            for name in names if r % 2 == 0 else names[::-1]:
                before = cpu_seconds(pids[name])
                seen, _, failed = await batch(http, [urls[name]], per_batch, CONCURRENCY)
                cpu[name] += cpu_seconds(pids[name]) - before
                errors[name] += failed
                pooled[name] += seen
                p50[name] = statistics.median(seen)
            ratios.append(p50["redis"] / p50["local"])
    return {
        "concurrency": CONCURRENCY,
        "rounds": rounds,
        "requests_per_batch": per_batch,
        "ratio_per_round": [round(x, 3) for x in ratios],
        "contenders": {
            name: {
                "p50_ms": ms(statistics.median(values)),
                "p99_ms": ms(sorted(values)[int(0.99 * (len(values) - 1))]),
                "requests": len(values),
                "errors": errors[name],
                "gateway_cpu_ms_per_request": round(cpu[name] * 1000 / len(values), 3),
            }
            for name, values in pooled.items()
        },
        "ratio": round(statistics.median(ratios), 3),
        "cpu_ratio": round(
            cpu["redis"] / len(pooled["redis"]) / (cpu["local"] / len(pooled["local"])), 3
        ),
        "ratio_ci90": interval90(ratios),
    }


async def throughput(replicas: list[str], rounds: int, per_batch: int) -> dict[str, Any]:
    rps: dict[int, list[float]] = {n: [] for n in (1, 2, 3)}
    errors = dict.fromkeys(rps, 0)
    timeout = aiohttp.ClientTimeout(total=120)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
        await batch(http, replicas, THROUGHPUT_CONCURRENCY * 2, THROUGHPUT_CONCURRENCY)
        for r in range(rounds):
            order = [1, 2, 3] if r % 2 == 0 else [3, 2, 1]
            for n in order:
                seen, elapsed, failed = await batch(
                    http, replicas[:n], per_batch, THROUGHPUT_CONCURRENCY
                )
                errors[n] += failed
                rps[n].append(len(seen) / elapsed)
    medians = {n: statistics.median(values) for n, values in rps.items()}
    return {
        "concurrency": THROUGHPUT_CONCURRENCY,
        "rounds": rounds,
        "requests_per_batch": per_batch,
        "rps": {str(n): round(v, 1) for n, v in medians.items()},
        "rps_per_round": {str(n): [round(x, 1) for x in v] for n, v in rps.items()},
        "errors": {str(n): v for n, v in errors.items()},
        "ratio_3_vs_1": round(medians[3] / medians[1], 3),
    }


async def run(quick: bool) -> dict[str, Any]:
    started = time.perf_counter()
    # many small interleaved batches: a busy machine's drift hits both backends alike
    rounds, per_batch = (12, 96) if quick else (30, 192)
    redis = RedisServer().start()
    sims: list[SimProcess] = []
    gateways: list[GatewayProcess] = []
    try:
        sims = start_sims()
        urls = [sim.url for sim in sims]
        with tempfile.TemporaryDirectory(prefix="gleitzeit-scale-out-") as folder:
            pids: dict[str, int] = {}

            def gateway(name: str, state: str, plugins: str) -> str:
                workdir = Path(folder) / name
                workdir.mkdir()
                process = GatewayProcess(gateway_config(urls, state), workdir, plugins=plugins)
                gateways.append(process.start())
                assert process.proc is not None
                pids[name] = process.proc.pid
                return process.url

            namespace = f"bench-{uuid.uuid4().hex[:8]}"
            contenders = {
                "local": gateway("local", "", "ollama"),
                "redis": gateway(
                    "redis", redis_state(redis.url, namespace, "solo"), "ollama,redis"
                ),
            }
            part1 = await latency(contenders, pids, rounds, per_batch)
            for process in gateways:
                process.stop()
            gateways.clear()
            namespace = f"bench-{uuid.uuid4().hex[:8]}"
            replicas = [
                gateway(f"r{i}", redis_state(redis.url, namespace, f"r{i}"), "ollama,redis")
                for i in range(3)
            ]
            await asyncio.sleep(1.5)  # a heartbeat or so: the replicas see each other
            part2 = await throughput(replicas, 3 if quick else 5, 320 if quick else 960)
    finally:
        for process in gateways:
            process.stop()
        for sim in sims:
            sim.terminate()
        redis.stop()
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "quick": quick,
        "sim_latency_ms": SIM_LATENCY_MS,
        "latency": part1,
        "throughput": part2,
        "seconds": round(time.perf_counter() - started, 1),
    }


def show(report: dict[str, Any]) -> None:
    part1, part2 = report["latency"], report["throughput"]
    print(
        f"Python {report['python']}, {report['cpus']} CPUs; simulators answer in "
        f"{report['sim_latency_ms']:g} ms"
    )
    print(
        f"\nLatency at concurrency {part1['concurrency']}: {part1['rounds']} rounds of "
        f"{part1['requests_per_batch']} requests per backend"
    )
    print(f"{'backend':10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'gateway CPU ms/req':>20}")
    for name, row in part1["contenders"].items():
        print(
            f"{name:10}{row['p50_ms']:>9.2f}{row['p99_ms']:>9.2f}{row['errors']:>8}"
            f"{row['gateway_cpu_ms_per_request']:>20.3f}"
        )
    print(f"p50 ratio per round: {part1['ratio_per_round']}")
    print(
        f"\nThroughput at concurrency {part2['concurrency']}, Redis backend, "
        f"{part2['rounds']} rounds of {part2['requests_per_batch']} requests"
    )
    for n, value in part2["rps"].items():
        print(f"{n} replica(s): {value:8.1f} req/s  (errors {part2['errors'][n]})")
    print()
    print(f"redis_vs_local_state_latency_ratio = {part1['ratio']} (90 % {part1['ratio_ci90']})")
    print(f"redis_vs_local_state_cpu_ratio = {part1['cpu_ratio']}")
    print(f"scale_out_throughput_ratio_3_vs_1 = {part2['ratio_3_vs_1']}")
    print(f"took {report['seconds']} s")


def figures(report: dict[str, Any]) -> dict[str, Any]:
    part1, part2 = report["latency"], report["throughput"]
    return {
        "redis_vs_local_state_latency_ratio": part1["ratio"],
        "redis_vs_local_state_latency_ratio_ci90": part1["ratio_ci90"],
        "redis_vs_local_state_cpu_ratio": part1["cpu_ratio"],
        "scale_out_rps_1": part2["rps"]["1"],
        "scale_out_rps_2": part2["rps"]["2"],
        "scale_out_rps_3": part2["rps"]["3"],
        "scale_out_throughput_ratio_3_vs_1": part2["ratio_3_vs_1"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (under a minute)")
    parser.add_argument("--json", dest="json_path", help="write the figures to this JSON file")
    args = parser.parse_args()
    report = asyncio.run(run(args.quick))
    show(report)
    if args.json_path:
        out = figures(report) | {key: report[key] for key in ("python", "quick", "seconds", "cpus")}
        out["scale_out_details"] = report
        write_json(args.json_path, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
