"""Fault injection via /_sim/faults: each fault does what it says, and stats count requests."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import ollama
import pytest
from gleitzeit_ollama.sim import BUSY_MESSAGE, OllamaSimulator

GEN = {"model": "llama3.2", "prompt": "fault me"}


async def set_faults(http: aiohttp.ClientSession, sim: OllamaSimulator, **spec: Any) -> Any:
    async with http.post(f"{sim.url}/_sim/faults", json=spec) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def test_fault_endpoint_roundtrip(sim: OllamaSimulator, http: aiohttp.ClientSession) -> None:
    """POST merges fields, GET reads them back, DELETE clears; unknown fields are a 400."""
    await set_faults(http, sim, slow_ms=5)
    merged = await set_faults(http, sim, busy=True, paths=["/api/chat"])
    assert merged["slow_ms"] == 5
    assert merged["busy"] is True
    assert merged["paths"] == ["/api/chat"]
    async with http.get(f"{sim.url}/_sim/faults") as resp:
        assert await resp.json() == merged
    async with http.post(f"{sim.url}/_sim/faults", json={"explode": True}) as resp:
        assert resp.status == 400
        assert "explode" in (await resp.json())["error"]
    async with http.post(f"{sim.url}/_sim/faults", json={"error_rate": 2}) as resp:
        assert resp.status == 400
    async with http.delete(f"{sim.url}/_sim/faults") as resp:
        cleared = await resp.json()
    assert cleared["busy"] is False
    assert cleared["paths"] is None


async def test_error_rate_is_seeded(sim_factory: Any, http: aiohttp.ClientSession) -> None:
    """error_rate fails that share of inference requests with error_status; same seed, same run."""
    runs = []
    for sim in await sim_factory(2):
        await set_faults(http, sim, error_rate=0.5, error_status=502, error_message="boom", seed=7)
        statuses = []
        for _ in range(20):
            async with http.post(f"{sim.url}/api/generate", json=GEN | {"stream": False}) as r:
                statuses.append(r.status)
                if r.status == 502:
                    assert await r.json() == {"error": "boom"}
        runs.append(statuses)
        async with http.get(f"{sim.url}/api/tags") as resp:  # probes are not affected
            assert resp.status == 200
    assert runs[0] == runs[1]
    assert set(runs[0]) == {200, 502}


async def test_error_rate_scoped_to_paths(
    sim: OllamaSimulator, http: aiohttp.ClientSession
) -> None:
    """With paths, faults hit only the listed endpoints (here: chat fails, generate works)."""
    await set_faults(http, sim, error_rate=1.0, paths=["/api/chat"])
    chat = {"model": "llama3.2", "messages": [{"role": "user", "content": "x"}]}
    async with http.post(f"{sim.url}/api/chat", json=chat) as resp:
        assert resp.status == 500
    async with http.post(f"{sim.url}/api/generate", json=GEN) as resp:
        assert resp.status == 200


async def test_hang_released_by_clearing(sim: OllamaSimulator, http: aiohttp.ClientSession) -> None:
    """hang holds inference requests open until the fault is cleared; then they complete."""
    await set_faults(http, sim, hang=True)
    task = asyncio.create_task(http.post(f"{sim.url}/api/generate", json=GEN | {"stream": False}))
    done, _ = await asyncio.wait({task}, timeout=0.3)
    assert not done  # still held
    async with http.get(f"{sim.url}/api/version") as resp:  # probes still answer
        assert resp.status == 200
    async with http.delete(f"{sim.url}/_sim/faults") as resp:
        assert resp.status == 200
    async with asyncio.timeout(5):
        resp = await task
    assert resp.status == 200
    assert (await resp.json())["done"] is True
    resp.release()


async def test_hang_released_by_stop(
    sim_factory: Any, http: aiohttp.ClientSession, eventually: Any
) -> None:
    """stop() releases hung requests promptly (the client sees the connection drop)."""
    (sim,) = await sim_factory(1)
    sim.set_faults(hang=True, hang_probes=True)
    task = asyncio.create_task(http.get(f"{sim.url}/api/tags"))
    await eventually(lambda: sim.stats()["requests"].get("/api/tags"))
    async with asyncio.timeout(3):
        await sim.stop()
    with pytest.raises(aiohttp.ClientError):
        async with asyncio.timeout(3):
            await task


async def test_hang_gives_up_when_client_times_out(
    sim: OllamaSimulator, http: aiohttp.ClientSession, eventually: Any
) -> None:
    """A hung request ends when the client gives up; nothing stays in flight."""
    sim.set_faults(hang=True)
    timeout = aiohttp.ClientTimeout(total=0.2)
    with pytest.raises(asyncio.TimeoutError):
        async with http.post(f"{sim.url}/api/generate", json=GEN, timeout=timeout) as resp:
            await resp.read()
    await eventually(lambda: not sim.state.active)


async def test_slow_adds_latency(sim: OllamaSimulator, http: aiohttp.ClientSession) -> None:
    """slow_ms delays inference responses by at least that much."""
    sim.set_faults(slow_ms=150)
    loop = asyncio.get_running_loop()
    start = loop.time()
    async with http.post(f"{sim.url}/api/generate", json=GEN | {"stream": False}) as resp:
        assert resp.status == 200
    assert loop.time() - start >= 0.15


async def test_error_line_mid_stream(sim: OllamaSimulator, http: aiohttp.ClientSession) -> None:
    """error_line_after=N: status 200, N chunks, then an {"error"} line ends the stream."""
    sim.set_faults(error_line_after=3, error_message="runner died")
    async with http.post(f"{sim.url}/api/generate", json=GEN) as resp:
        assert resp.status == 200
        lines = [json.loads(x) for x in (await resp.read()).splitlines()]
    assert len(lines) == 4
    assert all(line["done"] is False for line in lines[:3])
    assert lines[3] == {"error": "runner died"}
    async with http.post(f"{sim.url}/api/generate", json=GEN | {"stream": False}) as resp:
        assert resp.status == 500
        assert await resp.json() == {"error": "runner died"}
    client = ollama.AsyncClient(host=sim.url, timeout=5)
    try:
        with pytest.raises(ollama.ResponseError, match="runner died"):
            async for _ in await client.generate(model="llama3.2", prompt="x", stream=True):
                pass
    finally:
        await client.close()


async def test_reset_after_chunks(sim: OllamaSimulator, http: aiohttp.ClientSession) -> None:
    """reset_after=N aborts the TCP connection after N chunks; the client sees a broken stream."""
    sim.set_faults(reset_after=2)
    received: list[bytes] = []

    async def read_stream() -> None:
        async with http.post(f"{sim.url}/api/generate", json=GEN) as resp:
            assert resp.status == 200
            async for line in resp.content:
                received.append(line)

    with pytest.raises(aiohttp.ClientError):
        await read_stream()
    assert len(received) <= 2
    assert sim.stats()["current"]["overall"] == 0


async def test_reset_before_response(sim: OllamaSimulator, http: aiohttp.ClientSession) -> None:
    """reset_after=0 drops the connection before any response bytes."""
    sim.set_faults(reset_after=0)
    with pytest.raises(aiohttp.ClientError):
        async with http.post(f"{sim.url}/api/chat", json=GEN) as resp:
            await resp.read()


async def test_busy(sim: OllamaSimulator, http: aiohttp.ClientSession) -> None:
    """busy answers every inference request with Ollama's 503 and counts the rejections."""
    sim.set_faults(busy=True)
    for path in ("/api/generate", "/api/embed"):
        async with http.post(f"{sim.url}{path}", json=GEN | {"input": "x"}) as resp:
            assert resp.status == 503
            assert await resp.json() == {"error": BUSY_MESSAGE}
    assert sim.stats()["rejected_503"] == 2


async def test_probes_down(sim: OllamaSimulator, http: aiohttp.ClientSession) -> None:
    """probes_down resets /, version, tags and ps connections while inference still works."""
    sim.set_faults(probes_down=True)
    for path in ("/", "/api/version", "/api/tags", "/api/ps"):
        with pytest.raises(aiohttp.ClientError):
            async with http.get(f"{sim.url}{path}") as resp:
                await resp.read()
    async with http.post(f"{sim.url}/api/generate", json=GEN | {"stream": False}) as resp:
        assert resp.status == 200


async def test_stats_count_requests_per_endpoint(
    sim: OllamaSimulator, http: aiohttp.ClientSession
) -> None:
    """/_sim/stats counts requests per path (control calls excluded) and names the instance."""
    for path in ("/", "/api/tags", "/api/tags", "/api/ps"):
        async with http.get(f"{sim.url}{path}") as resp:
            await resp.read()
    async with http.post(f"{sim.url}/api/generate", json=GEN | {"stream": False}) as resp:
        await resp.read()
    async with http.get(f"{sim.url}/_sim/stats") as resp:
        stats = await resp.json()
    assert stats["requests"] == {"/": 1, "/api/generate": 1, "/api/ps": 1, "/api/tags": 2}
    assert stats["name"] == "sim-0"
    assert stats["loaded"] == ["llama3.2:latest"]
    assert stats["started_at"].endswith("Z")


async def test_in_process_restart_same_port(
    sim: OllamaSimulator, http: aiohttp.ClientSession
) -> None:
    """stop() then start() on the same port serves again, with models cold (not loaded)."""
    async with http.post(f"{sim.url}/api/generate", json=GEN | {"stream": False}) as resp:
        assert resp.status == 200
    port = sim.port
    await sim.stop()
    with pytest.raises(aiohttp.ClientConnectionError):
        async with http.get(f"{sim.url}/api/version") as resp:
            await resp.read()
    assert await sim.start(port=port) == port
    async with http.get(f"{sim.url}/api/ps") as resp:
        assert (await resp.json())["models"] == []


async def test_graceful_stop_lets_stream_finish(
    sim_factory: Any, http: aiohttp.ClientSession, eventually: Any
) -> None:
    """stop(grace_s) lets an in-flight stream complete before shutting down."""
    (sim,) = await sim_factory(1, tokens_per_s=100.0, max_tokens=10)
    resp = await http.post(f"{sim.url}/api/generate", json=GEN)
    await eventually(lambda: sim.stats()["current"]["overall"] == 1)
    await sim.stop(grace_s=5.0)
    lines = [json.loads(x) for x in (await resp.read()).splitlines()]
    resp.release()
    assert lines[-1]["done"] is True
    assert len(lines) == 11


async def test_hostile_modes_and_bounds_of_the_fault_endpoint(
    sim: OllamaSimulator, http: aiohttp.ClientSession
) -> None:
    """An unknown hostile mode, a negative or ten-hour delay and a boolean delay are 400s
    naming the field; a known mode answers the targeted path with status 200 and a hostile
    body (here a proxy's HTML page), while other paths keep answering normally."""
    for bad in ({"hostile": "nice"}, {"slow_ms": -1}, {"drip_ms": 36_000_000}, {"slow_ms": True}):
        async with http.post(f"{sim.url}/_sim/faults", json=bad) as resp:
            assert resp.status == 400, bad
            assert next(iter(bad)) in (await resp.json())["error"]
    await set_faults(http, sim, hostile="wrong_content_type", paths=["/api/generate"])
    async with http.post(f"{sim.url}/api/generate", json=GEN) as resp:
        assert resp.status == 200
        assert resp.content_type == "text/html"
        assert b"Bad Gateway" in await resp.read()
    async with http.get(f"{sim.url}/api/tags") as resp:
        assert resp.status == 200
        assert (await resp.json())["models"]


async def test_deeply_nested_request_bodies_are_a_400(
    sim: OllamaSimulator, http: aiohttp.ClientSession
) -> None:
    """The simulator's own input: a body nested past Python's decoder is a 400, not a 500."""
    body = b'{"model":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    async with http.post(f"{sim.url}/api/generate", data=body) as resp:
        assert resp.status == 400
        assert "nested" in (await resp.json())["error"]
