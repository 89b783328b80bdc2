"""``prefix_affinity`` behind the gateway: streamed ``/api/chat`` turns of a conversation land
on the instance that holds their prompt in its cache, and the strategy learns from the final
chunks."""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from tests.gateway.conftest import GatewayFactory, start_pool
from tests.ollama.conftest import SimFactory

MODEL = "llama3.2"
SYSTEM = "You explain how requests are routed across a pool of servers, briefly. " * 10


async def streamed_chat(
    http: aiohttp.ClientSession, url: str, messages: list[dict[str, str]]
) -> tuple[str, dict[str, Any], str]:
    """(instance header, final chunk, answer text) of one streamed chat through the gateway."""
    async with http.post(f"{url}/api/chat", json={"model": MODEL, "messages": messages}) as reply:
        assert reply.status == 200, await reply.text()
        instance = reply.headers["X-Gleitzeit-Instance"]
        chunks = [json.loads(line) for line in (await reply.read()).splitlines() if line]
    text = "".join(chunk["message"]["content"] for chunk in chunks)
    return instance, chunks[-1], text


async def test_streamed_turns_follow_their_cache(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    """Three conversations of four streamed turns each, through the gateway: each stays on
    one instance and every later turn evaluates only its new tokens there; the status shows
    the strategy's hits learned from the streams' final chunks."""
    pool = await start_pool(
        sim_factory,
        gateway_factory,
        models=[[MODEL]] * 3,
        hub={"strategy": {"kind": "prefix_affinity", "block_chars": 64}},
    )
    for number in range(3):
        messages = [{"role": "system", "content": f"Conversation {number}. {SYSTEM}"}]
        instances = set()
        for turn in range(4):
            messages.append({"role": "user", "content": f"What happens in step {turn}?"})
            instance, final, text = await streamed_chat(http, pool.url, messages)
            instances.add(instance)
            if turn > 0:
                assert final["prompt_eval_count"] <= 6, final
            messages.append({"role": "assistant", "content": text})
        assert len(instances) == 1, instances
    status = await pool.gateway.status()
    counters = status["hubs"][0]["counters"]
    assert counters["prefix_affine"] == 3 * 3
    assert counters["prefix_hits"] == 3 * 3
    assert counters["prefix_index_bytes"] <= counters["prefix_index_max_bytes"]
    picks = [r["details"]["strategy"]["picks"] for r in status["hubs"][0]["resources"]]
    assert sum(picks) == 3 * 4
