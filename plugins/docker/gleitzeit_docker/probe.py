"""The ``docker`` probe: an engine is healthy when ``GET /_ping`` answers 200 in time.

For ``unix://``, ``tcp://`` and ``http://`` engines the probe speaks one line of HTTP/1.0
over a plain socket (no client session to keep, nothing to leak); other transports (TLS,
ssh) go through the hub's ``Engine`` (``GET /version``). It never raises: a failure is a
``ProbeResult(False, detail="engine unavailable: ...")``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from typing import Any
from urllib.parse import urlsplit

from gleitzeit_core import ProbeResult, Resource

__all__ = ["DockerProbe", "ping"]

_REQUEST = b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n"


async def _open(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    if url.startswith("unix://"):
        return await asyncio.open_unix_connection(url[len("unix://") :])
    parts = urlsplit(url)
    if parts.hostname is None:
        raise ValueError(f"{url!r} names no host")
    return await asyncio.open_connection(parts.hostname, parts.port or 2375)


async def ping(url: str) -> int:
    """The HTTP status of ``GET /_ping`` on a unix/tcp/http engine URL (no timeout here)."""
    reader, writer = await _open(url)
    try:
        writer.write(_REQUEST)
        await writer.drain()
        head = await reader.readline()
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    parts = head.split()
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        raise ValueError(f"not an HTTP answer: {head[:80]!r}")
    return int(parts[1])


def _plain(url: str) -> bool:
    """Plain HTTP on the socket (a ``tcp://`` engine speaks TLS when DOCKER_TLS_VERIFY=1,
    as the engine layer assumes too)."""
    if url.startswith("tcp://"):
        return os.environ.get("DOCKER_TLS_VERIFY") != "1"
    return url.startswith(("unix://", "http://"))


class DockerProbe:
    """Registered as ``docker``; built by the core with the health ``timeout`` and the hub."""

    name = "docker"

    def __init__(self, *, timeout: float = 2.0, hub: Any = None) -> None:
        if not timeout > 0:
            raise ValueError(f"probe timeout must be > 0, got {timeout!r}")
        self.timeout = timeout
        self.hub = hub

    async def probe(self, resource: Resource) -> ProbeResult:
        url = resource.endpoint
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.timeout):
                if _plain(url):
                    status = await ping(url)
                else:
                    await self._engine_ping(resource)
                    status = 200
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            detail = f"no answer to /_ping within {self.timeout:g} s"
            return ProbeResult(False, None, f"engine unavailable: {url}: {detail}")
        except Exception as exc:  # a probe reports, it never raises
            text = str(exc)
            if text.startswith("engine unavailable"):
                return ProbeResult(False, None, text)
            detail = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
            return ProbeResult(False, None, f"engine unavailable: {url}: {detail}")
        latency = time.monotonic() - started
        if status != 200:
            return ProbeResult(False, latency, f"engine {url} answered /_ping with HTTP {status}")
        return ProbeResult(True, latency)

    async def _engine_ping(self, resource: Resource) -> None:
        engine_for = getattr(self.hub, "engine_for", None)
        if engine_for is not None:
            await engine_for(resource).ping(self.timeout)
            return
        from gleitzeit_docker.engine import Engine

        engine = Engine(resource.endpoint)
        try:
            await engine.ping(self.timeout)
        finally:
            await engine.close()
