"""The official ``ollama`` Python client works unchanged against the simulator."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import ollama
import pytest
from gleitzeit_ollama.sim import OllamaSimulator, embedding, generate_text

MAX_TOKENS = 8  # conftest FAST config


async def test_list_reports_installed_models(ollama_client: ollama.AsyncClient) -> None:
    """list() returns every configured model with the implicit :latest tag and details."""
    resp = await ollama_client.list()
    names = sorted(m.model or "" for m in resp.models)
    assert names == ["llama3.2:latest", "nomic-embed-text:latest"]
    llama = next(m for m in resp.models if m.model == "llama3.2:latest")
    assert llama.details is not None
    assert llama.details.format == "gguf"
    assert llama.details.family == "llama"
    assert llama.details.parameter_size == "3.2B"
    assert llama.size is not None
    assert llama.size > 0
    assert llama.digest is not None
    assert len(llama.digest) == 64
    assert isinstance(llama.modified_at, datetime)


async def test_ps_shows_model_after_use(ollama_client: ollama.AsyncClient) -> None:
    """ps() is empty on a fresh server and lists a model with a future expiry after use."""
    assert list((await ollama_client.ps()).models) == []
    await ollama_client.generate(model="llama3.2", prompt="warm up")
    (entry,) = (await ollama_client.ps()).models
    assert entry.model == "llama3.2:latest"
    assert entry.expires_at is not None
    assert entry.expires_at > datetime.now(UTC)
    assert entry.context_length == 4096
    assert entry.size_vram == entry.size


async def test_show_capabilities(ollama_client: ollama.AsyncClient) -> None:
    """show() returns template, modelfile, model_info and per-model capabilities."""
    chat_model = await ollama_client.show("llama3.2")
    assert chat_model.capabilities == ["completion"]
    assert chat_model.modelfile
    assert "FROM llama3.2:latest" in chat_model.modelfile
    assert chat_model.template
    assert chat_model.modelinfo is not None
    assert chat_model.modelinfo["general.architecture"] == "llama"
    embed_model = await ollama_client.show("nomic-embed-text")
    assert embed_model.capabilities == ["embedding"]


async def test_generate_non_streaming(ollama_client: ollama.AsyncClient) -> None:
    """generate(stream=False) returns the deterministic text and integer ns timings."""
    resp = await ollama_client.generate(model="llama3.2", prompt="Why is the sky blue?")
    assert resp.done is True
    assert resp.done_reason == "stop"
    assert resp.response == generate_text("Why is the sky blue?", MAX_TOKENS)
    assert resp.eval_count == MAX_TOKENS
    assert isinstance(resp.total_duration, int)
    assert resp.total_duration > 0
    assert resp.context


async def test_generate_streaming(ollama_client: ollama.AsyncClient) -> None:
    """generate(stream=True) yields one token per chunk that add up to the full text."""
    parts = [
        part
        async for part in await ollama_client.generate(
            model="llama3.2", prompt="Why is the sky blue?", stream=True
        )
    ]
    assert [p.done for p in parts] == [False] * MAX_TOKENS + [True]
    text = "".join(p.response or "" for p in parts)
    assert text == generate_text("Why is the sky blue?", MAX_TOKENS)
    assert parts[-1].eval_count == MAX_TOKENS


async def test_chat_streaming_and_not(ollama_client: ollama.AsyncClient) -> None:
    """chat() with and without streaming gives the same assistant message."""
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    whole = await ollama_client.chat(model="llama3.2", messages=messages)
    assert whole.message.role == "assistant"
    assert whole.message.content == generate_text("Hi", MAX_TOKENS)
    chunks = [c async for c in await ollama_client.chat("llama3.2", messages, stream=True)]
    assert "".join(c.message.content or "" for c in chunks) == whole.message.content
    assert chunks[-1].done
    assert chunks[-1].done_reason == "stop"


async def test_chat_accepts_tools_and_json_format(ollama_client: ollama.AsyncClient) -> None:
    """chat() with tools and format='json' succeeds and the content parses as JSON."""

    def add(a: int, b: int) -> int:
        """Add two numbers.

        Args:
          a: first
          b: second
        """
        return a + b

    resp = await ollama_client.chat(
        model="llama3.2",
        messages=[{"role": "user", "content": "sum 1 and 2"}],
        tools=[add],
        format="json",
    )
    assert isinstance(json.loads(resp.message.content or ""), dict)


async def test_generate_schema_format(ollama_client: ollama.AsyncClient) -> None:
    """A JSON-schema format yields a JSON object with the schema's properties and types."""
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    resp = await ollama_client.generate(model="llama3.2", prompt="person", format=schema)
    doc = json.loads(resp.response)
    assert isinstance(doc["name"], str)
    assert isinstance(doc["age"], int)


async def test_num_predict_sets_length(ollama_client: ollama.AsyncClient) -> None:
    """options.num_predict fixes the token count and reports done_reason 'length'."""
    resp = await ollama_client.generate(model="llama3.2", prompt="x", options={"num_predict": 3})
    assert resp.eval_count == 3
    assert resp.done_reason == "length"


@pytest.mark.parametrize("inputs", ["hello world", ["hello world", "second text"]])
async def test_embed(ollama_client: ollama.AsyncClient, inputs: str | list[str]) -> None:
    """embed() returns one unit-length 384-d vector per input, derived from the text."""
    resp = await ollama_client.embed(model="nomic-embed-text", input=inputs)
    texts = [inputs] if isinstance(inputs, str) else inputs
    assert len(resp.embeddings) == len(texts)
    for text, vec in zip(texts, resp.embeddings, strict=True):
        assert len(vec) == 384
        assert math.isclose(math.sqrt(sum(x * x for x in vec)), 1.0, rel_tol=1e-9)
        assert list(vec) == pytest.approx(embedding(text, 384, 0))


async def test_legacy_embeddings(ollama_client: ollama.AsyncClient) -> None:
    """embeddings() (legacy endpoint) returns the same vector as embed() for one text."""
    legacy = await ollama_client.embeddings(model="nomic-embed-text", prompt="abc")
    modern = await ollama_client.embed(model="nomic-embed-text", input="abc")
    assert list(legacy.embedding) == pytest.approx(list(modern.embeddings[0]))


async def test_pull_streamed_then_installed(ollama_client: ollama.AsyncClient) -> None:
    """pull(stream=True) reports Ollama's progress sequence; the model is then listed."""
    updates = [u async for u in await ollama_client.pull("qwen3:0.6b", stream=True)]
    statuses = [u.status for u in updates]
    assert statuses[0] == "pulling manifest"
    assert statuses[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
    layer = [u for u in updates if u.digest]
    assert layer
    assert all(u.status == f"pulling {u.digest[7:19]}" for u in layer)
    assert any(u.completed == u.total for u in layer)
    names = {m.model for m in (await ollama_client.list()).models}
    assert "qwen3:0.6b" in names


async def test_pull_not_streamed(ollama_client: ollama.AsyncClient) -> None:
    """pull(stream=False) returns a single success status and installs the model."""
    resp = await ollama_client.pull("mistral")
    assert resp.status == "success"
    shown = await ollama_client.show("mistral:latest")
    assert shown.capabilities == ["completion"]


async def test_pull_unknown_when_restricted(sim_factory: object) -> None:
    """With a pullable list, other names fail like Ollama's missing manifest."""
    (sim,) = await sim_factory(1, pullable=["qwen3"])  # type: ignore[operator]
    client = ollama.AsyncClient(host=sim.url, timeout=10)
    try:
        with pytest.raises(ollama.ResponseError) as err:
            await client.pull("does-not-exist")
        assert err.value.status_code == 500
        assert err.value.error == "pull model manifest: file does not exist"
        with pytest.raises(ollama.ResponseError, match="file does not exist"):
            async for _ in await client.pull("does-not-exist", stream=True):
                pass
        assert (await client.pull("qwen3")).status == "success"
    finally:
        await client.close()


async def test_unknown_model_is_404(ollama_client: ollama.AsyncClient) -> None:
    """An unknown model raises ResponseError 404 with Ollama's exact text."""
    for call in (
        ollama_client.generate(model="nope", prompt="x"),
        ollama_client.chat(model="nope", messages=[{"role": "user", "content": "x"}]),
        ollama_client.embed(model="nope", input="x"),
        ollama_client.show("nope"),
    ):
        with pytest.raises(ollama.ResponseError) as err:
            await call
        assert err.value.status_code == 404
        assert err.value.error == 'model "nope" not found, try pulling it first'


async def test_delete_removes_model(ollama_client: ollama.AsyncClient) -> None:
    """delete() removes a model from tags; deleting it again is a 404."""
    assert (await ollama_client.delete("llama3.2")).status == "success"
    assert "llama3.2:latest" not in {m.model for m in (await ollama_client.list()).models}
    with pytest.raises(ollama.ResponseError) as err:
        await ollama_client.delete("llama3.2")
    assert err.value.status_code == 404


async def test_version_endpoint(sim: OllamaSimulator, ollama_client: ollama.AsyncClient) -> None:
    """/api/version answers (the 0.6 client has no version(); use its HTTP session)."""
    assert not hasattr(ollama_client, "version") or callable(ollama_client.version)
    resp = await ollama_client._client.get("/api/version")
    assert resp.status_code == 200
    assert resp.json() == {"version": sim.config.version}


async def test_thinking_and_images(ollama_client: ollama.AsyncClient) -> None:
    """think=True fills message.thinking on thinking models; images are accepted on vision ones."""
    await ollama_client.pull("qwen3")
    resp = await ollama_client.chat(
        model="qwen3", messages=[{"role": "user", "content": "hm"}], think=True
    )
    assert resp.message.thinking
    assert resp.message.content == generate_text("hm", MAX_TOKENS)
    plain = await ollama_client.chat(model="llama3.2", messages=[{"role": "user", "content": "x"}])
    assert plain.message.thinking is None  # non-thinking models ignore think
    await ollama_client.pull("llava")
    seen = await ollama_client.generate(model="llava", prompt="what is this", images=[b"\x89PNG"])
    assert seen.response == generate_text("what is this", MAX_TOKENS)
