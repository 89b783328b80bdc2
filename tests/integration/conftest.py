"""Tests marked ``docker`` need the engine named by ``DOCKER_HOST`` (never a default one)."""

from __future__ import annotations

import pytest

from ..docker_engine import require_engine


@pytest.fixture(autouse=True)
def _docker_marker_gate(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("docker") is not None:
        require_engine()
