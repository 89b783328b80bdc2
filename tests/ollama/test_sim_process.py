"""SimProcess and the command line: start, serve, kill hard, restart on the same port, reap."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from typing import Any

import aiohttp
import click
import pytest
from click.testing import CliRunner
from gleitzeit_ollama.sim import FaultSpec, SimConfig, SimProcess
from gleitzeit_ollama.sim.cli import (
    config_from_options,
    config_to_args,
    main,
    sim_command,
    sim_options,
)


def _gone(pid: int) -> bool:
    """True if ``pid`` no longer exists (reaped), not even as a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def _tags(http: aiohttp.ClientSession, url: str) -> list[str]:
    async with http.get(f"{url}/api/tags") as resp:
        return [m["name"] for m in (await resp.json())["models"]]


async def test_kill_and_restart_same_port(
    sim_process_factory: Any, http: aiohttp.ClientSession
) -> None:
    """A child serves; kill() makes connections fail; restart() serves on the same port."""
    proc: SimProcess = await asyncio.to_thread(sim_process_factory, models=["llama3.2"])
    assert proc.url == f"http://127.0.0.1:{proc.port}"
    assert await _tags(http, proc.url) == ["llama3.2:latest"]
    first_pid = proc.pid
    assert first_pid is not None
    await proc.akill()
    assert _gone(first_pid)
    assert proc.returncode == -signal.SIGKILL
    with pytest.raises(aiohttp.ClientConnectionError):
        await _tags(http, proc.url)
    port = proc.port
    await proc.arestart()
    assert proc.port == port
    assert proc.pid != first_pid
    assert await _tags(http, proc.url) == ["llama3.2:latest"]
    await proc.aterminate()
    assert proc.returncode == 0  # SIGTERM is a clean exit
    assert not proc.alive


async def test_context_manager_reaps_child(http: aiohttp.ClientSession) -> None:
    """Leaving ``async with SimProcess`` stops and reaps the child; config reaches the child."""
    config = SimConfig(models=["qwen3"], latency_ms=1, load_ms=1, max_tokens=3, name="child")
    async with SimProcess(config) as proc:
        pid = proc.pid
        async with http.post(
            f"{proc.url}/api/generate", json={"model": "qwen3", "prompt": "x", "stream": False}
        ) as resp:
            assert (await resp.json())["eval_count"] == 3
        async with http.get(f"{proc.url}/_sim/stats") as resp:
            assert (await resp.json())["name"] == "child"
    assert pid is not None
    assert _gone(pid)


def test_start_failure_reports_and_reaps() -> None:
    """A child that cannot start raises with its stderr and leaves no process behind."""
    proc = SimProcess(SimConfig(), extra_args=["--num-parallel", "0"], start_timeout=20)
    with pytest.raises(RuntimeError, match="exited"):
        proc.start()
    assert not proc.alive


def test_module_entry_point_prints_ready_line_and_exits_on_sigterm() -> None:
    """``python -m gleitzeit_ollama.sim`` prints 'listening on http://127.0.0.1:P' and exits 0."""
    child = subprocess.Popen(
        [sys.executable, "-m", "gleitzeit_ollama.sim", "--port", "0", "--models", "a,b"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline().decode()
        assert line.startswith("listening on http://127.0.0.1:")
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=10) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)
        if child.stdout is not None:
            child.stdout.close()


def test_click_commands() -> None:
    """``sim_command`` is a click group named sim with an ``ollama`` subcommand."""
    assert isinstance(sim_command, click.Group)
    assert sim_command.name == "sim"
    assert "ollama" in sim_command.commands
    result = CliRunner().invoke(sim_command, ["ollama", "--help"])
    assert result.exit_code == 0
    for flag in ("--latency-ms", "--num-parallel", "--keep-alive", "--fault-error-rate"):
        assert flag in result.output
    assert CliRunner().invoke(main, ["--help"]).exit_code == 0


def test_config_args_roundtrip() -> None:
    """config_to_args and the CLI parser agree, faults included."""
    config = SimConfig(
        models=["a", "b:7b"],
        latency_ms=3,
        keep_alive=-1,
        pullable=["c"],
        num_parallel=3,
        context_length=8192,
        hang_max_s=7.5,
    )
    config.faults = FaultSpec.from_json({"error_rate": 0.25, "busy": True, "paths": ["/"]})
    args = config_to_args(config)
    parsed: dict[str, Any] = {}

    @click.command()
    @sim_options
    def capture(**options: Any) -> None:
        parsed.update(options)

    result = CliRunner().invoke(capture, args)
    assert result.exit_code == 0, result.output
    again = config_from_options(parsed)
    assert again == config


def _exited(pid: int) -> bool:
    """True once ``pid`` is gone or a zombie (an orphan's zombie may wait for init)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_orphaned_child_exits() -> None:
    """If the owner of a SimProcess dies hard, the simulator child exits on its own."""
    code = (
        "from gleitzeit_ollama.sim import SimProcess, SimConfig\n"
        "p = SimProcess(SimConfig(load_ms=1)).start()\n"
        "print(p.pid, flush=True)\n"
        "import time; time.sleep(60)\n"
    )
    owner = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    child_pid: int | None = None
    try:
        assert owner.stdout is not None
        child_pid = int(owner.stdout.readline())
        assert not _exited(child_pid)
        owner.kill()
        owner.wait(timeout=10)
        deadline = time.monotonic() + 10  # the child polls its parent every 0.5 s
        while not _exited(child_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _exited(child_pid)
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait(timeout=10)
        if owner.stdout is not None:
            owner.stdout.close()
        if child_pid is not None and not _exited(child_pid):
            os.kill(child_pid, signal.SIGKILL)  # never leave the orphan behind on failure
