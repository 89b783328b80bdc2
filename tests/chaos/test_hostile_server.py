"""Attacks from a hand-written hostile Ollama server (not the simulator's fault modes) on a real
gateway process, with a healthy simulator beside it.

The hostile server answers every probe like a healthy Ollama (version, tags, ps), so the
gateway keeps routing to it; only its inference answers attack.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from gleitzeit_ollama.sim import OllamaSimulator, SimConfig

from .gateway_process import GatewayProcess, start_gateway
from .test_hostile_upstream import PEAK_MIB
from .test_hostile_upstream import _config as hostile_config

_MODEL = {"name": "llama3.2:latest", "model": "llama3.2:latest", "size": 1, "digest": "d"}
# loaded until far ahead, so model-aware routing keeps choosing it
_LOADED = {**_MODEL, "expires_at": "2099-01-01T00:00:00Z", "size_vram": 1}
_CHUNK_TEXT = 256 * 1024  # characters of text in each streamed chunk


def _answer(value: object) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(_: web.Request) -> web.Response:
        return web.json_response(value)

    return handler


class Attacker:
    """The hostile instance, plus a canary server that records every request reaching it."""

    def __init__(self) -> None:
        self.mode = "redirect"
        self.canary_hits: list[str] = []
        self.canary_url = ""
        self.runners: list[web.AppRunner] = []
        self._listing = b""
        self.listed = 0  # entries of /api/tags beside the real model in "many_models"

    async def _start(self, app: web.Application) -> str:
        runner = web.AppRunner(app, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.runners.append(runner)
        port = runner.addresses[0][1]
        return f"http://127.0.0.1:{port}"

    async def start(self) -> str:
        canary = web.Application()
        canary.router.add_route("*", "/{path:.*}", self._canary)
        self.canary_url = await self._start(canary)
        hostile = web.Application()
        hostile.add_routes(
            [
                web.get("/api/version", _answer({"version": "0.5.0"})),
                web.get("/api/tags", self._tags),
                web.get("/api/ps", _answer({"models": [_LOADED]})),
                web.post("/api/chat", self._infer),
                web.post("/api/generate", self._infer),
            ]
        )
        return await self._start(hostile)

    async def stop(self) -> None:
        for runner in self.runners:
            await runner.cleanup()

    async def _tags(self, _: web.Request) -> web.Response:
        if self.mode != "many_models":
            return web.json_response({"models": [_MODEL]})
        if not self._listing:  # tiny entries: 200,000 are ~3 MiB, under max_probe_bytes
            models = [_MODEL, *({"name": f"m{i}"} for i in range(self.listed))]
            self._listing = json.dumps({"models": models}).encode()
        return web.Response(body=self._listing, content_type="application/json")

    async def _canary(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.canary_hits.append(body.decode("utf-8", "replace"))
        return web.json_response(
            {
                "model": "llama3.2",
                "message": {"role": "assistant", "content": "stolen"},
                "response": "stolen",
                "done": True,
            }
        )

    async def _infer(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        if self.mode == "redirect":  # 307 keeps method and body: the prompt goes along
            raise web.HTTPTemporaryRedirect(self.canary_url + "/api/chat")
        # endless valid chunks, each with a long text, as fast as the client takes them
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        line = (
            json.dumps({"model": "llama3.2", "response": "x" * _CHUNK_TEXT, "done": False}).encode()
            + b"\n"
        )
        while True:
            await response.write(line)


class Scene:
    def __init__(self, gateway: GatewayProcess, attacker: Attacker) -> None:
        self.gateway = gateway
        self.attacker = attacker


@pytest.fixture
async def scene() -> AsyncIterator[Scene]:
    healthy = OllamaSimulator(SimConfig(models=["llama3.2"], latency_ms=1, load_ms=0, max_tokens=4))
    attacker = Attacker()
    await healthy.start()
    try:
        hostile_url = await attacker.start()
        config = hostile_config(healthy.url, hostile_url)
        with tempfile.TemporaryDirectory(prefix="gleitzeit-attacker-") as folder:
            gateway = await start_gateway(config, Path(folder), "ollama,breaker-consecutive")
            try:
                yield Scene(gateway, attacker)
            finally:
                await gateway.stop()
    finally:
        await attacker.stop()
        await healthy.stop()


async def test_a_redirect_from_an_instance_is_not_followed(scene: Scene) -> None:
    """An instance answering 307 to another address must not make the gateway send the
    client's prompt there (a redirect is the instance's failure): no request reaches the
    address it names, and every chat is served by the healthy instance."""
    scene.attacker.mode = "redirect"
    url = scene.gateway.url
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        for i in range(4):  # round robin: every other one starts on the hostile instance
            body = {
                "model": "llama3.2",
                "stream": False,
                "messages": [{"role": "user", "content": f"secret {i}"}],
            }
            async with http.post(f"{url}/api/chat", json=body) as reply:
                answer = await reply.json()
                assert reply.status == 200, answer
            assert answer["gleitzeit"]["instance"] == "healthy", answer
            assert answer["message"]["content"] != "stolen"
    assert scene.attacker.canary_hits == []


async def test_an_endless_valid_stream_read_by_the_client_holds_no_growing_state(
    scene: Scene,
) -> None:
    """Valid chunks forever, each with 256 KiB of text, read as fast as they come by the
    client: the gateway may keep what it needs to resume the stream elsewhere, but not the
    text itself, so its peak memory stays bounded however much has passed through (here
    160 MiB; keeping each chunk's text grew the gateway by as much)."""
    scene.attacker.mode = "endless"
    url = scene.gateway.url
    relayed = 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        for i in range(4):  # round robin: every other stream is the hostile instance's
            body = {"model": "llama3.2", "prompt": f"p{i}"}
            async with http.post(f"{url}/api/generate", json=body) as reply:
                assert reply.status == 200
                if reply.headers["X-Gleitzeit-Instance"] != "hostile":
                    assert '"done":true' in await reply.text()
                    continue
                async for data in reply.content.iter_chunked(1 << 20):
                    relayed += len(data)
                    if relayed >= 160 * 1024 * 1024:
                        break
            if relayed >= 160 * 1024 * 1024:
                break
    assert relayed >= 160 * 1024 * 1024
    rss, peak = scene.gateway.memory_mib()
    assert peak < PEAK_MIB, f"gateway peak RSS {peak:.0f} MiB (now {rss:.0f} MiB)"


@pytest.mark.parametrize(
    ("listed", "limit"), [(200_000, "max_json_values"), (12_000, "max_listed_models")]
)
async def test_a_listing_of_countless_tiny_models_is_refused(
    scene: Scene, listed: int, limit: str
) -> None:
    """An /api/tags of 200,000 tiny entries fits max_probe_bytes (4 MiB) yet made the gateway
    decode, keep and merge every one (320 MiB peak, 5 s per merged /api/tags). A probe answer
    may have 16 values per listed model (refused before decoding past that) and list at most
    MAX_LISTED_MODELS (10,000): the merged /api/tags names the instance unreachable with the
    limit and lists only the healthy one's models, the instance's status names the limit and
    keeps none of the listing, and the gateway's peak memory stays bounded."""
    scene.attacker.mode = "many_models"
    scene.attacker.listed = listed
    url = scene.gateway.url
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        for _ in range(3):
            async with http.get(f"{url}/api/tags") as reply:
                answer = await reply.json()
                assert reply.status == 200, answer
            names = [m["name"] for m in answer["models"]]
            assert names == ["llama3.2:latest"], len(names)
            assert limit in answer["gleitzeit"]["unreachable"]["hostile"]
    hostile = await scene.gateway.resource("hostile")
    assert hostile is not None
    assert hostile["details"]["limit_hit"]["limit"] == limit
    assert len(hostile["details"]["installed"] or ()) < 10
    rss, peak = scene.gateway.memory_mib()
    assert peak < PEAK_MIB, f"gateway peak RSS {peak:.0f} MiB (now {rss:.0f} MiB)"
