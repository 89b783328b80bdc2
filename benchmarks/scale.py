"""One hub with 1,000 resources: cost per lease, CPU share of the health monitor at a 1 s
interval, and memory per resource.

    python benchmarks/scale.py [--quick] [--json PATH]

The probe answers locally (no sockets), so the figures are the hub's own cost, not the
network's: what 1,000 real instances would add on top is their round trips, which happen
concurrently. The health share is measured over rounds of ``ROUND_S`` seconds each and given
as the median with a 90 % interval (``scale_1000_health_cpu_share_ci90``); so is the lease.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import resource as rusage
import time
import tracemalloc

from _stats import figures, spread, write_json  # benchmarks/_stats.py

from gleitzeit_core import HealthSettings, ProbeResult, Request, Resource, ResourceSpec
from gleitzeit_core._hub import ResourceHub

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


ROUND_S = 1.0  # one health round: one probe interval


async def lease_us(size: int, picks: int, rounds: int = 7) -> list[float]:
    """Microseconds per lease, one figure per round."""
    hub = build(size)
    request = Request()
    out = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(picks):
            lease, _ = hub.try_lease(request)
            assert lease is not None
            lease.succeed()
        out.append((time.perf_counter() - started) / picks * 1e6)
    return out


def cpu_seconds() -> float:
    usage = rusage.getrusage(rusage.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def health_cpu_share(size: int, rounds: int) -> tuple[list[float], int]:
    """CPU seconds the process spends per wall second while 1,000 resources are probed every
    second (nothing else runs), one figure per round of ``ROUND_S``; and the probes made."""
    probe = LocalProbe()
    hub = build(size, probe)
    await hub.start()
    await asyncio.sleep(1.5)  # the first probes (within a tenth of the interval) are done
    probe.calls = 0
    shares = []
    for _ in range(rounds):
        cpu0, wall0 = cpu_seconds(), time.perf_counter()
        await asyncio.sleep(ROUND_S)
        shares.append((cpu_seconds() - cpu0) / (time.perf_counter() - wall0))
    await hub.stop()
    return shares, probe.calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    rounds = 7 if args.quick else 20
    pick = spread(asyncio.run(lease_us(SIZE, 2_000 if args.quick else 20_000)))
    small = spread(asyncio.run(lease_us(10, 2_000 if args.quick else 20_000)))
    shares, probes = asyncio.run(health_cpu_share(SIZE, rounds))
    share = spread(shares)
    memory = memory_per_resource_kb(SIZE)
    print(
        f"lease (select + admit + record), 1,000 resources: {pick.text()} us "
        f"(10 resources: {small.text()} us)"
    )
    print(
        f"health monitor, 1,000 resources at 1 s: {share.text()} of one core "
        f"({probes / (rounds * ROUND_S):.0f} probes/s; target <= 0.02)"
    )
    print(f"memory per resource: {memory:.1f} KiB (target <= 20)")
    if args.json_path:
        command = "python benchmarks/scale.py" + (" --quick" if args.quick else "")
        out = {
            **figures("scale_1000_pick_us", pick, command, digits=3),
            "scale_10_pick_us": {"value": round(small.median, 3), "command": command},
            **figures("scale_1000_health_cpu_share", share, command),
            "scale_1000_probes_per_s": {
                "value": round(probes / (rounds * ROUND_S), 1),
                "command": command,
            },
            "scale_memory_per_resource_kb": {"value": round(memory, 2), "command": command},
        }
        write_json(args.json_path, out)


if __name__ == "__main__":
    main()
