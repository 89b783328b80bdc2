"""LiteLLM used as a client, its ``ollama_chat/`` provider pointed at the gateway over three
simulators: a chat and a streamed chat both succeed with the pool's answer (and so does a chat
through its ``openai/`` provider on ``/v1``), and LiteLLM sends nothing off the machine while
doing it."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import ollama

from tests.gateway.conftest import Pool, run_child

SCRIPT = Path(__file__).resolve().parent / "litellm_client.py"


async def test_litellm_chat_and_streamed_chat_through_the_gateway(pool: Pool) -> None:
    """LiteLLM's chat and streamed chat through the gateway give exactly what a simulator says
    to the same question (the stream in several pieces), and its network guard blocked no
    connection outside loopback."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    out = await run_child(sys.executable, str(SCRIPT), pool.url, timeout=240, env=env)
    result = json.loads(out.decode().strip().splitlines()[-1])
    async with ollama.AsyncClient(host=pool.sims[0].url, timeout=20) as direct:
        question = [{"role": "user", "content": "why is the sky blue?"}]
        expected = (await direct.chat("llama3.2", messages=question)).message.content
    assert result["blocked"] == []
    assert result["chat"] == expected
    assert len([p for p in result["stream"] if p]) > 1
    assert "".join(result["stream"]) == expected
    assert result["openai"] == expected
