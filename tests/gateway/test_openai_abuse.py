"""A client with a limited key against the ``/v1`` routes, over real loopback sockets with
simulators behind the gateway: what it sends beyond its key's reach or the pool's sense is
refused before any instance is asked, every refusal reads as an OpenAI error, and a stream it
walks away from gives its slot back."""

from __future__ import annotations

import json
import socket
from typing import Any

import aiohttp
import openai
import pytest

from tests.gateway.conftest import (
    GatewayFactory,
    eventually,
    hub_table,
    sim_stats,
    start_pool,
)
from tests.gateway.test_openai_api import QUESTION, client
from tests.ollama.conftest import SimFactory

KEYS = {
    "limited": {"token": "limited-token", "models": ["llama3.2", "nomic-embed-text"]},
    "slow": {"token": "slow-token", "requests_per_minute": 1},
    "ops": {"token": "ops-token", "admin": True},
}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


async def test_the_gateways_own_refusals_on_v1_are_openai_errors(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    """What the gateway refuses before a ``/v1`` handler runs (an unknown key, a key over its
    rate, a body type browsers send without asking, a path or method that does not exist) is
    ``{"error": {"message", "type", "param", "code"}}`` with OpenAI's codes for the two a
    client acts on (``invalid_api_key``, ``rate_limit_exceeded``); ``/api`` keeps Ollama's."""
    pool = await start_pool(sim_factory, gateway_factory, keys=KEYS)
    async with client(pool.url, api_key="wrong") as c:
        with pytest.raises(openai.AuthenticationError) as denied:
            await c.chat.completions.create(model="llama3.2", messages=QUESTION)
    assert denied.value.body == {
        "message": "missing or unknown API key; send Authorization: Bearer <token>",
        "type": "authentication_error",
        "param": None,
        "code": "invalid_api_key",
    }
    async with client(pool.url, api_key="slow-token") as c:
        await c.models.list()
        with pytest.raises(openai.RateLimitError) as limited:
            await c.models.list()
    assert limited.value.response.headers["Retry-After"]
    assert isinstance(limited.value.body, dict)
    assert limited.value.body["code"] == "rate_limit_exceeded"
    assert "requests_per_minute" in limited.value.body["message"]
    refusals = [
        ("POST", "/v1/chat/completions", {"Content-Type": "text/plain"}, 415),
        ("GET", "/v1/chat/completions", {}, 405),
        ("POST", "/v1/responses", {"Content-Type": "application/json"}, 404),
    ]
    for method, path, headers, status in refusals:
        async with http.request(
            method, pool.url + path, data=b"{}", headers=bearer("ops-token") | headers
        ) as reply:
            assert reply.status == status, path
            error = (await reply.json())["error"]
        assert set(error) == {"message", "type", "param", "code"}, path
        assert isinstance(error["message"], str), path
        assert error["message"], path
    async with http.get(f"{pool.url}/api/tags") as reply:  # Ollama's shape on /api
        assert reply.status == 401
        assert isinstance((await reply.json())["error"], str)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", '{"model": "llama3.2", "messages": [], "temperature": 1e400}'),
        ("/v1/embeddings", '{"model": "nomic-embed-text", "input": "x", "dimensions": 1E999}'),
        ("/api/chat", '{"model": "llama3.2", "messages": [], "options": {"top_p": -1e400}}'),
    ],
)
async def test_numbers_beyond_a_double_are_400s_and_reach_no_instance(
    sim_factory: SimFactory,
    gateway_factory: GatewayFactory,
    http: aiohttp.ClientSession,
    path: str,
    body: str,
) -> None:
    """``1e400`` is valid JSON that Python reads as infinity, which passes "is a number"
    checks and would be sent upstream as ``Infinity`` (not JSON): it is a 400 that names the
    number, and no instance is asked."""
    pool = await start_pool(sim_factory, gateway_factory, keys=KEYS)
    async with http.post(pool.url + path, data=body, headers=bearer("limited-token")) as reply:
        assert reply.status == 400
        error = (await reply.json())["error"]
    message = error["message"] if isinstance(error, dict) else error
    assert "e400" in message.lower() or "e999" in message.lower()
    assert "out of range" in message
    for sim in pool.sims:
        requests = (await sim_stats(http, sim.url))["requests"]
        assert not {"/api/chat", "/api/embed"} & set(requests)


async def test_embedding_batches_above_max_embed_inputs_are_refused_before_any_instance(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    """A key's rate limit counts a request once, whatever it carries: a batch of more texts
    than the hub's ``max_embed_inputs`` (through ``/v1/embeddings``, ``/api/embed`` or
    ``llm/embed``) is a 400 naming the limit that reaches no instance, so it can neither hold
    them to its deadline nor get them blamed for an oversized answer; up to the limit is
    served, and in-process callers (the operator) are not held to it."""
    pool = await start_pool(sim_factory, gateway_factory, keys=KEYS, hub={"max_embed_inputs": 4})
    async with client(pool.url, api_key="limited-token") as c:
        with pytest.raises(openai.BadRequestError) as refused:
            await c.embeddings.create(model="nomic-embed-text", input=["x"] * 5)
        assert "max_embed_inputs" in str(refused.value.body)
        served = await c.embeddings.create(model="nomic-embed-text", input=["x"] * 4)
        assert [item.index for item in served.data] == [0, 1, 2, 3]
    async with http.post(
        f"{pool.url}/api/embed",
        json={"model": "nomic-embed-text", "input": ["x"] * 5},
        headers=bearer("ops-token"),  # admin or not: the limit is the pool's, not the key's
    ) as reply:
        assert reply.status == 400
        assert "max_embed_inputs" in (await reply.json())["error"]
    async with http.post(
        f"{pool.url}/gleitzeit/execute",
        json={"method": "llm/embed", "params": {"model": "nomic-embed-text", "input": ["x"] * 5}},
        headers=bearer("limited-token"),
    ) as reply:
        assert reply.status == 400
        assert "max_embed_inputs" in json.dumps(await reply.json())
    embedded = [(await sim_stats(http, s.url))["requests"].get("/api/embed", 0) for s in pool.sims]
    assert sum(embedded) == 1  # the batch of 4
    result: Any = await pool.gateway.runtime.execute(
        "llm/embed", {"model": "nomic-embed-text", "input": ["x"] * 5}
    )
    assert len(result["embeddings"]) == 5


async def test_a_v1_stream_the_client_walks_away_from_frees_its_slot(
    sim_factory: SimFactory, gateway_factory: GatewayFactory
) -> None:
    """A client that reads two events of a long ``/v1`` stream and closes the connection ends
    the upstream request: the instance's slot and the key's ``max_concurrent`` share are free
    again, and the next request of that key is served."""
    keys = {"one": {"token": "one-token", "max_concurrent": 1}}
    pool = await start_pool(
        sim_factory,
        gateway_factory,
        [["llama3.2"]],
        keys=keys,
        sim={"tokens_per_s": 5, "max_tokens": 1000},
    )
    async with client(pool.url, api_key="one-token") as c:
        stream = await c.chat.completions.create(
            model="llama3.2", messages=QUESTION, stream=True, max_tokens=2000
        )
        seen = 0
        async for _ in stream:
            seen += 1
            if seen == 2:
                break
        assert pool.gateway.in_flight() == 1
        await stream.close()
        await eventually(lambda: pool.gateway.in_flight() == 0, timeout=20)
        answer = await c.chat.completions.create(model="llama3.2", messages=QUESTION, max_tokens=3)
        assert answer.choices[0].finish_reason == "length"


async def test_errors_name_instances_by_id_never_by_address(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    """When the only instance with a model cannot be reached, a client without admin rights
    learns which instance failed by its id, on ``/v1``, ``/api`` and in the merged listing,
    but not its host or port."""
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (sim,) = await sim_factory(1, models=["llama3.2"], name="up")
    hub = hub_table([sim.url, f"http://127.0.0.1:{port}"], retries=0, health={"enabled": False})
    hub["resources"][1] |= {"id": "down", "models": ["qwen2.5"]}
    keys = {"user": {"token": "user-token"}}
    gateway = await gateway_factory({"hubs": {"llm": hub}, "gateway": {"keys": keys}})
    answers = []
    async with client(gateway.url, api_key="user-token") as c:
        with pytest.raises(openai.APIStatusError) as failed:
            await c.chat.completions.create(model="qwen2.5", messages=QUESTION)
    assert failed.value.status_code == 503
    answers.append(json.dumps(failed.value.body))
    async with http.post(
        f"{gateway.url}/api/chat",
        json={"model": "qwen2.5", "messages": QUESTION, "stream": False},
        headers=bearer("user-token"),
    ) as reply:
        assert reply.status == 503
        answers.append(await reply.text())
    async with http.get(f"{gateway.url}/api/tags", headers=bearer("user-token")) as reply:
        assert reply.status == 200
        answers.append(await reply.text())
    for answer in answers:
        assert "down" in answer
        assert str(port) not in answer
        assert "127.0.0.1" not in answer
