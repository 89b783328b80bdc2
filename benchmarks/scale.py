"""One hub with 1,000 resources: cost per lease, CPU share of the health monitor at a 1 s
interval, and memory per resource.

    python benchmarks/scale.py [--quick] [--json PATH]

The probe answers locally (no sockets), so the figures are the hub's own cost, not the
network's: what 1,000 real instances would add on top is their round trips, which happen
concurrently.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import resource as rusage
import time
import tracemalloc

from gleitzeit_core import HealthSettings, ProbeResult, Request, Resource, ResourceSpec
from gleitzeit_core.hub import ResourceHub

SIZE = 1000


class LocalProbe:
    """Answers at once, healthy; counts how often it was asked."""

    def __init__(self) -> None:
        self.calls = 0

    async def probe(self, resource: Resource) -> ProbeResult:
        self.calls += 1
        return ProbeResult(True, 0.0)


def build(size: int, probe: LocalProbe | None = None) -> ResourceHub:
    hub = ResourceHub(
        "scale", rng=random.Random(1), health=HealthSettings(interval=1.0, timeout=1.0)
    )
    if probe is not None:
        hub.set_probe(probe)
    for i in range(size):
        hub.add(ResourceSpec(id=f"node-{i:04d}", endpoint=f"http://127.0.0.1:{20000 + i}"))
    return hub


def memory_per_resource_kb(size: int) -> float:
    """Bytes allocated by a hub of ``size`` resources (and their metrics and breakers), over
    ``size``, after every resource has recorded a full metrics window of calls."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    hub = build(size)
    for resource in hub.resources:
        for i in range(resource.metrics.window):
            resource.metrics.record(0.01, None, float(i))
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    del hub
    return grown / size / 1024


async def lease_us(size: int, picks: int) -> float:
    hub = build(size)
    request = Request()
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(picks):
            lease, _ = hub.try_lease(request)
            assert lease is not None
            lease.succeed()
        best = min(best, (time.perf_counter() - started) / picks)
    return best * 1e6


async def health_cpu_share(size: int, seconds: float) -> tuple[float, int]:
    """CPU seconds the process spends per wall second while 1,000 resources are probed every
    second (nothing else runs)."""
    probe = LocalProbe()
    hub = build(size, probe)
    await hub.start()
    await asyncio.sleep(1.5)  # let the start-up spread settle
    probe.calls = 0
    cpu0 = rusage.getrusage(rusage.RUSAGE_SELF)
    wall0 = time.perf_counter()
    await asyncio.sleep(seconds)
    cpu1 = rusage.getrusage(rusage.RUSAGE_SELF)
    wall = time.perf_counter() - wall0
    await hub.stop()
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return cpu / wall, probe.calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    seconds = 5.0 if args.quick else 20.0
    pick = asyncio.run(lease_us(SIZE, 2_000 if args.quick else 20_000))
    small = asyncio.run(lease_us(10, 2_000 if args.quick else 20_000))
    share, probes = asyncio.run(health_cpu_share(SIZE, seconds))
    memory = memory_per_resource_kb(SIZE)
    print(
        f"lease (select + admit + record), 1,000 resources: {pick:.2f} us "
        f"(10 resources: {small:.2f} us)"
    )
    print(
        f"health monitor, 1,000 resources at 1 s: {100 * share:.1f} % of one core "
        f"({probes / seconds:.0f} probes/s)"
    )
    print(f"memory per resource: {memory:.1f} KiB (target <= 20)")
    if args.json_path:
        command = "python benchmarks/scale.py" + (" --quick" if args.quick else "")
        figures = {
            "scale_1000_pick_us": {"value": round(pick, 3), "command": command},
            "scale_10_pick_us": {"value": round(small, 3), "command": command},
            "scale_1000_health_cpu_share": {"value": round(share, 4), "command": command},
            "scale_1000_probes_per_s": {"value": round(probes / seconds, 1), "command": command},
            "scale_memory_per_resource_kb": {"value": round(memory, 2), "command": command},
        }
        with open(args.json_path, "w", encoding="utf-8") as out:
            json.dump(figures, out, indent=2)


if __name__ == "__main__":
    main()
