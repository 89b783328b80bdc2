"""Engine: fast failure when the engine is gone, image errors, labels and orphan removal."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gleitzeit_docker.engine import LABEL_HUB, LABEL_POOL_KEY, Engine
from gleitzeit_docker.errors import EngineTimeout, EngineUnavailable, ImageMissing
from gleitzeit_docker.execution import Job, execute_fresh
from gleitzeit_docker.pool import PoolConfig, WarmPool
from gleitzeit_docker.profiles import Profile
from gleitzeit_docker.runner import RunnerConnection, keepalive_command, runner_command, tether

from .conftest import HUB_ID, IMAGE

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short temp dir: unix socket paths are limited to ~107 bytes."""
    with tempfile.TemporaryDirectory(prefix="gz-") as d:
        yield Path(d)


async def test_missing_socket_fails_fast(short_tmp: Path) -> None:
    """A socket path nobody listens on gives EngineUnavailable (a ConnectionError) long
    before a call's 30 s budget (the bound is generous: a loaded machine is slow)."""
    engine = Engine(f"unix://{short_tmp}/nobody.sock")
    started = time.perf_counter()
    with pytest.raises(EngineUnavailable, match="engine unavailable") as caught:
        await engine.ping()
    assert time.perf_counter() - started < engine.call_timeout / 2
    assert isinstance(caught.value, ConnectionError)
    assert "nobody.sock" in str(caught.value)
    await engine.close()


async def test_socket_that_refuses_or_never_answers_fails_fast(short_tmp: Path) -> None:
    """A bound-but-not-listening socket, and one that accepts but never answers: unavailable
    at the ping's 1.5 s deadline, long before a call's 30 s budget."""
    refusing = socket.socket(socket.AF_UNIX)
    refusing.bind(str(short_tmp / "refuse.sock"))  # bound, never listen(): ECONNREFUSED
    silent = socket.socket(socket.AF_UNIX)
    silent.bind(str(short_tmp / "silent.sock"))
    silent.listen(8)  # connects succeed, nobody ever answers
    try:
        for name in ("refuse.sock", "silent.sock"):
            engine = Engine(f"unix://{short_tmp}/{name}", ping_timeout=1.5)
            started = time.perf_counter()
            with pytest.raises(EngineUnavailable):
                await engine.ping()
            assert time.perf_counter() - started < engine.call_timeout / 2, name
            await engine.close()
    finally:
        refusing.close()
        silent.close()


async def test_execution_on_a_dead_engine_reports_it(short_tmp: Path, sandboxed: Profile) -> None:
    """Pool and fresh paths turn a dead engine into a fast 'engine unavailable' result."""
    engine = Engine(f"unix://{short_tmp}/gone.sock")
    pool = WarmPool(engine, hub_id=HUB_ID, config=PoolConfig(acquire_timeout=60))
    try:
        started = time.perf_counter()
        pooled = await pool.execute(sandboxed, Job(code="print(1)"))
        fresh = await execute_fresh(engine, sandboxed, Job(code="print(1)"), hub_id=HUB_ID)
        # at once, not after waiting out the pool's 60 s (generous: a loaded machine is slow)
        assert time.perf_counter() - started < 20.0
        for res in (pooled, fresh):
            assert res.success is False
            assert res.error is not None
            assert res.error.startswith("engine unavailable")
    finally:
        await pool.close()
        await engine.close()


@pytest.mark.docker
async def test_ping_and_image_checks(engine: Engine) -> None:
    """ping() reports the engine version; a missing image raises ImageMissing with help."""
    version = await engine.ping()
    assert version["ApiVersion"]
    assert await engine.image_exists(IMAGE) is True
    assert await engine.image_exists("gleitzeit-test/absent:0") is False
    with pytest.raises(ImageMissing) as caught:
        await engine.require_image("gleitzeit-test/absent:0")
    message = str(caught.value)
    assert "gleitzeit-test/absent:0" in message
    assert "docker pull" in message
    assert "docker load" in message
    assert ".ci/" not in message  # user-facing: never a CI script
    assert isinstance(caught.value, LookupError)


@pytest.mark.docker
async def test_missing_image_with_no_registry(engine: Engine, sandboxed: Profile) -> None:
    """Pulling from a registry nobody serves (on loopback) and running a missing image
    both end in ImageMissing naming the image."""
    with socket.socket() as probe:  # a loopback port that is certainly closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    name = f"127.0.0.1:{port}/gleitzeit/absent:1"
    events: list[object] = []
    with pytest.raises(ImageMissing, match="could not pull") as caught:
        await engine.pull(name, events.append, timeout=30)
    assert name in str(caught.value)
    absent = Profile(name="absent", image="gleitzeit-test/absent:0")
    with pytest.raises(ImageMissing, match="gleitzeit-test/absent:0"):
        await execute_fresh(engine, absent, Job(code="1"), hub_id=HUB_ID)


@pytest.mark.docker
async def test_remove_orphans_only_touches_stopped_containers_of_other_runs(
    engine: Engine, sandboxed: Profile
) -> None:
    """Only containers of this hub that another run left *stopped* are removed; a running
    one of another run (a live instance, tied to it by its attached stdin), a just-created
    one of another run and this run's own stay."""
    hub = f"{HUB_ID}-orphans"
    other = Engine(engine.url, run_id="another-instance")
    made: dict[str, str] = {}
    stream = None
    try:
        for what, eng, cmd in (
            ("crashed", other, ["true"]),
            ("live", other, keepalive_command(sandboxed)),
            ("creating", other, ["true"]),
            ("own", engine, ["true"]),
        ):
            labels = eng.labels(hub, pool_key=sandboxed.pool_key())
            made[what] = await eng.create(sandboxed.container_config(labels, cmd))
        stream = await tether(other, made["live"])
        for what in ("crashed", "live", "own"):
            await engine.start(made[what])
        for what in ("crashed", "own"):
            await engine.container(made[what]).wait()
        listed = await engine.list_containers({LABEL_HUB: hub})
        assert {c["Id"] for c in listed} == set(made.values())
        assert all(c["Labels"][LABEL_POOL_KEY] == sandboxed.pool_key() for c in listed)
        assert await engine.remove_orphans(hub) == [made["crashed"]]
        left = {c["Id"] for c in await engine.list_containers({LABEL_HUB: hub})}
        assert left == {made["live"], made["creating"], made["own"]}
        await stream.close()  # the live instance goes away: its container stops by itself
        stream = None
        await engine.container(made["live"]).wait()
        assert await engine.remove_orphans(hub) == [made["live"]]
    finally:
        if stream is not None:
            await stream.close()
        with contextlib.suppress(Exception):
            await engine.remove_all(hub)
        await other.close()


@pytest.mark.docker
async def test_calls_are_bounded_by_timeouts(engine: Engine) -> None:
    """Even a long-running engine call (wait on a container that never exits) ends at its
    budget: EngineTimeout names the budget while the container is still running, long before
    the engine's own call timeout."""
    sandboxed = Profile(name="t", image=IMAGE)
    cid = await engine.create(  # input() on the open, never-written stdin: runs for ever
        sandboxed.container_config(engine.labels(HUB_ID), ["python3", "-c", "input()"])
    )
    try:
        await engine.start(cid)
        started = time.perf_counter()
        with pytest.raises(EngineTimeout, match=r"did not finish within 0\.5 s"):
            await engine.call("wait", lambda: engine.container(cid).wait(), timeout=0.5)
        elapsed = time.perf_counter() - started
        # the budget ended the call, not the container; the bound is generous (a loaded
        # machine is slow, not wrong) yet far below the engine's own budget for a call
        assert (await engine.inspect(cid))["State"]["Running"] is True
        assert elapsed < engine.call_timeout / 2
    finally:
        await engine.delete(cid)


@pytest.mark.docker
async def test_a_hello_that_arrives_before_start_returns_is_not_lost(
    engine: Engine, sandboxed: Profile
) -> None:
    """The runner's hello may be read before the caller gets past ``start`` (a loaded host
    answers the start request late): waiting for the hello afterwards still sees it."""
    cid = await engine.create(
        sandboxed.container_config(engine.labels(HUB_ID), runner_command(sandboxed, once=False))
    )
    conn = await RunnerConnection.attach(engine, cid)
    try:
        await engine.start(cid)
        deadline = time.monotonic() + 30
        while ("hello", None) in conn._waiting:  # the reader has taken the hello line
            assert time.monotonic() < deadline, "no hello within 30 s"
            await asyncio.sleep(0.02)
        hello = await conn.wait_hello(1)
        assert hello["op"] == "hello"
        assert await conn.ping(20)
    finally:
        await conn.close()
        await engine.delete(cid)
