#!/usr/bin/env python
"""Streams through the gateway: 1,000-token streamed chats through ``gleitzeit serve`` vs
straight to the simulator, at concurrency 1 and 16, interleaved in rounds.

One simulator process that streams as fast as it can (``tokens_per_s = 0``: the gateway's
per-chunk cost shows, not a model's pace), one gateway process over it, and this process as
the client: a lean ``aiohttp`` reader that counts the lines (``/api/chat``) or ``data:``
events (``/v1/chat/completions``) of each answer and notes when the first one arrived, so the
client's own cost per chunk stays small next to what it measures. Each round runs, per
concurrency, one block per contender in a rotating order; every figure is the median over
the rounds with a 90 % interval.

* ``gateway_stream_chunk_ratio``: chunks per second through the gateway over direct, at
  concurrency 16 (``/api/chat``); the same at concurrency 1 and for ``/v1`` under ``streams``;
* ``gateway_ttft_added_ms``: time to the first chunk through the gateway minus direct, p50 of
  each round's sequential block (concurrency 1, ``/api/chat``).

    python benchmarks/gateway_stream.py [--quick] [--json PATH]

``benchmarks/gateway.py`` runs this too (so ``run.py --only gateway`` has these keys).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from _stats import write_json
from gateway import bench_gateway, cpu_seconds, percentile, run_metadata, spread, start_sim
from gleitzeit_ollama.sim import SimProcess

MODEL = "llama3.2"
TOKENS = 1000
CONCURRENCY = 16
MESSAGES = [{"role": "user", "content": "stream me a long answer"}]
ROUTES = {
    "api": (
        "/api/chat",
        {"model": MODEL, "messages": MESSAGES, "options": {"num_predict": TOKENS}},
    ),
    "v1": (
        "/v1/chat/completions",
        {"model": MODEL, "messages": MESSAGES, "max_tokens": TOKENS, "stream": True},
    ),
}


async def one_stream(session: aiohttp.ClientSession, url: str, route: str) -> tuple[int, float]:
    """Stream one chat; (chunks, seconds to the first chunk)."""
    path, body = ROUTES[route]
    marker = b"\n" if route == "api" else b"data: "
    began = time.perf_counter()
    first = 0.0
    chunks = 0
    async with session.post(url + path, json=body) as response:
        if response.status != 200:
            raise RuntimeError(f"{url}{path}: HTTP {response.status}: {await response.text()}")
        async for data in response.content.iter_any():
            if not chunks:
                first = time.perf_counter() - began
            chunks += data.count(marker)
    return chunks, first


async def block(
    session: aiohttp.ClientSession, url: str, route: str, streams: int, concurrency: int
) -> tuple[float, list[float]]:
    """``streams`` chats by ``concurrency`` workers: (chunks per second, times to first)."""
    remaining = streams
    firsts: list[float] = []
    chunks = 0

    async def worker() -> None:
        nonlocal remaining, chunks
        while remaining > 0:
            remaining -= 1
            count, first = await one_stream(session, url, route)
            chunks += count
            firsts.append(first)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return chunks / (time.perf_counter() - began), firsts


async def measure_streams(
    sim_url: str, gateway_url: str, quick: bool, gateway_pid: int | None = None
) -> dict[str, Any]:
    urls = {"direct": sim_url, "gateway": gateway_url}
    rounds = 5 if quick else 9
    plan = [  # (route, concurrency, streams per block)
        ("api", 1, 6 if quick else 20),
        ("api", CONCURRENCY, 32 if quick else 96),
        ("v1", CONCURRENCY, 32 if quick else 96),
    ]
    rates: dict[tuple[str, int, str], list[float]] = {}
    ttft: dict[str, list[float]] = {name: [] for name in urls}
    cpu: list[float] = []
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        for route, concurrency, _ in plan:  # warm: connections, the model loaded
            for url in urls.values():
                await block(session, url, route, concurrency, concurrency)
        names = list(urls)
        for i in range(rounds):
            order = names if i % 2 == 0 else names[::-1]
            for route, concurrency, streams in plan:
                for name in order:
                    used = cpu_seconds(gateway_pid) if gateway_pid and name == "gateway" else 0
                    rate, firsts = await block(session, urls[name], route, streams, concurrency)
                    rates.setdefault((route, concurrency, name), []).append(rate)
                    if gateway_pid and name == "gateway" and route == "api" and concurrency > 1:
                        chunks = streams * (TOKENS + 1)  # tokens and the final chunk
                        cpu.append((cpu_seconds(gateway_pid) - used) / chunks * 1e6)
                    if route == "api" and concurrency == 1:
                        ttft[name].append(percentile(firsts, 0.5))
    figures: dict[str, Any] = {}
    for route, concurrency, _ in plan:
        gateway = rates[(route, concurrency, "gateway")]
        direct = rates[(route, concurrency, "direct")]
        figures[f"{route}_c{concurrency}"] = {
            "chunks_per_s": {
                "direct": round(sorted(direct)[len(direct) // 2]),
                "gateway": round(sorted(gateway)[len(gateway) // 2]),
            },
            "ratio": spread([g / d for g, d in zip(gateway, direct, strict=True)], 4),
        }
    added = spread(
        [(g - d) * 1000 for g, d in zip(ttft["gateway"], ttft["direct"], strict=True)], 3
    )
    headline = figures[f"api_c{CONCURRENCY}"]["ratio"]
    report: dict[str, Any] = {
        "gateway_stream_chunk_ratio": headline["median"],
        "gateway_stream_chunk_ratio_ci90": headline["interval_90"],
        "gateway_stream_chunk_ratio_c1": figures["api_c1"]["ratio"]["median"],
        "gateway_stream_chunk_ratio_v1": figures[f"v1_c{CONCURRENCY}"]["ratio"]["median"],
        "gateway_ttft_added_ms": added["median"],
        "gateway_ttft_added_ms_ci90": added["interval_90"],
        "streams": figures
        | {
            "tokens": TOKENS,
            "ttft_p50_ms": {
                name: round(sorted(v)[len(v) // 2] * 1000, 3) for name, v in ttft.items()
            },
        },
    }
    if cpu:
        report["gateway_stream_cpu_us_per_chunk"] = spread(cpu, 2)["median"]
    return report


def show(report: dict[str, Any]) -> None:
    streams = report["streams"]
    print(f"{TOKENS}-token streamed chats, direct vs through the gateway (chunks per second)")
    print(f"{'':32}{'direct':>10}{'gateway':>10}{'ratio':>8}  90 %")
    for key, label in (
        ("api_c1", "/api/chat, one at a time"),
        (f"api_c{CONCURRENCY}", f"/api/chat, concurrency {CONCURRENCY}"),
        (f"v1_c{CONCURRENCY}", f"/v1 stream, concurrency {CONCURRENCY}"),
    ):
        row = streams[key]
        rate = row["chunks_per_s"]
        print(
            f"{label:32}{rate['direct']:>10}{rate['gateway']:>10}"
            f"{row['ratio']['median']:>8.3f}  {row['ratio']['interval_90']}"
        )
    print(
        f"time to first chunk added: {report['gateway_ttft_added_ms']:.3f} ms "
        f"(90 % {report['gateway_ttft_added_ms_ci90']}); p50 direct "
        f"{streams['ttft_p50_ms']['direct']} ms, gateway {streams['ttft_p50_ms']['gateway']} ms"
    )
    if "gateway_stream_cpu_us_per_chunk" in report:
        print(f"gateway CPU per chunk: {report['gateway_stream_cpu_us_per_chunk']} us")


async def main(quick: bool) -> dict[str, Any]:
    started = time.perf_counter()
    sim: SimProcess | None = None
    gateway = None
    with tempfile.TemporaryDirectory(prefix="gleitzeit-bench-") as workdir:
        try:
            sim = await asyncio.to_thread(start_sim)  # it streams up to 1,000 tokens
            gateway = await asyncio.to_thread(bench_gateway(sim.url, Path(workdir)).start)
            pid = gateway.proc.pid if gateway.proc is not None else None
            figures = await measure_streams(sim.url, gateway.url, quick, pid)
        finally:
            if gateway is not None:
                await asyncio.to_thread(gateway.stop)
            if sim is not None:
                await asyncio.to_thread(sim.terminate)
    return figures | run_metadata(quick, started)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer streams (about 30 s)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        report = asyncio.run(main(args.quick))
        show(report)
        print(f"\n({report['seconds']} s)", file=sys.stderr)
        if args.json:
            write_json(args.json, report)
