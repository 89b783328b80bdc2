"""The dashboard's load time in a real browser, what the page transfers, and what its history
costs in memory per resource.

    python benchmarks/dashboard.py [--quick] [--json PATH]

``dashboard_load_ms``: Debian's headless Chromium (through chromedriver) opens
``/gleitzeit/ui`` of ``gleitzeit serve`` over three simulator processes, each time in a fresh
tab with the cache bypassed; the figure is the median time from navigation start until the page
has drawn its first data (the status table, charts and timeline), as the page itself records it
(``data-first-render-ms``). ``dashboard_transfer_kb``: the bytes the browser received for the
page and its files (``transferSize``, gzip). ``dashboard_history_kb_per_resource``: tracemalloc's
count of the memory a full 15-minute ring (900 one-second samples) takes, per resource, over
200 resources (50 with ``--quick``: the figure is per resource, the same within 0.1 %).
``dashboard_load_ms_ci90`` is the 90 % interval of the median load. Numbers, not a test:
nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from _stats import figures, spread, write_json  # noqa: E402  (benchmarks/_stats.py)
from gleitzeit_dashboard.history import History  # noqa: E402
from gleitzeit_ollama.sim import SimConfig, SimProcess  # noqa: E402

from gleitzeit_core._plugins import PluginManager  # noqa: E402
from gleitzeit_core._runtime import Runtime  # noqa: E402
from gleitzeit_core.testing import echo  # noqa: E402
from gleitzeit_core.testing.serve import GatewayProcess  # noqa: E402
from tests.dashboard.harness import PLUGINS, Traffic, chromium, gateway_config  # noqa: E402

LOADS = {True: 5, False: 20}


def load_times(loads: int) -> tuple[list[float], int]:
    """Milliseconds to the first drawn data per load, and the bytes of the last load."""
    sims = [
        SimProcess(SimConfig(name=f"s{i}", models=["llama3.2"], latency_ms=10.0)) for i in range(3)
    ]
    times: list[float] = []
    transferred = 0
    try:
        for sim in sims:
            sim.start()
        with tempfile.TemporaryDirectory(prefix="gleitzeit-bench-dash-") as work:
            config = gateway_config([s.url for s in sims])
            with GatewayProcess(config, Path(work), PLUGINS) as gateway, Traffic(gateway.url):
                time.sleep(3)  # some history to draw
                with chromium() as driver:
                    driver.execute_cdp_cmd("Network.enable", {})
                    driver.execute_cdp_cmd("Network.setCacheDisabled", {"cacheDisabled": True})
                    driver.get(gateway.url + "/gleitzeit/ui")  # warm the gateway's code paths
                    for _ in range(loads):
                        driver.get("about:blank")
                        driver.get(gateway.url + "/gleitzeit/ui")
                        deadline = time.monotonic() + 30
                        value = None
                        while value is None and time.monotonic() < deadline:
                            value = driver.execute_script(
                                "return document.documentElement.dataset.firstRenderMs"
                            )
                            time.sleep(0.02)
                        if value is None:
                            raise RuntimeError("the page never drew its data")
                        times.append(float(value))
                    transferred = int(
                        driver.execute_script(
                            "const n = performance.getEntriesByType('navigation')[0];"
                            "return n.transferSize + performance.getEntriesByType('resource')"
                            ".filter(r => r.name.includes('/gleitzeit/ui/static/'))"
                            ".reduce((s, r) => s + r.transferSize, 0)"
                        )
                    )
    finally:
        for sim in sims:
            sim.kill()
    return times, transferred


async def history_bytes_per_resource(resources: int = 200, seconds: int = 900) -> float:
    manager = PluginManager(autoload=False)
    manager.load()
    manager.add(echo, "echo")
    ids = [{"id": f"r{i}", "url": f"echo://{i}"} for i in range(resources)]
    config = {"hubs": {"e": {"kind": "echo", "resources": ids}}}
    async with Runtime.from_config(config, plugins=manager) as runtime:
        tracemalloc.start()
        try:
            before, _ = tracemalloc.get_traced_memory()
            history = History(runtime, seconds=seconds)
            for t in range(seconds + 10):
                history.tick(float(t))
            after, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert all(len(ring) == seconds for ring in history.rings.values())
    return (after - before) / resources


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer page loads")
    parser.add_argument("--json", dest="json_path", help="write the figures to this JSON file")
    args = parser.parse_args()
    command = "python benchmarks/dashboard.py" + (" --quick" if args.quick else "")

    times, transferred = load_times(LOADS[args.quick])
    per_resource = asyncio.run(history_bytes_per_resource(50 if args.quick else 200))
    load = spread(times)
    every = [round(t) for t in times]
    print(f"dashboard_load_ms = {load.text()} (median of {len(times)}; all: {every})")
    print(f"dashboard_transfer_kb = {transferred / 1000:.1f} (page + files, as sent)")
    print(
        f"dashboard_history_kb_per_resource = {per_resource / 1000:.1f} (a full ring: 900 samples)"
    )
    if args.json_path:

        def figure(value: Any) -> dict[str, Any]:
            return {"value": value, "command": command}

        out = {
            **figures("dashboard_load_ms", load, command, digits=1),
            "dashboard_transfer_kb": figure(round(transferred / 1000, 1)),
            "dashboard_history_kb_per_resource": figure(round(per_resource / 1000, 1)),
            "dashboard_details": figure({"load_ms": [round(t, 1) for t in times]}),
        }
        write_json(args.json_path, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
