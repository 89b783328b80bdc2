"""Hub lifecycle over the real engine: cleanup, orphans, dead engines and failover."""

from __future__ import annotations

import asyncio
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gleitzeit_docker.engine import LABEL_HUB, LABEL_RUN, Engine
from gleitzeit_docker.profiles import Profile
from gleitzeit_docker.runner import keepalive_command, tether

from gleitzeit_core import Runtime

from ..conftest import IMAGE
from .conftest import MakeRuntime, hub_config, hub_containers

pytestmark = [pytest.mark.docker, pytest.mark.asyncio(loop_scope="session")]


@pytest.fixture
def dead_socket() -> Iterator[str]:
    """The URL of a unix socket in a fresh temp dir that nobody listens on."""
    with tempfile.TemporaryDirectory(prefix="gz-") as tmp:  # short: socket paths are limited
        yield f"unix://{Path(tmp) / 'nobody.sock'}"


async def _eventually(check: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.1)


async def test_stop_leaves_no_container_of_the_hub(
    hub_engine: Engine, make_runtime: MakeRuntime
) -> None:
    """After runtime.stop() the engine has no container with the hub's label: neither the
    pre-started ones (min_idle) nor those made for requests."""
    runtime = await make_runtime(hub_config("stop", pool={"min_idle": 2}))
    await asyncio.gather(
        *(runtime.execute("python/execute", {"code": f"result = {i}"}) for i in range(4))
    )
    await runtime.execute("python/execute", {"code": "result = 1", "profile": "minimal"})
    assert len(await hub_containers(hub_engine, runtime)) >= 4
    await runtime.stop()
    assert await hub_containers(hub_engine, runtime) == []


async def test_orphans_of_a_crashed_run_are_removed_at_start(
    hub_engine: Engine, make_runtime: MakeRuntime
) -> None:
    """Containers with the hub's label that other runs left stopped (another host's run, a
    dead process of this host) are removed when the hub starts; a running one of another
    run (a live instance, whatever its host) is spared, as are other hubs' containers."""
    config = hub_config("orphans")
    label = config["hubs"]["sandbox"]["hub_id"]
    runs = {
        "other-host": "elsewhere-4242-deadbeef",
        "dead-pid": f"{socket.gethostname()}-999999-deadbeef",
        "live-elsewhere": "elsewhere-4343-cafef00d",
    }
    profile = Profile(name="orphan", image=IMAGE)
    made: dict[str, str] = {}
    live = None
    try:
        for what, run in runs.items():
            labels = {LABEL_HUB: label, LABEL_RUN: run}
            cmd = keepalive_command(profile) if what == "live-elsewhere" else ["true"]
            made[what] = await hub_engine.create(profile.container_config(labels, cmd))
        live = await tether(hub_engine, made["live-elsewhere"])
        for cid in made.values():
            await hub_engine.start(cid)
        for what in ("other-host", "dead-pid"):
            await hub_engine.container(made[what]).wait()
        other = {LABEL_HUB: f"{label}-other", LABEL_RUN: runs["other-host"]}
        made["other-hub"] = await hub_engine.create(profile.container_config(other, ["true"]))

        runtime = await make_runtime(config)
        left = {c["Id"] for c in await hub_containers(hub_engine, runtime)}
        assert left == {made["live-elsewhere"]}
        details = runtime.status().hubs[0].resources[0].details
        assert details["orphans_removed"] == 2
        assert [c["Id"] for c in await hub_engine.list_containers(other)] == [made["other-hub"]]
    finally:
        if live is not None:
            await live.close()
        for cid in made.values():
            await hub_engine.delete(cid)


async def test_a_dead_engine_fails_fast_and_shows_unhealthy(
    make_runtime: MakeRuntime, dead_socket: str
) -> None:
    """With the only engine unreachable, every request comes back in well under 3 s with
    `engine unavailable: ...`, and the status soon shows that engine unhealthy."""
    runtime = await make_runtime(hub_config("dead", engines=[dead_socket]))
    for _ in range(3):
        started = time.perf_counter()
        out = await runtime.execute("python/execute", {"code": "print(1)"})
        assert time.perf_counter() - started < 3.0
        assert out["success"] is False
        assert out["error"].startswith("engine unavailable: " + dead_socket)
        assert out["engine"] == dead_socket.removeprefix("unix://")

    def unhealthy() -> bool:
        (engine,) = runtime.status().hubs[0].resources
        return engine.health == "unhealthy"

    await _eventually(unhealthy, timeout=5.0)
    (engine,) = runtime.status().hubs[0].resources
    assert engine.health_detail.startswith("engine unavailable")
    assert engine.metrics.failures == {"connection": 3}


async def test_two_engines_one_dead_every_request_succeeds(
    make_runtime: MakeRuntime, dead_socket: str
) -> None:
    """A live engine and a dead one: requests that land on the dead one fail over to the
    live one within their deadline, so all succeed; the dead one ends up unhealthy."""
    live = Engine().url
    config = hub_config("two", engines=[dead_socket, live], strategy="round_robin")
    runtime = await make_runtime(config)
    results = await asyncio.gather(
        *(runtime.execute("python/execute", {"code": f"result = {i}"}) for i in range(12))
    )
    assert [r["result"] for r in results] == list(range(12))
    assert {r["engine"] for r in results} == {live.removeprefix("unix://")}
    hub = runtime.status().hubs[0]
    assert hub.counters["failovers"] >= 1  # some requests tried the dead engine first

    def dead_is_unhealthy() -> bool:
        states = {r.endpoint: r.health for r in runtime.status().hubs[0].resources}
        return states[dead_socket] == "unhealthy" and states[live] == "healthy"

    await _eventually(dead_is_unhealthy, timeout=5.0)
    more = await runtime.execute("python/execute", {"code": "result = 'after'"})
    assert more["result"] == "after"


async def test_status_describes_each_engine_and_its_containers(shared: Runtime) -> None:
    """The status of a docker hub lists, per engine, its URL, version and the containers
    per profile (idle/busy/starting) within the pool's size."""
    await shared.execute("python/execute", {"code": "result = 1"})
    (engine,) = shared.status().hubs[0].resources
    details = engine.details
    assert details["engine"] == engine.endpoint
    assert details["version"]
    assert details["mode"] == "runner"
    assert details["containers"]["sandboxed"]["idle"] >= 1
    assert set(details["containers"]["sandboxed"]) == {"idle", "busy", "starting"}
    assert details["size"] <= details["max_size"] == 16
