"""Deterministic output across instances, plus the pure helpers behind it."""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

import aiohttp
import pytest
from gleitzeit_ollama.sim import embedding, generate_text, normalize_name, text_tokens
from gleitzeit_ollama.sim.slots import ModelSlots, QueueFull
from gleitzeit_ollama.sim.text import json_tokens, split_text
from gleitzeit_ollama.sim.wire import SimHTTPError, parse_go_duration, parse_keep_alive


async def _post(http: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> Any:
    async with http.post(url, json=body) as resp:
        assert resp.status == 200
        return await resp.json()


async def test_two_instances_agree(sim_factory: Any, http: aiohttp.ClientSession) -> None:
    """Two simulators (different names) give identical text and embeddings for one request."""
    sims = await sim_factory(2)
    gen = {"model": "llama3.2", "prompt": "same prompt", "stream": False}
    chat = {
        "model": "llama3.2",
        "messages": [{"role": "user", "content": "same prompt"}],
        "stream": False,
    }
    emb = {"model": "nomic-embed-text", "input": ["one", "two"]}
    results = []
    for sim in sims:
        results.append(
            (
                (await _post(http, f"{sim.url}/api/generate", gen))["response"],
                (await _post(http, f"{sim.url}/api/chat", chat))["message"]["content"],
                (await _post(http, f"{sim.url}/api/embed", emb))["embeddings"],
            )
        )
    assert results[0] == results[1]
    # chat's last user message drives output exactly like generate's prompt
    assert results[0][0] == results[0][1] == generate_text("same prompt", 8)


async def test_seed_changes_output(sim_factory: Any, http: aiohttp.ClientSession) -> None:
    """A different config seed or options.seed changes the text; the same seed repeats it."""
    a, b = await sim_factory(2, seed=1)
    (c,) = await sim_factory(1, seed=2)
    body = {"model": "llama3.2", "prompt": "p", "stream": False}
    texts = [(await _post(http, f"{s.url}/api/generate", body))["response"] for s in (a, b, c)]
    assert texts[0] == texts[1] != texts[2]
    seeded = body | {"options": {"seed": 42, "temperature": 0.9}}
    again = [(await _post(http, f"{a.url}/api/generate", seeded))["response"] for _ in range(2)]
    assert again[0] == again[1] != texts[0]


def test_text_tokens_shape() -> None:
    """Tokens are words with leading spaces, capitalised first, final period; pure function."""
    tokens = text_tokens("hello", 5)
    assert len(tokens) == 5
    assert tokens[0][0].isupper()
    assert all(t.startswith(" ") for t in tokens[1:])
    assert tokens[-1].endswith(".")
    assert tokens == text_tokens("hello", 5)
    assert text_tokens("hello", 0) == []


def test_json_tokens_concatenate_to_valid_json() -> None:
    """JSON-mode chunks join into valid JSON, including nested schemas with $ref."""
    assert isinstance(json.loads("".join(json_tokens("p", 6))), dict)
    schema = {
        "type": "object",
        "properties": {
            "tags": {"type": "array", "items": {"type": "string"}},
            "owner": {"$ref": "#/$defs/Person"},
            "kind": {"enum": ["a", "b"]},
            "score": {"anyOf": [{"type": "null"}, {"type": "number"}]},
        },
        "$defs": {"Person": {"type": "object", "properties": {"ok": {"type": "boolean"}}}},
    }
    doc = json.loads("".join(json_tokens("p", 6, schema=schema)))
    assert isinstance(doc["tags"], list)
    assert all(isinstance(t, str) for t in doc["tags"])
    assert isinstance(doc["owner"]["ok"], bool)
    assert doc["kind"] in ("a", "b")
    assert isinstance(doc["score"], float)


def test_split_text_pieces() -> None:
    """split_text gives n non-empty pieces (fewer if the text is shorter) that rejoin exactly."""
    assert split_text("abcdefg", 3) == ["abc", "de", "fg"]
    assert split_text("ab", 5) == ["a", "b"]


def test_embedding_unit_length_and_distinct() -> None:
    """Embeddings are L2-normalised, deterministic and differ between texts."""
    v = embedding("text", 64)
    assert math.isclose(math.fsum(x * x for x in v), 1.0)
    assert v == embedding("text", 64)
    assert v != embedding("other", 64)


def test_model_name_normalisation() -> None:
    """A missing tag means :latest; explicit tags and namespaces are kept."""
    assert normalize_name("llama3.2") == "llama3.2:latest"
    assert normalize_name("llama3.2:3b") == "llama3.2:3b"
    assert normalize_name("library/llama3.2") == "library/llama3.2:latest"
    assert normalize_name("host:5000/ns/model") == "host:5000/ns/model:latest"


def test_keep_alive_parsing() -> None:
    """keep_alive: Go durations and numbers in seconds; negative means forever."""
    assert parse_go_duration("5m") == 300
    assert parse_go_duration("1h30m") == 5400
    assert parse_go_duration("250ms") == pytest.approx(0.25)
    assert parse_keep_alive(None) is None
    assert parse_keep_alive(0) == 0
    assert parse_keep_alive("10s") == 10
    assert parse_keep_alive(-1) == math.inf
    assert parse_keep_alive("-1m") == math.inf
    for bad in ("10", "abc", "", True):
        with pytest.raises(SimHTTPError):
            parse_keep_alive(bad)


async def test_slots_fifo_cancellation_safe() -> None:
    """A cancelled waiter gives up its place; a full line raises QueueFull."""
    slots = ModelSlots(limit=1, max_queue=2)
    await slots.acquire(1.0)
    first = asyncio.create_task(slots.acquire(1.0))
    second = asyncio.create_task(slots.acquire(1.0))
    await asyncio.sleep(0)
    assert slots.queued == 2
    with pytest.raises(QueueFull):
        await slots.acquire(1.0)
    first.cancel()
    await asyncio.sleep(0)
    assert slots.queued == 1
    slots.release()
    async with asyncio.timeout(1):
        await second
    assert slots.running == 1
    assert slots.queued == 0
    slots.release()
    assert slots.running == 0


async def test_slot_wait_times_out() -> None:
    """A waiter gives up after its timeout and leaves the line."""
    slots = ModelSlots(limit=1, max_queue=1)
    await slots.acquire(1.0)
    with pytest.raises(TimeoutError):
        await slots.acquire(0.05)
    assert slots.queued == 0
    assert slots.running == 1
