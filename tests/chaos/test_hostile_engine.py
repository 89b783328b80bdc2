"""A hostile Docker engine endpoint: ``Engine`` reads every answer with a bound.

The engine is impersonated by a small HTTP server on loopback (a real socket; a real dockerd
cannot be made hostile), answering every path the way the test says: an endless JSON body, an
endless progress line, garbage, JSON nested too deep. Each must end the call with an
``EngineAPIError`` of status 0 (which the hub counts against the engine as a server error)
after the client read at most its bound: the server counts what it managed to write before the
client hung up, and with backpressure that is the bound plus the sockets' buffers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web
from gleitzeit_docker.engine import Engine
from gleitzeit_docker.errors import EngineAPIError
from gleitzeit_docker.hub import failure_of

from gleitzeit_core import FailureClass

CAP = 1024 * 1024
SOCKET_SLACK = 16 * 1024 * 1024  # kernel socket buffers on loopback, generously
BLOCK = b"a" * 65536

Answer = Callable[[web.Request], Awaitable[web.StreamResponse]]


class FakeEngine:
    def __init__(self) -> None:
        self.written = 0
        self.answer: Answer = self.endless_body

    async def handle(self, request: web.Request) -> web.StreamResponse:
        return await self.answer(request)

    async def _endless(self, request: web.Request, head: bytes, block: bytes) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        try:
            await response.prepare(request)
            await response.write(head)
            while True:
                await response.write(block)
                self.written += len(block)
        except (ConnectionError, RuntimeError):
            return response

    async def endless_body(self, request: web.Request) -> web.StreamResponse:
        return await self._endless(request, b'{"Version":"', BLOCK)

    async def endless_line(self, request: web.Request) -> web.StreamResponse:
        return await self._endless(request, b'{"status":"', BLOCK)

    async def garbage(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=b"\x00\xff{[garbage" * 1000, content_type="application/json")

    async def deep(self, request: web.Request) -> web.StreamResponse:
        body = b"[" * 200_000 + b"]" * 200_000
        return web.Response(body=body, content_type="application/json")


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeEngine, Engine]]:
    """A fake engine on 127.0.0.1 and an ``Engine`` with a 1 MiB answer bound pointed at it."""
    fake = FakeEngine()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    engine = Engine(f"tcp://127.0.0.1:{port}", call_timeout=20.0, max_answer_bytes=CAP)
    try:
        yield fake, engine
    finally:
        await engine.close()
        await runner.cleanup()


def _is_engine_fault(exc: EngineAPIError) -> None:
    assert exc.status == 0
    failure = failure_of(exc, "e1")
    assert failure is not None
    assert failure.failure is FailureClass.SERVER_ERROR  # counted against the engine


async def test_an_endless_answer_stops_at_max_answer_bytes(
    fake: tuple[FakeEngine, Engine],
) -> None:
    """``/version`` that never ends: the ping fails naming max_answer_bytes, after the client
    read about the bound and no more."""
    server, engine = fake
    with pytest.raises(EngineAPIError) as caught:
        await engine.ping(timeout=20.0)
    assert "max_answer_bytes" in str(caught.value)
    _is_engine_fault(caught.value)
    assert server.written < CAP + SOCKET_SLACK


async def test_an_endless_progress_line_is_cut(fake: tuple[FakeEngine, Engine]) -> None:
    """A pull whose progress line never ends: refused at aiohttp's line bound, as the
    engine's fault, not as an unavailable engine and not after gigabytes."""
    server, engine = fake
    server.answer = server.endless_line
    with pytest.raises(EngineAPIError) as caught:
        await engine.call("pull", lambda: engine.docker.images.pull("x", stream=False))
    _is_engine_fault(caught.value)
    assert server.written < CAP + SOCKET_SLACK


@pytest.mark.parametrize("mode", ["garbage", "deep"])
async def test_undecodable_answers_are_the_engines_fault(
    fake: tuple[FakeEngine, Engine], mode: str
) -> None:
    """Garbage and JSON nested 200 000 deep: an ``EngineAPIError`` that says the answer was
    refused (never a RecursionError or a 'connection' failure)."""
    server, engine = fake
    server.answer = getattr(server, mode)
    with pytest.raises(EngineAPIError) as caught:
        await engine.list_containers({"gleitzeit.hub": "x"})
    assert "refused" in str(caught.value)
    _is_engine_fault(caught.value)
