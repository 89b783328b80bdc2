"""Per-model concurrency: NUM_PARALLEL running, FIFO queue, MAX_QUEUE -> 503 busy."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from gleitzeit_ollama.sim import BUSY_MESSAGE


async def _generate(http: aiohttp.ClientSession, url: str, prompt: str) -> tuple[int, Any]:
    body = {"model": "llama3.2", "prompt": prompt, "stream": False}
    async with http.post(f"{url}/api/generate", json=body) as resp:
        return resp.status, await resp.json()


async def test_num_parallel_caps_running(sim_factory: Any, http: aiohttp.ClientSession) -> None:
    """With num_parallel=2, 10 concurrent requests never have more than 2 running."""
    (sim,) = await sim_factory(1, num_parallel=2, tokens_per_s=400.0)
    results = await asyncio.gather(*(_generate(http, sim.url, f"p{i}") for i in range(10)))
    assert [status for status, _ in results] == [200] * 10
    async with http.get(f"{sim.url}/_sim/stats") as resp:
        stats = await resp.json()
    assert stats["max_concurrency"]["models"] == {"llama3.2:latest": 2}
    assert stats["max_concurrency"]["overall"] == 2
    assert stats["current"]["overall"] == 0
    assert stats["queued"]["overall"] == 0
    assert stats["requests"]["/api/generate"] == 10


async def test_queue_is_fifo_and_observable(
    sim_factory: Any, http: aiohttp.ClientSession, eventually: Any
) -> None:
    """Waiting requests show up as queued and are served in arrival order."""
    (sim,) = await sim_factory(1, num_parallel=1, tokens_per_s=200.0)
    order: list[int] = []

    async def one(i: int) -> None:
        await _generate(http, sim.url, f"q{i}")
        order.append(i)

    first = asyncio.create_task(one(0))
    await eventually(lambda: sim.stats()["current"]["overall"] == 1)
    rest = []
    for i in range(1, 4):
        rest.append(asyncio.create_task(one(i)))
        # wait until it is queued so the arrival order is unambiguous
        await eventually(lambda i=i: sim.stats()["queued"]["overall"] == i)
    assert sim.stats()["queued"]["models"] == {"llama3.2:latest": 3}
    await asyncio.gather(first, *rest)
    assert order == [0, 1, 2, 3]


async def test_max_queue_rejects_with_503(sim_factory: Any, http: aiohttp.ClientSession) -> None:
    """num_parallel=1, max_queue=2: beyond 1 running + 2 waiting, requests get 503 busy."""
    (sim,) = await sim_factory(1, num_parallel=1, max_queue=2, tokens_per_s=100.0)
    results = await asyncio.gather(*(_generate(http, sim.url, f"b{i}") for i in range(6)))
    statuses = sorted(status for status, _ in results)
    assert statuses == [200, 200, 200, 503, 503, 503]
    busy = [body for status, body in results if status == 503]
    assert all(body == {"error": BUSY_MESSAGE} for body in busy)
    assert BUSY_MESSAGE == "server busy, please try again.  maximum pending requests exceeded"
    assert sim.stats()["rejected_503"] == 3


async def test_models_have_separate_slots(sim_factory: Any, http: aiohttp.ClientSession) -> None:
    """Slots are per model: one chat and one embed run at the same time with num_parallel=1."""
    (sim,) = await sim_factory(1, num_parallel=1, tokens_per_s=200.0)
    chat = {"model": "llama3.2", "messages": [{"role": "user", "content": "x"}], "stream": False}
    embed = {"model": "nomic-embed-text", "input": ["a"] * 3}

    async def post(path: str, body: dict[str, Any]) -> int:
        async with http.post(f"{sim.url}{path}", json=body) as resp:
            await resp.read()
            return resp.status

    assert await asyncio.gather(post("/api/chat", chat), post("/api/embed", embed)) == [200, 200]
    peaks = sim.stats()["max_concurrency"]
    assert peaks["models"] == {"llama3.2:latest": 1, "nomic-embed-text:latest": 1}
    assert peaks["overall"] == 2


async def test_stats_reset(sim: Any, http: aiohttp.ClientSession) -> None:
    """POST /_sim/stats/reset zeroes request counts, peaks and 503 counts."""
    await _generate(http, sim.url, "x")
    async with http.post(f"{sim.url}/_sim/stats/reset") as resp:
        stats = await resp.json()
    assert stats["requests"] == {}
    assert stats["max_concurrency"] == {"overall": 0, "models": {}}
    assert stats["rejected_503"] == 0
    assert stats["loaded"] == ["llama3.2:latest"]
