"""Chaos: the Docker engine stops and comes back while requests keep arriving.

The test starts its OWN private engine (the suite's ``DOCKER_CI_ROOT`` plus ``-chaos``, by
default ``/tmp/ci-docker-chaos``; never the shared one), drives a steady load of executions
through the runtime, stops the engine with ``.ci/docker-engine.sh stop`` and starts it again.
While it is down every request must fail fast (well under 3 s) with ``engine unavailable:
...`` and the status must show the engine unhealthy; once it is back, requests must succeed
again and the pool must hold warm containers again. The engine is stopped in a ``finally``
and its dockerd must be gone.

Needs root and Debian's ``docker.io`` (``bash .ci/docker-engine.sh install``): skipped with
the reason on a developer machine without them, an error when ``CI`` is set.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import attrs
import pytest

from gleitzeit_core import Runtime

pytestmark = [pytest.mark.slow, pytest.mark.docker]

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / ".ci" / "docker-engine.sh"
# beside the suite's own engine (DOCKER_CI_ROOT): two suites on one machine must not stop,
# start or reach each other's chaos engine through one socket path
ROOT = os.environ.get("DOCKER_CI_ROOT", "/tmp/ci-docker").rstrip("/") + "-chaos"
SOCKET = f"unix://{ROOT}/docker.sock"
IMAGE = os.environ.get("GLEITZEIT_TEST_IMAGE", "localpython:3")
WORKERS = 3
FAST = 3.0  # every request while the engine is down must come back faster than this
TRANSITIONS = ("stopping", "restarting", "up")
RECOVERY = 60.0  # generous: a loaded 2-core machine restarts dockerd slowly


def _problem() -> str | None:
    if os.geteuid() != 0:
        return "the chaos test starts its own dockerd and needs root"
    if not (Path("/usr/sbin/dockerd").exists() and shutil.which("docker")):
        return "dockerd/docker are not installed (`bash .ci/docker-engine.sh install`)"
    return None


def _require() -> None:
    problem = _problem()
    if problem is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"Docker engine required in CI: {problem}", pytrace=False)
    pytest.skip(f"cannot run the engine chaos test: {problem} (in CI, with CI set, this fails)")


async def _engine(action: str, timeout: float = 180.0) -> str:
    """``bash .ci/docker-engine.sh ACTION`` for the private chaos engine; its log."""
    env = {**os.environ, "DOCKER_CI_ROOT": ROOT}
    process = await asyncio.create_subprocess_exec(
        "bash", str(SCRIPT), action, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    async with asyncio.timeout(timeout):
        out, _ = await process.communicate()
    text = out.decode(errors="replace")
    assert process.returncode == 0, f"docker-engine.sh {action} failed:\n{text}"
    return text


def _docker(host: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["docker", "-H", host, *args], capture_output=True, timeout=120, check=False
    )


def _copy_image() -> None:
    """Load the test image from the shared engine when it has it (loopback only, faster
    than building); ``docker-engine.sh image`` then finds it present."""
    if _docker(SOCKET, "image", "inspect", IMAGE).returncode == 0:
        return
    shared = os.environ.get("DOCKER_HOST", "unix:///tmp/ci-docker/docker.sock")
    if shared == SOCKET or _docker(shared, "image", "inspect", IMAGE).returncode != 0:
        return
    save = subprocess.Popen(["docker", "-H", shared, "save", IMAGE], stdout=subprocess.PIPE)
    subprocess.run(
        ["docker", "-H", SOCKET, "load"], stdin=save.stdout, capture_output=True, timeout=120
    )
    save.wait(timeout=120)


def _pid() -> int | None:
    try:
        return int(Path(ROOT, "docker.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    """Alive and not a zombie (the helper's own test)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


@attrs.define
class Call:
    phase: str
    started: float
    duration: float
    success: bool
    error: str | None


class Load:
    """A few workers executing in a loop; every call is recorded with the phase it began in."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.phase = "steady"
        self.calls: list[Call] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._worker(i)) for i in range(WORKERS)]

    async def _worker(self, index: int) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            phase, started = self.phase, time.monotonic()
            try:
                out: dict[str, Any] = await self.runtime.execute(
                    "python/execute", {"code": "result = args", "args": [index, n]}
                )
                ok, error = out["success"] and out["result"] == [index, n], out["error"]
            except Exception as exc:  # recorded: the test decides what is acceptable
                ok, error = False, f"{type(exc).__name__}: {exc}"
            self.calls.append(Call(phase, started, time.monotonic() - started, ok, error))
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    def of(self, phase: str) -> list[Call]:
        return [c for c in self.calls if c.phase == phase]

    async def wait_calls(self, phase: str, count: int, timeout: float) -> list[Call]:
        deadline = time.monotonic() + timeout
        while len(self.of(phase)) < count:
            assert time.monotonic() < deadline, f"only {len(self.of(phase))} calls in {phase}"
            await asyncio.sleep(0.1)
        return self.of(phase)


def _engine_status(runtime: Runtime) -> Any:
    (engine,) = runtime.status().hubs[0].resources
    return engine


async def _until(check: Any, timeout: float, what: str) -> float:
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, f"{what}: not within {timeout:g} s"
        await asyncio.sleep(0.1)
    return time.monotonic() - started


async def test_engine_stop_and_restart_under_load() -> None:
    """Under steady load the engine stops: requests fail fast with `engine unavailable`
    and the engine shows unhealthy; it restarts: requests succeed and containers are warm
    again. No request ever hangs; nothing of the hub is left; the private dockerd is gone."""
    _require()
    pids: list[int] = []
    runtime: Runtime | None = None
    try:
        await _engine("start")
        pid = _pid()
        assert pid is not None
        pids.append(pid)
        await asyncio.to_thread(_copy_image)
        await _engine("image", timeout=600)
        hub: dict[str, Any] = {
            "kind": "docker",
            "hub_id": f"gz-chaos-{uuid.uuid4().hex[:8]}",
            "engines": [SOCKET],
            "default_image": IMAGE,
            "call_timeout": 10.0,
            "pool": {"max_size": 4, "min_idle": 1, "reap_interval": 1.0},
            "health": {"interval": 0.5, "timeout": 1.0},
        }
        runtime = Runtime.from_config({"hubs": {"chaos": hub}})
        await runtime.start()
        load = Load(runtime)
        load.start()

        steady = await load.wait_calls("steady", 30, timeout=30)
        assert all(c.success for c in steady), [c.error for c in steady if not c.success]

        load.phase = "stopping"
        stopping = time.monotonic()
        await _engine("stop")
        stop_took = time.monotonic() - stopping
        load.phase = "down"
        unhealthy_after = await _until(
            lambda: _engine_status(runtime).health == "unhealthy", 10, "engine unhealthy"
        )
        await load.wait_calls("down", 30, timeout=30)
        down = load.of("down")
        assert not any(c.success for c in down)
        slowest_down = max(c.duration for c in down)
        assert slowest_down < FAST, slowest_down
        assert all((c.error or "").startswith("engine unavailable: ") for c in down), {
            c.error for c in down
        }

        load.phase = "restarting"
        restarting = time.monotonic()
        await _engine("start", timeout=RECOVERY + 60)
        pid = _pid()
        assert pid is not None
        pids.append(pid)
        load.phase = "up"
        healthy_after = await _until(
            lambda: _engine_status(runtime).health == "healthy", RECOVERY, "engine healthy"
        )
        warm_after = await _until(
            lambda: _engine_status(runtime).details["size"] >= 1, RECOVERY, "containers again"
        )
        recovered = await _until(
            lambda: sum(c.success for c in load.of("up")) >= 30, RECOVERY, "recovery"
        )
        await load.stop()
        up = load.of("up")
        tail = up[-10:]
        assert all(c.success for c in tail), [c.error for c in tail]
        slowest = max(c.duration for c in load.calls)
        assert slowest < 15.0, slowest  # bounded by call_timeout: never a hang

        print(
            f"\nchaos: {len(load.calls)} calls; steady {len(steady)} ok; engine stop took "
            f"{stop_took:.1f} s; down: {len(down)} calls, all failed fast (slowest "
            f"{slowest_down * 1000:.0f} ms), shown unhealthy {unhealthy_after:.1f} s after "
            f"the stop returned; restart + recovery {time.monotonic() - restarting:.1f} s "
            f"(after the engine answered: healthy {healthy_after:.1f} s, warm containers "
            f"{healthy_after + warm_after:.1f} s, 30 successes "
            f"{healthy_after + warm_after + recovered:.1f} s); slowest call {slowest:.2f} s; "
            f"transition calls: {len(load.of('stopping'))} while stopping, "
            f"{len(load.of('restarting'))} while restarting"
        )
        seen = Counter(
            (c.phase, (c.error or "ok")[:70]) for c in load.calls if c.phase in TRANSITIONS
        )
        for (phase, error), count in sorted(seen.items()):
            print(f"  {phase}: {count} x {error}")
        hub_label = hub["hub_id"]
        await runtime.stop()
        runtime = None
        left = _docker(SOCKET, "ps", "-aq", "--filter", f"label=gleitzeit.hub={hub_label}")
        assert left.returncode == 0, left.stderr
        assert left.stdout.strip() == b""
    finally:
        if runtime is not None:
            await runtime.stop()
        await _engine("stop")
        for pid in pids:
            assert not _alive(pid), f"dockerd {pid} of the chaos engine is still running"
