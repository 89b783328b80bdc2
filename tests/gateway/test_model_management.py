"""Model management across the pool, driven by the official ``ollama`` client through the
gateway over three simulators: delete and copy act on every instance that has the model and
report each; create (with its blob upload) and push act on one instance; routing follows at
once; only admin keys may do any of it."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import aiohttp
import ollama
import pytest

from tests.gateway.conftest import GatewayFactory, Pool, sim_stats, start_pool
from tests.ollama.conftest import SimFactory


def client(url: str) -> ollama.AsyncClient:
    return ollama.AsyncClient(host=url, timeout=20)


async def installed(http: aiohttp.ClientSession, pool: Pool) -> list[set[str]]:
    return [set((await sim_stats(http, s.url))["installed"]) for s in pool.sims]


async def test_delete_removes_the_model_everywhere_and_reports_each(
    pool: Pool, http: aiohttp.ClientSession
) -> None:
    """Deleting a model on two of three instances deletes it on both (the report names each),
    the merged tags and routing forget it at once (an embed is then a 404), and deleting it
    again is Ollama's 404."""
    async with http.delete(f"{pool.url}/api/delete", json={"model": "nomic-embed-text"}) as reply:
        assert reply.status == 200
        report = (await reply.json())["gleitzeit"]["instances"]
    assert report == {"s0": {"status": 200}, "s2": {"status": 200}}
    assert all("nomic-embed-text:latest" not in models for models in await installed(http, pool))
    async with client(pool.url) as api:
        with pytest.raises(ollama.ResponseError) as caught:
            await api.embed("nomic-embed-text", "x")
        assert caught.value.status_code == 404
        for sim in pool.sims:  # the gateway knew at once: no instance was asked in vain
            assert "/api/embed" not in (await sim_stats(http, sim.url))["requests"]
        assert "nomic-embed-text:latest" not in {m.model for m in (await api.list()).models}
        with pytest.raises(ollama.ResponseError) as again:
            await api.delete("nomic-embed-text")
        assert again.value.status_code == 404


async def test_delete_with_an_instance_down_says_where_it_failed(
    pool: Pool, http: aiohttp.ClientSession
) -> None:
    """With one holder of the model stopped, the delete still happens on the other, and the
    answer is an error (so the client retries) naming the instance it could not reach."""
    await pool.sims[2].stop()
    async with http.delete(f"{pool.url}/api/delete", json={"model": "nomic-embed-text"}) as reply:
        assert reply.status == 503
        answer = await reply.json()
    assert answer["gleitzeit"]["instances"]["s0"] == {"status": 200}
    assert "error" in answer["gleitzeit"]["instances"]["s2"]
    assert "deleted on s0" in answer["error"]
    assert "s2" in answer["error"]
    assert "nomic-embed-text:latest" not in (await sim_stats(http, pool.sims[0].url))["installed"]


async def test_copy_lands_wherever_the_source_is_and_serves(
    pool: Pool, http: aiohttp.ClientSession
) -> None:
    """Copying a model copies it on every instance that has the source; the copy then serves
    chats through the gateway on those instances."""
    async with client(pool.url) as api:
        assert (await api.copy("qwen2.5", "my-qwen")).status == "success"
        answer = await api.chat("my-qwen", messages=[{"role": "user", "content": "hi"}])
        assert answer.message.content
    assert [("my-qwen:latest" in models) for models in await installed(http, pool)] == [
        False,
        True,
        False,
    ]
    async with http.post(
        f"{pool.url}/api/copy", json={"source": "missing", "destination": "x"}
    ) as reply:
        assert reply.status == 404


async def test_create_from_a_blob_lands_on_one_instance_and_serves(
    pool: Pool, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """The client's create uploads the file as a blob and creates the model, both on the same
    instance (the first healthy one); created ``from`` a model only one instance has, it lands
    there; named with ``instance``, there. Each new model then serves through the gateway."""
    weights = tmp_path / "w.gguf"
    weights.write_bytes(b"GGUF" + bytes(range(256)) * 64)
    digest = "sha256:" + hashlib.sha256(weights.read_bytes()).hexdigest()
    async with client(pool.url) as api:
        assert await api.create_blob(weights) == digest
        steps = [p.status async for p in await api.create("mine", files={"w": digest}, stream=True)]
        assert steps[-1] == "success"
        derived = await api.create("qwen-brief", from_="qwen2.5", system="be brief")
        assert derived.status == "success"
        for model in ("mine", "qwen-brief"):
            reply = await api.generate(model, "hello")
            assert reply.response
    async with http.post(
        f"{pool.url}/api/create",
        json={"model": "third", "from": "llama3.2", "instance": "s2", "stream": False},
    ) as reply:
        assert reply.status == 200
        answer = await reply.json()
    assert answer["status"] == "success"
    assert answer["gleitzeit"] == {"instance": "s2"}
    where = await installed(http, pool)
    assert ["mine:latest" in m for m in where] == [True, False, False]
    assert ["qwen-brief:latest" in m for m in where] == [False, True, False]
    assert ["third:latest" in m for m in where] == [False, False, True]


async def test_push_runs_on_an_instance_with_the_model(pool: Pool) -> None:
    """A push streams the progress of one instance that has the model, ending in success."""
    async with client(pool.url) as api:
        steps = [p.status async for p in await api.push("qwen2.5", stream=True)]
        assert steps[0] == "retrieving manifest"
        assert steps[-1] == "success"
        with pytest.raises(ollama.ResponseError):
            await api.push("nobody-has-this")


KEYS = {
    "user": {"token": "user-token"},
    "root": {"token": "root-token", "admin": True},
    "narrow-root": {"token": "narrow-token", "admin": True, "models": ["llama3.2*"]},
}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_only_admin_keys_manage_models(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    """With gateway keys, a key without admin gets a 403 for every management route and
    nothing changes on any instance (inference with the same key still works); an admin key
    outside its models is refused those models; an admin key in scope deletes."""
    pool = await start_pool(sim_factory, gateway_factory, keys=KEYS)
    before = await installed(http, pool)
    calls: list[tuple[str, str, Any]] = [
        ("DELETE", "/api/delete", {"model": "llama3.2"}),
        ("POST", "/api/copy", {"source": "llama3.2", "destination": "x"}),
        ("POST", "/api/create", {"model": "x", "from": "llama3.2"}),
        ("POST", "/api/push", {"model": "llama3.2"}),
        ("HEAD", f"/api/blobs/sha256:{'0' * 64}", None),
        ("POST", f"/api/blobs/sha256:{'0' * 64}", None),
    ]
    for method, path, body in calls:
        async with http.request(
            method, f"{pool.url}{path}", json=body, headers=bearer("user-token")
        ) as reply:
            assert reply.status == 403, path
    async with http.delete(
        f"{pool.url}/api/delete", json={"model": "qwen2.5"}, headers=bearer("narrow-token")
    ) as reply:
        assert reply.status == 403
    assert await installed(http, pool) == before
    async with ollama.AsyncClient(pool.url, headers=bearer("user-token")) as api:
        assert (await api.generate("llama3.2", "hi")).response
    async with ollama.AsyncClient(pool.url, headers=bearer("root-token")) as api:
        assert (await api.delete("qwen2.5")).status == "success"
    assert all("qwen2.5:latest" not in m for m in await installed(http, pool))


async def test_push_and_create_reach_only_allowed_registries(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    """A push names the registry that receives the weights, a create ``from`` one the instance
    may pull from: a registry outside the hub's ``pull_registries`` is a 403 even for the
    operator, and no instance is asked."""
    pool = await start_pool(sim_factory, gateway_factory, [["llama3.2"]])
    async with client(pool.url) as api:
        assert (await api.copy("llama3.2", "evil.example/team/llama")).status == "success"
        with pytest.raises(ollama.ResponseError) as pushed:
            await api.push("evil.example/team/llama")
        assert pushed.value.status_code == 403
        with pytest.raises(ollama.ResponseError) as created:
            await api.create("mine", from_="evil.example/team/other")
        assert created.value.status_code == 403
    requests = (await sim_stats(http, pool.sims[0].url))["requests"]
    assert "/api/push" not in requests
    assert "/api/create" not in requests


async def test_a_blob_digest_that_is_not_one_never_reaches_an_instance(
    pool: Pool, http: aiohttp.ClientSession
) -> None:
    """A blob path whose digest is not ``sha256:<64 hex>`` (an attempt to steer the upstream
    URL elsewhere, ``..%2F`` and all) is a 400 and no instance sees a request for it."""
    for digest in ("sha256:..%2F..%2Fapi%2Fdelete", "sha256:abc", "md5:" + "0" * 32):
        for method in ("HEAD", "POST"):
            async with http.request(method, f"{pool.url}/api/blobs/{digest}") as reply:
                assert reply.status == 400, (method, digest)
    for sim in pool.sims:
        requests = (await sim_stats(http, sim.url))["requests"]
        assert not [path for path in requests if path.startswith("/api/blobs")]
