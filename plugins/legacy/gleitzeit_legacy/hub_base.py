"""The hub-era base API (``gleitzeit.hub.base``): ``ResourceHub``, ``ResourceInstance``,
``ResourceStatus``, ``ResourceType`` and the hub ``ResourceMetrics``, in the upstream shapes.

These are views and adapters: an instance is a live view of a resource of one of the runtime's
hubs (or, for a Docker hub, of a sandbox configuration), its status and metrics are read from
the hub when asked, and every call goes through the runtime - nothing here keeps a second set
of books or runs a second health loop.

Health follows the upstream rule: a first failed probe changes nothing, the second makes an
instance ``DEGRADED``, ``max_health_failures`` in a row ``UNHEALTHY``; an instance ejected for
failing requests, or whose circuit breaker is not closed, is ``DEGRADED`` too.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from gleitzeit_core import Health, MetricsSnapshot, Resource

__all__ = [
    "EVENTS",
    "EventHandlers",
    "ResourceHubBase",
    "ResourceInstance",
    "ResourceMetrics",
    "ResourceStatus",
    "ResourceType",
    "metrics_from",
    "status_of",
]

log = logging.getLogger("gleitzeit.legacy")

# the upstream event names
EVENTS = (
    "instance_registered",
    "instance_unregistered",
    "status_changed",
    "instance_recovered",
    "recovery_failed",
    "hub_started",
    "hub_stopped",
)


class ResourceType(enum.StrEnum):
    OLLAMA = "ollama"
    DOCKER = "docker"
    COMPUTE = "compute"
    STORAGE = "storage"
    CUSTOM = "custom"


class ResourceStatus(enum.StrEnum):
    UNKNOWN = "unknown"
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"
    STARTING = "starting"
    STOPPING = "stopping"
    STOPPED = "stopped"
    ERROR = "error"


def status_of(resource: Resource, now: float, max_failures: int) -> ResourceStatus:
    """A hub resource's state in upstream terms (see the module docstring)."""
    if resource.health is Health.UNHEALTHY or resource.probe_failures >= max_failures:
        return ResourceStatus.UNHEALTHY
    if (
        resource.probe_failures > 1
        or resource.is_ejected(now)
        or resource.breaker.state.value != "closed"
    ):
        return ResourceStatus.DEGRADED
    if resource.health is Health.HEALTHY:
        return ResourceStatus.HEALTHY
    return ResourceStatus.UNKNOWN


class ResourceMetrics:
    """The upstream hub metrics of one instance, from the hub's own numbers.

    ``active_connections`` is the calls in flight (upstream counted loaded models);
    ``avg_response_time_ms`` is the latency EWMA; CPU and memory are not measured (0.0) -
    the hub does not run the servers it routes to.
    """

    def __init__(
        self,
        snapshot: MetricsSnapshot | None = None,
        custom_metrics: Mapping[str, Any] | None = None,
    ) -> None:
        snap = snapshot
        self.cpu_percent = 0.0
        self.memory_percent = 0.0
        self.memory_mb = 0.0
        self.disk_io_mb = 0.0
        self.network_io_mb = 0.0
        self.request_count = snap.requests if snap else 0
        self.error_count = (snap.requests - snap.successes) if snap else 0
        self.avg_response_time_ms = (snap.latency_ewma_ms or 0.0) if snap else 0.0
        self.p95_response_time_ms = (snap.p95_ms or 0.0) if snap else 0.0
        self.p99_response_time_ms = (snap.p99_ms or 0.0) if snap else 0.0
        self.active_connections = snap.in_flight if snap else 0
        self.queued_requests = 0
        self.custom_metrics: dict[str, Any] = dict(custom_metrics or {})
        self.last_updated = datetime.now(UTC)

    @property
    def error_rate(self) -> float:
        """Errors in percent of requests (as upstream's ``to_dict``)."""
        return self.error_count / max(1, self.request_count) * 100.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "cpu_percent": self.cpu_percent,
            "memory_percent": self.memory_percent,
            "memory_mb": self.memory_mb,
            "request_count": self.request_count,
            "error_count": self.error_count,
            "error_rate": self.error_rate,
            "avg_response_time_ms": self.avg_response_time_ms,
            "p95_response_time_ms": self.p95_response_time_ms,
            "p99_response_time_ms": self.p99_response_time_ms,
            "active_connections": self.active_connections,
            "queued_requests": self.queued_requests,
            "custom_metrics": self.custom_metrics,
            "last_updated": self.last_updated.isoformat(),
        }


def metrics_from(snapshot: MetricsSnapshot, custom: Mapping[str, Any] | None) -> ResourceMetrics:
    return ResourceMetrics(snapshot, custom)


class ResourceInstance:
    """One instance of a hub, upstream-shaped; ``status`` and ``metrics`` are read live."""

    def __init__(
        self,
        hub: ResourceHubBase,
        instance_id: str,
        *,
        name: str,
        endpoint: str,
        metadata: Mapping[str, Any] | None = None,
        tags: Iterable[str] = (),
        capabilities: Iterable[str] = (),
        config: Any = None,
    ) -> None:
        self._hub = hub
        self.id = instance_id
        self.name = name
        self.type = hub.resource_type
        self.endpoint = endpoint
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.tags: set[str] = set(tags)
        self.capabilities: set[str] = set(capabilities)
        self.config = config
        self.created_at = datetime.now(UTC)

    @property
    def status(self) -> ResourceStatus:
        return self._hub.instance_status(self)

    @property
    def metrics(self) -> ResourceMetrics:
        return self._hub.instance_metrics(self)

    @property
    def health_checks_failed(self) -> int:
        return self._hub.instance_failures(self)

    @property
    def last_health_check(self) -> datetime | None:
        return self._hub.last_checks.get(self.id)

    @property
    def updated_at(self) -> datetime:
        return self.last_health_check or self.created_at

    def is_available(self) -> bool:
        return self.status in (ResourceStatus.HEALTHY, ResourceStatus.DEGRADED)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "type": self.type.value,
            "endpoint": self.endpoint,
            "status": self.status.value,
            "metadata": self.metadata,
            "tags": sorted(self.tags),
            "capabilities": sorted(self.capabilities),
            "metrics": self.metrics.to_dict(),
            "health_checks_failed": self.health_checks_failed,
            "last_health_check": self.last_health_check.isoformat()
            if self.last_health_check
            else None,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }

    def __repr__(self) -> str:
        return f"<ResourceInstance {self.id} {self.endpoint} {self.status.value}>"


Handler = Callable[[dict[str, Any]], Any]


class EventHandlers:
    """``on_event(name, handler)`` with the upstream names; sync or async handlers, each
    failure logged, never raised into the hub."""

    def __init__(self) -> None:
        self.handlers: dict[str, list[Handler]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    def on(self, name: str, handler: Handler) -> None:
        if name not in EVENTS:
            raise ValueError(f"unknown hub event {name!r}; events: {', '.join(EVENTS)}")
        self.handlers.setdefault(name, []).append(handler)

    def emit(self, name: str, data: dict[str, Any]) -> None:
        for handler in self.handlers.get(name, []):
            try:
                result = handler(data)
            except Exception:
                log.exception("gleitzeit legacy: %s handler failed", name)
                continue
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self._tasks.add(task)  # kept until done, so it is not collected mid-flight
                task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("gleitzeit legacy: event handler failed: %r", task.exception())


class ResourceHubBase:
    """What the hub-era hubs share: lifecycle, events, queries and the status shapes.

    Subclasses say where instances come from (``_instances``) and how they are registered;
    everything runs on the ``Runtime`` the hub adapts.
    """

    def __init__(
        self,
        hub_id: str,
        resource_type: ResourceType,
        health_check_interval: float = 30,
        max_health_failures: int = 3,
        enable_auto_recovery: bool = True,
        enable_metrics: bool = True,
    ) -> None:
        if not isinstance(hub_id, str) or not hub_id:
            raise ValueError(f"hub_id: expected a non-empty string, got {hub_id!r}")
        self.hub_id = hub_id
        self.resource_type = resource_type
        self.health_check_interval = health_check_interval
        self.max_health_failures = int(max_health_failures)
        self.enable_auto_recovery = enable_auto_recovery
        self.enable_metrics = enable_metrics
        self.running = False
        self.started_at: datetime | None = None
        self._started_clock: float | None = None
        self.events = EventHandlers()
        self.last_checks: dict[str, datetime] = {}
        self.stats: dict[str, Any] = {
            "total_registered": 0,
            "total_health_checks": 0,
            "total_recoveries": 0,
            "total_failures": 0,
            "uptime_seconds": 0.0,
        }

    # -- what subclasses provide ----------------------------------------------------------------
    def _instances(self) -> list[ResourceInstance]:
        raise NotImplementedError

    def instance_status(self, instance: ResourceInstance) -> ResourceStatus:
        raise NotImplementedError

    def instance_metrics(self, instance: ResourceInstance) -> ResourceMetrics:
        raise NotImplementedError

    def instance_failures(self, instance: ResourceInstance) -> int:
        return 0

    async def _start(self) -> None:
        raise NotImplementedError

    async def _stop(self) -> None:
        raise NotImplementedError

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the runtime behind the hub (discovery, probes); idempotent."""
        if self.running:
            return
        await self._start()
        self.running = True
        self.started_at = datetime.now(UTC)
        self._started_clock = time.monotonic()
        self.events.emit("hub_started", {"hub_id": self.hub_id})

    async def stop(self) -> None:
        """Stop probing and close what the hub opened (containers, sessions)."""
        if not self.running:
            await self._stop()
            return
        self.stats["uptime_seconds"] = self.uptime_seconds()
        self.running = False
        await self._stop()
        self.events.emit("hub_stopped", {"hub_id": self.hub_id})

    async def __aenter__(self) -> ResourceHubBase:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def uptime_seconds(self) -> float:
        if self._started_clock is None:
            return float(self.stats["uptime_seconds"])
        return time.monotonic() - self._started_clock

    # -- events and queries ---------------------------------------------------------------------
    def on_event(self, event: str, handler: Handler) -> None:
        """Call ``handler(data)`` on ``event`` (one of ``EVENTS``)."""
        self.events.on(event, handler)

    def get_instance(self, instance_id: str) -> ResourceInstance | None:
        return next((i for i in self._instances() if i.id == instance_id), None)

    def list_instances(
        self,
        status: ResourceStatus | str | None = None,
        tags: Iterable[str] | None = None,
        capabilities: Iterable[str] | None = None,
    ) -> list[ResourceInstance]:
        """Instances, optionally only those in ``status`` carrying all ``tags`` and
        ``capabilities``."""
        wanted = None if status is None else ResourceStatus(getattr(status, "value", status))
        need_tags, need_caps = set(tags or ()), set(capabilities or ())
        return [
            i
            for i in self._instances()
            if (wanted is None or i.status is wanted)
            and need_tags <= i.tags
            and need_caps <= i.capabilities
        ]

    def get_available_instance(
        self,
        tags: Iterable[str] | None = None,
        capabilities: Iterable[str] | None = None,
        strategy: str = "least_loaded",
    ) -> ResourceInstance | None:
        """An available (healthy or degraded) instance with the ``tags`` and ``capabilities``:
        the one with the fewest calls in flight (hubs that route themselves override this)."""
        found = [
            i for i in self.list_instances(tags=tags, capabilities=capabilities) if i.is_available()
        ]
        return min(found, key=lambda i: i.metrics.active_connections, default=None)

    async def collect_metrics(self, instance: ResourceInstance) -> ResourceMetrics:
        """The instance's metrics now (read from the hub; nothing to collect separately)."""
        return instance.metrics

    # -- status shapes --------------------------------------------------------------------------
    def get_status(self) -> dict[str, Any]:
        """``{hub_id, resource_type, running, started_at, uptime_seconds, instances: {total,
        by_status, healthy, degraded, unhealthy}, stats, config}`` (the upstream shape)."""
        instances = self._instances()
        by_status: dict[str, int] = {}
        for instance in instances:
            key = instance.status.value
            by_status[key] = by_status.get(key, 0) + 1
        uptime = self.uptime_seconds()
        return {
            "hub_id": self.hub_id,
            "resource_type": self.resource_type.value,
            "running": self.running,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "uptime_seconds": uptime,
            "instances": {
                "total": len(instances),
                "by_status": by_status,
                "healthy": by_status.get("healthy", 0),
                "degraded": by_status.get("degraded", 0),
                "unhealthy": by_status.get("unhealthy", 0),
            },
            "stats": {**self.stats, "uptime_seconds": uptime},
            "config": {
                "health_check_interval": self.health_check_interval,
                "max_health_failures": self.max_health_failures,
                "enable_auto_recovery": self.enable_auto_recovery,
                "enable_metrics": self.enable_metrics,
            },
        }

    def get_metrics_summary(self) -> dict[str, Any]:
        """``{aggregate: {total_cpu_percent, total_memory_mb, total_requests, total_errors,
        error_rate (%), avg_response_time_ms}, by_instance: {id: metrics}}``."""
        by_instance = {i.id: i.metrics for i in self._instances()}
        requests = sum(m.request_count for m in by_instance.values())
        errors = sum(m.error_count for m in by_instance.values())
        measured = [m.avg_response_time_ms for m in by_instance.values() if m.request_count]
        return {
            "aggregate": {
                "total_cpu_percent": sum(m.cpu_percent for m in by_instance.values()),
                "total_memory_mb": sum(m.memory_mb for m in by_instance.values()),
                "total_requests": requests,
                "total_errors": errors,
                "error_rate": errors / max(1, requests) * 100.0,
                "avg_response_time_ms": sum(measured) / len(measured) if measured else 0.0,
            },
            "by_instance": {rid: m.to_dict() for rid, m in by_instance.items()},
        }
