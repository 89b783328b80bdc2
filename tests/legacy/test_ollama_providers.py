"""``OllamaPoolProvider`` (research section 2.2) and the single-instance ``OllamaProvider``
(section 2.3): old constructor arguments, method names, parameters and result shapes, on both
the hub and the legacy path, against simulators on real sockets."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from tests.legacy.conftest import MODEL, Sims, instances, requests_to

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

PATHS = ("hub", "legacy")
GENERATE_KEYS = {
    "response",
    "model",
    "done",
    "context",
    "total_duration",
    "load_duration",
    "prompt_eval_duration",
    "eval_duration",
    "eval_count",
}
CHAT_KEYS = (GENERATE_KEYS - {"context"}) | {"role"}
VISION_KEYS = {"response", "model", "done", "total_duration", "eval_count"}
PIXEL = base64.b64encode(b"\x89PNG\r\n\x1a\n fake image bytes").decode()


async def test_old_pool_provider_usage(sims: Sims) -> None:
    """Section 2.2 as old code wrote it: the constructor, ``initialize``, the four methods
    with their old parameters and result keys, ``health_check``, ``get_supported_methods``,
    ``get_pool_status``, ``shutdown``."""
    from gleitzeit.providers.ollama_pool_provider import OllamaPoolProvider

    local, gpu = await sims(2)
    provider = OllamaPoolProvider(
        provider_id="ollama-pool",
        instances=[
            {
                "id": "local",
                "url": local.url,
                "models": ["llama3.2", "llava"],
                "max_concurrent": 5,
                "tags": ["local", "cpu"],
            },
            {
                "id": "gpu-server",
                "url": gpu.url,
                "models": ["llama3.2"],
                "max_concurrent": 2,
                "tags": ["remote", "gpu"],
                "priority": 1,
                "weight": 2.0,
                "specialization": "large-models",
            },
        ],
        load_balancing_config={
            "strategy": "least_loaded",
            "health_check_interval": 30,
            "failover": True,
            "retry_attempts": 3,
        },
        circuit_breaker_config={
            "failure_threshold": 5,
            "recovery_timeout": 60,
            "half_open_requests": 3,
        },
        timeout=60,
    )
    assert provider.protocol_id == "llm/v1"
    assert provider.get_supported_methods() == [
        "llm/generate",
        "llm/chat",
        "llm/vision",
        "llm/embed",
    ]
    await provider.initialize()
    try:
        for path in PATHS:
            gen = await provider.execute_path(
                path, "llm/generate", {"prompt": "hello", "model": MODEL}
            )
            assert set(gen) == GENERATE_KEYS
            assert gen["model"] == MODEL
            assert gen["done"] is True
            assert gen["response"]
            chat = await provider.execute_path(
                path, "llm/chat", {"messages": [{"role": "user", "content": "hi"}]}
            )
            assert set(chat) == CHAT_KEYS
            assert chat["role"] == "assistant"
            assert chat["model"] == "llama3.2"
            vision = await provider.execute_path(path, "llm/vision", {"images": [PIXEL]})
            assert set(vision) == VISION_KEYS
            assert vision["model"] == "llava"
            one = await provider.execute_path(path, "llm/embed", {"input": "text"})
            assert set(one) == {"embeddings", "model"}
            assert len(one["embeddings"]) == 1
            assert len(one["embeddings"][0]) == 384
            two = await provider.execute_path(path, "llm/embed", {"input": ["a", "b"]})
            assert len(two["embeddings"]) == 2  # one list of vectors per text, as before
            assert len(two["embeddings"][1][0]) == 384
        health = await provider.health_check()
        assert health["status"] == "healthy"
        assert set(health["details"]) == {"pool_status", "default_strategy", "failover_enabled"}
        assert health["details"]["default_strategy"] == "least_loaded"
        status = await provider.get_pool_status()
        assert status["total_instances"] == 2
        assert sum(i["total_requests"] for i in status["instances"].values()) == 10
    finally:
        await provider.shutdown()


async def test_empty_instances_is_a_value_error() -> None:
    """An empty instance list is refused at construction, as before."""
    from gleitzeit.providers.ollama_pool_provider import OllamaPoolProvider

    with pytest.raises(ValueError, match="At least one Ollama instance"):
        OllamaPoolProvider("p", [])


async def test_missing_parameters_are_invalid_params(sims: Sims) -> None:
    """Missing ``prompt``/``messages``/``images``/``input`` are parameter errors (the old
    structured errors were themselves TypeErrors); unknown methods are ``UnknownMethod``."""
    from gleitzeit.providers.ollama_pool_provider import OllamaPoolProvider

    from gleitzeit_core import InvalidParams, UnknownMethod

    provider = OllamaPoolProvider("p", instances(await sims(1)))
    try:
        for method, problem in (
            ("llm/generate", "prompt"),
            ("llm/chat", "messages"),
            ("llm/vision", "images"),
            ("llm/embed", "input"),
        ):
            with pytest.raises(InvalidParams, match=problem):
                await provider.execute(method, {})
        with pytest.raises(UnknownMethod):
            await provider.execute("llm/translate", {"prompt": "x"})
    finally:
        await provider.shutdown()


async def test_handle_request_both_shapes(sims: Sims) -> None:
    """``handle_request(method, params)`` returns the result; ``handle_request(dict)`` and
    ``execute_legacy(dict)`` return the JSON-RPC envelope, errors included."""
    from gleitzeit.providers.ollama_pool_provider import OllamaPoolProvider

    provider = OllamaPoolProvider("p", instances(await sims(1)))
    try:
        result = await provider.handle_request("llm/generate", {"prompt": "x"})
        assert set(result) == GENERATE_KEYS
        envelope = await provider.handle_request(
            {"jsonrpc": "2.0", "method": "llm/generate", "params": {"prompt": "x"}, "id": 7}
        )
        assert envelope["jsonrpc"] == "2.0"
        assert envelope["id"] == 7
        assert set(envelope["result"]) == GENERATE_KEYS
        failed = await provider.execute_legacy(
            {"jsonrpc": "2.0", "method": "llm/generate", "params": {}, "id": "a"}
        )
        assert failed["id"] == "a"
        assert "result" not in failed
        assert failed["error"]["code"] == -32602
        assert "prompt" in failed["error"]["message"]
        unknown = await provider.execute_legacy({"method": "llm/nope", "id": 1})
        assert unknown["error"]["code"] == -32601
        invalid = await provider.execute_legacy({"params": {}, "id": 2})
        assert invalid["error"]["code"] == -32600
        assert provider.request_count == 4
        assert provider.error_count == 2
    finally:
        await provider.shutdown()


async def test_routing_parameters(sims: Sims) -> None:
    """``instance_tags`` and ``require_gpu`` route to instances with those tags on both paths,
    and a per-request ``load_balancing_strategy`` is honoured."""
    from gleitzeit.providers.ollama_pool_provider import OllamaPoolProvider

    cpu, gpu = await sims(2)
    provider = OllamaPoolProvider(
        "p",
        [
            {"id": "cpu", "url": cpu.url, "tags": ["cpu"]},
            {"id": "gpu", "url": gpu.url, "tags": ["gpu", "remote"]},
        ],
    )
    try:
        for path in PATHS:
            tags: list[str] = []
            await provider.execute_path(
                path, "llm/generate", {"prompt": "p", "require_gpu": True, "instance_tags": tags}
            )
            assert tags == []  # the caller's list is not modified (it used to be appended to)
            await provider.execute_path(
                path, "llm/generate", {"prompt": "p", "instance_tags": ["remote"]}
            )
            await provider.execute_path(
                path,
                "llm/generate",
                {"prompt": "p", "instance_tags": ["gpu"], "load_balancing_strategy": "random"},
            )
        assert requests_to(cpu) == 0
        assert requests_to(gpu) == 6
        with pytest.raises(ValueError, match="unknown load balancing strategy"):
            await provider.execute("llm/generate", {"prompt": "p", "load_balancing_strategy": "x"})
    finally:
        await provider.shutdown()


async def test_round_robin_rotates(sims: Sims) -> None:
    """``round_robin`` serves each instance in turn on both paths (the hub-era base class
    always returned the first one)."""
    from gleitzeit.providers.ollama_pool_provider import OllamaPoolProvider

    from tests.legacy.conftest import preload

    trio = await sims(3)
    for sim in trio:
        await preload(sim)
    provider = OllamaPoolProvider("p", instances(trio), {"strategy": "round_robin"})
    try:
        for path in PATHS:
            for _ in range(6):
                await provider.execute_path(path, "llm/generate", {"prompt": "p"})
        assert [requests_to(s) for s in trio] == [4, 4, 4]
    finally:
        await provider.shutdown()


# -- the single-instance provider -----------------------------------------------------------
async def test_positional_url_stays_the_url(sims: Sims) -> None:
    """``OllamaProvider("ollama-1", url)`` - as the pre-hub client and CLI called it - talks to
    that URL (after the streamlining the URL silently became the default model)."""
    from gleitzeit.providers.ollama_provider import OllamaProvider

    other, target = await sims(2)
    provider = OllamaProvider("ollama-1", target.url)
    assert provider.ollama_url == target.url
    try:
        for path in PATHS:
            result = await provider.execute_path(
                path, "llm/generate", {"prompt": "p", "model": MODEL}
            )
            assert result["provider_id"] == "ollama-1"
        assert requests_to(target) == 2
        assert requests_to(other) == 0
    finally:
        await provider.shutdown()
    host_port = target.url.removeprefix("http://")
    assert OllamaProvider("cli-ollama-provider", host_port).ollama_url == target.url
    with pytest.raises(ValueError, match="not a URL"):
        OllamaProvider("ollama-1", "llama3.2")


async def test_single_provider_shapes(sims: Sims, tmp_path: Path) -> None:
    """The single provider's methods and result keys: generate/chat with ``content``,
    ``provider_id``, ``tokens_used``; vision from ``image_path``/``image_data`` (first image
    only); embed with ``embedding`` and ``dimensions``; ``llm/complete``/``llm/embeddings``
    accepted as names; the default ``max_tokens`` 500 reaches Ollama as ``num_predict``."""
    from gleitzeit.providers.ollama_provider import OllamaProvider

    (sim,) = await sims(1, models=["llama3", "llava", "nomic-embed-text"])
    provider = OllamaProvider("single", sim.url, 30)
    image = tmp_path / "pic.png"
    image.write_bytes(b"\x89PNG fake")
    try:
        for path in PATHS:
            gen = await provider.execute_path(path, "llm/generate", {"prompt": {"content": "hi"}})
            assert set(gen) == {
                "response",
                "content",
                "model",
                "provider_id",
                "tokens_used",
                "total_duration",
            }
            assert gen["content"] == gen["response"]
            assert gen["model"] == "llama3"
            assert gen["tokens_used"] == 500  # num_predict = the old default max_tokens
            short = await provider.execute_path(
                path, "llm/complete", {"prompt": "x", "max_tokens": 3}
            )
            assert short["tokens_used"] == 3
            chat = await provider.execute_path(path, "llm/chat", {"prompt": "only a prompt"})
            assert set(chat) == {
                "response",
                "content",
                "role",
                "model",
                "provider_id",
                "tokens_used",
                "total_duration",
            }
            vision = await provider.execute_path(
                path, "llm/vision", {"prompt": "what?", "image_path": str(image)}
            )
            assert vision["model"] == "llava"
            assert vision["content"]
            data = await provider.execute_path(path, "llm/vision", {"image_data": PIXEL})
            assert data["response"]
            embed = await provider.execute_path(path, "llm/embeddings", {"text": "hello"})
            assert set(embed) == {"embedding", "model", "provider_id", "dimensions"}
            assert embed["dimensions"] == len(embed["embedding"]) == 384
            assert embed["model"] == "nomic-embed-text"
        health = await provider.health_check()
        assert health["status"] == "healthy"
    finally:
        await provider.shutdown()


async def test_default_model_keyword(sims: Sims) -> None:
    """The streamlined signature's ``default_model`` keyword chooses the model for generate
    and chat; the URL argument is still the URL."""
    from gleitzeit.providers.ollama_provider import OllamaProvider

    (sim,) = await sims(1)
    provider = OllamaProvider("p", sim.url, default_model=MODEL)
    try:
        result: dict[str, Any] = await provider.execute("llm/generate", {"prompt": "x"})
        assert result["model"] == MODEL
    finally:
        await provider.shutdown()
