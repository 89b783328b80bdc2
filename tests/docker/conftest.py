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

import functools
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import quote

import pytest
import pytest_asyncio
from gleitzeit_docker.engine import Engine
from gleitzeit_docker.pool import PoolConfig, WarmPool
from gleitzeit_docker.profiles import Profile, load_profiles

IMAGE = os.environ.get("GLEITZEIT_TEST_IMAGE", "localpython:3")
HUB_ID = f"gz-test-{uuid.uuid4().hex[:8]}"
_HOW = (
    "start one with `DOCKER_CI_ROOT=/tmp/ci-docker bash .ci/docker-engine.sh start && "
    "DOCKER_CI_ROOT=/tmp/ci-docker bash .ci/docker-engine.sh image` and "
    "`export DOCKER_HOST=unix:///tmp/ci-docker/docker.sock`"
)


def _http_status(host: str, path: str) -> int:
    """GET ``path`` from the engine with plain sockets (2 s timeout); the HTTP status."""
    if host.startswith("unix://"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(2.0)
        sock.connect(host[len("unix://") :])
    elif host.startswith("tcp://"):
        name, _, port = host[len("tcp://") :].rpartition(":")
        sock = socket.create_connection((name, int(port)), timeout=2.0)
    else:
        raise OSError(f"the test probe does not support DOCKER_HOST={host!r}")
    with sock:
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: docker\r\n\r\n".encode())
        head = sock.recv(64)
    return int(head.split()[1])


@functools.cache
def engine_problem() -> str | None:
    """Why the Docker tests cannot run here, or None if they can."""
    host = os.environ.get("DOCKER_HOST")
    if not host:
        return f"DOCKER_HOST is not set; {_HOW}"
    try:
        if _http_status(host, "/_ping") != 200:
            return f"the engine at {host} did not answer /_ping with 200; {_HOW}"
        if _http_status(host, f"/images/{quote(IMAGE, safe='')}/json") != 200:
            return (
                f"image {IMAGE!r} is missing on {host}; build it with "
                "`DOCKER_CI_ROOT=/tmp/ci-docker bash .ci/docker-engine.sh image`"
            )
    except (OSError, ValueError, IndexError) as exc:
        return f"cannot reach the engine at {host} ({exc}); {_HOW}"
    return None


def require_engine() -> None:
    problem = engine_problem()
    if problem is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"Docker engine required in CI: {problem}", pytrace=False)
    pytest.skip(f"no usable Docker engine: {problem} (in CI, with CI set, this fails)")


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
    eng = Engine()
    await eng.ping()
    yield eng
    await eng.remove_all(HUB_ID)
    await eng.close()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def pool(engine: Engine) -> AsyncIterator[WarmPool]:
    """A shared runner-mode pool, large enough for the 16-way concurrency test."""
    shared = WarmPool(engine, hub_id=HUB_ID, config=PoolConfig(max_size=16, acquire_timeout=60))
    yield shared
    await shared.close()


@pytest_asyncio.fixture(loop_scope="session")
async def make_pool(engine: Engine) -> AsyncIterator[Callable[..., WarmPool]]:
    """Factory for private pools: ``make_pool([engines], **PoolConfig fields)``; all are
    closed at the end of the test."""
    made: list[WarmPool] = []

    def factory(engines: Engine | list[Engine] | None = None, **config: Any) -> WarmPool:
        new = WarmPool(engines or engine, hub_id=HUB_ID, config=PoolConfig(**config))
        made.append(new)
        return new

    yield factory
    for each in made:
        await each.close()
