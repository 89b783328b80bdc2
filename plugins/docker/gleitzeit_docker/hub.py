"""``DockerHub``: Docker engines as hub resources, each with its own pool of warm containers.

* A **resource** is an engine: the strategy spreads requests over engines; probes, breakers
  and outlier ejection judge each one. A lease on an engine becomes an exclusive checkout of
  one of its pool's containers; leases per engine are capped at the pool's ``max_size`` (the
  ``capacity`` hook), so waiting happens in the hub's queue, not inside an engine.
* **Whose fault**: the code failing, timing out or running out of memory is a normal result;
  an engine unreachable, too slow or erroring counts against it and fails over; a missing
  image tries elsewhere without blaming it; a full pool is ``OVERLOADED``. A request that
  finds an engine unreachable triggers a probe of it (at most one a second).
* **Labels**: ``gleitzeit.hub=<hub_id>`` (default ``<hub name>@<hostname>``) and
  ``gleitzeit.run``; ``start`` removes containers other instances left stopped (never a live
  instance's, whatever its host), ``stop`` every container this hub created. The plugin's
  README has the whole story.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, TypeVar

from gleitzeit_core import FailureClass, Health, Request, Resource, ResourceError, ResourceHub
from gleitzeit_docker.engine import Engine
from gleitzeit_docker.errors import (
    EngineAPIError,
    EngineTimeout,
    EngineUnavailable,
    ImageMissing,
    PoolClosed,
    PoolTimeout,
    ProfileError,
    RunnerError,
)
from gleitzeit_docker.execution import ExecutionResult, Job
from gleitzeit_docker.pool import WarmPool
from gleitzeit_docker.profiles import Profile, ProfileSet
from gleitzeit_docker.settings import DockerSettings, default_hub_id, engine_options

__all__ = ["SLOT", "DockerHub", "EngineFailure", "failure_of"]

log = logging.getLogger(__name__)
T = TypeVar("T")
SLOT = "containers"  # the one capacity bucket of an engine: its pool's containers
_SUSPECT_EVERY = 1.0  # seconds between probes triggered by failing requests, per engine
_FAILED_RUN = {"unavailable": FailureClass.CONNECTION, "timeout": FailureClass.TIMEOUT}


class EngineFailure(ResourceError):
    """An engine could not run a job; ``detail`` is the plain message (no resource prefix)."""

    def __init__(
        self, detail: str, *, failure: FailureClass, resource: str, status: int | None = None
    ) -> None:
        super().__init__(detail, failure=failure, status=status)
        self.resource = resource
        self.detail = detail


def failure_of(exc: BaseException, resource: str) -> EngineFailure | None:
    """The engine-layer error ``exc`` as an ``EngineFailure`` (``None``: not one of ours)."""
    if isinstance(exc, EngineFailure):
        return exc
    table: list[tuple[type[BaseException], FailureClass, int | None]] = [
        (EngineUnavailable, FailureClass.CONNECTION, 502),
        (EngineTimeout, FailureClass.TIMEOUT, 504),
        (ImageMissing, FailureClass.MISROUTED, 503),
        (PoolTimeout, FailureClass.OVERLOADED, 503),
        (RunnerError, FailureClass.PROTOCOL, 502),
        (PoolClosed, FailureClass.CANCELLED, 503),
    ]
    for kind, failure, status in table:
        if isinstance(exc, kind):
            return EngineFailure(str(exc), failure=failure, resource=resource, status=status)
    if isinstance(exc, EngineAPIError):
        server = exc.status >= 500 or exc.status == 0
        failure = FailureClass.SERVER_ERROR if server else FailureClass.CLIENT_ERROR
        return EngineFailure(str(exc), failure=failure, resource=resource, status=502)
    return None


class DockerHub(ResourceHub):
    kind: ClassVar[str] = "docker"
    settings: DockerSettings

    def __init__(self, name: str, *, settings: DockerSettings | None = None, **kwargs: Any):
        super().__init__(name, settings=settings or DockerSettings(), **kwargs)
        self.hub_id = self.settings.hub_id or default_hub_id(name)
        try:
            self.profiles: ProfileSet = self.settings.profile_set()
        except ProfileError as exc:  # settings built by hand, past the config check
            raise ValueError(f"hub {name!r}: {exc}") from None
        self.engines: dict[str, Engine] = {}
        self.pools: dict[str, WarmPool] = {}
        self.orphans_removed: dict[str, int] = {}
        self.cleanup_errors: dict[str, str] = {}
        self._names: dict[str, str] = {}  # pool key -> profile name, for the status
        self._suspected: dict[str, float] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._live = False

    # -- engines and their pools ------------------------------------------------------------
    def pool_for(self, resource: Resource) -> WarmPool:
        """The pool of an engine (made on first use, also after ``stop``)."""
        pool = self.pools.get(resource.id)
        if pool is None:
            settings = self.settings
            engine = Engine(
                resource.endpoint,
                name=resource.id,
                call_timeout=settings.call_timeout,
                connect_timeout=settings.connect_timeout,
                ping_timeout=self.health_settings.timeout,
            )
            size = engine_options(resource.spec.options).max_size
            pool = WarmPool(engine, hub_id=self.hub_id, config=settings.pool.pool_config(size))
            self.engines[resource.id] = engine
            self.pools[resource.id] = pool
        return pool

    def engine_for(self, resource: Resource) -> Engine:
        self.pool_for(resource)
        return self.engines[resource.id]

    def on_added(self, resource: Resource) -> None:
        self.pool_for(resource)
        if self._live:
            self._spawn(self._prepare(resource))

    def on_removed(self, resource: Resource) -> None:
        self._spawn(self._close_engine(resource.id))

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- lifecycle ----------------------------------------------------------------------------
    async def on_start(self) -> None:
        """Remove orphans of crashed runs on every engine, pre-start ``min_idle``."""
        await asyncio.gather(*(self._prepare(r) for r in self.members()))
        self._live = True

    async def _prepare(self, resource: Resource) -> None:
        """Orphan cleanup, then ``min_idle``; run again when an engine down at start is back
        (see ``_health_changed``)."""
        try:
            await self.engine_for(resource).ping()  # a hung engine must not stall start()
            removed = await self.remove_orphans(resource)
        except Exception as exc:
            self.cleanup_errors[resource.id] = str(exc)
            down = isinstance(exc, EngineUnavailable | EngineTimeout)
            log.log(
                logging.INFO if down else logging.WARNING,
                "hub %s: no orphan cleanup on %s: %s", self.name, resource.id, exc,
            )  # fmt: skip
            if down:
                return  # its probe reports it; min_idle waits until it is back
        else:
            self.orphans_removed[resource.id] = len(removed)
            self.cleanup_errors.pop(resource.id, None)
        if self.settings.pool.min_idle > 0:
            self._spawn(self.prewarm(resource))

    async def remove_orphans(self, resource: Resource) -> list[str]:
        """Delete this hub's containers left on the engine by instances that are gone (never
        those of a live one, even with the same hub id: ``Engine.remove_orphans``)."""
        orphans = await self.engine_for(resource).remove_orphans(self.hub_id)
        if orphans:
            log.info("hub %s: removed %d orphans on %s", self.name, len(orphans), resource.id)
        return orphans

    async def prewarm(self, resource: Resource, profile: Profile | None = None) -> int:
        profile = profile or self.profiles.get(self.settings.default_profile)
        self._names[profile.pool_key()] = profile.name
        return await self.pool_for(resource).prewarm(profile)

    async def stop(self) -> None:
        """Stop probing, then delete every container this hub created and close engines."""
        self._live = False
        tasks = list(self._background)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await super().stop()
        await asyncio.gather(*(self._close_engine(rid) for rid in list(self.pools)))

    async def _close_engine(self, rid: str) -> None:
        pool = self.pools.pop(rid, None)
        engine = self.engines.pop(rid, None)
        try:
            if pool is not None:
                # deletes its containers (also half-made ones, found by the pool's label)
                async with asyncio.timeout(self.settings.call_timeout + 5):
                    await pool.close()
        except Exception as exc:  # left behind: removed as orphans at the next start
            log.warning("hub %s: closing the pool of %s failed: %s", self.name, rid, exc)
        finally:
            if engine is not None:
                await engine.close()

    # -- routing hooks ------------------------------------------------------------------------
    def capacity(self, resource: Resource, slot: str) -> int | None:
        return self.pool_for(resource).config.max_size

    def classify(self, exc: BaseException) -> FailureClass:
        failure = failure_of(exc, "")
        return failure.failure if failure is not None else super().classify(exc)

    def on_health_change(self, resource: Resource, old: Health) -> None:
        """Drop dead idle containers at once; when an engine is back, top up min_idle (and
        remove orphans, if that failed at start)."""
        super().on_health_change(resource, old)
        pool = self.pools.get(resource.id)
        if pool is None or not self._live:
            return
        pool.reap_once()
        if resource.health is Health.HEALTHY and resource.id in self.cleanup_errors:
            self._spawn(self._prepare(resource))

    def _suspect(self, resource: Resource) -> None:
        """A request found the engine unreachable: probe it now (rate-limited)."""
        monitor = self.monitor
        if monitor is None or not self._live:
            return
        now = time.monotonic()
        if now - self._suspected.get(resource.id, -_SUSPECT_EVERY) < _SUSPECT_EVERY:
            return
        self._suspected[resource.id] = now
        self._spawn(monitor.check(resource))

    def describe(self, resource: Resource) -> dict[str, Any]:
        """The engine, its version and its containers per profile (idle/busy/starting)."""
        pool = self.pools.get(resource.id)
        engine = self.engines.get(resource.id)
        details: dict[str, Any] = {"engine": resource.endpoint}
        if engine is not None and engine.version_info:
            details["version"] = engine.version_info.get("Version")
        if pool is None:
            return details
        stats = pool.stats()
        containers: dict[str, dict[str, int]] = {}
        for key, counts in sorted(stats["by_key"].items()):
            name = self._names.get(key, key)
            into = containers.setdefault(name, {"idle": 0, "busy": 0, "starting": 0})
            for field in into:
                into[field] += int(counts.get(field, 0))
        details.update(
            mode=pool.config.mode,
            containers=containers,
            size=stats["size"],
            max_size=stats["max_size"],
            orphans_removed=self.orphans_removed.get(resource.id, 0),
        )
        if resource.id in self.cleanup_errors:
            details["cleanup_error"] = self.cleanup_errors[resource.id]
        return details

    # -- work ---------------------------------------------------------------------------------
    async def _on_engine(
        self, request: Request, work: Callable[[Resource, WarmPool], Awaitable[T]]
    ) -> tuple[str, T]:
        """``work(resource, pool)`` on a leased engine, with failover; engine-layer errors
        become ``EngineFailure`` with the failure class that says whose fault they were."""

        async def attempt(lease: Any) -> tuple[str, T]:
            resource: Resource = lease.resource
            try:
                return resource.id, await work(resource, self.pool_for(resource))
            except Exception as exc:
                failure = failure_of(exc, resource.id)
                if failure is None:
                    raise
                if failure.failure is FailureClass.CONNECTION:
                    self._suspect(resource)
                raise failure from exc

        return await self.call(attempt, request)

    async def run(
        self, profile: Profile, job: Job, request: Request
    ) -> tuple[str, ExecutionResult]:
        """Run ``job`` on a container of some engine: ``(engine id, result)``."""
        self._names.setdefault(profile.pool_key(), profile.name)

        async def work(resource: Resource, pool: WarmPool) -> ExecutionResult:
            result = await pool.execute(profile, job)
            if result.engine_failure is not None:
                failure = _FAILED_RUN.get(result.engine_failure, FailureClass.SERVER_ERROR)
                raise EngineFailure(
                    result.error or "engine failure", failure=failure, resource=resource.id
                )
            return result

        return await self._on_engine(request, work)

    async def info(self, profile: Profile, request: Request) -> tuple[str, dict[str, Any]]:
        """``WarmPool.info`` (Python version and platform seen inside a container)."""
        self._names.setdefault(profile.pool_key(), profile.name)

        async def work(resource: Resource, pool: WarmPool) -> dict[str, Any]:
            return await pool.info(profile)

        return await self._on_engine(request, work)
