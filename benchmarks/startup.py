"""Startup time of plugin discovery with every installed first-party plugin, in fresh processes.

    python benchmarks/startup.py [--quick] [--runs N] [--json PATH]

Each figure is the median wall time of a fresh interpreter (same executable, same flags, the
same site-packages) running one command, minus the median of a bare ``python -c pass`` measured
in the same interleaved rounds, so that interpreter start-up and ``site`` are not counted:

- ``startup_ms_all_plugins``: ``PluginSelection.resolve().manager().load()`` (import the
  core, read the entry points, load every enabled plugin). Target: <= 100 ms. Reported with the 90 %
  interval of the per-round difference (``startup_ms_all_plugins_ci90``).
- ``startup_cpu_ms_all_plugins``: the same in CPU time (user + system) of the child, which a
  busy machine inflates far less than wall time.
- ``startup_ms_import_core``: ``import gleitzeit_core`` alone.
- ``startup_ms_cli_help``: ``gleitzeit --help`` (the console script).

Then one child reports where the time goes inside the process (importing the core, reading the
entry points, loading the plugins), and ``python -X importtime`` (median of a few runs) tells
which modules dominate. ``GLEITZEIT_LOAD_PLUGINS`` and ``GLEITZEIT_DISABLED_PLUGINS`` are
removed from the children's environment, so every installed plugin loads.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from _stats import Summary, figures, rotated, spread, write_json  # benchmarks/_stats.py

TARGET_MS = 100.0
LOAD = (
    "from gleitzeit_core._plugins import PluginSelection; "
    "PluginSelection.resolve().manager().load()"
)
IMPORT_CORE = "import gleitzeit_core"
# Run in one child: where the time goes inside the process, and what loaded.
PROBE = r"""
import json, sys, time
t0 = time.perf_counter()
import gleitzeit_core
t1 = time.perf_counter()
from gleitzeit_core._plugins import PluginSelection, entry_points_snapshot
eps = entry_points_snapshot()
t2 = time.perf_counter()
manager = PluginSelection.resolve().manager().load()
t3 = time.perf_counter()
import importlib.metadata
dists = sum(1 for _ in importlib.metadata.distributions())
report = manager.report()
print(json.dumps({
    "import_core_ms": 1000 * (t1 - t0),
    "entry_points_ms": 1000 * (t2 - t1),
    "load_plugins_ms": 1000 * (t3 - t2),
    "modules": len(sys.modules),
    "entry_points": len(eps),
    "distributions": dists,
    "plugins": {r.name: r.status for r in report},
    "errors": {r.name: r.error for r in report if r.status == "error"},
}))
"""


PYCACHE = Path(tempfile.gettempdir()) / "gleitzeit-bench-pycache"


def child_env(bytecode_cache: bool = True) -> dict[str, str]:
    """The children's environment: every plugin enabled; with ``bytecode_cache``, compiled
    modules are cached (in a private ``PYTHONPYCACHEPREFIX``, so nothing is written into the
    source tree) as on an installed system, whatever ``PYTHONDONTWRITEBYTECODE`` says here."""
    env = dict(os.environ)
    for name in ("GLEITZEIT_LOAD_PLUGINS", "GLEITZEIT_DISABLED_PLUGINS", "PYTHONPROFILEIMPORTTIME"):
        env.pop(name, None)
    if bytecode_cache:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env.pop("PYTHONPYCACHEPREFIX", None)
    return env


def cli_command() -> list[str]:
    """The installed console script next to this interpreter, else ``python -m``."""
    script = Path(sys.executable).with_name("gleitzeit")
    if script.exists():
        return [str(script), "--help"]
    found = shutil.which("gleitzeit")
    if found:
        return [found, "--help"]
    return [sys.executable, "-m", "gleitzeit_core", "--help"]


Command = tuple[list[str], dict[str, str]]  # argv, environment


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_once(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU milliseconds of one run (CPU: user + system of the child, which waiting
    for a busy machine's cores does not inflate)."""
    cpu0 = children_cpu_s()
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, timeout=60, check=False)
    elapsed = (time.perf_counter() - started) * 1000.0
    cpu = (children_cpu_s() - cpu0) * 1000.0
    if done.returncode != 0:
        raise SystemExit(f"{argv!r} failed ({done.returncode}): {done.stderr.decode()[-500:]}")
    return elapsed, cpu


def measure(commands: dict[str, Command], runs: int) -> dict[str, Any]:
    names = list(commands)
    for name in names:  # warm the bytecode and page caches; not counted
        run_once(*commands[name])
    samples: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    for r in range(runs):
        for name in rotated(names, r):
            wall_ms, cpu_ms = run_once(*commands[name])
            samples[name].append(wall_ms)
            cpu[name].append(cpu_ms)
    return {
        name: {
            "median_ms": statistics.median(values),
            "min_ms": min(values),
            "max_ms": max(values),
            "runs": len(values),
            "samples_ms": [round(v, 2) for v in values],
            "cpu_median_ms": statistics.median(cpu[name]),
            "cpu_samples_ms": [round(v, 2) for v in cpu[name]],
        }
        for name, values in samples.items()
    }


def net_of(
    timings: dict[str, Any], name: str, base: str = "bare", field: str = "samples_ms"
) -> Summary:
    """``name`` minus ``base`` within each round (they ran back to back): median and 90 %
    interval over the rounds."""
    pairs = zip(timings[name][field], timings[base][field], strict=True)
    return spread([a - b for a, b in pairs])


def in_process(runs: int, env: dict[str, str]) -> dict[str, Any]:
    """Where the time goes inside a child (median of ``runs``), and what it loaded."""
    reports = []
    for _ in range(runs):
        done = subprocess.run(
            [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60
        )
        if done.returncode != 0:
            raise SystemExit(f"plugin discovery failed: {done.stderr[-1000:]}")
        reports.append(json.loads(done.stdout.strip().splitlines()[-1]))
    merged = dict(reports[-1])
    for key in ("import_core_ms", "entry_points_ms", "load_plugins_ms"):
        merged[key] = statistics.median(r[key] for r in reports)
    return merged


_IMPORTTIME = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)")


def importtime(runs: int, env: dict[str, str]) -> dict[str, Any]:
    """Median self and cumulative import time per module over ``runs`` runs of ``LOAD``."""
    self_us: dict[str, list[int]] = defaultdict(list)
    cumulative_us: dict[str, list[int]] = defaultdict(list)
    depth: dict[str, int] = {}
    for _ in range(runs):
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", LOAD],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        for line in done.stderr.splitlines():
            match = _IMPORTTIME.match(line)
            if match:
                name = match[4]
                self_us[name].append(int(match[1]))
                cumulative_us[name].append(int(match[2]))
                depth[name] = len(match[3]) // 2
    med_self = {name: statistics.median(v) / 1000 for name, v in self_us.items()}
    med_cum = {name: statistics.median(v) / 1000 for name, v in cumulative_us.items()}
    by_package: dict[str, float] = defaultdict(float)
    for name, ms in med_self.items():
        by_package[name.split(".")[0]] += ms
    top = sorted(med_self.items(), key=lambda kv: kv[1], reverse=True)[:15]
    packages = sorted(by_package.items(), key=lambda kv: kv[1], reverse=True)[:15]
    roots = sorted(
        ((name, ms) for name, ms in med_cum.items() if depth.get(name) == 0),
        key=lambda kv: kv[1],
        reverse=True,
    )[:10]
    return {
        "modules_imported": len(med_self),
        "total_self_ms": round(sum(med_self.values()), 1),
        "top_modules_self_ms": {name: round(ms, 2) for name, ms in top},
        "top_packages_self_ms": {name: round(ms, 2) for name, ms in packages},
        "top_level_cumulative_ms": {name: round(ms, 2) for name, ms in roots},
    }


def advice(probe: dict[str, Any], imports: dict[str, Any]) -> list[str]:
    """What would bring the figure down, from what was measured."""
    notes = []
    core_self = sum(
        ms for name, ms in imports["top_packages_self_ms"].items() if name == "gleitzeit_core"
    )
    if core_self:
        notes.append(
            f"gleitzeit_core's own modules take {core_self:.0f} ms of import (self time: "
            "module bodies of plugins, registry, hookspecs, errors and kinds; the public "
            "names load lazily and discovery imports neither attrs nor the hub); what is "
            "left is the modules themselves"
        )
    heavy = [
        name
        for name in ("asyncio", "ssl", "cattrs", "attr", "aiohttp", "rich", "click")
        if imports["top_packages_self_ms"].get(name, 0) >= 2
    ]
    if heavy:
        notes.append(
            "heavy third-party/stdlib imports on the discovery path: "
            + ", ".join(f"{n} {imports['top_packages_self_ms'][n]:.0f} ms" for n in heavy)
        )
    if probe.get("entry_points_ms", 0) >= 10:
        notes.append(
            f"reading entry points costs {probe['entry_points_ms']:.0f} ms over "
            f"{probe['distributions']} installed distributions (it scans every dist-info): "
            "fewer packages in the venv, or a cached entry-point index, would cut it"
        )
    return notes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs (about 15 s)")
    parser.add_argument("--runs", type=int, help="runs per command (default 25, quick 9)")
    parser.add_argument("--json", dest="json_path", help="write the figures to this JSON file")
    args = parser.parse_args()
    runs = args.runs or (9 if args.quick else 25)
    env = child_env()
    command = "python benchmarks/startup.py" + (" --quick" if args.quick else "")

    uncached = child_env(bytecode_cache=False)
    commands: dict[str, Command] = {
        "bare": ([sys.executable, "-c", "pass"], env),
        "import_core": ([sys.executable, "-c", IMPORT_CORE], env),
        "all_plugins": ([sys.executable, "-c", LOAD], env),
        "cli_help": (cli_command(), env),
        # the same without any bytecode cache for sources that have none next to them (an
        # editable install under PYTHONDONTWRITEBYTECODE=1 compiles the project every time)
        "all_plugins_no_pyc": ([sys.executable, "-c", LOAD], uncached),
        "bare_no_pyc": ([sys.executable, "-c", "pass"], uncached),
    }
    timings = measure(commands, runs)
    bare = timings["bare"]["median_ms"]
    all_plugins_spread = net_of(timings, "all_plugins")
    all_plugins = all_plugins_spread.median
    import_core = net_of(timings, "import_core").median
    cli_help = net_of(timings, "cli_help").median
    no_pyc = net_of(timings, "all_plugins_no_pyc", "bare_no_pyc").median
    all_plugins_cpu = net_of(timings, "all_plugins", field="cpu_samples_ms")
    probe = in_process(3 if args.quick else 5, env)
    loaded = sorted(name for name, status in probe["plugins"].items() if status == "loaded")
    imports = importtime(3 if args.quick else 5, env)
    notes = advice(probe, imports)
    met = all_plugins <= TARGET_MS

    print(f"Python {platform.python_version()} ({sys.executable}); {runs} interleaved runs each")
    print(f"{'command':<20}{'median ms':>11}{'min ms':>9}{'max ms':>9}{'- bare':>9}")
    for name, row in timings.items():
        base = timings["bare_no_pyc" if name.endswith("no_pyc") else "bare"]["median_ms"]
        net = row["median_ms"] - base
        print(
            f"{name:<20}{row['median_ms']:>11.1f}{row['min_ms']:>9.1f}{row['max_ms']:>9.1f}"
            f"{net:>9.1f}"
        )
    print(f"(no_pyc: no bytecode cache for the project's own modules: {no_pyc:.1f} ms)")
    print(f"plugins loaded: {len(loaded)} ({', '.join(loaded)})")
    if probe["errors"]:
        print(f"plugins that failed: {probe['errors']}")
    print(
        f"in-process: import core {probe['import_core_ms']:.1f} ms, entry points "
        f"{probe['entry_points_ms']:.1f} ms ({probe['distributions']} distributions), "
        f"load {probe['load_plugins_ms']:.1f} ms; {probe['modules']} modules"
    )
    print(f"CPU time (user + system) of the same, minus bare: {all_plugins_cpu.text()} ms")
    print(
        f"startup_ms_all_plugins = {all_plugins_spread.text()} ms (target <= {TARGET_MS:g}: "
        f"{'met' if met else 'NOT met'})"
    )
    print(f"-X importtime, median self time by package (ms): {imports['top_packages_self_ms']}")
    for note in notes:
        print(f"- {note}")

    if args.json_path:

        def figure(value: Any) -> dict[str, Any]:
            return {"value": value, "command": command}

        out = {
            **figures("startup_ms_all_plugins", all_plugins_spread, command, digits=1),
            **figures("startup_cpu_ms_all_plugins", all_plugins_cpu, command, digits=1),
            "startup_ms_import_core": figure(round(import_core, 1)),
            "startup_ms_cli_help": figure(round(cli_help, 1)),
            "startup_ms_bare_python": figure(round(bare, 1)),
            "startup_ms_all_plugins_no_pyc": figure(round(no_pyc, 1)),
            "startup_plugins_loaded": figure(len(loaded)),
            "startup_details": figure(
                {
                    "runs": runs,
                    "timings": timings,
                    "plugins": probe["plugins"],
                    "plugin_errors": probe["errors"],
                    "in_process": {
                        k: round(v, 2) if isinstance(v, float) else v
                        for k, v in probe.items()
                        if k not in ("plugins", "errors")
                    },
                    "importtime": imports,
                    "what_would_help": notes if not met else [],
                    "analysis": notes,
                }
            ),
        }
        write_json(args.json_path, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
