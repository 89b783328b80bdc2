"""Two gateways with the same hub name on one engine do not delete each other's containers.

Gateway A is a real separate process (a runtime serving jobs on request) with warm
containers; gateway B starts in this process with the same ``hub_id`` (as two hosts with the
same hub name and a shared explicit ``hub_id`` would), which runs B's orphan cleanup. A's
containers must survive it and keep serving; only once A is killed do they stop, and then
the next start removes them.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from gleitzeit_docker.engine import LABEL_HUB, LABEL_RUN, Engine

from gleitzeit_core import Runtime

from ..docker.hub.conftest import _ENV, _isolated  # noqa: F401 - autouse: only this plugin
from ..docker_engine import IMAGE, require_engine

pytestmark = pytest.mark.docker

HUB_ID = f"gz-sec-twins-{uuid.uuid4().hex[:8]}"

# Gateway A: start, say "ready", then run one job per line on stdin and print its result.
# It reports another hostname, as a gateway on a second host (or in a container of its own,
# with its own pid namespace) does: its liveness cannot be judged by a pid on this host.
GATEWAY = """
import asyncio, json, socket, sys
socket.gethostname = lambda: "gateway-a-elsewhere"
from gleitzeit_core import Runtime

async def main():
    rt = Runtime.from_config(json.loads(sys.argv[1]))
    await rt.start()
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    while await loop.run_in_executor(None, sys.stdin.readline):
        out = await rt.execute("python/execute", {"code": "result = 6 * 7"})
        print(json.dumps([out["result"], out["container_id"]]), flush=True)
    await rt.stop()

asyncio.run(main())
"""


def _config(min_idle: int) -> dict[str, Any]:
    table = {
        "kind": "docker",
        "hub_id": HUB_ID,
        "engines": [os.environ.get("DOCKER_HOST", "")],
        "default_image": IMAGE,
        "pool": {"min_idle": min_idle, "max_size": 4, "acquire_timeout": 60.0},
    }
    return {"hubs": {"twins": table}}


@pytest_asyncio.fixture
async def engine() -> AsyncIterator[Engine]:
    require_engine()
    eng = Engine()
    yield eng
    await eng.remove_all(HUB_ID)
    await eng.close()


async def _containers(engine: Engine, running: bool | None = None) -> dict[str, str]:
    """Container id -> run label of the twins' hub id (only running/stopped if asked)."""
    found = await engine.list_containers({LABEL_HUB: HUB_ID})
    return {
        str(c["Id"]): str(c["Labels"][LABEL_RUN])
        for c in found
        if running is None or (c.get("State") == "running") == running
    }


async def _eventually(check: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.2)


async def _line(proc: asyncio.subprocess.Process, timeout: float = 120.0) -> str:
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), timeout)
    assert line, "gateway A exited"
    return line.decode().strip()


async def test_a_second_gateway_with_the_same_hub_id_spares_the_first(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """B's start (orphan cleanup) leaves A's two warm containers alone and A keeps serving
    from them; B serves too. After A is SIGKILLed its containers stop by themselves, and
    the next start (C) removes exactly those, not B's, and the directories of A's runner
    sockets with them (B's stay)."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))  # A's and ours: one base to check
    base = tmp_path / f"gleitzeit-runners-{os.geteuid()}"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        GATEWAY,
        json.dumps(_config(min_idle=2)),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, **_ENV},
    )
    b = c = None
    try:
        assert await _line(proc) == "ready"

        async def a_is_warm() -> bool:
            return len(await _containers(engine, running=True)) >= 2

        await _eventually(a_is_warm)
        of_a = await _containers(engine)
        assert all(run.startswith("gateway-a-elsewhere-") for run in of_a.values())
        dirs_of_a = set(os.listdir(base))
        assert len(dirs_of_a) == 2  # one per warm container, named for A's pid
        assert {name.split("-")[0] for name in dirs_of_a} == {str(proc.pid)}
        b = Runtime.from_config(_config(min_idle=0))
        await b.start()
        assert b.status().hubs[0].resources[0].details["orphans_removed"] == 0
        assert set(of_a) <= set(await _containers(engine))
        assert proc.stdin is not None
        proc.stdin.write(b"run\n")
        result, _ = json.loads(await _line(proc))
        assert result == 42  # A still serves
        assert set(of_a) <= set(await _containers(engine))
        mine = await b.execute("python/execute", {"code": "result = 6 * 7"})
        assert mine["result"] == 42
        assert dirs_of_a < set(os.listdir(base))  # A is alive: its directories stay

        proc.send_signal(signal.SIGKILL)  # A crashes
        await proc.wait()

        runs_of_a = set(of_a.values())

        async def a_stopped() -> bool:  # (A may have made another container meanwhile)
            running = await _containers(engine, running=True)
            return not runs_of_a & set(running.values())

        await _eventually(a_stopped)
        all_of_a = {cid for cid, run in (await _containers(engine)).items() if run in runs_of_a}
        assert set(of_a) <= all_of_a
        c = Runtime.from_config(_config(min_idle=0))
        await c.start()
        assert c.status().hubs[0].resources[0].details["orphans_removed"] == len(all_of_a)
        left = await _containers(engine)
        assert not all_of_a & set(left)
        assert mine["container_id"] in left  # B's container is B's still
        left_dirs = set(os.listdir(base))
        assert not dirs_of_a & left_dirs
        assert {name.split("-")[0] for name in left_dirs} == {str(os.getpid())}
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        for runtime in (b, c):
            if runtime is not None:
                await runtime.stop()
