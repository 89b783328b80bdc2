"""``llm/v1`` passes Ollama's newer request fields through: ``tools`` (the answer's
``tool_calls``, and a tool's result answered in words), ``format`` with a JSON schema (output
that validates), ``think`` (a thinking model's ``thinking``) and ``keep_alive`` (how long the
instance keeps the model), each checked before any instance is asked."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import aiohttp
import jsonschema
import pytest

from gleitzeit_core import InvalidParams
from tests.ollama.conftest import SimFactory
from tests.ollama.hub.conftest import RuntimeFactory
from tests.ollama.hub.support import MODEL, sim_stats

ADD = {
    "type": "function",
    "function": {
        "name": "add",
        "description": "Add two integers",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
        },
    },
}
SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
    "required": ["name", "age"],
}


async def test_tools_give_tool_calls_and_a_tool_result_gives_words(
    sim_factory: SimFactory, runtime_factory: RuntimeFactory
) -> None:
    """``llm/chat`` with ``tools`` answers with a call of the tool, its arguments valid for the
    tool's schema, whole and streamed; with the tool's result appended it answers in words."""
    (sim,) = await sim_factory(1, models=[MODEL])
    runtime = await runtime_factory([sim])
    messages = [{"role": "user", "content": "please add 2 and 3"}]
    offered = {"model": MODEL, "messages": messages, "tools": [ADD]}
    answer = await runtime.execute("llm/chat", offered)
    (call,) = answer["message"]["tool_calls"]
    assert call["function"]["name"] == "add"
    jsonschema.validate(call["function"]["arguments"], ADD["function"]["parameters"])  # type: ignore[index]
    stream = await runtime.execute("llm/chat", offered | {"stream": True})
    chunks = [c async for c in stream]
    streamed = [tc for c in chunks for tc in c["message"].get("tool_calls") or []]
    assert streamed == [call]
    followed = [
        *messages,
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "content": "5", "tool_name": "add"},
    ]
    final = await runtime.execute(
        "llm/chat", {"model": MODEL, "messages": followed, "tools": [ADD]}
    )
    assert final["message"]["content"]
    assert "tool_calls" not in final["message"]


async def test_format_schema_think_and_keep_alive_pass_through(
    sim_factory: SimFactory, runtime_factory: RuntimeFactory, http: aiohttp.ClientSession
) -> None:
    """A JSON-schema ``format`` gives output that validates; ``think`` gives a thinking model's
    reasoning; ``keep_alive`` reaches the instance (its ``/api/ps`` keeps the model that long)."""
    (sim,) = await sim_factory(1, models=[MODEL, "qwen3"])
    runtime = await runtime_factory([sim], health={"enabled": False})
    shaped = await runtime.execute(
        "llm/generate", {"model": MODEL, "prompt": "a person", "format": SCHEMA}
    )
    jsonschema.validate(json.loads(shaped["response"]), SCHEMA)
    chatted = await runtime.execute(
        "llm/chat",
        {"model": MODEL, "messages": [{"role": "user", "content": "x"}], "format": SCHEMA},
    )
    jsonschema.validate(json.loads(chatted["message"]["content"]), SCHEMA)
    thought = await runtime.execute(
        "llm/chat",
        {"model": "qwen3", "messages": [{"role": "user", "content": "why"}], "think": "high"},
    )
    assert thought["message"]["thinking"]
    await runtime.execute("llm/generate", {"model": MODEL, "prompt": "x", "keep_alive": "2h"})
    async with http.get(f"{sim.url}/api/ps") as reply:
        (entry,) = [m for m in (await reply.json())["models"] if m["name"].startswith(MODEL)]
    async with http.get(f"{sim.url}/api/ps") as reply:
        assert reply.status == 200

    left = datetime.fromisoformat(entry["expires_at"].replace("Z", "+00:00")) - datetime.now(UTC)
    assert 7000 < left.total_seconds() <= 7200


async def test_malformed_tools_are_refused_naming_the_field(
    sim_factory: SimFactory, runtime_factory: RuntimeFactory, http: aiohttp.ClientSession
) -> None:
    """A tool without a function name, or not a list, is ``InvalidParams`` naming
    ``params.tools``, and no instance is asked."""
    (sim,) = await sim_factory(1, models=[MODEL])
    runtime = await runtime_factory([sim])
    messages = [{"role": "user", "content": "x"}]
    for tools in ([{"type": "function", "function": {}}], [{"name": "add"}], {"add": ADD}):
        with pytest.raises(InvalidParams, match=r"params\.tools"):
            await runtime.execute(
                "llm/chat", {"model": MODEL, "messages": messages, "tools": tools}
            )
    with pytest.raises(InvalidParams, match=r"params\.think"):
        await runtime.execute("llm/chat", {"model": MODEL, "messages": messages, "think": "lots"})
    assert (await sim_stats(http, sim))["requests"].get("/api/chat", 0) == 0
