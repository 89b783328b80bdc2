"""The gateway under failure, over real loopback sockets: a simulator killed hard under 50
concurrent official clients costs none of them an error; a client that goes away ends its
upstream request on the instance and frees its slot in the hub."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import aiohttp
import ollama

from tests.gateway.conftest import (
    GatewayFactory,
    eventually,
    hub_table,
    killable_pool,
    sim_stats,
)
from tests.ollama.conftest import SimFactory, SimProcessFactory

CLIENTS = 50
PROMPTS = [f"prompt number {i}" for i in range(5)]


async def _client_loop(
    url: str,
    number: int,
    stop: asyncio.Event,
    expected: dict[str, str],
    done: list[int],
    errors: list[str],
) -> None:
    """One official client: chat, streamed generate and embed in turn until ``stop``; every
    answer is checked, every exception recorded."""
    operations = itertools.cycle(("chat", "stream", "embed"))
    async with ollama.AsyncClient(host=url, timeout=60) as client:
        for turn in itertools.count(number):
            if stop.is_set():
                return
            operation = next(operations)
            prompt = PROMPTS[turn % len(PROMPTS)]
            try:
                if operation == "chat":
                    answer = await client.chat(
                        "llama3.2", messages=[{"role": "user", "content": prompt}]
                    )
                    assert answer.done
                    assert answer.message.content == expected[prompt]
                elif operation == "stream":
                    parts = [
                        p async for p in await client.generate("llama3.2", prompt, stream=True)
                    ]
                    assert parts[-1].done
                    assert [p.done for p in parts].count(True) == 1
                    assert "".join(p.response for p in parts) == expected[prompt]
                else:
                    embedded = await client.embed("nomic-embed-text", prompt)
                    assert len(embedded.embeddings) == 1
                    assert len(embedded.embeddings[0]) == 384
            except Exception as exc:  # the property under test: there are none
                errors.append(f"client {number} {operation}: {type(exc).__name__}: {exc}")
                return
            done[0] += 1


async def test_fifty_clients_see_no_error_when_an_instance_is_killed(
    sim_process_factory: SimProcessFactory,
    gateway_factory: GatewayFactory,
    http: aiohttp.ClientSession,
) -> None:
    """50 official clients (chat, streamed generate, embed in a loop) through the gateway while
    one of three simulators is killed hard mid-run: no client sees an error or a wrong answer
    (streams cut by the kill resume elsewhere), the status shows the dead instance unhealthy or
    ejected, and the hub counted failovers."""
    procs, gateway = await killable_pool(
        sim_process_factory, gateway_factory, ["llama3.2", "nomic-embed-text"]
    )
    async with ollama.AsyncClient(host=procs[1].url, timeout=30) as direct:
        expected = {p: (await direct.generate("llama3.2", p)).response for p in PROMPTS}

    stop = asyncio.Event()
    done, errors = [0], []
    tasks = [
        asyncio.create_task(_client_loop(gateway.url, n, stop, expected, done, errors))
        for n in range(CLIENTS)
    ]
    try:
        victim = procs[0]
        await eventually(lambda: done[0] >= 150 or bool(errors), timeout=30)
        served_before = (await sim_stats(http, victim.url))["requests"]
        await victim.akill()
        killed_at = done[0]
        await eventually(lambda: done[0] >= killed_at + 300 or bool(errors), timeout=30)
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout=60)
    assert errors == []
    assert sum(served_before.get(p, 0) for p in ("/api/chat", "/api/generate", "/api/embed")) > 0

    async def dead_is_out() -> bool:
        status = await gateway.status()
        (dead,) = [r for r in status["hubs"][0]["resources"] if r["id"] == "s0"]
        return bool(dead["health"] == "unhealthy" or dead["ejected"])

    await eventually(dead_is_out, timeout=10)
    status = await gateway.status()
    hub = status["hubs"][0]
    assert hub["counters"]["failovers"] > 0
    assert {r["id"]: r["health"] for r in hub["resources"]}.keys() == {"s0", "s1", "s2"}
    await eventually(lambda: gateway.in_flight() == 0, timeout=5)


async def _current(http: aiohttp.ClientSession, url: str) -> int:
    return int((await sim_stats(http, url))["current"]["overall"])


async def test_a_client_leaving_mid_stream_ends_the_upstream_request(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    """A client that disconnects in the middle of a stream cancels it upstream: the instance
    stops generating (its ``current`` falls to 0) and the hub's in-flight count returns to 0,
    without counting a failure against the instance."""
    (slow,) = await sim_factory(1, models=["llama3.2"], tokens_per_s=5.0, max_tokens=200)
    gateway = await gateway_factory({"hubs": {"llm": hub_table([slow.url])}})
    async with aiohttp.ClientSession() as leaving:
        reply = await leaving.post(
            f"{gateway.url}/api/generate", json={"model": "llama3.2", "prompt": "take your time"}
        )
        assert reply.status == 200
        first = await reply.content.readline()
        assert b'"done":false' in first
        assert await _current(http, slow.url) == 1
        assert gateway.in_flight() == 1
        reply.close()  # drops the connection mid-stream

    async def upstream_idle() -> bool:
        return await _current(http, slow.url) == 0

    await eventually(upstream_idle, timeout=2)
    await eventually(lambda: gateway.in_flight() == 0, timeout=2)
    resource = (await gateway.status())["hubs"][0]["resources"][0]
    assert resource["metrics"]["failures"].get("cancelled") == 1
    assert set(resource["metrics"]["failures"]) == {"cancelled"}
    assert resource["health"] != "unhealthy"
    assert not resource["ejected"]
    # the instance and the gateway are fine: the next request is served
    async with ollama.AsyncClient(host=gateway.url, timeout=60) as client:
        answer = await client.generate("llama3.2", "short", options={"num_predict": 2})
    assert answer.done
    assert answer.eval_count == 2


async def test_a_client_leaving_a_non_streamed_call_ends_the_upstream_request(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    """A client that gives up on a non-streamed call (its answer still being computed) ends
    the request on the instance too, and the hub's in-flight count returns to 0."""
    (slow,) = await sim_factory(1, models=["llama3.2"], latency_ms=60_000.0)
    gateway = await gateway_factory({"hubs": {"llm": hub_table([slow.url])}})
    body: dict[str, Any] = {"model": "llama3.2", "prompt": "slow", "stream": False}

    async def ask() -> None:
        async with (
            aiohttp.ClientSession() as leaving,
            leaving.post(f"{gateway.url}/api/generate", json=body) as reply,
        ):
            await reply.read()

    task = asyncio.create_task(ask())

    async def upstream_busy() -> bool:
        return await _current(http, slow.url) == 1

    async def upstream_idle() -> bool:
        return await _current(http, slow.url) == 0

    await eventually(upstream_busy, timeout=5)
    assert gateway.in_flight() == 1
    task.cancel()  # the client's connection closes
    await asyncio.gather(task, return_exceptions=True)
    await eventually(upstream_idle, timeout=2)
    await eventually(lambda: gateway.in_flight() == 0, timeout=2)
