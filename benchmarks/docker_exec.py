"""Latency of the four Docker execution paths, side by side in one run.

    DOCKER_HOST=unix:///tmp/ci-docker/docker.sock \\
        .venv/bin/python benchmarks/docker_exec.py [--quick] [--runs N] [--json PATH]

Paths (same trivial job, same hardened ``sandboxed`` profile):

- fresh:  create + attach + start + run + delete a container per job
          (``execute_fresh``; "fresh" is until the result is in hand, "fresh+rm" also
          waits for the delete, which a caller could leave to the background);
- exec:   ``docker exec`` of the one-shot runner in a warm container (``WarmPool``, exec mode);
- runner: the resident runner of a warm container hands each job to a pristine pre-forked
          process that drops to the job's own uid (``WarmPool``, runner mode; the benchmark
          checks the runner reports that isolation), over its direct socket (an engine on
          this host; the benchmark checks it is in use);
- attach: the same runner over the engine's attach stream (``direct=False``: what an
          engine elsewhere gets, and what every runner did before the direct socket).

The paths are interleaved (rotating order) after a warm-up, so drift in engine load hits
all of them alike, and each timed call starts after ``--settle`` seconds (0.1) of idle
engine: dockerd and containerd finish an exec's or a container's teardown in the background
after the call returned, and a call made at once pays for that instead of its own path (the
runner right after an exec took 4.0 ms at p50, right after a fresh container 2.7 ms).
Target (issue 16): the isolated runner at least 40x faster than a fresh container.
``docker_runner_vs_fresh_p50_ratio`` is the median of the per-round ratios (each round runs
every path once) with its 90 % interval (``..._ci90``), and
``docker_runner_attach_vs_fresh_p50_ratio`` the same for the attach stream; the p50 of each
path is reported too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

from _stats import figures as spread_figures  # benchmarks/_stats.py
from _stats import ratio as per_round_ratio
from gleitzeit_docker.engine import Engine
from gleitzeit_docker.execution import ExecutionResult, Job, execute_fresh
from gleitzeit_docker.pool import PoolConfig, WarmPool
from gleitzeit_docker.profiles import load_profiles

TARGET_RATIO = 40.0
JOB = Job(code="result = sum(range(1000))")
SETTLE_S = 0.1  # idle time before each timed call (see ``measure``)


def percentile(values: list[float], pct: float) -> float:
    """Linear-interpolated percentile (statistics' inclusive method)."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(pct) - 1]


async def measure(
    runs: int, warmup: int, image: str, settle: float = SETTLE_S
) -> dict[str, list[float]]:
    engine = Engine()
    await engine.ping()
    await engine.require_image(image)
    profile = load_profiles({"default_image": image}).get("sandboxed")
    hub = f"gz-bench-{uuid.uuid4().hex[:8]}"
    big = 1 << 30  # one container per pool for the whole run (max_uses would retire it)
    runner_pool = WarmPool(
        engine, hub_id=hub, config=PoolConfig(mode="runner", max_size=1, max_uses=big)
    )
    attach_pool = WarmPool(
        engine,
        hub_id=hub,
        config=PoolConfig(mode="runner", max_size=1, max_uses=big, direct=False),
    )
    exec_pool = WarmPool(engine, hub_id=hub, config=PoolConfig(mode="exec", max_size=1))
    times: dict[str, list[float]] = {
        "fresh": [],
        "fresh+rm": [],
        "exec": [],
        "runner": [],
        "attach": [],
    }

    async def fresh() -> ExecutionResult:
        return await execute_fresh(engine, profile, JOB, hub_id=hub)

    async def warm_exec() -> ExecutionResult:
        return await exec_pool.execute(profile, JOB)

    async def runner() -> ExecutionResult:
        return await runner_pool.execute(profile, JOB)

    async def attach() -> ExecutionResult:
        return await attach_pool.execute(profile, JOB)

    paths = [("fresh", fresh), ("exec", warm_exec), ("runner", runner), ("attach", attach)]
    try:
        for pool, direct in ((runner_pool, True), (attach_pool, False)):
            async with pool.checkout(profile) as pc:
                if pc.conn is None or pc.conn.hello.get("isolated") is not True:
                    raise SystemExit("the runner does not isolate its jobs; nothing to compare")
                if pc.conn.direct is not direct:
                    raise SystemExit(f"the runner's direct socket is not {direct}; see the log")
        for i in range(warmup + runs):
            rotation = paths[i % len(paths) :] + paths[: i % len(paths)]
            for name, call in rotation:
                # The engine finishes the previous path's work in the background (an exec's
                # or a container's teardown in dockerd and containerd) after the call has
                # returned; each path is timed once that is over, not on its tail.
                await asyncio.sleep(settle)
                started = time.perf_counter()
                res = await call()
                elapsed = (time.perf_counter() - started) * 1000
                if not res.success or res.result != 499500:
                    raise SystemExit(f"{name} run failed: {res.error} {res.stderr}")
                if i < warmup:
                    continue
                if name == "fresh":
                    times["fresh"].append(res.duration_ms)  # until the result is in hand
                    times["fresh+rm"].append(elapsed)
                else:
                    times[name].append(elapsed)
    finally:
        await runner_pool.close()
        await attach_pool.close()
        await exec_pool.close()
        await engine.remove_all(hub)
        await engine.close()
    return times


def report(times: dict[str, list[float]], runs: int, command: str) -> dict[str, object]:
    figures = {name: (percentile(v, 50), percentile(v, 95)) for name, v in times.items()}
    print(f"\nDocker execution paths, {runs} runs each after warm-up (ms)\n")
    print(f"{'path':<10}{'p50':>10}{'p95':>10}{'min':>10}{'max':>10}")
    for name, values in times.items():
        p50, p95 = figures[name]
        print(f"{name:<10}{p50:>10.1f}{p95:>10.1f}{min(values):>10.1f}{max(values):>10.1f}")
    runner_p50 = figures["runner"][0]
    summary = per_round_ratio(times["fresh"], times["runner"])
    ratio = summary.median
    print(f"\nfresh/runner, median of {runs} rounds: {summary.text()}x  (target >= "
          f"{TARGET_RATIO:g}x: {'met' if ratio >= TARGET_RATIO else 'NOT met'})")  # fmt: skip
    attach = per_round_ratio(times["fresh"], times["attach"])
    print(f"fresh/attach (the same runner over the engine's attach stream): {attach.text()}x")
    print(f"fresh+rm/runner p50: {figures['fresh+rm'][0] / runner_p50:6.1f}x")
    print(f"exec/runner p50:     {figures['exec'][0] / runner_p50:6.1f}x")
    print(f"attach/runner p50:   {figures['attach'][0] / runner_p50:6.1f}x")
    return {
        "docker_fresh_p50_ms": round(figures["fresh"][0], 2),
        "docker_fresh_p95_ms": round(figures["fresh"][1], 2),
        "docker_fresh_with_delete_p50_ms": round(figures["fresh+rm"][0], 2),
        "docker_exec_p50_ms": round(figures["exec"][0], 2),
        "docker_exec_p95_ms": round(figures["exec"][1], 2),
        "docker_runner_p50_ms": round(runner_p50, 2),
        "docker_runner_p95_ms": round(figures["runner"][1], 2),
        "docker_runner_attach_p50_ms": round(figures["attach"][0], 2),
        **spread_figures("docker_runner_vs_fresh_p50_ratio", summary, command, digits=3),
        **spread_figures("docker_runner_attach_vs_fresh_p50_ratio", attach, command, digits=3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="15 runs per path, 2 warm-up")
    parser.add_argument("--runs", type=int, default=30, help="measured runs per path")
    parser.add_argument("--json", type=Path, help="write the figures to this JSON file")
    parser.add_argument("--image", default=os.environ.get("GLEITZEIT_TEST_IMAGE", "localpython:3"))
    parser.add_argument(
        "--settle",
        type=float,
        default=SETTLE_S,
        help="seconds of idle engine before each timed call (0: back to back)",
    )
    opts = parser.parse_args()
    runs, warmup = (15, 2) if opts.quick else (opts.runs, 3)
    if not os.environ.get("DOCKER_HOST"):
        print("note: DOCKER_HOST is not set; using the default socket", file=sys.stderr)
    times = asyncio.run(measure(runs, warmup, opts.image, opts.settle))
    command = "python benchmarks/docker_exec.py" + (" --quick" if opts.quick else "")
    figures = report(times, runs, command)
    if opts.json:
        opts.json.parent.mkdir(parents=True, exist_ok=True)
        opts.json.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"\nwrote {opts.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
