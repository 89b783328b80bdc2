"""The simulator's OpenAI-compatible ``/v1``, checked with the official ``openai`` client as its
``/api`` is checked with ``ollama``: the same deterministic answers in OpenAI's shapes, tool
calls for offered tools, JSON matching a requested schema, Ollama's error statuses; and its
model management (create from blobs, push, copy, delete) as the ``ollama`` client drives it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import jsonschema
import ollama
import openai
import pytest
from gleitzeit_ollama.sim import OllamaSimulator

QUESTION = [{"role": "user", "content": "hello there"}]
LOOKUP = {
    "type": "function",
    "function": {
        "name": "lookup",
        "parameters": {
            "type": "object",
            "properties": {
                "query": {"type": "string", "maxLength": 5},
                "limit": {"type": "integer", "minimum": 10, "maximum": 20},
                "when": {"type": "string", "format": "date"},
                "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 1},
            },
            "required": ["query", "limit", "when", "tags"],
        },
    },
}


@pytest.fixture
async def v1(sim: OllamaSimulator) -> AsyncIterator[openai.AsyncOpenAI]:
    """The official ``openai`` client on the simulator's ``/v1``."""
    async with openai.AsyncOpenAI(
        base_url=f"{sim.url}/v1", api_key="unused", max_retries=0, timeout=20
    ) as client:
        yield client


async def test_chat_is_the_api_answer_in_openai_shape(
    sim: OllamaSimulator, v1: openai.AsyncOpenAI
) -> None:
    """``/v1/chat/completions`` says what ``/api/chat`` says for the same conversation, with
    token usage from Ollama's counts; streamed, the deltas join to the same text and the usage
    chunk comes last."""
    async with ollama.AsyncClient(host=sim.url, timeout=20) as api:
        native = await api.chat("llama3.2", messages=QUESTION)
    answer = await v1.chat.completions.create(model="llama3.2", messages=QUESTION)
    assert answer.choices[0].message.content == native.message.content
    assert answer.usage is not None
    assert answer.usage.completion_tokens == native.eval_count
    # the prompt cache held the conversation from the first call: only one token evaluated
    assert answer.usage.prompt_tokens == 1 <= native.prompt_eval_count
    assert answer.system_fingerprint == "fp_ollama"
    stream = await v1.chat.completions.create(
        model="llama3.2", messages=QUESTION, stream=True, stream_options={"include_usage": True}
    )
    chunks = [c async for c in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
        native.message.content
    )
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None


async def test_tools_are_answered_with_calls_that_match_their_schema(
    v1: openai.AsyncOpenAI,
) -> None:
    """With tools offered the simulator calls one, its arguments valid for the tool's schema
    (bounds, formats, lengths included); the same request gives the same call."""
    first = await v1.chat.completions.create(model="llama3.2", messages=QUESTION, tools=[LOOKUP])
    again = await v1.chat.completions.create(model="llama3.2", messages=QUESTION, tools=[LOOKUP])
    (call,) = first.choices[0].message.tool_calls or []
    assert call.function.name == "lookup"  # type: ignore[union-attr]
    jsonschema.validate(
        json.loads(call.function.arguments),  # type: ignore[union-attr]
        LOOKUP["function"]["parameters"],  # type: ignore[index]
        format_checker=jsonschema.FormatChecker(),
    )
    assert first.choices[0].message.tool_calls == again.choices[0].message.tool_calls
    assert first.choices[0].finish_reason == "tool_calls"


async def test_json_schema_format_is_matched(v1: openai.AsyncOpenAI) -> None:
    """A ``json_schema`` response format (with ``$defs`` references, as pydantic writes them)
    gives JSON valid against it."""
    schema = {
        "$defs": {"Point": {"type": "object", "properties": {"x": {"type": "number"}}}},
        "type": "object",
        "properties": {"points": {"type": "array", "items": {"$ref": "#/$defs/Point"}}},
        "required": ["points"],
    }
    answer = await v1.chat.completions.create(
        model="llama3.2",
        messages=QUESTION,
        response_format={"type": "json_schema", "json_schema": {"name": "p", "schema": schema}},
    )
    jsonschema.validate(json.loads(answer.choices[0].message.content or ""), schema)


async def test_models_embeddings_and_errors(v1: openai.AsyncOpenAI) -> None:
    """Models list and retrieve; embeddings of a list; an unknown model is a 404 and a bad
    field a 400, both in OpenAI's error shape."""
    assert {m.id async for m in v1.models.list()} == {"llama3.2:latest", "nomic-embed-text:latest"}
    assert (await v1.models.retrieve("llama3.2")).id == "llama3.2"
    embedded = await v1.embeddings.create(model="nomic-embed-text", input=["a", "b"])
    assert [len(d.embedding) for d in embedded.data] == [384, 384]
    with pytest.raises(openai.NotFoundError):
        await v1.chat.completions.create(model="missing", messages=QUESTION)
    with pytest.raises(openai.NotFoundError):
        await v1.models.retrieve("missing")
    with pytest.raises(openai.BadRequestError) as caught:
        await v1.chat.completions.create(model="llama3.2", messages=QUESTION, temperature="x")  # type: ignore[arg-type]
    assert caught.value.body["type"] == "invalid_request_error"  # type: ignore[index]


async def test_create_from_blobs_push_copy_delete(sim: OllamaSimulator, tmp_path: Path) -> None:
    """The ``ollama`` client's create uploads its file as a blob (checked against its digest)
    and creates the model; push, copy and delete work on it; a wrong digest is refused."""
    data = b"GGUF fake weights"
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    async with ollama.AsyncClient(host=sim.url, timeout=20) as api:
        weights = tmp_path / "w.gguf"
        weights.write_bytes(data)
        assert await api.create_blob(weights) == digest  # HEAD 404, then POST
        progress = [
            p async for p in await api.create("mine", files={"w.gguf": digest}, stream=True)
        ]
        assert progress[-1].status == "success"
        assert "mine:latest" in {m.model for m in (await api.list()).models}
        derived = await api.create("mine-too", from_="mine", system="be brief")
        assert derived.status == "success"
        pushed = [p.status async for p in await api.push("mine", stream=True)]
        assert pushed[-1] == "success"
        assert (await api.copy("mine", "mine-copy")).status == "success"
        assert (await api.delete("mine")).status == "success"
        names = {m.model for m in (await api.list()).models}
        assert {"mine-too:latest", "mine-copy:latest"} <= names
        assert "mine:latest" not in names
        with pytest.raises(ollama.ResponseError):
            await api.create("other", files={"x": "sha256:" + "0" * 64})
    wrong = f"{sim.url}/api/blobs/sha256:{'1' * 64}"
    async with aiohttp.ClientSession() as http, http.post(wrong, data=data) as reply:
        assert reply.status == 400
        assert "digest mismatch" in (await reply.json())["error"]


async def test_faults_on_v1_fail_the_way_ollama_does(
    sim: OllamaSimulator, v1: openai.AsyncOpenAI
) -> None:
    """Faults reach ``/v1`` too: an error mid-stream is an OpenAI error event the client raises,
    the same fault on a whole answer is a 500 in OpenAI's error shape, busy is a 503."""
    sim.set_faults(error_line_after=2, paths=["/v1/chat/completions"])
    stream = await v1.chat.completions.create(model="llama3.2", messages=QUESTION, stream=True)
    with pytest.raises(openai.APIError, match="unexpected EOF"):
        _ = [chunk async for chunk in stream]
    with pytest.raises(openai.InternalServerError) as whole:
        await v1.chat.completions.create(model="llama3.2", messages=QUESTION)
    assert whole.value.body["type"] == "api_error"  # type: ignore[index]
    sim.set_faults(error_line_after=None, busy=True, paths=None)
    with pytest.raises(openai.APIStatusError) as busy:
        await v1.embeddings.create(model="nomic-embed-text", input="x")
    assert busy.value.status_code == 503
