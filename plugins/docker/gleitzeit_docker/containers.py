"""The containers a pool owns: making, checking and deleting them, and their bookkeeping.

``ContainerFactory`` places each new container on the reachable engine that currently holds
the fewest of this pool's containers; an engine that was unreachable is skipped for a few
seconds. A runner-mode container is attached *before* it starts and counts as made only
once its runner has said hello; an exec-mode container runs a keep-alive process that reads
the stdin we keep attached (``tether``), so every container stops when its owner goes.
If the runner cannot start for a pool key (``RunnerError``), that key falls back to exec
mode (one ``docker exec`` of the one-shot runner per job) when ``fallback`` is on. With
``direct`` on and an engine on this host (a ``unix://`` URL), a runner-mode container also
gets a directory of its own with the host's socket, and its runner talks over that socket
instead of the engine's attach relay once it has been checked (``direct``); otherwise, or if
that does not work out, the attach stream carries the protocol as before.

``Inventory`` knows which containers are idle, busy, starting or being deleted. Its state
changes only synchronously between awaits (one event loop), so it needs no lock; waiters
sleep on ``changed``, an ``asyncio.Event`` that is replaced and set on every change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Coroutine, Sequence
from typing import Any, Literal

import attrs
from aiodocker.stream import Stream

from .direct import DirectListener, sweep_leftovers
from .engine import Engine
from .errors import DockerLayerError, EngineUnavailable, ImageMissing, RunnerError
from .profiles import Profile
from .runner import RunnerConnection, keepalive_command, runner_command, tether

__all__ = ["ContainerFactory", "Inventory", "PooledContainer"]

log = logging.getLogger(__name__)
ENGINE_COOLDOWN = 5.0  # seconds an unreachable engine is skipped for new containers
PING_AFTER_IDLE = 5.0  # seconds idle after which reuse needs a ping round trip


@attrs.define(eq=False)
class PooledContainer:
    """One warm container owned by a pool; ``broken`` stops it from being reused."""

    engine: Engine
    container_id: str
    profile: Profile
    key: str
    conn: RunnerConnection | None = None  # runner mode only
    tether: Stream | None = None  # exec mode: the attached stdin that keeps it alive
    direct: DirectListener | None = None  # its host directory for the direct channel
    created_at: float = attrs.field(factory=time.monotonic)
    last_used: float = attrs.field(factory=time.monotonic)
    uses: int = 0
    broken: bool = False
    retired: bool = False

    @property
    def short_id(self) -> str:
        return self.container_id[:12]


class ContainerFactory:
    def __init__(
        self,
        engines: Sequence[Engine],
        *,
        hub_id: str,
        pool_id: str,
        mode: Literal["runner", "exec"],
        start_timeout: float,
        fallback: bool = True,
        direct: bool = True,
    ) -> None:
        self.engines = list(engines)
        self.hub_id = hub_id
        self.pool_id = pool_id
        self.mode = mode
        self.fallback = fallback
        self.direct = direct
        if direct and mode == "runner":  # what a crashed process left (see ``direct``)
            sweep_leftovers()
        self.modes: dict[str, str] = {}  # pool key -> mode, after a fallback
        self.start_timeout = start_timeout
        self._count: Counter[int] = Counter()  # containers per engine (index)
        self._down_until: dict[int, float] = {}

    def by_engine(self) -> dict[str, int]:
        return {e.name: self._count[i] for i, e in enumerate(self.engines)}

    async def create(self, profile: Profile, key: str) -> PooledContainer:
        """Create + start on the least-loaded reachable engine, failing over to the others."""
        now = time.monotonic()
        order = sorted(
            range(len(self.engines)),
            key=lambda i: (self._down_until.get(i, 0) > now, self._count[i], i),
        )
        errors: list[Exception] = []
        for index in order:
            self._count[index] += 1
            try:
                return await self._create(self.engines[index], profile, key)
            except (EngineUnavailable, ImageMissing) as exc:
                self._count[index] -= 1
                if isinstance(exc, EngineUnavailable):
                    self._down_until[index] = time.monotonic() + ENGINE_COOLDOWN
                errors.append(exc)
            except BaseException:
                self._count[index] -= 1
                raise
        # Prefer "image missing" (actionable) over "engine down" when both happened.
        missing = [e for e in errors if isinstance(e, ImageMissing)]
        raise (missing or errors)[0]

    async def _create(self, engine: Engine, profile: Profile, key: str) -> PooledContainer:
        mode = self.modes.get(key, self.mode)
        try:
            return await self._create_as(engine, profile, key, mode)
        except RunnerError as exc:
            if mode != "runner" or not self.fallback:
                raise
            log.warning("runner unavailable for %s (%s); falling back to docker exec", key, exc)
            self.modes[key] = "exec"
            return await self._create_as(engine, profile, key, "exec")

    async def _create_as(
        self, engine: Engine, profile: Profile, key: str, mode: str
    ) -> PooledContainer:
        runner = mode == "runner"
        if not engine.version_info:
            await engine.ping()  # fail fast on an engine that accepts but never answers
        labels = engine.labels(
            self.hub_id, pool_key=key, pool=self.pool_id, profile=profile.name, mode=mode
        )
        listener = self._direct_listener(engine) if runner else None
        if runner:
            path = listener.container_path if listener is not None else None
            cmd = runner_command(profile, once=False, direct=path)
        else:
            cmd = keepalive_command(profile)
        config = profile.container_config(labels, cmd)
        if listener is not None:  # that one directory, read-only; nothing else of the host
            host = config["HostConfig"]
            host["Binds"] = [*host["Binds"], listener.bind]
        try:
            cid = await engine.create(config)
        except BaseException:
            if listener is not None:
                listener.remove()
            raise
        pc = PooledContainer(
            engine=engine, container_id=cid, profile=profile, key=key, direct=listener
        )
        try:
            if runner:
                pc.conn = await RunnerConnection.attach(engine, cid)
            else:
                pc.tether = await tether(engine, cid)
            await engine.start(cid)
            if pc.conn is not None:
                hello = await pc.conn.wait_hello(self.start_timeout)
                if listener is not None:
                    await self._take_up_direct(pc, listener, hello.get("direct") is True)
        except BaseException:
            await self._release_streams(pc)
            with contextlib.suppress(Exception):
                await engine.delete(cid)
            raise
        return pc

    def _direct_listener(self, engine: Engine) -> DirectListener | None:
        """A directory and socket for a new container, where the engine is on this host."""
        if not self.direct or not engine.url.startswith("unix://"):
            return None
        try:
            return DirectListener.open()
        except OSError as exc:
            log.warning("no direct runner channel (%s); using the attach stream", exc)
            return None

    async def _take_up_direct(
        self, pc: PooledContainer, listener: DirectListener, connected: bool
    ) -> None:
        """Accept the runner's one connection (before any job) and switch to it; whatever
        fails leaves the attach stream in use. Nobody can connect afterwards."""
        try:
            if connected:
                sock = await listener.accept(pc.engine, pc.container_id, self.start_timeout)
                assert pc.conn is not None
                await pc.conn.use_direct(sock)
        except (OSError, TimeoutError, DockerLayerError) as exc:
            log.warning(
                "container %s: no direct runner channel (%s); using the attach stream",
                pc.short_id,
                exc,
            )
        finally:
            listener.close_listener()

    @staticmethod
    async def _release_streams(pc: PooledContainer) -> None:
        if pc.conn is not None:
            await pc.conn.close()
        if pc.tether is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pc.tether.close(), 2.0)
        if pc.direct is not None:
            pc.direct.remove()

    async def destroy(self, pc: PooledContainer) -> None:
        try:
            await self._release_streams(pc)
            await pc.engine.delete(pc.container_id)
        except Exception as exc:  # the label sweep in WarmPool.close() catches leftovers
            log.warning("could not delete container %s: %s", pc.short_id, exc)
        finally:
            self._count[self.engines.index(pc.engine)] -= 1

    async def healthy(self, pc: PooledContainer, *, timeout: float) -> bool:
        """Runner answers a ping (runner mode) or the container is running (exec mode)."""
        if pc.conn is not None:
            if not await pc.conn.ready(timeout):
                return False
            # Recently active runners proved themselves; ping only those idle for a while.
            idle_for = time.monotonic() - pc.conn.last_activity
            return idle_for < PING_AFTER_IDLE or await pc.conn.ping(timeout)
        try:
            state = (await pc.engine.inspect(pc.container_id)).get("State", {})
        except Exception:  # any failure means "do not use it"
            return False
        return bool(state.get("Running"))

    async def remove_leftovers(self) -> None:
        """Delete by label whatever this pool may have left (e.g. a lost create response)."""
        for engine in self.engines:
            with contextlib.suppress(Exception):
                await engine.remove_all(self.hub_id, pool=self.pool_id)


class Inventory:
    """Idle/busy/starting/deleting containers of one pool, bounded by ``max_size``."""

    def __init__(self, factory: ContainerFactory, max_size: int) -> None:
        self.factory = factory
        self.max_size = max_size
        self.idle: dict[str, list[PooledContainer]] = {}
        self.busy: set[PooledContainer] = set()
        self.starting: Counter[str] = Counter()
        self.size = 0  # slots in use: alive + starting + being deleted
        self.peak_size = 0
        self.deleting = 0
        self.changed = asyncio.Event()
        self.tasks: set[asyncio.Task[Any]] = set()

    def notify(self) -> None:
        old, self.changed = self.changed, asyncio.Event()
        old.set()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """A background task that ``WarmPool.close`` waits for."""
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def idle_count(self, key: str) -> int:
        return len(self.idle.get(key, []))

    def take_slot(self, key: str) -> None:
        self.size += 1
        self.peak_size = max(self.peak_size, self.size)
        self.starting[key] += 1

    async def make(self, profile: Profile, key: str) -> PooledContainer:
        """Fill a slot taken with ``take_slot``; the slot is given back if this fails."""
        try:
            pc = await self.factory.create(profile, key)
        except BaseException:
            self.size -= 1
            self.notify()
            raise
        finally:
            self.starting[key] -= 1
            if self.starting[key] <= 0:
                del self.starting[key]
        self.busy.add(pc)
        return pc

    def park(self, pc: PooledContainer) -> None:
        """Busy -> idle."""
        self.busy.discard(pc)
        self.idle.setdefault(pc.key, []).append(pc)
        self.notify()

    def pop_idle(self, key: str) -> PooledContainer | None:
        """Idle -> busy, most recently used first (so the others can expire)."""
        idle = self.idle.get(key)
        if not idle:
            return None
        pc = idle.pop()
        self.busy.add(pc)
        return pc

    def take_oldest_idle(self) -> PooledContainer | None:
        candidates = [pc for idle in self.idle.values() for pc in idle]
        if not candidates:
            return None
        victim = min(candidates, key=lambda pc: pc.last_used)
        self.idle[victim.key].remove(victim)
        return victim

    def retire(self, pc: PooledContainer, reason: str) -> None:
        """Forget ``pc`` and delete it in the background; its slot frees once it is gone."""
        self.busy.discard(pc)
        if pc.key in self.idle and pc in self.idle[pc.key]:
            self.idle[pc.key].remove(pc)
        if pc.retired:
            return
        pc.retired = True
        self.deleting += 1
        log.debug("retiring container %s: %s", pc.short_id, reason)
        self.spawn(self._destroy(pc))

    async def _destroy(self, pc: PooledContainer) -> None:
        try:
            await self.factory.destroy(pc)
        finally:
            self.size -= 1
            self.deleting -= 1
            self.notify()

    def all_containers(self) -> list[PooledContainer]:
        return [*self.busy, *(pc for idle in self.idle.values() for pc in idle)]

    def stats(self) -> dict[str, Any]:
        keys = set(self.idle) | set(self.starting) | {pc.key for pc in self.busy}
        by_key = {
            k: {
                "idle": self.idle_count(k),
                "busy": sum(1 for pc in self.busy if pc.key == k),
                "starting": self.starting[k],
            }
            for k in keys
        }
        return {
            "size": self.size,
            "max_size": self.max_size,
            "peak_size": self.peak_size,
            "busy": len(self.busy),
            "idle": sum(len(v) for v in self.idle.values()),
            "starting": sum(self.starting.values()),
            "deleting": self.deleting,
            "by_key": by_key,
            "by_engine": self.factory.by_engine(),
        }
