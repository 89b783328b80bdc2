"""Active health probing and passive outlier ejection.

Active: every resource is probed on an interval (with jitter, so a thousand resources do not
probe in lockstep); ``unhealthy_threshold`` consecutive failures mark it unhealthy and
``healthy_threshold`` consecutive successes bring it back. A successful probe also ends an
ejection early, as Envoy does.

Passive: ``consecutive_failures`` request failures that are the resource's fault eject it for
``base_ejection`` x (ejections in a row), capped at ``max_ejection``; never more than
``max_ejected_share`` of a hub is ejected at once (at least one resource always may be).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

import attrs

from ._outcomes import FailureClass
from ._resources import Health, Resource
from ._validators import at_least, fraction, seconds

__all__ = [
    "HealthMonitor",
    "HealthSettings",
    "HttpProbe",
    "OutlierDetector",
    "OutlierSettings",
    "Probe",
    "ProbeResult",
    "TcpProbe",
]


@attrs.frozen
class ProbeResult:
    """The answer of one probe. ``latency`` is in seconds."""

    ok: bool
    latency: float | None = None
    detail: str = ""


@runtime_checkable
class Probe(Protocol):
    """Checks one resource; reports failure as a result, never by raising."""

    async def probe(self, resource: Resource) -> ProbeResult: ...


@attrs.frozen(kw_only=True)
class HealthSettings:
    interval: float = attrs.field(default=5.0, validator=seconds())
    timeout: float = attrs.field(default=2.0, validator=seconds())
    jitter: float = attrs.field(default=0.1, validator=fraction())
    unhealthy_threshold: int = attrs.field(default=3, validator=at_least(1))
    healthy_threshold: int = attrs.field(default=1, validator=at_least(1))
    probe: str | None = None  # by name; None: the hub kind's default
    enabled: bool = True


@attrs.frozen(kw_only=True)
class OutlierSettings:
    consecutive_failures: int = attrs.field(default=5, validator=at_least(1))
    base_ejection: float = attrs.field(default=30.0, validator=seconds())
    max_ejection: float = attrs.field(default=300.0, validator=seconds())
    max_ejected_share: float = attrs.field(default=0.5, validator=fraction())
    # a successful active probe ends an ejection early (Envoy's default); turn it off when the
    # probe only proves liveness and cannot tell that requests would succeed
    uneject_on_probe: bool = True
    enabled: bool = True


def _split_endpoint(endpoint: str) -> tuple[str, int]:
    parts = urlsplit(endpoint if "://" in endpoint else f"tcp://{endpoint}")
    if parts.hostname is None or parts.port is None:
        msg = f"endpoint {endpoint!r} has no host:port"
        raise ValueError(msg)
    return parts.hostname, parts.port


@attrs.define(kw_only=True, eq=False)
class TcpProbe:
    """Healthy when a TCP connection to the endpoint's host:port opens within the timeout."""

    timeout: float = attrs.field(default=2.0, validator=seconds())

    async def probe(self, resource: Resource) -> ProbeResult:
        started = time.monotonic()
        try:
            host, port = _split_endpoint(resource.endpoint)
            async with asyncio.timeout(self.timeout):
                _, writer = await asyncio.open_connection(host, port)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        except (OSError, TimeoutError, ValueError) as exc:
            return ProbeResult(False, None, _describe(exc, self.timeout))
        return ProbeResult(True, time.monotonic() - started)


@attrs.define(kw_only=True, eq=False)
class HttpProbe:
    """Healthy when ``GET endpoint + path`` answers with a status in ``expect`` in time."""

    path: str = "/"
    timeout: float = attrs.field(default=2.0, validator=seconds())
    expect: tuple[int, int] = (200, 399)  # inclusive range of good statuses
    _session: Any = attrs.field(init=False, default=None, repr=False)

    async def probe(self, resource: Resource) -> ProbeResult:
        import aiohttp  # imported here: plugins that never probe over HTTP do not pay for it

        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        url = resource.endpoint.rstrip("/") + self.path
        started = time.monotonic()
        try:
            # a redirect is an answer (its status counts), never followed to another address
            async with (
                asyncio.timeout(self.timeout),
                self._session.get(url, allow_redirects=False) as response,
            ):
                status = response.status
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            return ProbeResult(False, None, _describe(exc, self.timeout))
        latency = time.monotonic() - started
        if self.expect[0] <= status <= self.expect[1]:
            return ProbeResult(True, latency)
        return ProbeResult(False, latency, f"HTTP {status} from {url}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def _describe(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g} s"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class HealthMonitor:
    """Probes every resource of a hub on one shared schedule.

    One scheduler task per monitor wakes ``SLOTS`` times per interval and starts the probes of
    one slot, under one shared timeout timer; each resource sits in the least crowded slot, so
    a thousand resources are probed evenly across the interval (``n / SLOTS`` at a time)
    instead of waking the event loop a thousand times a second on timers of their own (that,
    not the probes, was most of the monitor's CPU). A resource's next probe waits for its last
    one to end and for ``interval x (1 - max(jitter, 0.1))`` after that, so a slow or hung
    endpoint is never probed more often than every interval. A newly watched resource is probed
    at a random point within ``interval x max(jitter, 0.05)``, so resources added together
    spread out.
    """

    SLOTS = 20  # wake-ups per interval; the probes of one slot start together

    def __init__(
        self,
        probe: Probe,
        settings: HealthSettings,
        *,
        rng: random.Random | None = None,
        on_change: Callable[[Resource, Health], None] | None = None,
        uneject: bool = True,
    ) -> None:
        self.probe = probe
        self.uneject = uneject
        self.settings = settings
        self.rng = rng or random.Random()
        self.on_change = on_change
        self._watched: dict[str, Resource] = {}
        self._slot_of: dict[str, int] = {}
        self._slots: list[dict[str, Resource]] = [{} for _ in range(self.SLOTS)]
        self._due: dict[str, float] = {}  # loop time before which a resource is not probed
        self._first: dict[str, float] = {}  # resources waiting for their first probe: when
        self._running: dict[str, asyncio.Task[None]] = {}  # probes in flight
        self._scheduler: asyncio.Task[None] | None = None
        self._expired: set[asyncio.Task[None]] = set()  # cancelled by their batch's timeout
        self._loop_time: Callable[[], float] = time.monotonic  # the loop's clock, once running
        # the least time from a probe's end to the next: under the interval by at least two
        # slots, so a probe that takes a moment still comes round every interval
        self._rest = settings.interval * (1 - max(settings.jitter, 2 / self.SLOTS))

    def watch(self, resource: Resource) -> None:
        if resource.id in self._watched or not self.settings.enabled:
            return
        loop = asyncio.get_running_loop()
        settings = self.settings
        slot = min(range(self.SLOTS), key=lambda i: len(self._slots[i]))
        self._watched[resource.id] = resource
        self._slot_of[resource.id] = slot
        self._slots[slot][resource.id] = resource
        window = settings.interval * max(settings.jitter, 0.05)
        self._first[resource.id] = loop.time() + self.rng.random() * window
        if self._scheduler is None or self._scheduler.done():
            self._scheduler = loop.create_task(self._schedule(), name="gleitzeit-health")

    def unwatch(self, resource_id: str) -> None:
        if self._watched.pop(resource_id, None) is None:
            return
        self._slots[self._slot_of.pop(resource_id)].pop(resource_id, None)
        self._due.pop(resource_id, None)
        self._first.pop(resource_id, None)
        task = self._running.pop(resource_id, None)
        if task is not None:
            task.cancel()

    async def stop(self) -> None:
        tasks = list(self._running.values())
        if self._scheduler is not None:
            tasks.append(self._scheduler)
        self._scheduler = None
        for resource_id in list(self._watched):
            self.unwatch(resource_id)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        close = getattr(self.probe, "close", None)
        if close is not None:
            await close()

    async def check(self, resource: Resource) -> ProbeResult:
        """Probe once now and apply the result."""
        try:
            async with asyncio.timeout(self.settings.timeout):
                result = await self.probe.probe(resource)
        except TimeoutError:
            result = ProbeResult(
                False, None, f"probe gave no answer within {self.settings.timeout:g} s"
            )
        except Exception as exc:  # a buggy probe must not stop the monitor; it reads as a failure
            result = ProbeResult(False, None, f"probe raised {type(exc).__name__}: {exc}")
        self.apply(resource, result)
        return result

    def apply(self, resource: Resource, result: ProbeResult) -> None:
        settings = self.settings
        before = resource.health
        if result.ok:
            resource.probe_successes += 1
            resource.probe_failures = 0
            resource.health_detail = ""
            # a new resource needs one success; a failed one must prove itself
            needed = 1 if before is Health.UNKNOWN else settings.healthy_threshold
            if before is not Health.HEALTHY and resource.probe_successes >= needed:
                resource.health = Health.HEALTHY
            if resource.health is Health.HEALTHY and self.uneject:
                resource.ejected_until = None
        else:
            resource.probe_failures += 1
            resource.probe_successes = 0
            resource.health_detail = result.detail
            if resource.probe_failures >= settings.unhealthy_threshold:
                resource.health = Health.UNHEALTHY
        if resource.health is not before and self.on_change is not None:
            self.on_change(resource, before)

    async def _probe(self, resource: Resource) -> None:
        # the scheduled path: the timeout is the batch's shared timer (``_expire``), not one
        # timer per probe
        try:
            result = await self.probe.probe(resource)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is None or task not in self._expired:
                raise  # unwatched or stopped
            self._expired.discard(task)
            task.uncancel()
            timeout = self.settings.timeout
            result = ProbeResult(False, None, f"probe gave no answer within {timeout:g} s")
        except Exception as exc:  # a buggy probe must not stop the monitor; it reads as a failure
            result = ProbeResult(False, None, f"probe raised {type(exc).__name__}: {exc}")
        resource_id = resource.id
        self._running.pop(resource_id, None)
        if self._expired:  # a probe that swallowed its timeout's cancellation
            self._expired.discard(asyncio.current_task())
        self.apply(resource, result)
        self._due[resource_id] = self._loop_time() + self._rest

    def _expire(self, batch: list[asyncio.Task[None]]) -> None:
        """The batch's timeout: cancel the probes of it still running; they read as failures."""
        for task in batch:
            if not task.done():
                self._expired.add(task)
                task.cancel()

    def _start(self, loop: asyncio.AbstractEventLoop, resources: list[Resource]) -> None:
        batch = []
        for resource in resources:
            task = loop.create_task(self._probe(resource))
            self._running[resource.id] = task
            batch.append(task)
        if batch:
            loop.call_at(loop.time() + self.settings.timeout, self._expire, batch)

    async def _schedule(self) -> None:
        loop = asyncio.get_running_loop()
        self._loop_time = loop.time
        tick = self.settings.interval / self.SLOTS
        slot, wake = 0, loop.time()
        running, due, first = self._running, self._due, self._first
        while self._watched:
            now = loop.time()
            if first:
                starting = [r for r, when in first.items() if when <= now and r not in running]
                for resource_id in starting:
                    del first[resource_id]
                self._start(loop, [self._watched[r] for r in starting])
            batch = []
            # half a tick of slack: a probe due just after this slot's turn waits no full round
            horizon = now + tick / 2
            for resource_id, resource in self._slots[slot].items():
                if resource_id in running or resource_id in first:
                    continue
                if due.get(resource_id, 0.0) <= horizon:
                    batch.append(resource)
            self._start(loop, batch)
            slot = (slot + 1) % self.SLOTS
            wake += tick
            if wake < loop.time():  # fell behind (a busy loop): skip ahead, never burst
                wake = loop.time()
            await asyncio.sleep(wake - loop.time())


class OutlierDetector:
    """Ejects resources whose requests keep failing, for a time that grows with each ejection."""

    def __init__(self, settings: OutlierSettings) -> None:
        self.settings = settings

    def observe(
        self,
        resource: Resource,
        failure: FailureClass | None,
        now: float,
        members: Iterable[Resource],
    ) -> bool:
        """Account one request outcome; returns True when it ejected the resource."""
        if failure is None:
            resource.consecutive_failures = 0
            return False
        if not failure.resource_fault or not self.settings.enabled:
            return False
        resource.consecutive_failures += 1
        if resource.consecutive_failures < self.settings.consecutive_failures:
            return False
        if resource.is_ejected(now):
            return False
        pool = list(members)
        ejected = sum(1 for member in pool if member.is_ejected(now))
        allowed = max(1, int(self.settings.max_ejected_share * len(pool)))
        if ejected >= allowed:
            return False
        self.eject(resource, now)
        return True

    def eject(self, resource: Resource, now: float) -> None:
        settings = self.settings
        if resource.ejected_until is not None and resource.ejections:
            # each base period spent back in service earns one step of the multiplier back
            healed = int(max(0.0, now - resource.ejected_until) / settings.base_ejection)
            resource.ejections = max(0, resource.ejections - healed)
        resource.ejections += 1
        resource.ejections_total += 1
        duration = min(settings.base_ejection * resource.ejections, settings.max_ejection)
        resource.ejected_until = now + duration
        resource.consecutive_failures = 0
