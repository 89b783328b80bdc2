"""``PythonDockerProvider``'s ``local`` mode: off unless switched on; then a child process
with a timeout that holds, and ``allowed_local_modules`` enforced. Needs no Docker engine."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest

from gleitzeit_core import InvalidParams

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

NO_ENGINE = {"base_url": "unix:///nonexistent/gleitzeit-test.sock"}


async def _provider(**kwargs: Any) -> Any:
    from gleitzeit.providers.python_docker_provider import PythonDockerProvider

    provider = PythonDockerProvider("local-test", docker_config=NO_ENGINE, **kwargs)
    await provider.initialize()
    return provider


async def test_local_is_off_by_default_and_docker_modes_follow_the_engine() -> None:
    """Without ``enable_local`` local execution is refused with the old message; with no
    usable engine the Docker modes are disabled, as the old provider did."""
    provider = await _provider()
    try:
        info = await provider.execute("python/info", {})
        assert info["docker_available"] is False
        assert all(not mode["enabled"] for mode in info["execution_modes"].values())
        for mode in ("local", "sandboxed"):
            with pytest.raises(InvalidParams, match=f"Execution mode '{mode}' is not enabled"):
                await provider.execute("python/execute", {"code": "x=1", "execution_mode": mode})
    finally:
        await provider.shutdown()


async def test_local_runs_in_a_child_process() -> None:
    """Switched on, local code runs in another process with the args as variables and gives
    the old local result shape."""
    provider = await _provider(enable_local=True, default_mode="local")
    try:
        result = await provider.execute(
            "python/execute",
            {"code": "import os\nprint('hi')\nresult = [os.getpid(), x]", "args": {"x": 7}},
        )
        assert result["success"] is True
        assert result["execution_mode"] == "local"
        assert result["stdout"] == "hi\n"
        pid, x = result["result"]
        assert pid != os.getpid()
        assert x == 7
        failed = await provider.execute("python/execute", {"code": "raise KeyError('k')"})
        assert failed["success"] is False
        assert "KeyError" in failed["error"]
        assert "Traceback" in failed["stderr"]
    finally:
        await provider.shutdown()


async def test_local_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    """The old local mode wrapped synchronous ``exec`` in ``wait_for`` - an endless loop hung
    the server. Now the child and anything it started are killed at the timeout."""
    provider = await _provider(enable_local=True)
    pid_file = tmp_path / "grandchild.pid"
    code = (
        "import subprocess, sys\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "while True:\n    pass\n"
    )
    try:
        started = time.monotonic()
        result = await provider.execute(
            "python/execute", {"code": code, "execution_mode": "local", "timeout": 1}
        )
        assert time.monotonic() - started < 4
        assert result["success"] is False
        assert "timeout" in result["error"]
        grandchild = int(pid_file.read_text())
        for _ in range(60):  # the kill is immediate; allow the zombie to be reaped
            if not _alive(grandchild):
                break
            await asyncio.sleep(0.05)
        assert not _alive(grandchild)
    finally:
        await provider.shutdown()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
            return fh.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


async def test_allowed_local_modules_is_enforced(monkeypatch: pytest.MonkeyPatch) -> None:
    """``allowed_local_modules`` was stored and never checked; now imports outside it are
    refused before anything runs. ``GLEITZEIT_PYTHON_ALLOW_LOCAL=1`` also switches local on."""
    monkeypatch.setenv("GLEITZEIT_PYTHON_ALLOW_LOCAL", "1")
    provider = await _provider(allowed_local_modules=["math"], default_mode="local")
    try:
        ok = await provider.execute("python/execute", {"code": "import math\nresult = math.pi > 3"})
        assert ok["result"] is True
        refused = await provider.execute("python/execute", {"code": "import os, math.cos\nx = 1"})
        assert refused["success"] is False
        assert "os" in refused["error"]
        from_import = await provider.execute(
            "python/execute", {"code": "from shutil import rmtree"}
        )
        assert from_import["success"] is False
        assert "shutil" in from_import["error"]
    finally:
        await provider.shutdown()
