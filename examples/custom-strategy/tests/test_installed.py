"""The example, installed: listed by `gleitzeit plugins list` and selected by name from a
config, exactly as a user installing a third-party strategy would see it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from gleitzeit_core import PluginManager, Runtime
from gleitzeit_core.testing import echo


def plugins_list() -> dict[str, dict[str, object]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLEITZEIT_")}
    result = subprocess.run(
        [sys.executable, "-m", "gleitzeit_core", "plugins", "list", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    return {p["name"]: p for p in json.loads(result.stdout)["plugins"]}


async def test_example_strategy_plugin_is_listed_and_selectable() -> None:
    """The example distribution in examples/custom-strategy (installed by the test setup) is
    listed by `plugins list` with its strategy, and a config selects that strategy by name."""
    listed_plugins = plugins_list()
    assert listed_plugins["sticky-strategy"]["registered"] == {"strategies": ["sticky"]}
    assert listed_plugins["sticky-strategy"]["distribution"] == "gleitzeit-sticky-strategy"

    manager = PluginManager(allow=["sticky-strategy"])
    manager.load()
    manager.add(echo, "echo")
    config = {
        "hubs": {
            "e": {
                "kind": "echo",
                "strategy": {"kind": "sticky", "max_in_flight": 4},
                "resources": [{"url": f"echo://r{i}"} for i in range(4)],
            }
        }
    }
    async with Runtime.from_config(config, plugins=manager) as runtime:
        assert type(runtime.hubs["e"].strategy).__name__ == "StickyStrategy"
        served = {(await runtime.execute("echo/say", {"text": "x"}))["resource"] for _ in range(10)}
    assert len(served) == 1
