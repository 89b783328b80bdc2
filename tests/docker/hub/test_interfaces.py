"""The command line (`gleitzeit run`, `gleitzeit docker pull|prepare`) and the gateway."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from gleitzeit_docker.engine import Engine

from gleitzeit_core import Runtime
from gleitzeit_core._gateway import build_app

from ..conftest import IMAGE
from .conftest import MakeRuntime, hub_config, hub_containers

pytestmark = [pytest.mark.docker, pytest.mark.asyncio(loop_scope="session")]


def _toml(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)  # strings, numbers, booleans and lists read the same in TOML


def write_config(path: Path, config: dict[str, Any]) -> Path:
    """A TOML file with the one docker hub of ``config``."""
    table = config["hubs"]["sandbox"]
    lines = ["[hubs.sandbox]", *(f"{key} = {_toml(value)}" for key, value in table.items())]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


async def gleitzeit(*args: str, timeout: float = 60.0) -> tuple[int, str, str]:
    """Run the `gleitzeit` command line in a subprocess: (exit code, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gleitzeit_core",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(os.environ),  # the isolated environment of the test (plugins, XDG)
    )
    try:
        async with asyncio.timeout(timeout):
            out, err = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    return int(process.returncode or 0), out.decode(), err.decode()


async def test_run_prints_the_json_result(
    hub_engine: Engine, tmp_path: Path, make_runtime: MakeRuntime
) -> None:
    """`gleitzeit run python/execute --params ... --config x.toml` prints the JSON result,
    and its process leaves no container behind."""
    config = hub_config("cli-run")
    path = write_config(tmp_path / "x.toml", config)
    params = json.dumps({"code": "print(1+1)"})
    code, out, err = await gleitzeit(
        "run", "python/execute", "--params", params, "--config", str(path)
    )
    assert code == 0, err
    result = json.loads(out)
    assert (result["success"], result["stdout"], result["exit_code"]) == (True, "2\n", 0)
    label = config["hubs"]["sandbox"]["hub_id"]
    assert await hub_engine.list_containers({"gleitzeit.hub": label}) == []


async def test_run_refuses_loosening_with_exit_code_one(tmp_path: Path) -> None:
    """A request that asks for more than its profile allows exits 1 naming the field."""
    path = write_config(tmp_path / "x.toml", hub_config("cli-refuse"))
    params = json.dumps({"code": "1", "memory": "8g"})
    code, out, err = await gleitzeit(
        "run", "python/execute", "--params", params, "--config", str(path)
    )
    assert code == 1
    assert out == ""
    assert "params.memory: request asks for memory 8g" in err


async def test_pull_of_an_image_no_registry_has_names_it_and_how_to_get_it() -> None:
    """`gleitzeit docker pull` of an image that no reachable registry has exits non-zero,
    naming the image and how to build or load it (the registry is a closed loopback port,
    so nothing leaves this machine)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    image = f"127.0.0.1:{port}/no-such-image:1"
    code, _, err = await gleitzeit("docker", "pull", image)
    assert code == 1, err
    assert image in err
    assert ".ci/" not in err  # user-facing: never a CI script
    assert "docker load" in err


async def test_prepare_finds_every_profile_image_present(tmp_path: Path) -> None:
    """`gleitzeit docker prepare --config` checks every enabled profile's image on every
    engine and pulls nothing that is there."""
    path = write_config(tmp_path / "x.toml", hub_config("cli-prepare"))
    code, _, err = await gleitzeit("docker", "prepare", "--config", str(path))
    assert code == 0, err
    assert f"{IMAGE} present" in err
    assert "pulling" not in err


async def test_gateway_executes_python(hub_engine: Engine, make_runtime: MakeRuntime) -> None:
    """POST /gleitzeit/execute runs python/execute; a loosening request is a 400; the status
    route shows the docker hub's engine with its containers."""
    runtime: Runtime = await make_runtime(hub_config("gateway"))
    runner = web.AppRunner(build_app(runtime), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            body = {"method": "python/execute", "params": {"code": "print('hi')\nresult = 6 * 7"}}
            async with session.post(f"{base}/gleitzeit/execute", json=body) as response:
                assert response.status == 200
                answer = await response.json()
            assert answer["result"]["result"] == 42
            assert answer["result"]["stdout"] == "hi\n"
            loose = {"method": "python/execute", "params": {"code": "1", "timeout": 9999}}
            async with session.post(f"{base}/gleitzeit/execute", json=loose) as response:
                assert response.status == 400
                assert "params.timeout" in (await response.json())["error"]
            async with session.get(f"{base}/gleitzeit/status") as response:
                status = await response.json()
        (hub,) = status["hubs"]
        assert hub["kind"] == "docker"
        assert hub["resources"][0]["details"]["containers"]["sandboxed"]["idle"] == 1
    finally:
        await runner.cleanup()
    assert len(await hub_containers(hub_engine, runtime)) == 1
