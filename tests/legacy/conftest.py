"""Fixtures for the legacy shim tests: an isolated environment, Ollama simulators on loopback
sockets, and the real Docker engine for the Docker side.

Nothing here imports the old ``gleitzeit`` package at module level: ``tox -e legacy-disabled``
runs ``test_off_switch.py`` with the shim switched off, where that import must fail.

Docker tests (marker ``docker``) need the engine named by ``DOCKER_HOST`` and the image
``localpython:3`` (or ``GLEITZEIT_TEST_IMAGE``): without them they are skipped with the reason
on a developer machine and fail when ``CI`` is set. Every container they create carries a hub
id starting with this session's prefix; the session end checks none is left (and removes any).
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from gleitzeit_ollama.sim import OllamaSimulator, SimConfig

from ..docker_engine import IMAGE, engine_problem, require_engine

LOOPBACK = "127.0.0.1"
MODEL = "llama3.2"
HUB_PREFIX = f"gz-legacy-{uuid.uuid4().hex[:8]}"
PLUGINS = "ollama,docker,breaker-consecutive,legacy"

# fast but real pacing; tokens as fast as possible so max_tokens tests stay quick
FAST: dict[str, Any] = {
    "latency_ms": 3.0,
    "tokens_per_s": 0.0,
    "load_ms": 5.0,
    "max_tokens": 6,
    "pull_ms": 5.0,
}
_UNSET = (
    "GLEITZEIT_CONFIG",
    "GLEITZEIT_DISABLED_PLUGINS",
    "GLEITZEIT_STRICT_PLUGINS",
    "GLEITZEIT_PYTHON_ALLOW_LOCAL",
    "OLLAMA_HOST",
    "OLLAMA_HOSTS",
)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Only the plugins the shim uses, no user config, no config file from the machine."""
    monkeypatch.setenv("GLEITZEIT_LOAD_PLUGINS", PLUGINS)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    for name in _UNSET:
        monkeypatch.delenv(name, raising=False)
    for name in list(os.environ):
        if name.startswith(("GLEITZEIT_OLLAMA_", "GLEITZEIT_PYTHON_", "GLEITZEIT_DOCKER_")):
            monkeypatch.delenv(name, raising=False)


class Sims:
    """``await sims(n, **SimConfig overrides)`` -> started simulators; all stopped at the end."""

    def __init__(self) -> None:
        self.started: list[OllamaSimulator] = []

    async def __call__(self, n: int = 1, **overrides: Any) -> list[OllamaSimulator]:
        made = []
        for _ in range(n):
            config = {"models": [MODEL, "nomic-embed-text", "llava"], **FAST, **overrides}
            config.setdefault("name", f"sim-{len(self.started)}")
            sim = OllamaSimulator(SimConfig(**config))
            await sim.start(LOOPBACK, 0)
            self.started.append(sim)
            made.append(sim)
        return made

    async def stop(self) -> None:
        for sim in reversed(self.started):
            await sim.stop()


@pytest.fixture
async def sims() -> AsyncIterator[Sims]:
    factory = Sims()
    try:
        yield factory
    finally:
        await factory.stop()


def requests_to(sim: OllamaSimulator, path: str = "/api/generate") -> int:
    """How many requests ``sim`` received on ``path``."""
    return int(sim.stats()["requests"].get(path, 0))


async def preload(sim: OllamaSimulator, model: str = MODEL) -> None:
    """Load ``model`` on ``sim`` (as a warm server has it) and reset its counters."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{sim.url}/api/generate", json={"model": model, "keep_alive": "1h"}) as r,
    ):
        assert r.status == 200, await r.text()
    sim.reset_stats()


def instances(sims: list[OllamaSimulator], **extra: Any) -> list[dict[str, Any]]:
    """Old instance dicts over ``sims`` (ids ``i0``, ``i1``, ...)."""
    return [
        {"id": f"i{index}", "url": sim.url, "models": [MODEL], "max_concurrent": 4, **extra}
        for index, sim in enumerate(sims)
    ]


# -- the Docker engine ----------------------------------------------------------------------
@pytest.fixture(autouse=True)
def _docker_gate(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("docker") is not None:
        require_engine()


async def our_containers() -> list[dict[str, Any]]:
    """Containers on the engine whose hub label starts with this session's prefix."""
    host = os.environ["DOCKER_HOST"]
    connector = aiohttp.UnixConnector(path=host[len("unix://") :])
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.get("http://docker/containers/json?all=1") as response,
    ):
        found = await response.json()
    return [
        c
        for c in found
        if str((c.get("Labels") or {}).get("gleitzeit.hub", "")).startswith(HUB_PREFIX)
    ]


async def remove_containers(ids: list[str]) -> None:
    host = os.environ["DOCKER_HOST"]
    connector = aiohttp.UnixConnector(path=host[len("unix://") :])
    async with aiohttp.ClientSession(connector=connector) as session:
        for cid in ids:
            async with session.delete(f"http://docker/containers/{cid}?force=1"):
                pass


@pytest.fixture(scope="session", autouse=True)
def _no_containers_left() -> Iterator[None]:
    """At the end of the session no container of these tests may be left on the engine."""
    yield
    host = os.environ.get("DOCKER_HOST", "")
    if not host.startswith("unix://") or engine_problem() is not None:
        return
    left = asyncio.run(our_containers())
    if left:
        asyncio.run(remove_containers([str(c["Id"]) for c in left]))
        names = json.dumps([c.get("Names") for c in left])
        pytest.fail(f"containers left behind by the legacy tests: {names}", pytrace=False)


def docker_config(label: str) -> dict[str, Any]:
    """``docker_config``/``config`` for the shim's Docker classes in these tests."""
    return {"image": IMAGE, "hub_id": f"{HUB_PREFIX}-{label}"}
