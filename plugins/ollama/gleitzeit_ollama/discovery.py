"""Finding Ollama instances: the ``env`` and ``scan`` discoverers.

``env`` reads ``OLLAMA_HOSTS`` (comma-separated) or else ``OLLAMA_HOST``, each entry written as
``host``, ``host:port`` or ``http(s)://host:port[/path]`` - the forms the official clients
accept, with their defaults (port 11434 without a scheme; 80/443 with one; ``0.0.0.0`` means
this machine). ``scan`` (opt-in) asks ``GET /api/version`` on a few loopback ports (11434-11439
unless ``scan_ports`` says otherwise) with a short timeout and keeps those that answer.

The core calls each factory with ``specs=, config=, settings=, hub_name=``; ids are
``host:port`` like the ids the core gives configured resources, so one instance found twice is
added once.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from typing import Any

import aiohttp

from gleitzeit_core import ResourceSpec, resource_id_for
from gleitzeit_ollama.probe import get_small_json
from gleitzeit_ollama.settings import OllamaSettings

__all__ = ["EnvDiscoverer", "ScanDiscoverer", "endpoint_of", "make_env", "make_scan"]

DEFAULT_PORT = 11434
_ANY_ADDRESS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def endpoint_of(value: str) -> str:
    """``OLLAMA_HOST`` syntax -> ``http://host:port[/path]``; ``ValueError`` when unusable."""
    text = value.strip()
    if not text:
        raise ValueError("empty host")
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest, port = "http", text, DEFAULT_PORT
    else:
        scheme = scheme.lower()
        if scheme not in ("http", "https"):
            raise ValueError(f"{value!r}: scheme must be http or https")
        port = 443 if scheme == "https" else 80
    hostport, slash, path = rest.partition("/")
    path = (slash + path).rstrip("/")
    userinfo, at, hostport = hostport.rpartition("@")  # kept in the URL, never in the id
    host = hostport
    if hostport.startswith("["):  # [v6]:port
        close = hostport.find("]")
        if close < 0:
            raise ValueError(f"{value!r}: unclosed [ in an IPv6 address")
        host, tail = hostport[1:close], hostport[close + 1 :]
        if tail:
            port = _port(tail.removeprefix(":"), value)
    elif hostport.count(":") == 1:
        host, _, port_text = hostport.partition(":")
        port = _port(port_text, value)
    host = _ANY_ADDRESS.get(host, host)
    if any(c.isspace() for c in host):
        raise ValueError(f"{value!r}: spaces in the host name")
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{userinfo}{at}{shown}:{port}{path}"


def _port(text: str, value: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(f"{value!r}: port must be a number between 1 and 65535")
    return int(text)


def spec_for(endpoint: str, label: str, settings: OllamaSettings) -> ResourceSpec:
    return ResourceSpec(
        id=resource_id_for(endpoint),
        endpoint=endpoint,
        labels=frozenset({label}),
        options={"num_parallel": settings.default_num_parallel},
    )


class EnvDiscoverer:
    """Instances named by ``OLLAMA_HOSTS`` / ``OLLAMA_HOST`` (read at each discovery)."""

    name = "env"

    def __init__(self, settings: OllamaSettings, environ: Mapping[str, str] | None = None):
        self.settings = settings
        self.environ = environ

    def entries(self) -> list[str]:
        env = os.environ if self.environ is None else self.environ
        many = env.get("OLLAMA_HOSTS", "").strip()
        if many:
            return [part.strip() for part in many.split(",") if part.strip()]
        one = env.get("OLLAMA_HOST", "").strip()
        return [one] if one else []

    async def discover(self, hub: Any) -> list[ResourceSpec]:
        specs: list[ResourceSpec] = []
        problems: list[str] = []
        for entry in self.entries():
            try:
                specs.append(spec_for(endpoint_of(entry), "env", self.settings))
            except ValueError as exc:
                problems.append(str(exc))
        if problems:
            # a typo in OLLAMA_HOSTS must be visible (the hub keeps it in discovery_errors)
            raise ValueError("OLLAMA_HOSTS/OLLAMA_HOST: " + "; ".join(problems))
        return specs


class ScanDiscoverer:
    """Loopback ports that answer ``/api/version`` like an Ollama server."""

    name = "scan"

    def __init__(self, settings: OllamaSettings) -> None:
        self.settings = settings

    async def discover(self, hub: Any) -> list[ResourceSpec]:
        borrowed = hub.open_session() if hasattr(hub, "open_session") else None
        session = borrowed or aiohttp.ClientSession()
        try:
            host = self.settings.scan_host
            shown = f"[{host}]" if ":" in host else host
            endpoints = [f"http://{shown}:{port}" for port in self.settings.scan_ports]
            answers = await asyncio.gather(*(self._answers(session, e) for e in endpoints))
        finally:
            if borrowed is None:
                await session.close()
        found = zip(endpoints, answers, strict=True)
        return [spec_for(endpoint, "scan", self.settings) for endpoint, ok in found if ok]

    async def _answers(self, session: aiohttp.ClientSession, endpoint: str) -> bool:
        try:
            _, data = await get_small_json(
                session,
                endpoint,
                "/api/version",
                timeout=self.settings.scan_timeout,
                settings=self.settings,
            )
        except Exception:  # refused, timed out, an HTTP error, a bad or oversized answer
            return False  # whatever answers there, it is not a usable Ollama server
        return isinstance(data.get("version"), str)


def _settings(settings: Any) -> OllamaSettings:
    return settings if isinstance(settings, OllamaSettings) else OllamaSettings()


def make_env(*, settings: Any = None, **_: Any) -> EnvDiscoverer:
    return EnvDiscoverer(_settings(settings))


def make_scan(*, settings: Any = None, **_: Any) -> ScanDiscoverer:
    return ScanDiscoverer(_settings(settings))
