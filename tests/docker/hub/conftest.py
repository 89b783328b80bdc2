"""Fixtures for the DockerHub tests: runtimes over the real engine named by ``DOCKER_HOST``.

The parent conftest gates every ``docker``-marked test (skip with the reason on a developer
machine, fail when ``CI`` is set). Every runtime here gets its own hub id (``HUB_ID-...``), so
its containers are told apart from the other tests'; the session teardown removes whatever
a failed test left under any of them.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from gleitzeit_docker.engine import LABEL_HUB, Engine

from gleitzeit_core import Runtime

from ...docker_engine import IMAGE, require_engine
from ..conftest import HUB_ID

_USED: set[str] = set()
_ENV = {"GLEITZEIT_LOAD_PLUGINS": "docker"}
_UNSET = ("GLEITZEIT_CONFIG", "GLEITZEIT_DISABLED_PLUGINS", "GLEITZEIT_STRICT_PLUGINS")


def hub_id(suffix: str) -> str:
    """A hub id of this test session (its containers are removed at the end)."""
    name = f"{HUB_ID}-{suffix}"
    _USED.add(name)
    return name


def hub_config(
    label: str,
    *,
    engines: list[str] | None = None,
    pool: dict[str, Any] | None = None,
    health: dict[str, Any] | None = None,
    **hub: Any,
) -> dict[str, Any]:
    """A config with one docker hub ``sandbox`` over the test engine and the test image."""
    table: dict[str, Any] = {
        "kind": "docker",
        "hub_id": hub_id(label),
        "engines": engines if engines is not None else [os.environ["DOCKER_HOST"]],
        "default_image": IMAGE,
        "datascience_image": IMAGE,
        "pool": {"max_size": 16, "acquire_timeout": 60.0, **(pool or {})},
        "health": {"interval": 0.5, "timeout": 1.0, **(health or {})},
    }
    table.update(hub)
    return {"hubs": {"sandbox": table}}


def _build(config: dict[str, Any]) -> Runtime:
    with pytest.MonkeyPatch.context() as patch:
        for key, value in _ENV.items():
            patch.setenv(key, value)
        for key in _UNSET:
            patch.delenv(key, raising=False)
        return Runtime.from_config(config)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Only this plugin, no user config, no config file from the environment."""
    for key, value in _ENV.items():
        monkeypatch.setenv(key, value)
    for key in _UNSET:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def hub_engine(engine: Engine) -> AsyncIterator[Engine]:
    """The session's engine; at the end, no container of any hub id used here is left."""
    yield engine
    for name in sorted(_USED):
        await engine.remove_all(name)


async def hub_containers(engine: Engine, runtime: Runtime) -> list[dict[str, Any]]:
    """The containers on the engine that carry the runtime's docker hub label."""
    hub = runtime.hubs["sandbox"]
    return await engine.list_containers({LABEL_HUB: hub.hub_id})  # type: ignore[attr-defined]


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def shared(hub_engine: Engine) -> AsyncIterator[Runtime]:
    """One started runtime for the tests that only run code (its pool stays warm)."""
    require_engine()
    runtime = _build(hub_config("shared"))
    await runtime.start()
    yield runtime
    await runtime.stop()


MakeRuntime = Callable[[dict[str, Any]], Awaitable[Runtime]]


@pytest_asyncio.fixture(loop_scope="session")
async def make_runtime(hub_engine: Engine) -> AsyncIterator[MakeRuntime]:
    """``await make_runtime(config)``: a started runtime, stopped at the end of the test."""
    made: list[Runtime] = []

    async def make(config: dict[str, Any]) -> Runtime:
        runtime = _build(config)
        made.append(runtime)
        await runtime.start()
        return runtime

    yield make
    for runtime in reversed(made):
        await runtime.stop()
