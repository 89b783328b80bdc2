"""Ollama's newer request fields through the gateway with the official ``ollama`` client:
``tools`` in ``/api/chat`` (tool calls whose arguments match the tool's schema, streamed too),
structured outputs (``format`` with a JSON schema), ``think`` and ``keep_alive`` reach the
instance and come back as that instance answers them."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import aiohttp
import jsonschema
import ollama

from tests.gateway.conftest import GatewayFactory, start_pool
from tests.ollama.conftest import SimFactory

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["c", "f"]},
            },
            "required": ["city", "unit"],
        },
    },
}
PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "hobbies": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["name", "age", "hobbies"],
}


async def test_tools_format_think_and_keep_alive_through_the_gateway(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    """Through the gateway: tools give a tool call valid for the tool's schema (the same call
    whole and streamed); a JSON-schema ``format`` gives output valid for it; ``think`` gives a
    thinking model's reasoning, whole and streamed; ``keep_alive`` is what the serving instance
    keeps the model loaded for."""
    pool = await start_pool(
        sim_factory, gateway_factory, [["llama3.2", "qwen3"], ["llama3.2"], ["llama3.2"]]
    )
    question = [{"role": "user", "content": "how is get_weather in Oslo?"}]
    async with ollama.AsyncClient(host=pool.url, timeout=20) as client:
        answer = await client.chat("llama3.2", messages=question, tools=[WEATHER])
        (call,) = answer.message.tool_calls or []
        assert call.function.name == "get_weather"
        jsonschema.validate(dict(call.function.arguments), WEATHER["function"]["parameters"])  # type: ignore[index]
        streamed = [
            tc
            async for part in await client.chat(
                "llama3.2", messages=question, tools=[WEATHER], stream=True
            )
            for tc in part.message.tool_calls or []
        ]
        assert [tc.function for tc in streamed] == [call.function]

        shaped = await client.chat("llama3.2", messages=question, format=PERSON)
        jsonschema.validate(json.loads(shaped.message.content or ""), PERSON)
        generated = await client.generate("llama3.2", "a person", format=PERSON)
        jsonschema.validate(json.loads(generated.response), PERSON)

        thought = await client.chat("qwen3", messages=question, think=True)
        assert thought.message.thinking
        parts = [
            p async for p in await client.chat("qwen3", messages=question, think=True, stream=True)
        ]
        assert "".join(p.message.thinking or "" for p in parts) == thought.message.thinking

        await client.generate("qwen3", "x", keep_alive="3h")
    async with http.get(f"{pool.sims[0].url}/api/ps") as reply:
        loaded = {m["name"]: m["expires_at"] for m in (await reply.json())["models"]}
    expires = datetime.fromisoformat(loaded["qwen3:latest"].replace("Z", "+00:00"))
    assert 3 * 3600 - 200 < (expires - datetime.now(UTC)).total_seconds() <= 3 * 3600
