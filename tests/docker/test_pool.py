"""WarmPool: exclusive checkout, bounds, timeouts, reaping, keys, engines and shutdown."""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable

import attrs
import pytest
from gleitzeit_docker.engine import LABEL_HUB, LABEL_POOL, Engine
from gleitzeit_docker.errors import PoolClosed, PoolTimeout, RunnerError
from gleitzeit_docker.execution import Job
from gleitzeit_docker.pool import WarmPool
from gleitzeit_docker.profiles import Profile

from .conftest import HUB_ID

pytestmark = [pytest.mark.docker, pytest.mark.asyncio(loop_scope="session")]

MEMORY_LIMIT = "result = open('/sys/fs/cgroup/memory/memory.limit_in_bytes').read().strip()"


async def _on_engine(engine: Engine, pool: WarmPool) -> set[str]:
    """Ids of this pool's containers as the engine sees them (by label)."""
    found = await engine.list_containers({LABEL_HUB: HUB_ID, LABEL_POOL: pool.pool_id})
    return {c["Id"] for c in found}


async def _eventually(check: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_checkout_is_exclusive(
    make_pool: Callable[..., WarmPool], sandboxed: Profile
) -> None:
    """Two holders get two containers; a third waits until one is released, then gets it."""
    pool = make_pool(max_size=2)
    first, second = await asyncio.gather(pool.acquire(sandboxed), pool.acquire(sandboxed))
    assert first.container_id != second.container_id
    waiting = asyncio.ensure_future(pool.acquire(sandboxed))
    await asyncio.sleep(0.3)
    assert not waiting.done()  # both containers are taken: no sharing
    pool.release(first)
    third = await asyncio.wait_for(waiting, 5)
    assert third.container_id == first.container_id
    pool.release(second)
    pool.release(third)
    assert pool.stats()["idle"] == 2


async def test_max_size_is_honoured_under_concurrency(
    engine: Engine, make_pool: Callable[..., WarmPool], sandboxed: Profile
) -> None:
    """12 concurrent runs on max_size=3: all correct, never more than 3 containers."""
    pool = make_pool(max_size=3, acquire_timeout=30)
    seen_on_engine: list[int] = []
    stop = asyncio.Event()

    async def watch() -> None:
        while not stop.is_set():
            seen_on_engine.append(len(await _on_engine(engine, pool)))
            await asyncio.sleep(0.05)

    watcher = asyncio.ensure_future(watch())
    jobs = [Job(code="import time\ntime.sleep(0.2)\nresult = args + 1", args=i) for i in range(12)]
    results = await asyncio.gather(*(pool.execute(sandboxed, j) for j in jobs))
    stop.set()
    await watcher
    assert [r.result for r in results] == [i + 1 for i in range(12)]
    assert len({r.container_id for r in results}) <= 3
    assert pool.stats()["peak_size"] == 3
    assert max(seen_on_engine) <= 3


async def test_acquire_timeout_names_the_occupancy(
    make_pool: Callable[..., WarmPool], sandboxed: Profile
) -> None:
    """Waiting is bounded; the error says it timed out waiting and how full the pool is."""
    pool = make_pool(max_size=1, acquire_timeout=0.3)
    held = await pool.acquire(sandboxed)
    started = time.perf_counter()
    with pytest.raises(PoolTimeout) as caught:
        await pool.acquire(sandboxed)
    assert 0.25 < time.perf_counter() - started < 15.0  # bounded (loaded CI: slow, not wrong)
    message = str(caught.value)
    assert "timed out after 0.3 s waiting for a container" in message
    assert "1/1 containers (1 busy, 0 idle, 0 starting)" in message
    assert isinstance(caught.value, TimeoutError)
    pool.release(held)


async def test_reaper_removes_idle_and_expired_containers(
    engine: Engine, make_pool: Callable[..., WarmPool], sandboxed: Profile
) -> None:
    """idle_ttl and max_lifetime both make the reaper delete containers from the engine."""
    idle_pool = make_pool(idle_ttl=0.3, reap_interval=0.1)
    res = await idle_pool.execute(sandboxed, Job(code="result = 1"))
    assert res.container_id in await _on_engine(engine, idle_pool)
    await _eventually(lambda: _gone(engine, idle_pool))
    assert idle_pool.stats()["size"] == 0

    old_pool = make_pool(idle_ttl=60, max_lifetime=0.5, reap_interval=0.1)
    res = await old_pool.execute(sandboxed, Job(code="result = 1"))
    assert res.container_id in await _on_engine(engine, old_pool)
    await _eventually(lambda: _gone(engine, old_pool))


async def _gone(engine: Engine, pool: WarmPool) -> bool:
    return not await _on_engine(engine, pool)


async def test_min_idle_is_topped_up(
    make_pool: Callable[..., WarmPool], sandboxed: Profile
) -> None:
    """prewarm() starts min_idle containers; a discarded one is replaced by the reaper."""
    pool = make_pool(min_idle=2, reap_interval=0.1)
    assert await pool.prewarm(sandboxed) == 2
    assert pool.stats()["idle"] == 2
    async with pool.checkout(sandboxed) as pc:
        pc.broken = True  # e.g. its run timed out: it must not come back
    await _eventually(lambda: pool.stats()["idle"] == 2 and pool.stats()["size"] == 2)


async def test_timed_out_container_is_discarded(
    engine: Engine, make_pool: Callable[..., WarmPool], sandboxed: Profile
) -> None:
    """After a timeout the container is deleted, never handed out again."""
    pool = make_pool(max_size=1)
    res = await pool.execute(sandboxed, Job(code="while True: pass", timeout=1))
    assert res.error == "timeout after 1 s"
    await _eventually(lambda: _not_listed(engine, pool, res.container_id))
    again = await pool.execute(sandboxed, Job(code="result = 2"))
    assert again.result == 2
    assert again.container_id != res.container_id


async def _not_listed(engine: Engine, pool: WarmPool, cid: str | None) -> bool:
    return cid not in await _on_engine(engine, pool)


async def test_pool_key_separates_profiles_with_the_same_image(
    make_pool: Callable[..., WarmPool], sandboxed: Profile
) -> None:
    """Same image, different memory limit: different keys, containers and real limits."""
    small = attrs.evolve(sandboxed.restrict(memory="128m"), name="small")
    assert small.image == sandboxed.image
    assert small.pool_key() != sandboxed.pool_key()
    pool = make_pool(max_size=4)
    big_res = await pool.execute(sandboxed, Job(code=MEMORY_LIMIT))
    small_res = await pool.execute(small, Job(code=MEMORY_LIMIT))
    again = await pool.execute(sandboxed, Job(code=MEMORY_LIMIT))
    assert big_res.result == str(256 << 20)
    assert small_res.result == str(128 << 20)
    assert small_res.container_id != big_res.container_id
    assert again.container_id == big_res.container_id  # reuse stays within the key
    assert set(pool.stats()["by_key"]) == {sandboxed.pool_key(), small.pool_key()}


async def test_full_pool_evicts_idle_containers_of_other_keys(
    make_pool: Callable[..., WarmPool], sandboxed: Profile
) -> None:
    """With max_size reached by idle containers of key A, a request for key B still runs."""
    other = sandboxed.restrict(pids_limit=32)
    pool = make_pool(max_size=1, acquire_timeout=10)
    first = await pool.execute(sandboxed, Job(code="result = 'a'"))
    second = await pool.execute(other, Job(code="result = 'b'"))
    assert (first.result, second.result) == ("a", "b")
    assert first.container_id != second.container_id
    assert pool.stats()["peak_size"] == 1


async def test_close_leaves_no_container(
    engine: Engine, make_pool: Callable[..., WarmPool], sandboxed: Profile
) -> None:
    """close() deletes idle and busy containers; the engine has none left for the pool."""
    pool = make_pool(max_size=4)
    await pool.prewarm(sandboxed, 2)
    held = await pool.acquire(sandboxed)
    await pool.execute(sandboxed, Job(code="result = 1"))
    assert len(await _on_engine(engine, pool)) >= 2
    await pool.close()
    assert await _on_engine(engine, pool) == set()
    assert pool.stats()["size"] == 0
    pool.release(held)  # a late release after close is harmless
    with pytest.raises(PoolClosed):
        await pool.acquire(sandboxed)


async def test_spreads_over_engines_and_fails_over(
    engine: Engine, make_pool: Callable[..., WarmPool], sandboxed: Profile
) -> None:
    """New containers go to the engine with the fewest; an unreachable engine is skipped."""
    left = Engine(engine.url, name="left")
    right = Engine(engine.url, name="right")
    with tempfile.TemporaryDirectory(prefix="gz-") as tmp:
        dead = Engine(f"unix://{tmp}/dead.sock", name="dead")
        try:
            pool = make_pool([left, right], max_size=4)
            assert await pool.prewarm(sandboxed, 4) == 4
            assert pool.stats()["by_engine"] == {"left": 2, "right": 2}
            failover = make_pool([dead, left], max_size=2)
            res = await failover.execute(sandboxed, Job(code="result = 'ok'"))
            assert res.result == "ok"
            assert failover.stats()["by_engine"] == {"dead": 0, "left": 1}
            await pool.close()
            await failover.close()
        finally:
            for each in (left, right, dead):
                await each.close()


async def test_exec_mode_pool_runs_jobs(
    make_pool: Callable[..., WarmPool], sandboxed: Profile
) -> None:
    """The exec-mode pool (no resident runner) reuses a container and stays clean."""
    pool = make_pool(mode="exec", max_size=1)
    one = await pool.execute(sandboxed, Job(code="open('/tmp/x', 'w').write('1')\nresult = 1"))
    two = await pool.execute(sandboxed, Job(code="import os\nresult = os.path.exists('/tmp/x')"))
    assert (one.result, two.result) == (1, False)
    assert one.container_id == two.container_id
    assert (await pool.info(sandboxed))["python_version"].startswith("3.")


async def test_runner_unavailable_falls_back_to_exec(
    make_pool: Callable[..., WarmPool], sandboxed: Profile, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the runner cannot start, the key falls back to docker exec (or, with fallback off,
    the error names the container and shows the runner's stderr)."""
    import gleitzeit_docker.containers as containers

    def broken(profile: Profile, *, once: bool, direct: str | None = None) -> list[str]:
        return [profile.python, "-c", "import sys\nsys.stderr.write('no runner here')\nsys.exit(3)"]

    monkeypatch.setattr(containers, "runner_command", broken)
    strict = make_pool(fallback=False)
    with pytest.raises(RunnerError, match="no runner here"):
        await strict.execute(sandboxed, Job(code="result = 1"))
    assert strict.stats()["size"] == 0  # the failed container was deleted
    lenient = make_pool()
    res = await lenient.execute(sandboxed, Job(code="result = 'via exec'"))
    assert (res.success, res.result, res.path) == (True, "via exec", "exec")
