"""``DockerExecutor``/``ContainerPool``/``SecurityLevel`` (research section 2.4) and
``PythonDockerProvider`` (section 2.5) on the real Docker engine: the old usage runs
unchanged, with the old result shapes, in sandboxes without the old bugs."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from gleitzeit_core import InvalidParams, Runtime
from tests.legacy.conftest import HUB_PREFIX, IMAGE, docker_config, our_containers

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

OLD_KEYS = {"success", "stdout", "stderr", "exit_code"}


async def _left(label: str) -> list[Any]:
    prefix = f"{HUB_PREFIX}-{label}"
    return [c for c in await our_containers() if c["Labels"]["gleitzeit.hub"].startswith(prefix)]


@pytest.mark.docker
async def test_old_executor_usage(tmp_path: Path) -> None:
    """Section 2.4: construct with ``pool_config``, ``initialize``, ``execute`` with the old
    arguments (multi-line ``files`` included - they used to break - and ``environment``),
    ``execute_file`` with
    ``args``, ``batch_execute`` (a failing task becomes an error dict), ``get_pool_status``,
    ``list_images``, ``shutdown`` - which removes every container."""
    from gleitzeit.execution.docker_executor import DockerExecutor, SecurityLevel

    executor = DockerExecutor(
        config=docker_config("executor"),
        pool_config={"max_containers": 4, "idle_timeout": 300, "reuse_containers": True},
    )
    await executor.initialize()
    try:
        result = await executor.execute(
            "data = open('data.txt').read().splitlines()\nprint(len(data))\nresult = data",
            image=IMAGE,
            timeout=20,
            memory_limit="256m",
            cpu_limit=0.5,
            network_mode="none",
            security_level=SecurityLevel.SANDBOXED,
            files={"data.txt": "first line\nsecond 'quoted' \\ line\n"},
        )
        assert set(result) == OLD_KEYS | {"result"}
        assert result["success"] is True
        assert result["exit_code"] == 0
        assert result["stdout"] == "2\n"
        assert result["result"] == ["first line", "second 'quoted' \\ line"]
        env = await executor.execute(
            "import os\nresult = os.environ['GREETING']",
            image=IMAGE,
            environment={"GREETING": "hi"},
        )
        assert env["result"] == "hi"
        script = tmp_path / "job.py"
        script.write_text("result = x * 2\n", encoding="utf-8")
        doubled = await executor.execute_file(script, args={"x": 21}, image=IMAGE)
        assert doubled["result"] == 42
        batch = await executor.batch_execute(
            [
                {"code": "result = 1", "image": IMAGE},
                {"code": "raise ValueError('bad')", "image": IMAGE},
                {"code": "result = 3", "image": IMAGE, "security_level": "no-such-level"},
            ],
            max_concurrent=2,
        )
        assert batch[0]["result"] == 1
        assert batch[1]["success"] is False
        assert "ValueError: bad" in batch[1]["error"]
        assert batch[2]["success"] is False
        assert "no-such-level" in batch[2]["error"]
        status = await executor.get_pool_status()
        assert set(status) == {"total_containers", "busy_containers", "idle_containers", "by_image"}
        assert status["by_image"][IMAGE]["total"] >= 1
        assert status["busy_containers"] == 0
        assert IMAGE in await executor.list_images()
        assert executor.pool.max_containers == 4
        assert IMAGE in executor.pool.containers
    finally:
        await executor.shutdown()
    assert await _left("executor") == []


@pytest.mark.docker
@pytest.mark.parametrize("path", ["hub", "legacy"])
async def test_timeouts_are_enforced(path: str) -> None:
    """An endless loop with ``timeout=1`` comes back within seconds as a failed result (the
    old executor never enforced the timeout and pinned the container as busy)."""
    from gleitzeit.execution.docker_executor import DockerExecutor

    executor = DockerExecutor(config=docker_config(f"timeout-{path}"))
    try:
        started = time.monotonic()
        new = await executor.execute_new(
            "while True:\n    pass\n", image=IMAGE, timeout=1, path=path
        )
        assert time.monotonic() - started < 8
        assert new["success"] is False
        assert "timeout" in new["error"]
        after = await executor.execute("result = 'still serving'", image=IMAGE, path=path)
        assert after["result"] == "still serving"
    finally:
        await executor.shutdown()


@pytest.mark.docker
async def test_host_tmp_is_not_in_the_sandbox() -> None:
    """SANDBOXED used to bind-mount the host's /tmp read-write. A file put in the host's /tmp
    is not visible inside, and nothing outside the private /tmp is writable."""
    from gleitzeit.execution.docker_executor import DockerExecutor

    marker = Path("/tmp") / f"gleitzeit-legacy-marker-{uuid.uuid4().hex}"
    marker.write_text("host secret", encoding="utf-8")
    executor = DockerExecutor(config=docker_config("tmp"))
    try:
        code = (
            "import os\n"
            f"seen = os.path.exists({str(marker)!r})\n"
            "try:\n    open('/etc/x', 'w'); root_writable = True\n"
            "except OSError:\n    root_writable = False\n"
            "result = {'seen': seen, 'root_writable': root_writable, 'uid': os.getuid(),"
            " 'tmp': sorted(os.listdir('/tmp'))}\n"
        )
        result = await executor.execute(code, image=IMAGE)
        assert result["success"] is True, result
        assert result["result"]["seen"] is False
        assert result["result"]["root_writable"] is False
        assert result["result"]["uid"] != 0
        assert marker.name not in result["result"]["tmp"]
    finally:
        marker.unlink()
        await executor.shutdown()


@pytest.mark.docker
async def test_containers_are_keyed_by_their_whole_config() -> None:
    """The old pool keyed containers by image only, so a call could get a container made
    with other limits. Calls with the same limits reuse a container; other limits get their
    own."""
    from gleitzeit.execution.docker_executor import DockerExecutor

    executor = DockerExecutor(config=docker_config("keys"))
    try:
        code = "result = open('/sys/fs/cgroup/memory.max').read().strip()"
        first = await executor.execute_new(code, image=IMAGE, memory_limit="256m")
        again = await executor.execute_new(code, image=IMAGE, memory_limit="256m")
        other = await executor.execute_new(code, image=IMAGE, memory_limit="128m")
        assert first["container_id"] == again["container_id"]
        assert other["container_id"] != first["container_id"]
        if first["success"] and other["success"]:  # cgroup v2 exposes the limit
            assert first["result"] == str(256 << 20)
            assert other["result"] == str(128 << 20)
    finally:
        await executor.shutdown()


async def test_container_pool_object() -> None:
    """``ContainerPool`` keeps its old constructor; checking a container out by hand is no
    longer possible and says what to use instead. (No engine needed.)"""
    from gleitzeit.execution.docker_executor import ContainerConfig, ContainerPool

    pool = ContainerPool(max_containers=3, idle_timeout=60, reuse_containers=False)
    assert pool.pool_config() == {
        "max_containers": 3,
        "idle_timeout": 60,
        "reuse_containers": False,
    }
    assert pool.containers == {}
    with pytest.raises(NotImplementedError, match=r"DockerExecutor\.execute"):
        await pool.get_container(ContainerConfig(), None)
    assert await pool.cleanup_idle(None) == 0


@pytest.mark.docker
async def test_old_python_provider_usage(tmp_path: Path) -> None:
    """Section 2.5: ``PythonDockerProvider`` with its old arguments; ``python/execute`` in the
    Docker modes with ``args``, ``file`` and per-call limits, the old result keys plus
    ``execution_mode``; ``local`` refused unless switched on; ``python/validate``,
    ``python/info``, ``health_check`` and ``handle_request`` in their old shapes."""
    from gleitzeit.providers.python_docker_provider import PythonDockerProvider

    provider = PythonDockerProvider(
        "python-docker",
        docker_config=docker_config("provider"),
        pool_config={"max_containers": 4},
        default_mode="sandboxed",
        allowed_local_modules=["math"],
    )
    await provider.initialize()
    try:
        assert provider.get_supported_methods() == [
            "python/execute",
            "python/validate",
            "python/info",
        ]
        for mode in ("sandboxed", "minimal", "datascience"):
            result = await provider.execute(
                "python/execute",
                {
                    "code": "result = x + y",
                    "args": {"x": 1, "y": 2},
                    "execution_mode": mode,
                    "timeout": 20,
                },
            )
            assert set(result) == OLD_KEYS | {"result", "execution_mode"}
            assert result["result"] == 3
            assert result["execution_mode"] == mode
        script = tmp_path / "s.py"
        script.write_text("print('from a file')\n", encoding="utf-8")
        from_file = await provider.execute("python/execute", {"file": str(script)})
        assert from_file["stdout"] == "from a file\n"
        limited = await provider.execute(
            "python/execute", {"code": "result = 1", "memory_limit": "128m", "cpu_limit": 0.25}
        )
        assert limited["success"] is True
        with pytest.raises(InvalidParams, match="Execution mode 'local' is not enabled"):
            await provider.execute("python/execute", {"code": "x", "execution_mode": "local"})
        with pytest.raises(InvalidParams, match="'code' or 'file'"):
            await provider.execute("python/execute", {})
        assert await provider.execute("python/validate", {"code": "x = 1"}) == {
            "valid": True,
            "message": "Code syntax is valid",
        }
        invalid = await provider.execute("python/validate", {"code": "def f(:\n"})
        assert set(invalid) == {"valid", "error", "line", "offset"}
        assert invalid["line"] == 1
        info = await provider.execute("python/info", {})
        assert set(info) == {"provider", "default_mode", "execution_modes", "docker_available"}
        assert info["docker_available"] is True
        assert info["execution_modes"]["local"]["enabled"] is False
        health = await provider.health_check()
        assert set(health["details"]) == {
            "default_mode",
            "docker_status",
            "container_pool",
            "enabled_modes",
        }
        assert health["details"]["docker_status"] == "healthy"
        envelope = await provider.handle_request(
            {
                "jsonrpc": "2.0",
                "method": "python/execute",
                "params": {"code": "result = 5"},
                "id": 9,
            }
        )
        assert envelope["result"]["result"] == 5
        assert envelope["id"] == 9
        batch = await provider.batch_execute([{"code": "result = 1"}, {"code": "1/0"}])
        assert [r["success"] for r in batch] == [True, False]
    finally:
        await provider.shutdown()
    assert await _left("provider") == []


@pytest.mark.docker
async def test_docker_dual_mode_metrics() -> None:
    """Docker calls are dual-mode too: with ``rollout_percent`` 0 every call takes the legacy
    path, with 100 the hub path, each counted in the executor's per-path figures."""
    from gleitzeit.execution.docker_executor import DockerExecutor

    for percent, expected in ((0.0, "legacy"), (100.0, "hub")):
        executor = DockerExecutor(
            config=docker_config(f"dual-{int(percent)}"), features={"rollout_percent": percent}
        )
        try:
            for _ in range(2):
                await executor.execute("result = 1", image=IMAGE)
            paths = executor.path_metrics()
            assert {p: f["requests"] for p, f in paths.items() if f["requests"]} == {expected: 2}
        finally:
            await executor.shutdown()


@pytest.mark.docker
async def test_migrated_python_config_runs_the_same() -> None:
    """A Python Docker provider config and its migrated form give the same output for the
    same code."""
    from gleitzeit.providers.python_docker_provider import PythonDockerProvider
    from gleitzeit_legacy import migrate_provider_config

    old = {
        "type": "python_docker",
        "docker_config": {"image": IMAGE},
        "pool_config": {"max_containers": 2},
        "default_mode": "minimal",
    }
    config = migrate_provider_config(old)
    config["hubs"]["sandbox"]["hub_id"] = f"{HUB_PREFIX}-migrated"
    config["hubs"]["sandbox"]["engines"] = [os.environ["DOCKER_HOST"]]
    provider = PythonDockerProvider(
        "p",
        {**old["docker_config"], **docker_config("migrated-old")},
        old["pool_config"],
        "minimal",
    )
    runtime = Runtime.from_config(config)
    await runtime.start()
    try:
        code = "import sys\nprint(sys.version_info[0])\nresult = sum(range(10))"
        before = await provider.execute("python/execute", {"code": code})
        after = await runtime.execute("python/execute", {"code": code})
        assert (
            (before["stdout"], before["result"])
            == (after["stdout"], after["result"])
            == ("3\n", 45)
        )
    finally:
        await provider.shutdown()
        await runtime.stop()
