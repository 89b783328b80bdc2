"""Run every benchmark of the project in one go and write the results.

    python benchmarks/run.py [--quick] [--only NAME,...] [--strict] [--report-only]

Each benchmark runs as its own subprocess (``--json`` to a temporary file), one after the other
so that they do not disturb each other, with a per-script timeout and, under ``--quick``, an
overall budget of ten minutes. A script that is missing, fails, times out or cannot run here (no
Docker engine) is reported: its keys are marked missing with the reason, and the run goes on.

Writes ``benchmarks/results/latest.json`` (every named figure with the command that produced
it, plus run metadata: date, machine, Python, git commit, quick or not, per-script duration and
errors), per-script logs in ``benchmarks/results/logs/``, PNG plots in ``benchmarks/results/``
and ``benchmarks/RESULTS.md`` (each key with its value, target, pass/fail and command).

``--only`` runs some of them (names: see ``--list``); the figures of the others are carried over
from the previous ``latest.json`` and marked so. ``--report-only`` redraws the plots and
``RESULTS.md`` from ``latest.json`` without running anything. Benchmark-only dependencies
(``benchmarks/requirements.txt``: LiteLLM) are installed into the running venv when missing,
holding every installed package at its version; ``--no-install`` skips that.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
LATEST = RESULTS / "latest.json"
REPORT = HERE / "RESULTS.md"
REQUIREMENTS = HERE / "requirements.txt"
QUICK_BUDGET_S = 570.0  # the whole quick run, scripts and install included: < 10 minutes
CHAOS_SECONDS = {True: 60, False: 600}
METADATA_KEYS = {"python", "quick", "seconds", "cpus"}  # script metadata, not figures


@dataclass(frozen=True)
class Target:
    op: str  # "<", "<=", ">=", "=="
    bound: float

    def check(self, v: Any) -> bool | None:
        if not isinstance(v, int | float) or isinstance(v, bool):
            return None
        return {
            "<": v < self.bound,
            "<=": v <= self.bound,
            ">=": v >= self.bound,
            "==": v == self.bound,
        }[self.op]

    def __str__(self) -> str:
        return f"{self.op} {self.bound:g}"


# Targets the benchmarks issues state (issue 16's "Done means" moved several); a key without
# one is reported without pass/fail. Ratios are medians over interleaved rounds; where a
# script gives ``<key>_ci90`` (its 90 % interval), the tables show it next to the median.
TARGETS = {
    "hub_vs_raw_latency_ratio": Target("<=", 1.05),
    "gateway_added_p50_ms": Target("<=", 0.4),
    "gateway_throughput_ratio": Target(">=", 0.95),
    "gateway_stream_chunk_ratio": Target(">=", 0.95),
    "gateway_checks_added_us": Target("<", 20),
    "litellm_proxy_vs_gateway_overhead_ratio": Target(">=", 5),
    "litellm_proxy_vs_gateway_cpu_ratio": Target(">=", 3),
    "p2c_pick_vs_random_choice_ratio_1000": Target("<=", 4),
    "breaker_vs_pybreaker_ratio": Target("<", 1),
    "breaker_vs_pybreaker_ratio_consecutive": Target("<", 1),
    "breaker_vs_pybreaker_ratio_window": Target("<", 1),
    "breaker_vs_pybreaker_ratio_adaptive": Target("<", 1),
    "docker_runner_vs_fresh_p50_ratio": Target(">=", 40),
    "legacy_vs_hub_latency_ratio": Target("<=", 1.05),
    "hub_era_vs_hub_latency_ratio": Target("<=", 1.05),
    "startup_ms_all_plugins": Target("<=", 100),
    "chaos_error_rate": Target("<", 0.001),
    "chaos_unanswered": Target("==", 0),
    "scale_1000_health_cpu_share": Target("<=", 0.02),
    "scale_memory_per_resource_kb": Target("<=", 20),
    "redis_vs_local_state_latency_ratio": Target("<=", 1.10),
    "prefix_vs_p2c_ttft_p50_ratio": Target("<=", 0.5),
    "prefix_vs_p2c_throughput_ratio": Target(">=", 1),
    "prefix_max_share_vs_fair": Target("<=", 1.3),
    "dashboard_load_ms": Target("<", 1000),
    "dashboard_transfer_kb": Target("<", 200),
}

# The keys of the summary table, in order: every goal, plus the peer's and context figures.
HEADLINE = (
    "gateway_added_p50_ms",
    "gateway_throughput_ratio",
    "bare_relay_added_p50_ms",
    "bare_relay_throughput_ratio",
    "gateway_vs_bare_relay_added_ratio",
    "gateway_vs_bare_relay_cpu_ratio",
    "gateway_stream_chunk_ratio",
    "gateway_ttft_added_ms",
    "litellm_proxy_vs_gateway_overhead_ratio",
    "litellm_proxy_vs_gateway_cpu_ratio",
    "docker_runner_vs_fresh_p50_ratio",
    "scale_1000_health_cpu_share",
    "redis_vs_local_state_latency_ratio",
    "startup_ms_all_plugins",
    "startup_cpu_ms_all_plugins",
    "hub_vs_raw_latency_ratio",
    "hub_vs_raw_throughput_ratio",
    "gateway_checks_added_us",
    "gateway_v1_added_p50_ms",
    "p2c_pick_vs_random_choice_ratio_1000",
    "breaker_vs_pybreaker_ratio",
    "breaker_vs_pybreaker_ratio_consecutive",
    "breaker_vs_pybreaker_ratio_window",
    "breaker_vs_pybreaker_ratio_adaptive",
    "legacy_vs_hub_latency_ratio",
    "hub_era_vs_hub_latency_ratio",
    "chaos_error_rate",
    "chaos_unanswered",
    "scale_1000_pick_us",
    "scale_memory_per_resource_kb",
    "litellm_vs_hub_overhead_ratio",
    "litellm_vs_hub_p99_ratio",
    "prefix_vs_p2c_ttft_p50_ratio",
    "prefix_vs_p2c_throughput_ratio",
    "prefix_max_share_vs_fair",
    "dashboard_load_ms",
    "dashboard_transfer_kb",
    "scale_out_throughput_ratio_3_vs_1",
)

# Goals whose figure no script of this run writes yet: where it is to come from, so that
# latest.json lists the goal as missing with that reason instead of leaving it out.
EXPECTED_FROM = {
    "gateway_stream_chunk_ratio": "benchmarks/gateway.py (its streaming benchmark)",
    "gateway_ttft_added_ms": "benchmarks/gateway.py (its streaming benchmark)",
    "litellm_proxy_vs_gateway_overhead_ratio": "benchmarks/litellm_peer.py (LiteLLM's proxy)",
    "litellm_proxy_vs_gateway_cpu_ratio": "benchmarks/litellm_peer.py (LiteLLM's proxy)",
}


def quick_flag(quick: bool, budget: float) -> list[str]:
    return ["--quick"] if quick else []


@dataclass(frozen=True)
class Script:
    name: str
    path: str  # relative to the repository
    keys: tuple[str, ...]  # figures it must write
    timeout: float  # seconds, per run (quick: halved, at least 120)
    aliases: tuple[str, ...] = ()
    docker: bool = False
    args: Callable[[bool, float], list[str]] = field(default=quick_flag)

    def command(self, quick: bool, budget: float = float("inf")) -> list[str]:
        return [self.path, *self.args(quick, budget)]


def chaos_args(quick: bool, budget: float) -> list[str]:
    seconds = CHAOS_SECONDS[quick]
    # leave the chaos run time to start, settle and write its figures within the budget
    seconds = int(max(30, min(seconds, budget - 90)))
    return ["--seconds", str(seconds)]


def prefix_args(quick: bool, budget: float) -> list[str]:
    # its rounds stop in time to write their figures (a busy machine slows every round)
    # quick: at most 150 s of rounds (about 100 s on an idle 2-core machine)
    limit = min(150.0, budget - 40) if quick else budget - 40
    return [*quick_flag(quick, budget), "--max-seconds", str(int(max(60.0, limit)))]


SCRIPTS = (
    Script(
        "strategies", "benchmarks/strategies.py", ("p2c_pick_vs_random_choice_ratio_1000",), 300
    ),
    Script(
        "breakers",
        "benchmarks/breakers.py",
        (
            "breaker_vs_pybreaker_ratio_consecutive",
            "breaker_vs_pybreaker_ratio_window",
            "breaker_vs_pybreaker_ratio_adaptive",
        ),
        300,
    ),
    Script(
        "scale",
        "benchmarks/scale.py",
        ("scale_1000_pick_us", "scale_1000_health_cpu_share", "scale_memory_per_resource_kb"),
        300,
    ),
    Script("startup", "benchmarks/startup.py", ("startup_ms_all_plugins",), 300),
    Script(
        "dashboard",
        "benchmarks/dashboard.py",
        ("dashboard_load_ms", "dashboard_transfer_kb", "dashboard_history_kb_per_resource"),
        300,
        aliases=("ui",),
    ),
    Script(
        "ollama_overhead",
        "benchmarks/ollama_overhead.py",
        ("hub_vs_raw_latency_ratio", "hub_vs_raw_throughput_ratio"),
        600,
        aliases=("ollama", "hub"),
    ),
    Script(
        "gateway",
        "benchmarks/gateway.py",
        (
            "gateway_added_p50_ms",
            "gateway_throughput_ratio",
            "bare_relay_added_p50_ms",
            "bare_relay_throughput_ratio",
            "gateway_vs_bare_relay_added_ratio",
            "gateway_vs_bare_relay_throughput_ratio",
            "gateway_vs_bare_relay_cpu_ratio",
            "gateway_checks_added_us",
            "gateway_chat_added_p50_ms",
            "gateway_v1_added_p50_ms",
        ),
        600,
    ),
    Script(
        "prefix_routing",
        "benchmarks/prefix_routing.py",
        (
            "prefix_vs_p2c_ttft_p50_ratio",
            "prefix_vs_p2c_throughput_ratio",
            "prefix_max_share_vs_fair",
            "prefix_two_replicas_shared_vs_one_ttft_p50_ratio",
            "prefix_two_replicas_vs_one_ttft_p50_ratio",
        ),
        1200,  # full: the rounds, then every strategy and the hot spot
        aliases=("prefix",),
        args=prefix_args,
    ),
    Script(
        "legacy_vs_hub",
        "benchmarks/legacy_vs_hub.py",
        ("legacy_vs_hub_latency_ratio", "hub_era_vs_hub_latency_ratio"),
        600,
        aliases=("legacy",),
    ),
    Script(
        "scale_out",
        "benchmarks/scale_out.py",
        (
            "redis_vs_local_state_latency_ratio",
            "scale_out_rps_1",
            "scale_out_rps_2",
            "scale_out_rps_3",
        ),
        300,
        aliases=("redis", "replicas"),
    ),
    Script(
        "litellm_peer",
        "benchmarks/litellm_peer.py",
        ("litellm_vs_hub_overhead_ratio", "litellm_vs_hub_p99_ratio"),
        600,
        aliases=("litellm", "peer"),
    ),
    Script(
        "docker_exec",
        "benchmarks/docker_exec.py",
        ("docker_runner_vs_fresh_p50_ratio",),
        600,
        aliases=("docker",),
        docker=True,
    ),
    Script(
        "chaos",
        "tests/chaos/run_chaos.py",
        ("chaos_error_rate", "chaos_unanswered"),
        1200,
        args=chaos_args,
    ),
)
BY_NAME = {alias: s for s in SCRIPTS for alias in (s.name, *s.aliases)}


# -- environment -----------------------------------------------------------------------------
def venv_python() -> str:
    """The project's venv interpreter when there is one, else the running one."""
    candidate = REPO / ".venv" / "bin" / "python"
    return str(candidate) if candidate.exists() else sys.executable


def quiet(argv: list[str], timeout: float = 30) -> str | None:
    try:
        done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "hostname": platform.node(),
        "system": f"{platform.system()} {platform.release()}",
        "arch": platform.machine(),
        "cpus": os.cpu_count(),
    }
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["memory_gib"] = round(int(line.split()[1]) / 1024**2, 1)
                break
    with contextlib.suppress(OSError, ValueError):
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    return info


def git_info() -> dict[str, Any]:
    commit = quiet(["git", "rev-parse", "HEAD"])
    status = quiet(["git", "status", "--porcelain", "--untracked-files=no"])
    return {
        "commit": commit,
        "branch": quiet(["git", "rev-parse", "--abbrev-ref", "HEAD"]),
        "dirty": bool(status) if status is not None else None,
    }


def docker_host() -> tuple[str | None, str]:
    """(DOCKER_HOST to use or None, how it was found); a private CI engine is picked up when
    DOCKER_HOST is unset."""
    host = os.environ.get("DOCKER_HOST")
    if host:
        return host, "DOCKER_HOST"
    root = Path(os.environ.get("DOCKER_CI_ROOT", "/tmp/ci-docker"))
    if (root / "docker.sock").exists():
        return f"unix://{root / 'docker.sock'}", f"DOCKER_HOST unset; found {root}/docker.sock"
    if Path("/var/run/docker.sock").exists():
        return "unix:///var/run/docker.sock", "DOCKER_HOST unset; default socket"
    return None, "DOCKER_HOST unset and no socket found"


def docker_ping(host: str, timeout: float = 3.0) -> str | None:
    """None when the engine answers ``GET /_ping`` with OK, else why not."""
    url = urlparse(host)
    try:
        if url.scheme == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(url.path)
        elif url.scheme in ("tcp", "http"):
            sock = socket.create_connection((url.hostname, url.port or 2375), timeout=timeout)
        else:
            return f"unsupported DOCKER_HOST scheme {url.scheme!r}"
        with sock:
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            reply = sock.recv(4096).decode(errors="replace")
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"
    status = reply.split("\r\n", 1)[0]
    return None if " 200 " in f"{status} " and reply.rstrip().endswith("OK") else status


def ensure_requirements(python: str, budget: float) -> dict[str, Any]:
    """Install benchmarks/requirements.txt into ``python``'s environment if LiteLLM is missing,
    with every installed distribution held at its version (a constraints file)."""
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('litellm') is None)"
    if subprocess.run([python, "-c", probe], cwd=REPO, check=False).returncode == 0:
        return {"needed": False}
    started = time.monotonic()
    listed = quiet([python, "-m", "pip", "list", "--format=json", "--exclude-editable"], 120)
    try:
        pins = [f"{p['name']}=={p['version']}" for p in json.loads(listed or "[]")]
    except (ValueError, KeyError):
        pins = []
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as handle:
        handle.write("\n".join(pins) + "\n")
        constraints = handle.name
    argv = [
        python,
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "-c",
        constraints,
        "-r",
        str(REQUIREMENTS),
    ]
    print(f"[run] installing {REQUIREMENTS.relative_to(REPO)} (LiteLLM is missing) ...", flush=True)
    try:
        done = subprocess.run(
            argv, cwd=REPO, capture_output=True, text=True, timeout=max(60.0, min(600.0, budget))
        )
        ok, error = done.returncode == 0, None if done.returncode == 0 else done.stderr[-1500:]
    except subprocess.TimeoutExpired:
        ok, error = False, "pip install timed out"
    finally:
        os.unlink(constraints)
    seconds = round(time.monotonic() - started, 1)
    print(f"[run] install {'done' if ok else 'FAILED'} ({seconds} s)", flush=True)
    return {
        "needed": True,
        "ok": ok,
        "seconds": seconds,
        "error": error,
        "command": shlex.join(
            ["pip", "install", "-c", "<installed versions>", "-r", "benchmarks/requirements.txt"]
        ),
    }


# -- running ---------------------------------------------------------------------------------
def tail(path: Path, lines: int = 12) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """End the script and everything it started (its own process group), by its id."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run_script(
    script: Script, python: str, quick: bool, timeout: float, env: dict[str, str]
) -> dict[str, Any]:
    """Run one script; its record with ``raw`` (what it wrote) or ``error``."""
    argv_tail = script.command(quick, timeout)
    shown = shlex.join(["python", *argv_tail])
    if script.docker and env.get("DOCKER_HOST"):
        shown = f"DOCKER_HOST={env['DOCKER_HOST']} {shown}"
    record: dict[str, Any] = {"command": shown, "timeout_s": round(timeout)}
    if not (REPO / script.path).exists():
        record["error"] = f"{script.path} does not exist (not written yet)"
        record["status"] = "missing"
        return record
    logs = RESULTS / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{script.name}.log"
    fd, json_path = tempfile.mkstemp(prefix=f"gz-bench-{script.name}-", suffix=".json")
    os.close(fd)
    os.unlink(json_path)  # the script creates it; an empty file would look like output
    argv = [python, *argv_tail, "--json", json_path]
    started = time.monotonic()
    with open(log_path, "wb") as log:
        log.write(f"$ {shlex.join(argv)}\n\n".encode())
        log.flush()
        proc = subprocess.Popen(
            argv,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        try:
            returncode: int | None = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop_group(proc)
            returncode = None
        except BaseException:  # Ctrl-C: take the script's children down with it
            stop_group(proc)
            raise
    record["duration_s"] = round(time.monotonic() - started, 1)
    record["returncode"] = returncode
    record["log"] = str(log_path.relative_to(HERE))
    raw = None
    try:
        with open(json_path, encoding="utf-8") as handle:
            raw = json.load(handle)
    except (OSError, ValueError) as exc:
        if returncode is not None and returncode == 0:
            record["error"] = f"exit 0 but no JSON figures: {exc}"
    finally:
        with contextlib.suppress(OSError):
            os.unlink(json_path)
    if returncode is None:
        record["error"] = f"timed out after {timeout:.0f} s; log tail:\n{tail(log_path)}"
    elif returncode != 0:
        reason = f"exit code {returncode}"
        if raw is None:
            record["error"] = f"{reason}; log tail:\n{tail(log_path)}"
        else:
            record["warning"] = f"{reason} (figures were written; see {record['log']})"
    if isinstance(raw, dict):
        record["raw"] = raw
        record["status"] = "ok" if returncode == 0 else "ok (non-zero exit)"
    else:
        record["status"] = "timeout" if returncode is None else "failed"
        if raw is not None and "error" not in record:
            record["error"] = "the JSON figures are not an object"
    return record


FIGURE_FIELDS = {"value", "command", "unit", "target", "note", "description"}
# Names that are figures wherever they come from; any other key of a script that writes plain
# ``{key: value}`` JSON is kept under ``script.key`` (``rounds``, ``platform``, ...).
FIGURE_PREFIXES = (
    "hub_vs_raw_",
    "gateway_",
    "p2c_",
    "breaker_",
    "docker_",
    "legacy_vs_hub_",
    "hub_era_",
    "startup_",
    "chaos_",
    "scale_",
    "litellm_",
    "prefix_",
    "redis_",
    "dashboard_",
)


def figures_of(script: Script, record: dict[str, Any], quick: bool) -> dict[str, Any]:
    """The script's figures as ``{key: {"value", "command", "script"}}``: its own command where
    it gives one, else the command the runner ran."""
    out: dict[str, Any] = {}
    for key, item in (record.get("raw") or {}).items():
        if key in METADATA_KEYS:
            continue
        named = isinstance(item, dict) and "value" in item and set(item) <= FIGURE_FIELDS
        if named:
            figure = dict(item)
            figure.setdefault("command", record["command"])
        else:
            figure = {"value": item, "command": record["command"]}
        figure["script"] = script.name
        keep = named or key in script.keys or key.startswith(FIGURE_PREFIXES)
        out[key if keep else f"{script.name}.{key}"] = figure
    for key in script.keys:
        if key not in out:
            reason = record.get("error") or f"{script.path} wrote no {key!r}"
            out[key] = {
                "value": None,
                "missing": True,
                "error": reason,
                "command": record["command"],
                "script": script.name,
            }
    return out


def derive(figures: dict[str, Any]) -> None:
    """Keys computed from others: ``breaker_vs_pybreaker_ratio`` is the worst breaker's."""
    parts = [
        figures.get(f"breaker_vs_pybreaker_ratio_{n}")
        for n in ("consecutive", "window", "adaptive")
    ]
    values = [p["value"] for p in parts if p and isinstance(p.get("value"), int | float)]
    if values and len(values) == len(parts):
        figures["breaker_vs_pybreaker_ratio"] = {
            "value": max(values),
            "command": parts[0]["command"],  # type: ignore[index]
            "script": "breakers",
            "derived": "the largest of the three breakers' ratios",
        }
    elif parts[0] is not None:
        figures["breaker_vs_pybreaker_ratio"] = {
            "value": None,
            "missing": True,
            "script": "breakers",
            "command": parts[0].get("command"),
            "error": parts[0].get("error") or "not every breaker ratio was measured",
        }


def judge(figures: dict[str, Any]) -> None:
    for key, figure in figures.items():
        target = TARGETS.get(key)
        if target is None:
            continue
        figure["target"] = str(target)
        figure["pass"] = target.check(figure.get("value"))


# -- reporting -------------------------------------------------------------------------------
def fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        if v == 0:
            return "0"
        if abs(v) >= 100:
            return f"{v:,.1f}"
        if abs(v) >= 0.01:
            return f"{v:#.3g}" if abs(v) < 10 else f"{v:.2f}"
        return f"{v:.2e}"
    return str(v)


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def notes(figures: dict[str, Any]) -> list[str]:
    """Short readings of the nested figures: where startup time goes, the peer's setup."""
    out: list[str] = []
    startup = (figures.get("startup_details") or {}).get("value")
    if isinstance(startup, dict):
        inside = startup.get("in_process", {})
        packages = startup.get("importtime", {}).get("top_packages_self_ms", {})
        top = ", ".join(f"{name} {ms:.1f}" for name, ms in list(packages.items())[:6])
        out += [
            "",
            "### Where startup time goes",
            "",
            f"In one process: importing the core {fmt(inside.get('import_core_ms'))} ms, "
            f"reading entry points {fmt(inside.get('entry_points_ms'))} ms (over "
            f"{inside.get('distributions', '?')} installed distributions), loading the plugins "
            f"{fmt(inside.get('load_plugins_ms'))} ms. `python -X importtime`, self time by "
            f"package (ms): {top}.",
        ]
        out += [f"- {note}" for note in startup.get("analysis", [])]
    peer = (figures.get("litellm_peer_details") or {}).get("value")
    if isinstance(peer, dict):
        over = peer["overhead"]["contenders"]
        pool = peer["pool"]["contenders"]
        rows = " ".join(
            f"{name} {row['p50_ms']:.1f}/{row['p99_ms']:.1f} ms;" for name, row in pool.items()
        )
        out += [
            "",
            "### LiteLLM side by side",
            "",
            f"LiteLLM {peer['litellm']['version']} (`ollama_chat/` deployments). Added latency "
            "per sequential request over a bare aiohttp client: "
            + ", ".join(
                f"{n} {r.get('overhead_paired_ms', r['overhead_p50_ms']):.3f} ms"
                for n, r in over.items()
                if n != "bare"
            )
            + f"; client CPU per request (ms): {peer['overhead']['cpu_ms_per_request']}. "
            f"Pool 10/30/90 ms, p50/p99: {rows} "
            f"connections refused by the loopback guard: {len(peer.get('blocked_outbound', []))}.",
        ]
    return out


def write_report(results: dict[str, Any]) -> list[tuple[str, str | None, str | None]]:
    sys.path.insert(0, str(HERE))
    try:
        import plots  # benchmarks/plots.py
    finally:
        sys.path.remove(str(HERE))
    made = plots.make_all(results, RESULTS)
    meta, figures = results["meta"], results["figures"]
    lines = [
        "# Benchmark results",
        "",
        f"Generated by `{meta['command']}` on {meta['date']} "
        f"({'quick run' if meta['quick'] else 'full run'}, {meta.get('duration_s', '?')} s). "
        "Every comparison is a ratio of two contenders measured side by side in the same "
        "script run, on the same machine. Raw figures: `benchmarks/results/latest.json`.",
        "",
        f"- machine: {meta['machine'].get('cpu', '?')}, {meta['machine'].get('cpus')} CPUs, "
        f"{meta['machine'].get('memory_gib', '?')} GiB, {meta['machine'].get('system')}; "
        f"load average at start {meta['machine'].get('load_average', '?')}",
        f"- Python {meta['python']}; git {str(meta['git'].get('commit'))[:12]}"
        f"{' (uncommitted changes)' if meta['git'].get('dirty') else ''}",
        f"- Docker: {meta.get('docker', {}).get('status', '?')}",
    ]
    if meta.get("litellm"):
        lines.append(f"- LiteLLM: {meta['litellm']}")
    lines += [
        "",
        "## Summary",
        "",
        "| key | value | target | pass | command |",
        "|---|---:|---|---|---|",
    ]
    for key in HEADLINE:
        figure = figures.get(key)
        if figure is None:
            lines.append(f"| `{key}` | — | {TARGETS.get(key, '')} | not run | |")
            continue
        passed = figure.get("pass")
        verdict = {True: "pass", False: "**FAIL**", None: ""}[passed]
        if figure.get("missing"):
            verdict = "missing"
            shown = f"missing: {cell(str(figure.get('error', ''))[:160])}"
        else:
            shown = fmt(figure.get("value"))
            ci = figures.get(f"{key}_ci90", {}).get("value")
            if isinstance(ci, list) and len(ci) == 2:
                shown += f" (90 % CI {fmt(ci[0])} to {fmt(ci[1])})"
        if figure.get("carried_over"):
            shown += f" (carried over from {figure['carried_over']})"
        command = figure.get("command") or ""
        lines.append(
            f"| `{key}` | {shown} | {figure.get('target', '')} | {verdict} | `{cell(command)}` |"
        )
    lines += notes(figures)
    lines += ["", "## Scripts", "", "| script | status | seconds | note |", "|---|---|---:|---|"]
    for name, record in results["scripts"].items():
        note = record.get("error") or record.get("warning") or ""
        note = cell(note.splitlines()[0] if note else "")[:200]
        if record.get("carried_over"):
            note = f"carried over from {record['carried_over']}. {note}"
        lines.append(
            f"| {name} | {record.get('status', '?')} | {record.get('duration_s', '—')} | {note} |"
        )
    lines += ["", "## Plots", ""]
    for title, name, error in made:
        if name:
            lines += [f"### {title}", "", f"![{title}](results/{name})", ""]
        else:
            lines += [f"- {title}: not drawn ({error})"]
    others = [
        (key, figure)
        for key, figure in sorted(figures.items())
        if key not in HEADLINE
        and not figure.get("missing")
        and isinstance(figure.get("value"), int | float)
    ]
    if others:
        lines += ["", "## Other figures", "", "| key | value | command |", "|---|---:|---|"]
        for key, figure in others:
            lines.append(f"| `{key}` | {fmt(figure['value'])} | `{cell(figure['command'])}` |")
    lines += [
        "",
        "Nested figures (per strategy, per path, distributions) are in "
        "`benchmarks/results/latest.json`; per-script logs in `benchmarks/results/logs/`.",
        "",
    ]
    REPORT.write_text("\n".join(lines), encoding="utf-8")
    return made


def summary_table(results: dict[str, Any]) -> str:
    rows = []
    for key in HEADLINE:
        figure = results["figures"].get(key, {"missing": True, "error": "not run"})
        if figure.get("missing"):
            shown, verdict = "missing", (figure.get("error") or "").splitlines()[0][:60]
        else:
            shown = fmt(figure.get("value"))
            verdict = {True: "pass", False: "FAIL", None: ""}[figure.get("pass")]
            ci = results["figures"].get(f"{key}_ci90", {}).get("value")
            if isinstance(ci, list) and len(ci) == 2:
                verdict = f"(90% CI {fmt(ci[0])}-{fmt(ci[1])}) {verdict}"
        rows.append(f"{key:<42}{shown:>12}  {figure.get('target', ''):<9}{verdict}")
    return "\n".join(rows)


# -- main ------------------------------------------------------------------------------------
def select(only: str | None) -> list[Script]:
    if not only:
        return list(SCRIPTS)
    wanted = []
    for name in (n.strip() for n in only.split(",") if n.strip()):
        if name not in BY_NAME:
            raise SystemExit(f"unknown benchmark {name!r}; known: {', '.join(BY_NAME)}")
        if BY_NAME[name] not in wanted:
            wanted.append(BY_NAME[name])
    return [s for s in SCRIPTS if s in wanted]


def reexec_in_venv() -> None:
    """Run under the project's venv (it has the project, matplotlib and the benchmarks'
    dependencies) when started with another interpreter."""
    venv = REPO / ".venv"
    python = venv / "bin" / "python"
    elsewhere = Path(sys.prefix).resolve() != venv.resolve()
    if elsewhere and python.exists() and os.environ.get("GZ_BENCH_REEXEC") != "1":
        os.environ["GZ_BENCH_REEXEC"] = "1"
        os.execv(python, [str(python), str(Path(__file__).resolve()), *sys.argv[1:]])


def main(argv: list[str] | None = None) -> int:
    reexec_in_venv()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs; under ten minutes")
    parser.add_argument("--only", metavar="NAME,...", help="run only these benchmarks")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 when a key is missing or a target is not met"
    )
    parser.add_argument(
        "--no-install", action="store_true", help="do not pip-install benchmarks/requirements.txt"
    )
    parser.add_argument(
        "--report-only", action="store_true", help="redraw plots and RESULTS.md from latest.json"
    )
    args = parser.parse_args(argv)
    if args.list:
        for s in SCRIPTS:
            there = "" if (REPO / s.path).exists() else "  (not there yet)"
            print(f"{s.name:<16}{s.path:<32}{', '.join(s.keys)}{there}")
        return 0
    if args.report_only:
        results = json.loads(LATEST.read_text(encoding="utf-8"))
        write_report(results)
        print(summary_table(results))
        return 0

    scripts = select(args.only)
    started = time.monotonic()
    deadline = started + QUICK_BUDGET_S if args.quick else float("inf")
    python = venv_python()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    meta: dict[str, Any] = {
        "command": shlex.join(["python", "benchmarks/run.py", *(argv or sys.argv[1:])]),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "only": [s.name for s in scripts] if args.only else None,
        "python": platform.python_version(),
        "interpreter": python,
        "machine": machine(),
        "git": git_info(),
    }
    if any(s.docker for s in scripts):
        host, how = docker_host()
        problem = docker_ping(host) if host else how
        meta["docker"] = {
            "host": host,
            "found": how,
            "answers": problem is None,
            "status": f"engine at {host} answers"
            if problem is None
            else f"no Docker engine answers ({host or 'no host'}: {problem})",
        }
        if host and problem is None:
            env["DOCKER_HOST"] = host
    else:
        meta["docker"] = {"status": "not run"}

    records: dict[str, Any] = {}
    figures: dict[str, Any] = {}
    for script in scripts:
        remaining = deadline - time.monotonic()
        if script.name == "litellm_peer" and not args.no_install:
            meta["litellm_install"] = ensure_requirements(python, remaining)
            remaining = deadline - time.monotonic()
        timeout = min(max(120.0, script.timeout / 2) if args.quick else script.timeout, remaining)
        print(f"[run] {script.name:<16}", end=" ", flush=True)
        install = meta.get("litellm_install", {})
        if script.name == "litellm_peer" and install.get("needed") and not install.get("ok"):
            record = {
                "status": "skipped",
                "command": shlex.join(["python", *script.command(args.quick)]),
                "error": f"LiteLLM could not be installed: {install.get('error')}",
            }
        elif script.docker and not meta["docker"].get("answers"):
            record = {
                "status": "skipped",
                "error": meta["docker"]["status"],
                "command": shlex.join(["python", *script.command(args.quick)]),
            }
        elif timeout < 20:
            record = {
                "status": "skipped",
                "command": shlex.join(["python", script.path]),
                "error": "the run's time budget is spent",
            }
        else:
            record = run_script(script, python, args.quick, timeout, env)
        line = record["status"]
        if "duration_s" in record:
            line += f" ({record['duration_s']} s)"
        if record.get("error"):
            line += f": {record['error'].splitlines()[0][:150]}"
        print(line, flush=True)
        for key, figure in figures_of(script, record, args.quick).items():
            if key in figures and figures[key].get("script") != script.name:
                key = f"{script.name}.{key}"  # same name from two scripts: keep both
            figures[key] = figure
        record.pop("raw", None)
        records[script.name] = record

    if args.only and LATEST.exists():  # carry the others over from the previous run
        with contextlib.suppress(OSError, ValueError, KeyError):
            previous = json.loads(LATEST.read_text(encoding="utf-8"))
            when = previous["meta"]["date"]
            ran = {s.name for s in scripts}
            for name, record in previous["scripts"].items():
                if name not in ran:
                    records[name] = {**record, "carried_over": record.get("carried_over", when)}
            for key, figure in previous["figures"].items():
                if figure.get("script") not in ran and key not in figures:
                    figures[key] = {**figure, "carried_over": figure.get("carried_over", when)}

    derive(figures)
    for key in HEADLINE:
        if key not in figures and key in EXPECTED_FROM:
            figures[key] = {
                "value": None,
                "missing": True,
                "error": f"no script of this run writes it; expected from {EXPECTED_FROM[key]}",
                "command": None,
            }
    judge(figures)
    meta["duration_s"] = round(time.monotonic() - started, 1)
    if figures.get("litellm_blocked_outbound") or "litellm_peer" in records:
        with contextlib.suppress(Exception):
            details = figures["litellm_peer_details"]["value"]
            meta["litellm"] = (
                f"{details['litellm']['version']}, ollama_chat deployments; outbound "
                f"connections refused by the guard: {len(details['blocked_outbound'])}"
            )
    missing = sorted(k for k in HEADLINE if figures.get(k, {"missing": True}).get("missing"))
    failed = sorted(k for k, f in figures.items() if f.get("pass") is False)
    meta["missing_keys"], meta["failed_targets"] = missing, failed
    results = {"meta": meta, "scripts": records, "figures": figures}
    RESULTS.mkdir(parents=True, exist_ok=True)
    LATEST.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    made = write_report(results)

    print()
    print(summary_table(results))
    print()
    drawn = [name for _, name, _ in made if name]
    print(
        f"wrote {LATEST.relative_to(REPO)}, {REPORT.relative_to(REPO)} and {len(drawn)} plots "
        f"in {meta['duration_s']} s"
    )
    if missing:
        print(f"missing: {', '.join(missing)}")
    if failed:
        print(f"targets not met: {', '.join(failed)}")
    return 1 if args.strict and (missing or failed) else 0


if __name__ == "__main__":
    sys.exit(main())
