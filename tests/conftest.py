"""Settings for the whole suite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# A shared 2-core CI machine can stall any single example for a moment; a generous deadline
# keeps hypothesis about properties, not about the machine's load.
_COMMON = {"deadline": 2_000, "suppress_health_check": [HealthCheck.too_slow]}

# CI: derandomized with a fixed example budget, so a run is repeatable and a red run is a real
# regression; a failure found while exploring becomes an @example and is then checked here too.
settings.register_profile("ci", derandomize=True, max_examples=100, print_blob=True, **_COMMON)
# Development: random seeds and the example database, so each run explores new inputs.
settings.register_profile("dev", **_COMMON)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
)


def isolate_from_machine(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, plugins: str = "ollama"
) -> None:
    """Nothing of the machine's environment leaks into a test: no user config (its own
    ``XDG_CONFIG_HOME``), config file, gateway token, origins or ``OLLAMA_HOST(S)``; child
    processes (``gleitzeit serve``) load only ``plugins``."""
    monkeypatch.setenv("GLEITZEIT_LOAD_PLUGINS", plugins)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    for name in (
        "OLLAMA_HOST",
        "OLLAMA_HOSTS",
        "GLEITZEIT_CONFIG",
        "GLEITZEIT_DISABLED_PLUGINS",
        "GLEITZEIT_GATEWAY_TOKEN",
        "GLEITZEIT_ORIGINS",
    ):
        monkeypatch.delenv(name, raising=False)
