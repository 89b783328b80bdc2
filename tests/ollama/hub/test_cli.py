"""End to end through the ``gleitzeit`` command line, as subprocesses on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import aiohttp

from gleitzeit_core.testing.probe_contract import free_loopback_port
from tests.ollama.conftest import SimFactory
from tests.ollama.hub.support import MODEL, sim_stats

GLEITZEIT = str(Path(sys.executable).with_name("gleitzeit"))


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"GLEITZEIT_LOAD_PLUGINS": "ollama", "XDG_CONFIG_HOME": str(tmp_path / "xdg")})
    for name in ("OLLAMA_HOST", "OLLAMA_HOSTS", "GLEITZEIT_CONFIG"):
        env.pop(name, None)
    return env


async def _run(tmp_path: Path, *args: str, timeout: float = 30.0) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        GLEITZEIT,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_env(tmp_path),
    )
    try:
        async with asyncio.timeout(timeout):
            out, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_gleitzeit_run_chat_with_a_config_file(
    sim_factory: SimFactory, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """``gleitzeit run llm/chat --params ... --config x.toml`` prints Ollama's answer (with the
    serving instance) using a TOML config that routes to two simulators."""
    sims = await sim_factory(2, models=[MODEL])
    config = tmp_path / "x.toml"
    config.write_text(
        "[hubs.llm]\n"
        'kind = "ollama"\n'
        'discovery = ["static"]\n'
        'strategy = "round_robin"\n'
        "request_timeout = 10.0\n"
        + "".join(
            f'\n[[hubs.llm.resources]]\nid = "s{i}"\nurl = "{sim.url}"\nnum_parallel = 2\n'
            for i, sim in enumerate(sims)
        )
    )
    params = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    code, out, err = await _run(
        tmp_path, "run", "llm/chat", "--params", json.dumps(params), "--config", str(config)
    )
    assert code == 0, err
    answer = json.loads(out)
    assert answer["done"] is True
    assert answer["eval_count"] == 4
    assert answer["message"]["role"] == "assistant"
    assert answer["gleitzeit"]["instance"] in {"s0", "s1"}
    served = [(await sim_stats(http, sim))["requests"].get("/api/chat", 0) for sim in sims]
    assert sum(served) == 1

    code, out, err = await _run(
        tmp_path,
        "run",
        "llm/chat",
        "--params",
        json.dumps({**params, "stream": True}),
        "--config",
        str(config),
    )
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert lines[-1]["done"] is True
    assert len(lines) == 5


async def test_gleitzeit_run_reports_bad_params_and_missing_models(
    sim_factory: SimFactory, tmp_path: Path
) -> None:
    """A wrong parameter and a model nobody has end with exit code 1 and a one-line reason."""
    (sim,) = await sim_factory(1, models=[MODEL])
    config = tmp_path / "x.toml"
    config.write_text(
        f'[hubs.llm]\nkind = "ollama"\ndiscovery = ["static"]\n\n'
        f'[[hubs.llm.resources]]\nurl = "{sim.url}"\n'
    )
    bad = {"model": MODEL, "messages": [], "temprature": 1}
    code, _, err = await _run(
        tmp_path, "run", "llm/chat", "--params", json.dumps(bad), "--config", str(config)
    )
    assert code == 1
    assert "params.temprature: unknown key" in err
    missing = {"model": "mistral", "prompt": "x"}
    code, _, err = await _run(
        tmp_path, "run", "llm/generate", "--params", json.dumps(missing), "--config", str(config)
    )
    assert code == 1
    assert "no instance has model 'mistral:latest'" in err


async def test_gleitzeit_sim_ollama_command(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    """The plugin adds ``gleitzeit sim ollama``: it serves the given models on the given port."""
    port = free_loopback_port()
    process = await asyncio.create_subprocess_exec(
        GLEITZEIT,
        "sim",
        "ollama",
        "--port",
        str(port),
        "--models",
        "a,b:7b",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_env(tmp_path),
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(20):
            ready = await process.stdout.readline()
        assert f"127.0.0.1:{port}".encode() in ready
        async with http.get(f"http://127.0.0.1:{port}/api/tags") as response:
            names = sorted(m["name"] for m in (await response.json())["models"])
        assert names == ["a:latest", "b:7b"]
    finally:
        process.terminate()
        try:
            async with asyncio.timeout(10):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()
