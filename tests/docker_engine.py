"""Whether a real Docker engine is usable for the tests, shared by every test folder that
needs one (``tests/docker``, ``tests/legacy``, ``tests/chaos``).

Tests that need the engine are marked ``docker``. When it (or the image ``localpython:3``, or
``GLEITZEIT_TEST_IMAGE``) is missing they are *skipped* with the reason on a developer machine
and *fail* with the same message when ``CI`` is set: in CI a missing engine is a broken setup,
never a pass.
"""

from __future__ import annotations

import functools
import os
import socket
from urllib.parse import quote

import pytest

__all__ = ["CALL_TIMEOUT", "GENEROUS", "IMAGE", "engine_problem", "require_engine"]

IMAGE = os.environ.get("GLEITZEIT_TEST_IMAGE", "localpython:3")
# The budget of each engine call in the tests (the product's default is 30 s): removing a
# running container took longer than 30 s on a heavily loaded machine, a slow engine, not
# a broken one. Tests that check a budget pass their own.
CALL_TIMEOUT = 120.0
# PoolConfig timeouts for the tests: a container whose runner has not confirmed a clean state
# within ``health_timeout`` (2 s by default) is replaced, and the tests that check a container
# is reused would fail on a loaded machine; starting one may take longer than 20 s there.
GENEROUS = {"health_timeout": 30.0, "start_timeout": 60.0}
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
    """Skip (developer machine) or fail (``CI`` set) when no engine is usable."""
    problem = engine_problem()
    if problem is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"Docker engine required in CI: {problem}", pytrace=False)
    pytest.skip(f"no usable Docker engine: {problem} (in CI, with CI set, this fails)")
