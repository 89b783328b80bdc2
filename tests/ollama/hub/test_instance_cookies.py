"""An instance's cookies stay with nobody: the hub's calls keep no cookie jar."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from gleitzeit_ollama.client import make_session, post
from gleitzeit_ollama.settings import OllamaSettings
from gleitzeit_ollama.transport import UpstreamPool

from tests.loopback import serving


@pytest.fixture
async def instances() -> AsyncIterator[tuple[list[str], list[str | None]]]:
    """Two HTTP servers on loopback, reached as ``localhost`` (a name: a cookie jar keeps
    cookies of names, not of IP addresses; different ports, one cookie domain): each answers
    ``/api/generate`` with a ``Set-Cookie`` and records the ``Cookie`` header it was sent."""
    seen: list[str | None] = []

    async def generate(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Cookie"))
        response = web.json_response({"response": "ok", "done": True})
        response.set_cookie("session", f"secret-of-{request.url.port}", path="/")
        return response

    def instance() -> web.Application:
        app = web.Application()
        app.router.add_post("/api/generate", generate)
        return app

    async with serving(instance()) as first, serving(instance()) as second:
        yield [f"http://localhost:{first}", f"http://localhost:{second}"], seen


async def test_a_cookie_set_by_one_instance_is_never_sent_on(
    instances: tuple[list[str], list[str | None]],
) -> None:
    """An instance (or whatever answers at its address) sets a cookie; neither it nor another
    instance on the same host sees that cookie on the hub's next calls, so one instance
    cannot plant state that follows other clients' prompts."""
    urls, seen = instances
    session = make_session(OllamaSettings())
    pool = UpstreamPool(max_connections=4, connect_timeout=5.0, fallback=lambda: session)
    try:
        for url in (urls[0], urls[1], urls[0]):
            response = await post(
                pool, url + "/api/generate", b"{}", resource="x", connect_timeout=5.0
            )
            assert response.status == 200
            assert "Set-Cookie" in response.headers
            while not response.content.at_eof():
                await response.content.readany()
            response.release()
    finally:
        await pool.close()
        await session.close()
    assert seen == [None, None, None]
