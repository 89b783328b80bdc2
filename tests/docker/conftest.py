"""Fixtures for the Docker tests: a real engine named by ``DOCKER_HOST``.

Tests marked ``docker`` need that engine and the image ``localpython:3`` (or
``GLEITZEIT_TEST_IMAGE``). When either is missing they are *skipped* with the reason on a
developer machine, and they *fail* with the same message when ``CI`` is set: in CI a
missing engine is a broken setup, never a pass.

Start the engine with:
    DOCKER_CI_ROOT=/tmp/ci-docker bash .ci/docker-engine.sh start
    DOCKER_CI_ROOT=/tmp/ci-docker bash .ci/docker-engine.sh image
    export DOCKER_HOST=unix:///tmp/ci-docker/docker.sock

All containers created here carry a per-session hub label; the session teardown removes
whatever a failed test may have left.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio
from gleitzeit_docker.engine import Engine
from gleitzeit_docker.pool import PoolConfig, WarmPool
from gleitzeit_docker.profiles import Profile, load_profiles

from ..docker_engine import CALL_TIMEOUT, GENEROUS, IMAGE, require_engine

HUB_ID = f"gz-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture(autouse=True)
def _docker_marker_gate(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("docker") is not None:
        require_engine()


@pytest.fixture(scope="session")
def hub_id() -> str:
    return HUB_ID


@pytest.fixture(scope="session")
def profiles() -> dict[str, Profile]:
    """The built-in profiles with the test image."""
    return dict(load_profiles({"default_image": IMAGE}).profiles)


@pytest.fixture(scope="session")
def sandboxed(profiles: dict[str, Profile]) -> Profile:
    return profiles["sandboxed"]


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def engine() -> AsyncIterator[Engine]:
    require_engine()  # session fixtures run before the autouse gate
    eng = Engine(call_timeout=CALL_TIMEOUT)
    await eng.ping()
    yield eng
    await eng.remove_all(HUB_ID)
    await eng.close()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def pool(engine: Engine) -> AsyncIterator[WarmPool]:
    """A shared runner-mode pool, large enough for the 16-way concurrency test."""
    config = PoolConfig(max_size=16, acquire_timeout=60, **GENEROUS)
    shared = WarmPool(engine, hub_id=HUB_ID, config=config)
    yield shared
    await shared.close()


@pytest_asyncio.fixture(loop_scope="session")
async def make_pool(engine: Engine) -> AsyncIterator[Callable[..., WarmPool]]:
    """Factory for private pools: ``make_pool([engines], **PoolConfig fields)`` (with the
    ``GENEROUS`` timeouts unless given); all are closed at the end of the test."""
    made: list[WarmPool] = []

    def factory(engines: Engine | list[Engine] | None = None, **config: Any) -> WarmPool:
        new = WarmPool(
            engines or engine, hub_id=HUB_ID, config=PoolConfig(**{**GENEROUS, **config})
        )
        made.append(new)
        return new

    yield factory
    for each in made:
        await each.close()
