"""The gateway's stream relay against an upstream whose bytes and timing the test controls: a
small Ollama stand-in on loopback (only what a hub asks for, plus a scripted ``/api/chat``)
behind the real gateway (``start_gateway``), read over a real socket."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import attrs
import pytest
from aiohttp import web
from gleitzeit_ollama import plugin as ollama_plugin

from gleitzeit_core._gateway import start_gateway
from gleitzeit_core._plugins import PluginManager
from gleitzeit_core._runtime import Runtime

LOOPBACK = "127.0.0.1"
MODEL = "llama3.2"
TAGS = {"models": [{"name": f"{MODEL}:latest", "model": f"{MODEL}:latest", "size": 1}]}
# valid JSON an encoder would write otherwise: spaces, key order, escapes, a 100-bit integer
ODD_LINES = [
    b'{ "model" : "llama3.2", "message": {"role":"assistant","content":"caf\\u00e9"},'
    b' "done" : false, "seq": 1267650600228229401496703205376 }',
    b'{"done":false,"message":{"content":" \\"quoted\\"","role":"assistant"},"model":"llama3.2"}',
    b'{"model":"llama3.2","message":{"role":"assistant","content":""},"done":true,'
    b'"done_reason":"stop","eval_count":2}',
]


@attrs.define
class Upstream:
    """What ``/api/chat`` sends: ``lines``, each followed by waiting for the event at the same
    index of ``gates`` (if any) before the next."""

    lines: list[bytes]
    gates: dict[int, asyncio.Event] = attrs.field(factory=dict)
    url: str = ""


async def _serve_upstream(upstream: Upstream) -> web.AppRunner:
    async def chat(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        for i, line in enumerate(upstream.lines):
            await response.write(line + b"\n")
            gate = upstream.gates.get(i)
            if gate is not None:
                await asyncio.wait_for(gate.wait(), 30)
        await response.write_eof()
        return response

    async def tags(request: web.Request) -> web.Response:
        return web.json_response(TAGS)

    async def version(request: web.Request) -> web.Response:
        return web.json_response({"version": "0.9.0"})

    async def ps(request: web.Request) -> web.Response:
        return web.json_response({"models": []})

    app = web.Application()
    app.router.add_post("/api/chat", chat)
    app.router.add_get("/api/tags", tags)
    app.router.add_get("/api/version", version)
    app.router.add_get("/api/ps", ps)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, LOOPBACK, 0)
    await site.start()
    upstream.url = f"http://{LOOPBACK}:{runner.addresses[0][1]}"
    return runner


@pytest.fixture
async def relay(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Any]:
    """``await relay(upstream)`` -> the URL of a gateway whose one instance is ``upstream``."""
    monkeypatch.delenv("GLEITZEIT_GATEWAY_TOKEN", raising=False)
    cleanups: list[Any] = []

    async def start(upstream: Upstream) -> str:
        cleanups.append((await _serve_upstream(upstream)).cleanup)
        manager = PluginManager(autoload=False)
        manager.load()
        manager.add(ollama_plugin, "ollama")
        hub = {
            "kind": "ollama",
            "discovery": ["static"],
            "health": {"interval": 30.0, "timeout": 5.0},
            "resources": [{"id": "up", "url": upstream.url}],
        }
        runtime = Runtime.from_config({"hubs": {"llm": hub}}, plugins=manager)
        await runtime.start()
        cleanups.append(runtime.stop)
        runner = await start_gateway(runtime, LOOPBACK, 0)
        cleanups.append(runner.cleanup)
        return f"http://{LOOPBACK}:{runner.addresses[0][1]}"

    try:
        yield start
    finally:
        for cleanup in reversed(cleanups):
            await cleanup()


BODY = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}


async def test_stream_lines_reach_the_client_as_the_instance_sent_them(relay: Any) -> None:
    """A streamed chat's lines come out byte for byte as the instance wrote them (checked, not
    re-encoded): spacing, key order, escapes and a 100-bit integer survive, in order."""
    url = await relay(Upstream(lines=ODD_LINES))
    async with aiohttp.ClientSession() as http, http.post(f"{url}/api/chat", json=BODY) as reply:
        assert reply.status == 200
        body = await reply.read()
    assert body == b"".join(line + b"\n" for line in ODD_LINES)


async def test_a_chunk_goes_out_before_the_next_one_exists(relay: Any) -> None:
    """Writing chunks that arrive together at once never holds one back: the instance sends
    its second chunk only after the client has read the first through the gateway."""
    first_read = asyncio.Event()
    url = await relay(Upstream(lines=ODD_LINES, gates={0: first_read}))
    async with aiohttp.ClientSession() as http, http.post(f"{url}/api/chat", json=BODY) as reply:
        assert reply.status == 200
        line = await asyncio.wait_for(reply.content.readline(), 10)
        assert line == ODD_LINES[0] + b"\n"
        first_read.set()
        rest = await asyncio.wait_for(reply.content.read(), 10)
    assert rest == ODD_LINES[1] + b"\n" + ODD_LINES[2] + b"\n"


async def test_many_chunks_arriving_together_all_arrive_in_order(relay: Any) -> None:
    """A burst of 2,000 chunks sent at once (so the relay joins them into fewer writes) reaches
    the client complete and in order, ending with the final chunk."""
    lines = [
        b'{"model":"llama3.2","message":{"role":"assistant","content":"t%d"},"done":false}' % i
        for i in range(2000)
    ]
    lines.append(ODD_LINES[2])
    url = await relay(Upstream(lines=lines))
    async with aiohttp.ClientSession() as http, http.post(f"{url}/api/chat", json=BODY) as reply:
        body = await reply.read()
    assert body.splitlines() == lines
