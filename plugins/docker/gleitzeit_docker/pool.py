"""``WarmPool``: warm sandbox containers, keyed by their full effective config.

- Keyed by ``Profile.pool_key()`` (a hash of the whole container config), never by image.
- Exclusive checkout: a container serves one execution at a time.
- Bounded: at most ``max_size`` containers in total (alive, starting or being deleted);
  waiting is bounded by ``acquire_timeout`` and the error states the pool's occupancy.
- When the pool is full, the least recently used idle container of another key is evicted.
- Health-checked before reuse (runner ping, or ``State.Running`` in exec mode); containers
  whose run timed out, failed a check, or broke are discarded, never handed out again.
- A reaper removes idle-expired (``idle_ttl``) and too-old (``max_lifetime``) containers and
  tops each known key up to ``min_idle``; ``max_uses`` retires a container after N runs.
- Several engines: a new container goes to the reachable engine with the fewest containers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, Literal

import attrs

from .containers import ContainerFactory, Inventory, PooledContainer
from .engine import Engine
from .errors import EngineUnavailable, PoolClosed, PoolTimeout
from .execution import ExecutionResult, Job, execute_on_exec, execute_on_runner, info
from .profiles import Profile

__all__ = ["PoolConfig", "PooledContainer", "WarmPool"]

log = logging.getLogger(__name__)


def _ge(minimum: float) -> Any:
    return attrs.validators.and_(
        attrs.validators.instance_of((int, float)), attrs.validators.ge(minimum)
    )


@attrs.frozen(kw_only=True)
class PoolConfig:
    """Pool knobs. Times in seconds; ``max_size`` counts every container of the pool."""

    mode: Literal["runner", "exec"] = attrs.field(
        default="runner", validator=attrs.validators.in_(("runner", "exec"))
    )
    min_idle: int = attrs.field(default=0, validator=_ge(0))  # per known pool key
    max_size: int = attrs.field(default=8, validator=_ge(1))  # all keys, all engines
    idle_ttl: float = attrs.field(default=300.0, validator=_ge(0))
    max_uses: int = attrs.field(default=100, validator=_ge(1))
    max_lifetime: float = attrs.field(default=3600.0, validator=_ge(0))
    acquire_timeout: float = attrs.field(default=30.0, validator=_ge(0))
    reap_interval: float = attrs.field(default=5.0, validator=_ge(0.01))
    start_timeout: float = attrs.field(default=20.0, validator=_ge(0.1))
    health_timeout: float = attrs.field(default=2.0, validator=_ge(0.01))
    kill_grace: float = attrs.field(default=2.0, validator=_ge(0.01))
    fallback: bool = True  # runner cannot start for a key -> use docker exec for that key
    direct: bool = True  # runner mode, engine on this host: the runner's socket, not attach


class WarmPool:
    """Warm containers on one or more engines; see the module docstring for the rules."""

    def __init__(
        self,
        engines: Engine | Sequence[Engine],
        *,
        hub_id: str = "gleitzeit",
        config: PoolConfig | None = None,
    ) -> None:
        self.engines = [engines] if isinstance(engines, Engine) else list(engines)
        if not self.engines:
            raise ValueError("WarmPool needs at least one Engine")
        self.hub_id = hub_id
        self.config = config or PoolConfig()
        self.pool_id = secrets.token_hex(6)  # label: close() finds even half-created ones
        self.factory = ContainerFactory(
            self.engines,
            hub_id=hub_id,
            pool_id=self.pool_id,
            mode=self.config.mode,
            start_timeout=self.config.start_timeout,
            fallback=self.config.fallback,
            direct=self.config.direct,
        )
        self._inv = Inventory(self.factory, self.config.max_size)
        self._profiles: dict[str, Profile] = {}  # every key seen: min_idle applies to each
        self._reaper: asyncio.Task[None] | None = None
        self._closed = False

    def stats(self) -> dict[str, Any]:
        """Occupancy: size/max_size/peak_size, busy, idle, starting, by_key, by_engine."""
        return self._inv.stats()

    def _check_open(self) -> None:
        if self._closed:
            raise PoolClosed(f"pool {self.pool_id} of hub {self.hub_id!r} is closed")

    def _register(self, profile: Profile) -> str:
        key = profile.pool_key()
        self._profiles.setdefault(key, profile)
        if self._reaper is None and not self._closed:
            self._reaper = asyncio.create_task(self._reap_loop(), name=f"reaper-{self.pool_id}")
        return key

    # -- acquire / release -------------------------------------------------------------

    async def acquire(self, profile: Profile) -> PooledContainer:
        """Exclusive checkout of a healthy container for ``profile`` (create one if needed)."""
        key = self._register(profile)
        inv = self._inv
        loop = asyncio.get_running_loop()
        started = loop.time()
        while True:
            self._check_open()
            pc = inv.pop_idle(key)
            if pc is not None:
                try:
                    healthy = await self._healthy(pc)
                except BaseException:  # cancelled mid-check: do not leak it as busy
                    inv.retire(pc, "health check interrupted")
                    raise
                if healthy:
                    return pc
                inv.retire(pc, "failed its health check")
                continue
            if inv.size < self.config.max_size:
                inv.take_slot(key)
                return await self._create_for_caller(profile, key)
            victim = None if inv.deleting else inv.take_oldest_idle()
            if victim is not None:  # its slot frees once the deletion is done
                inv.retire(victim, "evicted for another pool key")
            remaining = started + self.config.acquire_timeout - loop.time()
            if remaining <= 0:
                raise PoolTimeout(self._timeout_message(profile, loop.time() - started))
            changed = inv.changed
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await changed.wait()

    async def _healthy(self, pc: PooledContainer) -> bool:
        if time.monotonic() - pc.created_at > self.config.max_lifetime:
            return False
        return await self.factory.healthy(pc, timeout=self.config.health_timeout)

    def _timeout_message(self, profile: Profile, waited: float) -> str:
        s = self.stats()
        return (
            f"timed out after {waited:.1f} s waiting for a container for profile "
            f"{profile.name!r} (pool key {profile.pool_key()}): the pool is full with "
            f"{s['size']}/{s['max_size']} containers ({s['busy']} busy, {s['idle']} idle, "
            f"{s['starting']} starting); raise max_size or acquire_timeout, or retry later"
        )

    async def _create_for_caller(self, profile: Profile, key: str) -> PooledContainer:
        task = self._inv.spawn(self._inv.make(profile, key))
        try:
            pc: PooledContainer = await asyncio.shield(task)
        except asyncio.CancelledError:
            # The caller gave up; the container, once made, goes to the idle list instead.
            task.add_done_callback(self._adopt)
            raise
        if self._closed:
            self._inv.retire(pc, "pool closed")
            self._check_open()
        return pc

    def _adopt(self, task: asyncio.Task[PooledContainer]) -> None:
        if not task.cancelled() and task.exception() is None:
            self._give_back(task.result(), used=False)

    def release(self, pc: PooledContainer) -> None:
        """Give ``pc`` back: reused if healthy and within limits, otherwise deleted."""
        self._give_back(pc, used=True)

    def _give_back(self, pc: PooledContainer, *, used: bool) -> None:
        if pc not in self._inv.busy:
            return  # already retired (e.g. by close())
        if used:
            pc.uses += 1
            pc.last_used = time.monotonic()
        why = (
            "pool closed" if self._closed
            else "broken or timed out" if pc.broken
            else "runner gone" if pc.conn is not None and not pc.conn.alive
            else "max_uses reached" if pc.uses >= self.config.max_uses
            else "max_lifetime reached" if pc.last_used - pc.created_at > self.config.max_lifetime
            else ""
        )  # fmt: skip
        if why:
            self._inv.retire(pc, why)
        else:
            self._inv.park(pc)

    @contextlib.asynccontextmanager
    async def checkout(self, profile: Profile) -> AsyncIterator[PooledContainer]:
        """``async with pool.checkout(p) as pc``; an exception inside marks ``pc`` broken."""
        pc = await self.acquire(profile)
        try:
            yield pc
        except BaseException:
            pc.broken = True
            raise
        finally:
            self.release(pc)

    # -- running jobs --------------------------------------------------------------------

    async def execute(self, profile: Profile, job: Job) -> ExecutionResult:
        """Run ``job`` on a pooled container (see ``execution`` for the result)."""
        try:
            pc = await self.acquire(profile)
        except EngineUnavailable as exc:
            return ExecutionResult(
                success=False, error=str(exc), path=self.config.mode, engine_failure="unavailable"
            )
        pc.broken = True  # until proven otherwise (also covers cancellation)
        try:
            if pc.conn is not None:
                result = await execute_on_runner(
                    pc.conn, profile, job, kill_grace=self.config.kill_grace
                )
            else:
                result = await execute_on_exec(
                    pc.engine, pc.container_id, profile, job, kill_grace=self.config.kill_grace
                )
            pc.broken = not result.reusable
            return result
        finally:
            self.release(pc)

    async def info(self, profile: Profile) -> dict[str, Any]:
        """``execution.info`` with the Python version/platform seen inside a container."""
        async with self.checkout(profile) as pc:
            if pc.conn is not None:
                return info(profile, pc.conn.hello)
            probe = Job(code="import platform as p\nresult = [p.python_version(), p.platform()]")
            res = await execute_on_exec(pc.engine, pc.container_id, profile, probe)
            pc.broken = not res.reusable
            version, plat = res.result if res.success else (None, None)
            return info(profile, {"python": version, "platform": plat})

    # -- warm-up, reaping, shutdown ----------------------------------------------------

    async def prewarm(self, profile: Profile, count: int | None = None) -> int:
        """Register ``profile`` for ``min_idle`` top-ups; start up to ``count`` idle ones."""
        key = self._register(profile)
        want = self.config.min_idle if count is None else count
        have = self._inv.idle_count(key) + self._inv.starting[key]
        tasks = [self._inv.spawn(self._make_idle(profile, key, want)) for _ in range(want - have)]
        made = await asyncio.gather(*tasks, return_exceptions=True)
        return sum(1 for m in made if m is True)

    async def _make_idle(self, profile: Profile, key: str, target: int) -> bool:
        inv = self._inv
        have = inv.idle_count(key) + inv.starting[key]
        if self._closed or inv.size >= self.config.max_size or have >= target:
            return False
        inv.take_slot(key)
        try:
            self._give_back(await inv.make(profile, key), used=False)
        except Exception as exc:  # a failed top-up is retried on the next reaper round
            log.warning("could not pre-start a container for %s: %s", profile.name, exc)
            return False
        return True

    def reap_once(self) -> None:
        """Retire idle containers past ``idle_ttl``/``max_lifetime``; top up ``min_idle``."""
        now = time.monotonic()
        for idle in list(self._inv.idle.values()):
            for pc in list(idle):
                expired = now - pc.last_used > self.config.idle_ttl
                too_old = now - pc.created_at > self.config.max_lifetime
                if expired or too_old or (pc.conn is not None and not pc.conn.alive):
                    self._inv.retire(pc, "idle_ttl" if expired else "too old or dead")
        for key, profile in self._profiles.items():
            missing = self.config.min_idle - self._inv.idle_count(key) - self._inv.starting[key]
            for _ in range(max(0, missing)):
                self._inv.spawn(self._make_idle(profile, key, self.config.min_idle))

    async def _reap_loop(self) -> None:
        while not self._closed:
            await asyncio.sleep(self.config.reap_interval)
            try:
                self.reap_once()
            except Exception:  # keep reaping whatever happened
                log.exception("pool reaper failed")

    async def close(self) -> None:
        """Delete every container this pool created (also half-created ones, by label)."""
        if self._closed and not self._inv.tasks and not self._inv.all_containers():
            return  # already closed
        self._closed = True
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        inv = self._inv
        inv.notify()  # waiting acquirers wake up and raise PoolClosed
        while inv.tasks or inv.all_containers():
            for pc in inv.all_containers():
                inv.retire(pc, "pool closed")
            await asyncio.gather(*list(inv.tasks), return_exceptions=True)
        await self.factory.remove_leftovers()
