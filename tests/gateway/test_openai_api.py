"""The OpenAI-compatible ``/v1`` routes of the gateway, driven by the official ``openai`` client
over real loopback sockets with three simulators behind it: every answer is what one simulator's
own ``/v1`` gives, streams arrive chunk by chunk with usage at the end, tool calls and structured
outputs keep their schemas, errors have OpenAI's shape with Ollama's statuses, and a simulator
killed under 50 concurrent clients costs none of them an error."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import struct
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import jsonschema
import openai
import pydantic
import pytest

from tests.gateway.conftest import (
    GatewayFactory,
    Pool,
    diverging_pool,
    eventually,
    killable_pool,
    preload,
    set_faults,
    sim_stats,
    start_pool,
)
from tests.ollama.conftest import SimFactory, SimProcessFactory

QUESTION = [{"role": "user", "content": "why is the sky blue?"}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "minLength": 1},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "days", "unit"],
            "additionalProperties": False,
        },
    },
}
TIME_TOOL = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}},
    },
}


def client(url: str, timeout: float = 30, api_key: str = "unused") -> openai.AsyncOpenAI:
    """The official client for ``url``; no retries, so every failure is seen."""
    return openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=api_key, max_retries=0, timeout=timeout)


@pytest.fixture
async def gateway_client(pool: Pool) -> AsyncIterator[openai.AsyncOpenAI]:
    """The official client pointed at the gateway of the three-simulator pool."""
    async with client(pool.url) as c:
        yield c


@pytest.fixture
async def direct_client(pool: Pool) -> AsyncIterator[openai.AsyncOpenAI]:
    """The official client pointed at the first simulator's own ``/v1``."""
    async with client(pool.sims[0].url) as c:
        yield c


def _comparable(answer: Any) -> dict[str, Any]:
    """What must be equal between two answers to the same request: not ids or times."""
    data = answer.model_dump()
    for field in ("id", "created", "gleitzeit"):
        data.pop(field, None)
    # the prompt tokens evaluated depend on what that instance's prompt cache already held
    for field in ("prompt_tokens", "total_tokens"):
        (data.get("usage") or {}).pop(field, None)
    for choice in data.get("choices") or ():
        for call in (choice.get("message") or {}).get("tool_calls") or ():
            call.pop("id", None)
    return dict(data)


# -- models ---------------------------------------------------------------------------------------
async def test_models_lists_the_pool_once_each_and_retrieves_one(
    pool: Pool, gateway_client: openai.AsyncOpenAI
) -> None:
    """``models.list`` names every model of the pool once (OpenAI's model objects);
    ``models.retrieve`` answers for a model one instance has and 404s for one none has."""
    listed = [m async for m in gateway_client.models.list()]
    ids = [m.id for m in listed]
    assert sorted(ids) == ["llama3.2:latest", "nomic-embed-text:latest", "qwen2.5:latest"]
    assert all(m.object == "model" and m.owned_by == "library" and m.created > 0 for m in listed)
    model = await gateway_client.models.retrieve("qwen2.5")
    assert (model.id, model.object, model.owned_by) == ("qwen2.5", "model", "library")
    with pytest.raises(openai.NotFoundError) as caught:
        await gateway_client.models.retrieve("no-such-model")
    assert caught.value.status_code == 404
    assert caught.value.body["type"] == "not_found_error"  # type: ignore[index]


# -- chat -----------------------------------------------------------------------------------------
async def test_chat_answers_what_an_instance_answers(
    gateway_client: openai.AsyncOpenAI, direct_client: openai.AsyncOpenAI
) -> None:
    """A chat through the gateway is the answer a simulator's own ``/v1`` gives, with usage,
    ``max_tokens`` honoured (``finish_reason: length``) and ``stop``, ``seed``, ``temperature``
    and ``top_p`` accepted."""
    kwargs: dict[str, Any] = {
        "model": "llama3.2",
        "messages": QUESTION,
        "seed": 3,
        "temperature": 0,
        "top_p": 0.5,
        "stop": ["\n\n"],
    }
    through = await gateway_client.chat.completions.create(**kwargs)
    direct = await direct_client.chat.completions.create(**kwargs)
    assert _comparable(through) == _comparable(direct)
    assert through.object == "chat.completion"
    assert through.choices[0].message.role == "assistant"
    assert through.choices[0].message.content
    assert through.choices[0].finish_reason == "stop"
    assert through.usage is not None
    assert through.usage.completion_tokens == 8

    capped = await gateway_client.chat.completions.create(
        model="llama3.2", messages=QUESTION, max_completion_tokens=3
    )
    assert capped.choices[0].finish_reason == "length"
    assert capped.usage is not None
    assert capped.usage.completion_tokens == 3
    legacy = await gateway_client.chat.completions.create(
        model="llama3.2", messages=QUESTION, max_tokens=3
    )
    assert legacy.choices[0].message.content == capped.choices[0].message.content
    assert legacy.choices[0].message.content != through.choices[0].message.content


async def test_streamed_chat_arrives_as_produced_with_usage_last(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    """A streamed chat reaches the client chunk by chunk while the instance is still
    generating (the first chunk is in hand while the simulator reports the request running);
    joined, the deltas are the whole answer; with ``include_usage`` the last chunk has no
    choices and the usage; the wire ends with ``data: [DONE]``."""
    slow = await start_pool(
        sim_factory, gateway_factory, sim={"tokens_per_s": 4.0, "max_tokens": 8}
    )
    async with client(slow.url) as gateway, client(slow.sims[0].url) as direct:
        whole = await direct.chat.completions.create(model="llama3.2", messages=QUESTION)
        stream = await gateway.chat.completions.create(
            model="llama3.2",
            messages=QUESTION,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = []
        running_at_first = None
        async for chunk in stream:
            chunks.append(chunk)
            if running_at_first is None and chunk.choices and chunk.choices[0].delta.content:
                stats = [await sim_stats(http, s.url) for s in slow.sims]
                running_at_first = sum(s["current"]["overall"] for s in stats)
    assert running_at_first == 1  # the instance had not finished when the first chunk came
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert len({c.id for c in chunks}) == 1
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    *content, final, usage = chunks
    assert final.choices[0].finish_reason == "stop"
    assert [c.choices[0].finish_reason for c in content] == [None] * len(content)
    assert usage.choices == []
    assert usage.usage is not None
    assert usage.usage.completion_tokens == 8
    assert usage.usage.total_tokens == usage.usage.prompt_tokens + 8

    body = {"model": "llama3.2", "messages": QUESTION, "stream": True}
    async with http.post(f"{slow.url}/v1/chat/completions", json=body) as reply:
        assert reply.status == 200
        assert reply.headers["Content-Type"].startswith("text/event-stream")
        raw = await reply.text()
    events = [e for e in raw.split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    assert all(e.startswith("data: ") for e in events)
    assert "usage" not in json.loads(events[-2][len("data: ") :])  # not asked for: none


async def test_every_reasoning_effort_ollama_takes_is_served_and_streams_end_bare(
    gateway_client: openai.AsyncOpenAI,
) -> None:
    """The ``reasoning_effort`` values Ollama's ``/v1`` accepts (OpenAI's ``minimal`` and
    Ollama's ``max``, ``xhigh``, ``ultra`` too) are served, not refused; a streamed chat's
    finish chunk carries an empty delta, as OpenAI's do."""
    for effort in ("minimal", "max", "xhigh"):
        answer = await gateway_client.chat.completions.create(
            model="llama3.2",
            messages=QUESTION,
            extra_body={"reasoning_effort": effort},
        )
        assert answer.choices[0].message.content
    stream = await gateway_client.chat.completions.create(
        model="llama3.2", messages=QUESTION, stream=True
    )
    chunks = [chunk async for chunk in stream]
    final = chunks[-1].choices[0]
    assert final.finish_reason is not None
    assert final.delta.model_dump(exclude_none=True) == {}


async def test_completions_plain_and_streamed(
    gateway_client: openai.AsyncOpenAI, direct_client: openai.AsyncOpenAI
) -> None:
    """``/v1/completions`` answers what an instance answers, whole and streamed, ending with
    a usage chunk when asked."""
    through = await gateway_client.completions.create(
        model="llama3.2", prompt="once upon a time", max_tokens=5
    )
    direct = await direct_client.completions.create(
        model="llama3.2", prompt="once upon a time", max_tokens=5
    )
    assert _comparable(through) == _comparable(direct)
    assert through.choices[0].finish_reason == "length"
    stream = await gateway_client.completions.create(
        model="llama3.2",
        prompt="once upon a time",
        max_tokens=5,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c async for c in stream]
    assert "".join(c.choices[0].text for c in chunks if c.choices) == through.choices[0].text
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 5


# -- tools and structured output -------------------------------------------------------------------
async def test_tool_calls_match_the_tool_schema_and_the_answer_follows(
    gateway_client: openai.AsyncOpenAI,
) -> None:
    """Offered tools, the model calls the one the prompt names, with arguments that validate
    against its parameter schema (``finish_reason: tool_calls``), whole and streamed alike;
    given the tool's result it answers in words."""
    messages: list[Any] = [{"role": "user", "content": "What is get_weather in Paris?"}]
    answer = await gateway_client.chat.completions.create(
        model="llama3.2", messages=messages, tools=[TIME_TOOL, WEATHER_TOOL]
    )
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls or []
    assert call.type == "function"
    assert call.id
    assert call.function.name == "get_weather"
    arguments = json.loads(call.function.arguments)
    jsonschema.validate(arguments, WEATHER_TOOL["function"]["parameters"])  # type: ignore[index]

    stream = await gateway_client.chat.completions.create(
        model="llama3.2", messages=messages, tools=[TIME_TOOL, WEATHER_TOOL], stream=True
    )
    chunks = [c async for c in stream]
    calls = [tc for c in chunks for tc in (c.choices[0].delta.tool_calls or [])]
    assert [(tc.index, tc.function.name) for tc in calls] == [(0, "get_weather")]  # type: ignore[union-attr]
    assert json.loads(calls[0].function.arguments) == arguments  # type: ignore[union-attr, arg-type]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"

    messages += [
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": '{"temperature": 21}'},
    ]
    final = await gateway_client.chat.completions.create(
        model="llama3.2", messages=messages, tools=[TIME_TOOL, WEATHER_TOOL]
    )
    assert final.choices[0].finish_reason == "stop"
    assert final.choices[0].message.content
    assert not final.choices[0].message.tool_calls


class City(pydantic.BaseModel):
    name: str
    population: int
    landmarks: list[str]
    capital: bool


async def test_json_schema_output_validates(gateway_client: openai.AsyncOpenAI) -> None:
    """``response_format: json_schema`` gives JSON that validates against the schema (also as
    the client's own ``parse`` into a pydantic model, strict schema and all);
    ``json_object`` gives a JSON object."""
    schema = {
        "type": "object",
        "properties": {
            "colour": {"type": "string", "enum": ["blue", "red"]},
            "reasons": {"type": "array", "items": {"type": "string"}, "minItems": 1},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        },
        "required": ["colour", "reasons", "confidence"],
    }
    answer = await gateway_client.chat.completions.create(
        model="llama3.2",
        messages=QUESTION,
        response_format={"type": "json_schema", "json_schema": {"name": "sky", "schema": schema}},
    )
    content = answer.choices[0].message.content
    assert content is not None
    jsonschema.validate(json.loads(content), schema)

    parsed = await gateway_client.chat.completions.parse(
        model="llama3.2", messages=QUESTION, response_format=City
    )
    city = parsed.choices[0].message.parsed
    assert isinstance(city, City)
    assert city.landmarks

    plain = await gateway_client.chat.completions.create(
        model="llama3.2", messages=QUESTION, response_format={"type": "json_object"}
    )
    assert isinstance(json.loads(plain.choices[0].message.content or ""), dict)


# -- embeddings -----------------------------------------------------------------------------------
async def test_embeddings_of_a_list_in_order(
    pool: Pool, gateway_client: openai.AsyncOpenAI, http: aiohttp.ClientSession
) -> None:
    """Embedding a list gives one vector per input, in order, equal to the instance's own
    ``/api/embed`` vectors - as floats and as the client's default base64 alike."""
    texts = ["first text", "second text", "third"]
    as_base64 = await gateway_client.embeddings.create(model="nomic-embed-text", input=texts)
    as_floats = await gateway_client.embeddings.create(
        model="nomic-embed-text", input=texts, encoding_format="float"
    )
    async with http.post(
        f"{pool.sims[0].url}/api/embed", json={"model": "nomic-embed-text", "input": texts}
    ) as reply:
        expected = (await reply.json())["embeddings"]
    assert [d.index for d in as_floats.data] == [0, 1, 2]
    assert [d.embedding for d in as_floats.data] == expected
    for got, want in zip(as_base64.data, expected, strict=True):
        assert got.embedding == pytest.approx(want, abs=1e-6)  # float32 on the wire
    assert as_floats.usage.prompt_tokens > 0
    body = {"model": "nomic-embed-text", "input": texts, "encoding_format": "base64"}
    async with http.post(f"{pool.url}/v1/embeddings", json=body) as reply:
        raw = (await reply.json())["data"]
    packed = base64.b64decode(raw[1]["embedding"])  # little-endian float32, as OpenAI sends
    assert list(struct.unpack(f"<{len(packed) // 4}f", packed)) == pytest.approx(expected[1])
    one = await gateway_client.embeddings.create(
        model="nomic-embed-text", input="first text", encoding_format="float"
    )
    assert one.data[0].embedding == expected[0]


# -- errors ---------------------------------------------------------------------------------------
async def test_unknown_model_is_a_404_in_openai_shape(
    gateway_client: openai.AsyncOpenAI, http: aiohttp.ClientSession, pool: Pool
) -> None:
    """A model no instance has is a 404 ``not_found_error`` with Ollama's message, for chat,
    completions and embeddings, and no instance is asked to run it."""
    for call in (
        gateway_client.chat.completions.create(model="nope", messages=QUESTION),
        gateway_client.chat.completions.create(model="nope", messages=QUESTION, stream=True),
        gateway_client.completions.create(model="nope", prompt="x"),
        gateway_client.embeddings.create(model="nope", input="x"),
    ):
        with pytest.raises(openai.NotFoundError) as caught:
            await call
        error = caught.value.body
        assert isinstance(error, dict)
        assert error["type"] == "not_found_error"
        assert error["message"] == 'model "nope" not found, try pulling it first'
    for sim in pool.sims:
        requests = (await sim_stats(http, sim.url))["requests"]
        assert "/api/chat" not in requests
        assert "/api/generate" not in requests


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"model": "llama3.2"}, "messages"),
        ({"model": "llama3.2", "messages": []}, "messages"),
        ({"messages": QUESTION}, "model is required"),
        ({"model": "llama3.2", "messages": QUESTION, "temperature": "hot"}, "temperature"),
        ({"model": "llama3.2", "messages": [{"role": "user", "content": 5}]}, "messages[0]"),
        ({"model": "llama3.2", "messages": QUESTION, "stop": [1]}, "stop"),
        ({"model": "llama3.2", "messages": QUESTION, "n": 2}, "n:"),
        (
            {"model": "llama3.2", "messages": QUESTION, "response_format": {"type": "xml"}},
            "response_format.type",
        ),
        (
            {
                "model": "llama3.2",
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image_url", "image_url": {"url": "http://10.0.0.1/x.png"}}
                        ],
                    }
                ],
            },
            "data: URI",
        ),
    ],
)
async def test_bad_chat_requests_are_400s_naming_the_field(
    pool: Pool, http: aiohttp.ClientSession, body: dict[str, Any], named: str
) -> None:
    """A malformed chat request is a 400 ``invalid_request_error`` naming what is wrong; it
    reaches no instance (an image URL is refused, never fetched)."""
    async with http.post(f"{pool.url}/v1/chat/completions", json=body) as reply:
        assert reply.status == 400
        error = (await reply.json())["error"]
    assert error["type"] == "invalid_request_error"
    assert named in error["message"]
    for sim in pool.sims:
        assert "/api/chat" not in (await sim_stats(http, sim.url))["requests"]


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/chat/completions", {"messages": QUESTION}, "model"),
        ("/v1/chat/completions", {"model": "llama3.2", "messages": []}, "messages"),
        ("/v1/chat/completions", {"model": "llama3.2", "messages": QUESTION, "n": 3}, "n"),
        (
            "/v1/chat/completions",
            {"model": "llama3.2", "messages": [{"role": "user", "content": 5}]},
            "messages[0].content",
        ),
        (
            "/v1/chat/completions",
            {"model": "llama3.2", "messages": QUESTION, "stream_options": {"include_usage": 1}},
            "stream_options.include_usage",
        ),
        ("/v1/embeddings", {"model": "nomic-embed-text", "input": [1, 2]}, "input"),
        ("/v1/completions", {"model": "llama3.2", "prompt": "x", "max_tokens": "x"}, "max_tokens"),
    ],
)
async def test_a_400_names_the_field_in_param(
    pool: Pool, http: aiohttp.ClientSession, path: str, body: dict[str, Any], param: str
) -> None:
    """A 400 for one field carries that field in ``param``, as OpenAI's errors do, so a
    client can point at it without parsing the message."""
    async with http.post(pool.url + path, json=body) as reply:
        assert reply.status == 400
        error = (await reply.json())["error"]
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"


async def test_unreadable_bodies_are_400s_in_openai_shape(
    pool: Pool, http: aiohttp.ClientSession
) -> None:
    """A body that is not JSON, or not an object, is a 400 in OpenAI's error shape."""
    for raw in (b"{not json", b"[1, 2]", b""):
        async with http.post(
            f"{pool.url}/v1/embeddings", data=raw, headers={"Content-Type": "application/json"}
        ) as reply:
            assert reply.status == 400
            error = (await reply.json())["error"]
            assert error["type"] == "invalid_request_error"
            assert error["message"]


async def test_keys_scope_the_v1_routes_as_they_scope_api(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    """With gateway keys, the client's ``api_key`` is its key: a key for ``llama3.2*`` lists
    only those models and is refused the others with a 403 (``PermissionDeniedError``) before
    any instance is asked; a key without ``llm/embed`` is refused embeddings; a wrong key is
    a 401 (``AuthenticationError``)."""
    keys = {
        "limited": {"token": "limited-token", "models": ["llama3.2*"]},
        "chat-only": {"token": "chat-token", "methods": ["llm/chat"]},
    }
    pool = await start_pool(sim_factory, gateway_factory, keys=keys)
    async with client(pool.url, api_key="limited-token") as c:
        assert [m.id async for m in c.models.list()] == ["llama3.2:latest"]
        answer = await c.chat.completions.create(model="llama3.2", messages=QUESTION)
        assert answer.choices[0].message.content
        with pytest.raises(openai.PermissionDeniedError):
            await c.chat.completions.create(model="qwen2.5", messages=QUESTION)
        with pytest.raises(openai.PermissionDeniedError):
            await c.chat.completions.create(model="qwen2.5", messages=QUESTION, stream=True)
        with pytest.raises(openai.PermissionDeniedError):
            await c.embeddings.create(model="nomic-embed-text", input="x")
        with pytest.raises(openai.PermissionDeniedError) as refused:
            await c.models.retrieve("qwen2.5")
        assert refused.value.body["type"] == "permission_error"  # type: ignore[index]
    async with client(pool.url, api_key="chat-token") as c:
        assert (await c.chat.completions.create(model="qwen2.5", messages=QUESTION)).choices
        with pytest.raises(openai.PermissionDeniedError):
            await c.embeddings.create(model="nomic-embed-text", input="x")
        with pytest.raises(openai.PermissionDeniedError):
            await c.completions.create(model="llama3.2", prompt="x")
    async with client(pool.url, api_key="wrong") as c:
        with pytest.raises(openai.AuthenticationError):
            await c.chat.completions.create(model="llama3.2", messages=QUESTION)
    stats = [await sim_stats(http, s.url) for s in pool.sims]
    assert sum(s["requests"].get("/api/chat", 0) for s in stats) == 2  # the two allowed chats
    assert not any("/api/embed" in s["requests"] for s in stats)


# -- failover -------------------------------------------------------------------------------------
async def test_a_broken_stream_resumes_on_another_instance(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    """A ``/v1`` stream whose instance resets mid-way continues on another instance that
    repeats what the client already has: the client sees one whole answer ending in ``stop``
    (and ``[DONE]``); the hub counts the resume."""
    pool = await start_pool(sim_factory, gateway_factory, [["llama3.2"], ["llama3.2"]])
    broken, healthy = pool.sims
    await preload(http, broken.url, "llama3.2")  # the hub prefers the instance with it loaded
    await pool.gateway.hub().refresh_models()
    await set_faults(http, broken.url, reset_after=3)
    async with client(healthy.url) as direct, client(pool.url) as gateway:
        expected = await direct.chat.completions.create(model="llama3.2", messages=QUESTION)
        stream = await gateway.chat.completions.create(
            model="llama3.2", messages=QUESTION, stream=True
        )
        chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == expected.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert pool.gateway.hub().counters["stream_resumes"] == 1
    assert (await sim_stats(http, broken.url))["requests"]["/api/chat"] >= 1


async def test_a_stream_that_cannot_resume_ends_with_an_error_event(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    """When no other instance would repeat the answer (another seed), the gateway splices
    nothing: after the chunks already sent comes an OpenAI error event and no ``[DONE]``, which
    the official client raises as an ``APIError``."""
    gateway = await diverging_pool(sim_factory, gateway_factory, http)
    body = {"model": "llama3.2", "messages": QUESTION, "stream": True}
    async with http.post(f"{gateway.url}/v1/chat/completions", json=body) as reply:
        events = [e for e in (await reply.text()).split("\n\n") if e]
    assert len(events) == 4
    error = json.loads(events[-1].removeprefix("data: "))["error"]
    assert "unexpected EOF" in error["message"]
    assert error["type"] == "api_error"
    async with client(gateway.url) as c:
        stream = await c.chat.completions.create(model="llama3.2", messages=QUESTION, stream=True)
        with pytest.raises(openai.APIError, match="unexpected EOF"):
            _ = [chunk async for chunk in stream]


async def test_fifty_openai_clients_see_no_error_when_an_instance_is_killed(
    sim_process_factory: SimProcessFactory,
    gateway_factory: GatewayFactory,
    http: aiohttp.ClientSession,
) -> None:
    """50 official ``openai`` clients chatting (whole and streamed, in turn) through the gateway
    while one of three simulators is killed hard mid-run: none sees an error or a wrong answer
    (streams the kill cut resume on another instance), and the hub counted failovers."""
    # 20 tokens/s: an answer takes 0.4 s, so the kill cuts several streams mid-way
    procs, gateway = await killable_pool(
        sim_process_factory, gateway_factory, ["llama3.2"], tokens_per_s=20.0
    )
    prompts = [f"question number {i}" for i in range(5)]
    async with client(procs[1].url) as direct:
        expected = {}
        for prompt in prompts:
            answer = await direct.chat.completions.create(
                model="llama3.2", messages=[{"role": "user", "content": prompt}]
            )
            expected[prompt] = answer.choices[0].message.content

    stop = asyncio.Event()
    done, errors = [0], []

    async def one_client(number: int) -> None:
        async with client(gateway.url, timeout=60) as c:
            turn = number
            while not stop.is_set():
                prompt = prompts[turn % len(prompts)]
                messages: Any = [{"role": "user", "content": prompt}]
                try:
                    if turn % 2:
                        stream = await c.chat.completions.create(
                            model="llama3.2", messages=messages, stream=True
                        )
                        parts = [p async for p in stream]
                        text = "".join(p.choices[0].delta.content or "" for p in parts)
                        assert parts[-1].choices[0].finish_reason == "stop"
                    else:
                        answer = await c.chat.completions.create(
                            model="llama3.2", messages=messages
                        )
                        text = answer.choices[0].message.content or ""
                    assert text == expected[prompt]
                except Exception as exc:  # the property under test: there are none
                    errors.append(f"client {number}: {type(exc).__name__}: {exc}")
                    return
                done[0] += 1
                turn += 1

    tasks = [asyncio.create_task(one_client(n)) for n in range(50)]
    for task in tasks:  # a client that fails outside its try block is an error too
        task.add_done_callback(
            lambda t: t.cancelled() or t.exception() is None or errors.append(repr(t.exception()))
        )
    try:
        await eventually(lambda: done[0] >= 150 or bool(errors), timeout=60)
        served = (await sim_stats(http, procs[0].url))["requests"].get("/api/chat", 0)
        await procs[0].akill()
        killed_at = done[0]
        await eventually(lambda: done[0] >= killed_at + 300 or bool(errors), timeout=60)
    finally:
        stop.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout=60)
    assert errors == []
    assert served > 0
    status = await gateway.status()
    assert status["hubs"][0]["counters"]["failovers"] > 0
