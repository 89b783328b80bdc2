"""Fixtures for the dashboard's tests: a gateway in the test's event loop (echo hub, the
dashboard plugin) on 127.0.0.1 port 0, torn down with everything it started."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import aiohttp
import attrs
import gleitzeit_dashboard.plugin
import pytest
from aiohttp import web

from gleitzeit_core._gateway import build_app
from gleitzeit_core._plugins import PluginManager
from gleitzeit_core._runtime import Runtime
from gleitzeit_core.testing import echo

LOOPBACK = "127.0.0.1"
TOKEN = "dash-test-key"


def echo_config(*ids: str) -> dict[str, Any]:
    resources = [{"id": rid, "url": f"echo://{i}"} for i, rid in enumerate(ids)]
    return {"hubs": {"e": {"kind": "echo", "retries": 0, "resources": resources}}}


@attrs.define
class Served:
    url: str
    runtime: Runtime
    app: web.Application

    @property
    def origin(self) -> str:
        return self.url

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])


ServeFactory = Callable[..., Awaitable[Served]]
WITH_DASHBOARD = ((echo, "echo"), (gleitzeit_dashboard.plugin, "dashboard"))


@pytest.fixture
async def serve_gateway() -> AsyncIterator[ServeFactory]:
    """``await serve_gateway(config, plugins=WITH_DASHBOARD, token=None, middlewares=(),
    manager=None)`` -> a started runtime with those plugins (or ``manager``'s) and its gateway;
    ``middlewares`` run inside the gateway's."""
    started: list[tuple[web.AppRunner, Runtime]] = []

    async def start(
        config: dict[str, Any],
        *,
        plugins: Sequence[tuple[Any, str]] = WITH_DASHBOARD,
        token: str | None = None,
        middlewares: tuple[Any, ...] = (),
        manager: PluginManager | None = None,
    ) -> Served:
        if manager is None:
            manager = PluginManager(autoload=False)
            manager.load()
            for module, name in plugins:
                manager.add(module, name)
        runtime = Runtime.from_config(config, plugins=manager)
        await runtime.start()
        app = build_app(runtime, token=token)
        app.middlewares.extend(middlewares)
        runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await runner.setup()
        started.append((runner, runtime))
        site = web.TCPSite(runner, LOOPBACK, 0)
        await site.start()
        return Served(f"http://{LOOPBACK}:{runner.addresses[0][1]}", runtime, app)

    try:
        yield start
    finally:
        for runner, runtime in reversed(started):
            await runner.cleanup()
            await runtime.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain aiohttp session (20 s overall timeout) that keeps no cookies between requests,
    so each test says exactly which key it sends."""
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=20), cookie_jar=aiohttp.DummyCookieJar()
    ) as session:
        yield session
