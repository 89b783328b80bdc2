# ruff: noqa: F811 - fixtures imported from tests.ollama.conftest are parameters here too
"""Fixtures for the gateway's security tests: a real gateway (``start_gateway``: the guarded
site with every limit of ``[gateway]``) on 127.0.0.1 over Ollama simulators, and clients that
attack it over real sockets. The sandbox's tests (``test_sandbox_*.py``) bring their own."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import pytest
import uvloop
from aiohttp import web
from gleitzeit_ollama import plugin as ollama_plugin

from gleitzeit_core._runtime import Runtime
from gleitzeit_core.testing.serve import InProcessGateways

# the simulator fixtures are the Ollama tests' own
from tests.conftest import isolate_from_machine
from tests.ollama.conftest import SimFactory, sim_factory  # noqa: F401

# the gateway serves on uvloop with [gateway] speedups (the gleitzeit-core[speed] extra): the
# connection limits and the exposure checks run on both loops
_BOTH_LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
_ON_BOTH_LOOPS = {"test_gateway_limits", "test_gateway_exposure"}


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> Any:
    """The event loops each test here runs on."""
    module = getattr(item, "module", None)
    name = getattr(module, "__name__", "").rsplit(".", 1)[-1]
    return _BOTH_LOOPS if name in _ON_BOTH_LOOPS else {"asyncio": asyncio.new_event_loop}


LOOPBACK = "127.0.0.1"
MODELS = ["llama3.2", "nomic-embed-text", "llava"]
ADMIN_TOKEN = "admin-secret-token"
CHAT_TOKEN = "chat-secret-token"
# ``chat``: chat and listing on llama3.2 only; ``admin``: everything
KEYS: dict[str, Any] = {
    "ops": {"token": ADMIN_TOKEN, "admin": True},
    "chat": {
        "token_sha256": hashlib.sha256(CHAT_TOKEN.encode()).hexdigest(),
        "methods": ["llm/chat", "llm/list_models"],
        "models": ["llama3.2"],
    },
}


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No user config, token, origins or Ollama hosts leaking in from the machine; only the
    Ollama plugin. Not autouse: the sandbox tests in this folder load other plugins."""
    isolate_from_machine(monkeypatch, tmp_path)


@attrs.define
class Served:
    url: str
    port: int
    runtime: Runtime
    runner: web.AppRunner
    sim_url: str

    def hub(self) -> Any:
        return self.runtime.hubs["llm"]

    async def sim_stats(self) -> dict[str, Any]:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{self.sim_url}/_sim/stats") as reply,
        ):
            data: dict[str, Any] = await reply.json()
            return data


ServeFactory = Callable[..., Awaitable[Served]]


@pytest.fixture
async def serve_gateway(sim_factory: SimFactory, isolated: None) -> AsyncIterator[ServeFactory]:
    """``await serve_gateway(gateway={...}, hub={...}, sim={...}, userinfo=None)`` -> a
    started runtime over one simulator (hub ``llm``, instance ``s0``) behind
    ``start_gateway`` on 127.0.0.1:<free port>."""
    async with InProcessGateways() as gateways:

        async def start(
            *,
            gateway: dict[str, Any] | None = None,
            hub: dict[str, Any] | None = None,
            sim: dict[str, Any] | None = None,
            userinfo: str | None = None,
        ) -> Served:
            (one,) = await sim_factory(1, models=MODELS, name="s0", **(sim or {}))
            # with ``userinfo`` the instance is configured by a URL with credentials and no id
            resource = (
                {"url": one.url.replace("://", f"://{userinfo}@")}
                if userinfo
                else {"id": "s0", "url": one.url}
            )
            hub_table: dict[str, Any] = {
                "kind": "ollama",
                "discovery": ["static"],
                "health": {"interval": 0.2, "timeout": 1.0},
                "resources": [resource],
                **(hub or {}),
            }
            config = {"gateway": gateway or {}, "hubs": {"llm": hub_table}}
            served = await gateways.start(config, plugins=[(ollama_plugin, "ollama")], limits=True)
            return Served(served.url, served.port, served.runtime, served.runner, one.url)

        yield start


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain aiohttp session (no cookie jar: cookies are sent only where a test says)."""
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=30), cookie_jar=aiohttp.DummyCookieJar()
    ) as session:
        yield session


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


CHAT = {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}], "stream": False}


async def raw_exchange(port: int, request: bytes, *, timeout: float = 10.0) -> bytes:
    """Send raw bytes to the gateway and read until it closes (or ``timeout``)."""
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    try:
        writer.write(request)
        await writer.drain()
        chunks = []
        async with asyncio.timeout(timeout):
            while chunk := await reader.read(65536):
                chunks.append(chunk)
                if b"\r\n\r\n" in b"".join(chunks) and _complete(b"".join(chunks)):
                    break
        return b"".join(chunks)
    finally:
        writer.close()


def _complete(data: bytes) -> bool:
    head, _, body = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value.strip())
    return False


def status_of(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1])
