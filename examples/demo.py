"""Interim demo: the same workload under the built-in p2c and the example `sticky` strategy.

Runs entirely in-process on the core's echo test hub (three resources, one slow), so it needs
no Ollama or Docker: it shows plugin discovery (the third-party `sticky` strategy is found
through its entry point), selection by name from a config, and the status table.
"""

from __future__ import annotations

import asyncio

from gleitzeit_core.plugins import PluginManager
from gleitzeit_core.runtime import Runtime
from gleitzeit_core.status import to_json
from gleitzeit_core.status_view import show_status
from gleitzeit_core.testing import echo


async def run(strategy: str) -> None:
    manager = PluginManager.from_env().load()
    manager.add(echo, "echo")
    config = {
        "hubs": {
            strategy: {
                "kind": "echo",
                "strategy": strategy,
                "resources": [{"url": f"echo://r{i}"} for i in range(3)],
            }
        }
    }
    async with Runtime.from_config(config, plugins=manager) as runtime:
        calls = [runtime.execute("echo/say", {"text": "hi", "delay": 0.01}) for _ in range(60)]
        results = await asyncio.gather(*calls)
        served: dict[str, int] = {}
        for result in results:
            served[result["resource"]] = served.get(result["resource"], 0) + 1
        print(f"strategy {strategy}: requests per resource {dict(sorted(served.items()))}")
        show_status(to_json(runtime.status()))


async def main() -> None:
    for strategy in ("p2c", "sticky"):
        await run(strategy)


if __name__ == "__main__":
    asyncio.run(main())
