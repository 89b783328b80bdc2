"""Fixtures for the dashboard's tests: a gateway in the test's event loop (echo hub, the
dashboard plugin) on 127.0.0.1 port 0, torn down with everything it started."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import gleitzeit_dashboard.plugin
import pytest

from gleitzeit_core.testing import echo
from gleitzeit_core.testing.serve import InProcessGateways, ServedGateway

TOKEN = "dash-test-key"


def echo_config(*ids: str) -> dict[str, Any]:
    resources = [{"id": rid, "url": f"echo://{i}"} for i, rid in enumerate(ids)]
    return {"hubs": {"e": {"kind": "echo", "retries": 0, "resources": resources}}}


Served = ServedGateway
ServeFactory = Callable[..., Awaitable[Served]]
WITH_DASHBOARD = ((echo, "echo"), (gleitzeit_dashboard.plugin, "dashboard"))


@pytest.fixture
async def serve_gateway() -> AsyncIterator[ServeFactory]:
    """``await serve_gateway(config, plugins=WITH_DASHBOARD, token=None, middlewares=(),
    manager=None)`` -> a started runtime with those plugins (or ``manager``'s) and its gateway;
    ``middlewares`` run inside the gateway's."""
    async with InProcessGateways() as gateways:
        yield functools.partial(gateways.start, plugins=WITH_DASHBOARD)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain aiohttp session (20 s overall timeout) that keeps no cookies between requests,
    so each test says exactly which key it sends."""
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=20), cookie_jar=aiohttp.DummyCookieJar()
    ) as session:
        yield session
