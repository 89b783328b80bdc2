"""The Ollama API on the gateway, driven by the official ``ollama`` client over real loopback
sockets, with three simulators behind it: every route answers what the simulators would, merged
where the pool has many instances; errors have Ollama's shapes; auth, body limits and fuzzed
bodies never get a 5xx or take the server down."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

import aiohttp
import ollama
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gleitzeit_core
from tests.gateway.conftest import (
    LOOPBACK,
    GatewayFactory,
    Pool,
    diverging_pool,
    hub_table,
    json_values,
    preload,
    set_faults,
    sim_stats,
    start_pool,
)
from tests.ollama.conftest import SimFactory

CHAT = [{"role": "user", "content": "why is the sky blue?"}]


def client(url: str, **kwargs: Any) -> ollama.AsyncClient:
    return ollama.AsyncClient(host=url, timeout=20, **kwargs)


async def lines(reply: aiohttp.ClientResponse) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (await reply.text()).splitlines() if line.strip()]


# -- information routes ---------------------------------------------------------------------------
async def test_root_version_and_head(pool: Pool, http: aiohttp.ClientSession) -> None:
    """``/`` says Ollama is running (GET and HEAD); ``/api/version`` gives the pool's lowest
    Ollama version, gleitzeit's version and each instance's."""
    async with http.get(f"{pool.url}/") as reply:
        assert reply.status == 200
        assert await reply.text() == "Ollama is running"
    for path in ("/", "/api/version", "/api/tags"):
        async with http.head(f"{pool.url}{path}") as reply:
            assert reply.status == 200, path
    async with http.get(f"{pool.url}/api/version") as reply:
        version = await reply.json()
    assert version["version"] == "0.12.0"
    assert version["gleitzeit"]["version"] == gleitzeit_core.__version__
    assert version["gleitzeit"]["instances"] == {"s0": "0.12.0", "s1": "0.12.0", "s2": "0.12.0"}


async def test_list_merges_every_instance(pool: Pool, http: aiohttp.ClientSession) -> None:
    """``list`` shows each installed model once, and the raw answer names every instance that
    has it."""
    async with client(pool.url) as ollama_client:
        listed = await ollama_client.list()
    names = [m.model for m in listed.models]
    assert sorted(names) == ["llama3.2:latest", "nomic-embed-text:latest", "qwen2.5:latest"]
    assert all(m.digest and m.size and m.details and m.details.family for m in listed.models)
    async with http.get(f"{pool.url}/api/tags") as reply:
        raw = await reply.json()
    where = {m["model"]: m["gleitzeit"]["instances"] for m in raw["models"]}
    assert where == {
        "llama3.2:latest": ["s0", "s1", "s2"],
        "nomic-embed-text:latest": ["s0", "s2"],
        "qwen2.5:latest": ["s1"],
    }
    assert "gleitzeit" not in raw  # every instance answered


async def test_ps_merges_loaded_models(pool: Pool, http: aiohttp.ClientSession) -> None:
    """``ps`` shows each loaded model once and says on which instances it is loaded."""
    s0, s1, _ = pool.sims
    await preload(http, s0.url, "llama3.2")
    await preload(http, s1.url, "llama3.2")
    await preload(http, s1.url, "qwen2.5")
    async with client(pool.url) as ollama_client:
        running = await ollama_client.ps()
    assert sorted(m.model for m in running.models) == ["llama3.2:latest", "qwen2.5:latest"]
    assert all(m.expires_at is not None and m.size_vram for m in running.models)
    async with http.get(f"{pool.url}/api/ps") as reply:
        raw = await reply.json()
    where = {m["model"]: m["gleitzeit"] for m in raw["models"]}
    assert where["llama3.2:latest"]["instances"] == ["s0", "s1"]
    assert set(where["llama3.2:latest"]["expires_at"]) == {"s0", "s1"}
    assert where["qwen2.5:latest"]["instances"] == ["s1"]


async def test_tags_name_unreachable_instances(pool: Pool, http: aiohttp.ClientSession) -> None:
    """An instance that does not answer is left out of the merge and named as unreachable."""
    await pool.sims[1].stop()
    async with http.get(f"{pool.url}/api/tags") as reply:
        assert reply.status == 200
        raw = await reply.json()
    assert sorted(m["model"] for m in raw["models"]) == [
        "llama3.2:latest",
        "nomic-embed-text:latest",
    ]
    assert list(raw["gleitzeit"]["unreachable"]) == ["s1"]


async def test_show_comes_from_an_instance_with_the_model(pool: Pool) -> None:
    """``show`` answers from an instance that has the model; a model nobody has is a 404."""
    async with client(pool.url) as ollama_client:
        shown = await ollama_client.show("qwen2.5")
        assert shown.details is not None
        assert shown.details.family == "qwen2"
        assert shown.capabilities == ["completion"]
        with pytest.raises(ollama.ResponseError) as missing:
            await ollama_client.show("no-such-model")
    assert missing.value.status_code == 404
    assert "not found" in missing.value.error


# -- inference ------------------------------------------------------------------------------------
async def test_chat_and_generate_answer_what_a_simulator_would(pool: Pool) -> None:
    """Non-streamed and streamed chat and generate through the gateway say exactly what a
    simulator says directly; streams arrive chunk by chunk and end with ``done``."""
    async with client(pool.url) as gateway, client(pool.sims[0].url) as direct:
        chat = await gateway.chat("llama3.2", messages=CHAT)
        expected_chat = await direct.chat("llama3.2", messages=CHAT)
        assert chat.message.content == expected_chat.message.content
        assert chat.done
        assert chat.eval_count == expected_chat.eval_count == 8

        generated = await gateway.generate("llama3.2", "hello there")
        expected = await direct.generate("llama3.2", "hello there")
        assert generated.response == expected.response
        assert generated.done_reason == "stop"

        parts = [
            part async for part in await gateway.generate("llama3.2", "hello there", stream=True)
        ]
        assert len(parts) == 9  # eight tokens, then the final chunk
        assert all(not p.done for p in parts[:-1])
        assert parts[-1].done
        assert "".join(p.response for p in parts) == expected.response

        chunks = [c async for c in await gateway.chat("llama3.2", messages=CHAT, stream=True)]
        assert chunks[-1].done
        assert "".join(c.message.content or "" for c in chunks) == expected_chat.message.content


async def test_a_model_on_one_instance_is_served_there(
    pool: Pool, http: aiohttp.ClientSession
) -> None:
    """A model only one instance has is routed to it, and the answer names the instance."""
    async with http.post(
        f"{pool.url}/api/chat", json={"model": "qwen2.5", "messages": CHAT, "stream": False}
    ) as reply:
        assert reply.status == 200
        assert reply.headers["X-Gleitzeit-Instance"] == "s1"
        answer = await reply.json()
    assert answer["gleitzeit"] == {"instance": "s1", "attempts": 1}
    assert answer["message"]["role"] == "assistant"
    counts = [(await sim_stats(http, s.url))["requests"].get("/api/chat", 0) for s in pool.sims]
    assert counts == [0, 1, 0]


async def test_embed_and_legacy_embeddings(pool: Pool) -> None:
    """``embed`` (one or many inputs) and the legacy ``embeddings`` return the simulator's
    vectors, from an instance that has the embedding model."""
    async with client(pool.url) as gateway, client(pool.sims[0].url) as direct:
        embedded = await gateway.embed("nomic-embed-text", ["one", "two"])
        expected = await direct.embed("nomic-embed-text", ["one", "two"])
        assert embedded.embeddings == expected.embeddings
        assert len(embedded.embeddings) == 2
        assert len(embedded.embeddings[0]) == 384
        single = await gateway.embeddings("nomic-embed-text", "one")
        assert list(single.embedding) == expected.embeddings[0]


async def test_pull_streams_progress_onto_one_instance(
    pool: Pool, http: aiohttp.ClientSession
) -> None:
    """``pull`` streams Ollama's progress from one instance, after which the model is listed
    there; the extra ``instance`` field picks the instance; a failed pull ends in an error."""
    async with client(pool.url) as ollama_client:
        progress = [p async for p in await ollama_client.pull("phi3", stream=True)]
        assert progress[0].status == "pulling manifest"
        assert progress[-1].status == "success"
        assert any(p.total and p.completed == p.total for p in progress)
        listed = {m.model for m in (await ollama_client.list()).models}
        assert "phi3:latest" in listed
        with pytest.raises(ollama.ResponseError, match="file does not exist"):
            async for _ in await ollama_client.pull("not-pullable", stream=True):
                pass
    async with http.get(f"{pool.url}/api/tags") as reply:
        where = {m["model"]: m["gleitzeit"]["instances"] for m in (await reply.json())["models"]}
    assert len(where["phi3:latest"]) == 1

    body = {"model": "phi3", "stream": False, "instance": "s2"}
    async with http.post(f"{pool.url}/api/pull", json=body) as reply:
        assert reply.status == 200
        answer = await reply.json()
    assert answer == {"status": "success", "gleitzeit": {"instance": "s2"}}
    assert "phi3:latest" in (await sim_stats(http, pool.sims[2].url))["installed"]
    async with http.post(f"{pool.url}/api/pull", json={"model": "phi3", "instance": "s9"}) as reply:
        assert reply.status == 400
        assert 'instance: no instance "s9"' in (await reply.json())["error"]


async def test_bodies_are_forwarded_as_they_came(
    gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    """The gateway is a faithful proxy: an instance receives the client's body unchanged,
    fields gleitzeit does not know included, and the stream default stays Ollama's."""
    received: list[dict[str, Any]] = []

    async def tags(request: web.Request) -> web.Response:
        return web.json_response({"models": [{"name": "rec:latest", "model": "rec:latest"}]})

    async def generate(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        received.append(body)
        final = {"model": body["model"], "response": "ok", "done": True}
        if body.get("stream") is False:
            return web.json_response(final)
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        await response.write(json.dumps({"response": "o", "done": False}).encode() + b"\n")
        await response.write(json.dumps(final).encode() + b"\n")
        return response

    async def version(request: web.Request) -> web.Response:
        return web.json_response({"version": "0.12.0"})

    async def ps(request: web.Request) -> web.Response:
        return web.json_response({"models": []})

    app = web.Application()
    app.router.add_get("/api/version", version)
    app.router.add_get("/api/ps", ps)
    app.router.add_get("/api/tags", tags)
    app.router.add_post("/api/generate", generate)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, LOOPBACK, 0)
        await site.start()
        upstream = f"http://{LOOPBACK}:{runner.addresses[0][1]}"
        gateway = await gateway_factory({"hubs": {"llm": hub_table([upstream])}})
        odd = {
            "model": "rec",
            "prompt": "p",
            "template": "{{ .Prompt }}",
            "context": [1, 2, 3],
            "options": {"mirostat": 2, "num_ctx": 8192, "future_option": [1]},
            "x_future_field": {"nested": True},
        }
        async with http.post(f"{gateway.url}/api/generate", json=odd) as reply:
            assert reply.status == 200
            assert reply.headers["Content-Type"] == "application/x-ndjson"
            assert [c["response"] for c in await lines(reply)] == ["o", "ok"]
        async with http.post(f"{gateway.url}/api/generate", json={**odd, "stream": False}) as reply:
            assert (await reply.json())["response"] == "ok"
    finally:
        await runner.cleanup()
    assert received == [odd, {**odd, "stream": False}]


# -- errors ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "body", "status", "error"),
    [
        ("/api/chat", b"", 400, "empty"),
        ("/api/chat", b"{not json", 400, "not valid JSON"),
        ("/api/chat", b"[" * 100_000 + b"]" * 100_000, 400, "nested too deeply"),
        ("/api/generate", b'{"model": "llama3.2", "options": ' + b"[" * 5000, 400, "nested"),
        ("/api/embed", b'{"x": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", 400, "nested too deep"),
        ("/api/generate", b"[1]", 400, "expected a JSON object"),
        ("/api/generate", b'{"prompt": "hi"}', 400, "model is required"),
        ("/api/embed", b'{"model": ""}', 400, "model is required"),
        ("/api/generate", b'{"model": 3}', 400, "model: expected a string"),
        ("/api/generate", b'{"model": "llama3.2", "prompt": 1}', 400, "prompt: expected a string"),
        ("/api/generate", b'{"model": "llama3.2", "stream": "no"}', 400, "stream: expected"),
        ("/api/generate", b'{"model": "llama3.2", "keep_alive": "5 parsecs"}', 400, "keep_alive"),
        ("/api/chat", b'{"model": "llama3.2", "messages": {}}', 400, "messages: expected"),
        (
            "/api/chat",
            b'{"model": "llama3.2", "messages": [{"role": "user", "content": 5}]}',
            400,
            "messages[0].content: expected a string",
        ),
        ("/api/embed", b'{"model": "nomic-embed-text", "input": 7}', 400, "input: expected"),
        ("/api/embed", b'{"model": "nomic-embed-text", "dimensions": "x"}', 400, "dimensions"),
        ("/api/show", b'{"model": ["x"]}', 400, "model: expected a string"),
        ("/api/pull", b'{"model": "phi3", "insecure": "yes"}', 400, "insecure: expected"),
        (
            "/api/generate",
            b'{"model": "llama9", "prompt": "hi"}',
            404,
            'model "llama9" not found, try pulling it first',
        ),
        ("/api/chat", b'{"model": "mistral", "messages": []}', 404, 'model "mistral" not found'),
        ("/api/embed", b'{"model": "nope", "input": "x"}', 404, "try pulling it first"),
        ("/api/show", b'{"model": "nope"}', 404, "model 'nope' not found"),
        ("/api/generate", b'{"model": "nomic-embed-text", "prompt": "x"}', 400, "does not support"),
    ],
)
async def test_errors_have_ollamas_shape(
    pool: Pool, http: aiohttp.ClientSession, path: str, body: bytes, status: int, error: str
) -> None:
    """Bad requests get Ollama's ``{"error": ...}`` with its status: 400 naming the field or
    problem, 404 for a model no instance has; an instance's own 400 comes back unchanged."""
    async with http.post(f"{pool.url}{path}", data=body) as reply:
        assert reply.status == status
        answer = await reply.json()
    assert error in answer["error"]
    assert set(answer) == {"error"}


async def test_unknown_paths_and_methods_are_json_errors(
    pool: Pool, http: aiohttp.ClientSession
) -> None:
    """Unknown paths are 404 and wrong methods 405, both with a JSON error."""
    for method, path, status in [
        ("GET", "/api/nothing", 404),
        ("DELETE", "/api/nothing", 404),
        ("POST", "/v1/responses", 404),
        ("GET", "/v1/chat/completions", 405),
        ("GET", "/api/chat", 405),
        ("POST", "/api/tags", 405),
    ]:
        async with http.request(method, f"{pool.url}{path}") as reply:
            assert reply.status == status, (method, path)
            assert "error" in await reply.json()


async def test_503_when_no_instance_can_take_it(pool: Pool, http: aiohttp.ClientSession) -> None:
    """With every instance draining, or every instance gone, a call is a 503 in Ollama's shape;
    the official client sees a ``ResponseError`` with that status."""
    hub = pool.gateway.hub()
    for resource in hub.resources:
        resource.draining = True
    async with http.post(f"{pool.url}/api/embed", json={"model": "nomic-embed-text"}) as reply:
        assert reply.status == 503
        assert "draining" in (await reply.json())["error"]
    for resource in hub.resources:
        resource.draining = False
    for sim in pool.sims:
        await sim.stop()
    async with client(pool.url) as ollama_client:
        for call in (
            ollama_client.chat("llama3.2", messages=CHAT),
            ollama_client.embed("nomic-embed-text", "x"),
        ):
            with pytest.raises(ollama.ResponseError) as failed:
                await call
            assert failed.value.status_code == 503
    async with http.post(f"{pool.url}/api/generate", json={"model": "llama3.2"}) as reply:
        assert reply.status == 503
        assert set(await reply.json()) == {"error"}


async def test_a_stream_that_fails_after_it_started_ends_in_an_error_line(
    pool: Pool, http: aiohttp.ClientSession
) -> None:
    """When every instance breaks mid-stream, the client gets the chunks so far, then Ollama's
    ``{"error": ...}`` line (status 200, as the headers went out), and the official client
    raises it."""
    for sim in pool.sims:
        await set_faults(http, sim.url, error_line_after=2)
    body = {"model": "llama3.2", "prompt": "hello"}
    async with http.post(f"{pool.url}/api/generate", json=body) as reply:
        assert reply.status == 200
        got = await lines(reply)
    assert [("response" in c) for c in got[:2]] == [True, True]
    assert got[-1] == {"error": "an error was encountered while running the model: unexpected EOF"}
    async with client(pool.url) as ollama_client:
        seen: list[str] = []

        async def read_all() -> None:
            async for part in await ollama_client.generate("llama3.2", "hello", stream=True):
                seen.append(part.response)

        with pytest.raises(ollama.ResponseError, match="unexpected EOF"):
            await read_all()
        assert len(seen) == 2
    assert pool.gateway.in_flight() == 0


async def test_a_broken_stream_resumes_on_another_instance(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    """A stream whose instance fails mid-way continues on another instance when that one
    repeats what the client already has: the client sees one whole, correct answer; the hub
    counts the failover and the resume."""
    pool = await start_pool(sim_factory, gateway_factory, [["llama3.2"], ["llama3.2"]])
    broken, healthy = pool.sims
    await preload(http, broken.url, "llama3.2")  # the hub prefers the instance with it loaded
    await pool.gateway.hub().refresh_models()
    await set_faults(http, broken.url, reset_after=3)
    async with client(healthy.url) as direct:
        expected = await direct.generate("llama3.2", "resume me")
    async with client(pool.url) as gateway:
        parts = [p async for p in await gateway.generate("llama3.2", "resume me", stream=True)]
    assert "".join(p.response for p in parts) == expected.response
    assert [p.done for p in parts].count(True) == 1
    assert parts[-1].done
    assert len(parts) == 9
    counters = pool.gateway.hub().counters
    assert counters["stream_resumes"] == 1
    assert counters["failovers"] >= 1
    assert (await sim_stats(http, broken.url))["requests"]["/api/generate"] >= 1
    assert pool.gateway.in_flight() == 0


async def test_a_stream_is_not_spliced_when_the_replay_differs(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    """When the other instance would say something else (non-deterministic output: here a
    different seed), the gateway does not splice two answers: the client gets the error line."""
    gateway = await diverging_pool(sim_factory, gateway_factory, http)
    async with http.post(
        f"{gateway.url}/api/generate", json={"model": "llama3.2", "prompt": "x"}
    ) as reply:
        got = await lines(reply)
    assert len(got) == 4
    assert "unexpected EOF" in got[-1]["error"]
    assert gateway.hub("llm").counters.get("stream_resumes", 0) == 0
    assert gateway.in_flight() == 0


async def test_several_hubs_route_by_model(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    """With two Ollama hubs, a model goes to the hub that has it, tags merge over both (labels
    ``hub/instance``), and ``pull`` takes an instance as ``hub/instance``."""
    (small,) = await sim_factory(1, models=["llama3.2"], name="small")
    (big,) = await sim_factory(1, models=["qwen2.5", "llama3.2"], name="big")
    config = {"hubs": {"a": hub_table([small.url]), "b": hub_table([big.url])}}
    gateway = await gateway_factory(config)
    async with client(gateway.url) as ollama_client:
        await ollama_client.chat("qwen2.5", messages=CHAT)
        await ollama_client.chat("llama3.2", messages=CHAT)  # both may: the first hub
    assert (await sim_stats(http, big.url))["requests"]["/api/chat"] == 1
    assert (await sim_stats(http, small.url))["requests"]["/api/chat"] == 1
    async with http.get(f"{gateway.url}/api/tags") as reply:
        where = {m["model"]: m["gleitzeit"]["instances"] for m in (await reply.json())["models"]}
    assert where == {"llama3.2:latest": ["a/s0", "b/s0"], "qwen2.5:latest": ["b/s0"]}
    body = {"model": "phi3", "stream": False, "instance": "b/s0"}
    async with http.post(f"{gateway.url}/api/pull", json=body) as reply:
        assert (await reply.json())["gleitzeit"]["instance"] == "b/s0"
    assert "phi3:latest" in (await sim_stats(http, big.url))["installed"]


# -- safe defaults --------------------------------------------------------------------------------
async def test_token_auth_applies_to_the_ollama_api(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    """With a token configured, the Ollama routes answer 401 without the bearer token; the
    official client passes it as a header."""
    pool = await start_pool(sim_factory, gateway_factory, [["llama3.2"]], token="s3cret")
    async with client(pool.url) as anonymous:
        with pytest.raises(ollama.ResponseError) as refused:
            await anonymous.list()
        assert refused.value.status_code == 401
    for method, path in [("GET", "/"), ("GET", "/api/tags"), ("POST", "/api/chat")]:
        async with http.request(method, f"{pool.url}{path}", json={"model": "llama3.2"}) as reply:
            assert reply.status == 401
            assert "token" in (await reply.json())["error"]
    async with client(pool.url, headers={"Authorization": "Bearer s3cret"}) as allowed:
        assert (await allowed.chat("llama3.2", messages=CHAT)).done
        assert [m.model for m in (await allowed.list()).models] == ["llama3.2:latest"]


async def test_bodies_over_the_limit_get_413(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    """A body over the limit is a 413 with a JSON error, and the gateway keeps serving."""
    pool = await start_pool(sim_factory, gateway_factory, [["llama3.2"]], max_body_bytes=2048)
    big = {"model": "llama3.2", "messages": [{"role": "user", "content": "x" * 10_000}]}
    async with http.post(f"{pool.url}/api/chat", json=big) as reply:
        assert reply.status == 413
        assert "error" in await reply.json()
    async with client(pool.url) as ollama_client:
        assert (await ollama_client.chat("llama3.2", messages=CHAT)).done


_text = st.text(max_size=16)
_model_names = st.sampled_from(
    ["llama3.2", "llama3.2:latest", "qwen2.5", "nomic-embed-text", "nope", ""]
)
_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "model": _model_names,
    "name": _model_names,
    "prompt": _text,
    "system": _text,
    "suffix": _text,
    "messages": st.lists(
        st.fixed_dictionaries(
            {"role": st.sampled_from(["user", "assistant", "system"])},
            optional={"content": _text, "images": st.lists(_text, max_size=1)},
        ),
        max_size=3,
    ),
    "input": _text | st.lists(_text, min_size=1, max_size=3),
    "stream": st.booleans(),
    "options": st.dictionaries(
        st.sampled_from(["temperature", "seed", "num_predict", "top_k", "mirostat"]),
        st.integers(0, 12) | st.floats(0, 2),
        max_size=3,
    ),
    "keep_alive": st.sampled_from(["5m", "0", -1, 0.5, "1h30m", 30, "soon"]),
    "format": st.sampled_from(["json", "", "yaml", {"type": "object"}]),
    "images": st.lists(_text, max_size=2),
    "think": st.booleans() | st.sampled_from(["high", "low"]),
    "context": st.lists(st.integers(0, 100), max_size=3),
    "truncate": st.booleans(),
    "raw": st.booleans(),
    "insecure": st.booleans(),
    "verbose": st.booleans(),
    "dimensions": st.integers(-1, 64),
    "tools": st.lists(st.fixed_dictionaries({"type": st.just("function")}), max_size=1),
    "instance": st.sampled_from(["s0", "s1", "s9"]),
}
_objects = st.fixed_dictionaries(
    {"model": _FIELDS["model"]},
    optional={field: values for field, values in _FIELDS.items() if field != "model"},
).flatmap(
    lambda fixed: st.dictionaries(st.text(max_size=6), json_values, max_size=2).map(
        lambda extra: {**extra, **fixed}
    )
)
# a well-typed body with one known field replaced by anything
_one_wrong = st.tuples(_objects, st.sampled_from(sorted(_FIELDS)), json_values).map(
    lambda drawn: {**drawn[0], drawn[1]: drawn[2]}
)
_encoded = _objects.map(lambda v: json.dumps(v).encode())
_bodies = st.one_of(
    st.binary(max_size=120),
    json_values.map(lambda v: json.dumps(v).encode()),
    _one_wrong.map(lambda v: json.dumps(v).encode()),
    _encoded,
    _encoded,
    _encoded,
)
_POST_ROUTES = [
    "/api/generate",
    "/api/chat",
    "/api/embed",
    "/api/embeddings",
    "/api/show",
    "/api/pull",
]


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch=st.lists(st.tuples(st.sampled_from(_POST_ROUTES), _bodies), min_size=6, max_size=6))
async def test_fuzzed_bodies_never_get_a_5xx(
    fuzz_pool: Pool, http: aiohttp.ClientSession, batch: list[tuple[str, bytes]]
) -> None:
    """Whatever a client posts to any Ollama route, the answer is below 500 (a JSON error for
    a 4xx), and the gateway still answers and has nothing left in flight after each batch."""
    url = fuzz_pool.url
    for path, body in batch:
        async with http.post(f"{url}{path}", data=body) as reply:
            text = await reply.text()
            assert reply.status < 500, (path, body, text)
            if reply.status >= 400:
                assert "error" in json.loads(text), text
    async with http.get(f"{url}/api/version") as reply:
        assert reply.status == 200
    async with http.get(f"{url}/gleitzeit/health") as reply:
        assert reply.status == 200
    assert fuzz_pool.gateway.in_flight() == 0


# -- end to end -----------------------------------------------------------------------------------
async def test_gleitzeit_serve_end_to_end(
    sim_factory: SimFactory, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """``gleitzeit serve --config`` as its own process serves the Ollama API to the official
    client and stops cleanly on SIGTERM."""
    sims = await sim_factory(2, models=["llama3.2"])
    config = tmp_path / "gleitzeit.toml"
    resources = "\n".join(f'[[hubs.llm.resources]]\nurl = "{s.url}"\n' for s in sims)
    config.write_text(f'[hubs.llm]\nkind = "ollama"\ndiscovery = ["static"]\n{resources}')
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gleitzeit_core",
        "serve",
        "--config",
        str(config),
        "--port",
        "0",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stderr is not None
        url = None
        async with asyncio.timeout(30):
            while url is None:
                line = (await proc.stderr.readline()).decode()
                assert line, "gleitzeit serve exited before it was ready"
                if "listening on" in line:
                    url = line.rsplit(" ", 1)[-1].strip()
        async with client(url) as ollama_client:
            assert [m.model for m in (await ollama_client.list()).models] == ["llama3.2:latest"]
            parts = [
                p async for p in await ollama_client.chat("llama3.2", messages=CHAT, stream=True)
            ]
            assert parts[-1].done
        proc.terminate()
        async with asyncio.timeout(15):
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
