# ruff: noqa: F811 - the fixture imported from tests.dashboard.conftest is a parameter here too
"""Fixtures for the Prometheus tests: a gateway with the echo and Prometheus plugins in the
test's event loop on 127.0.0.1, and the promtool and prometheus binaries of Debian's package."""

from __future__ import annotations

import shutil
from collections.abc import Awaitable, Callable
from typing import Any

import gleitzeit_prometheus.plugin
import pytest

from gleitzeit_core.testing import echo
from tests.dashboard.conftest import (  # noqa: F401
    Served,
    ServeFactory,
    echo_config,
    serve_gateway,
)

PROMETHEUS = "/usr/bin/prometheus"
PROMTOOL = "/usr/bin/promtool"
# scripts/test.sh installs Debian's prometheus (which brings promtool); without it this fails.
for binary in (PROMETHEUS, PROMTOOL):
    assert shutil.which(binary), f"{binary} is missing: apt-get install prometheus"

WITH_PROMETHEUS = ((echo, "echo"), (gleitzeit_prometheus.plugin, "prometheus"))


@pytest.fixture
def metrics_gateway(
    serve_gateway: ServeFactory,
) -> Callable[..., Awaitable[Served]]:
    """``await metrics_gateway(*ids, token=None)`` -> an echo hub ``e`` over ``ids`` behind a
    gateway that serves /metrics."""

    async def start(*ids: str, token: str | None = None, **kwargs: Any) -> Served:
        return await serve_gateway(
            echo_config(*ids), plugins=WITH_PROMETHEUS, token=token, **kwargs
        )

    return start
