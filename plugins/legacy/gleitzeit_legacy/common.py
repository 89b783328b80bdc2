"""The plan's Phase 1 shared components (``gleitzeit.common.*``) as adapters over the core.

* ``CircuitBreaker``: one breaker per resource id, each a breaker plugin's (``consecutive``
  by default) - the half-open trial budget is enforced on every path, also ``can_execute`` +
  ``record_*`` (upstream only counted trials in ``call_with_circuit_breaker``);
* ``MetricsCollector``/``ResourceMetrics``: the core's O(1) metrics per resource id, read in
  the upstream field names (milliseconds, percentages);
* ``HealthMonitor``/``HealthCheck``/``HTTPHealthCheck``: the core's health monitor and HTTP
  probe, with the upstream thresholds (degraded after ``degraded_threshold`` failures in a row,
  unhealthy after ``unhealthy_threshold``);
* ``LoadBalancer``/``LoadBalancingStrategy``/``ResourceInfo``: the core's strategies chosen by
  the upstream names (``docs/migration.md`` maps each).
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import attrs

from gleitzeit_core import (
    BUILTIN_STRATEGIES,
    BreakerState,
    CallOutcome,
    FailureClass,
    Health,
    HealthSettings,
    HttpProbe,
    PluginSelection,
    ProbeResult,
    Request,
    Resource,
    ResourceHub,
    ResourceSpec,
    build_component,
)
from gleitzeit_core import (
    ResourceMetrics as CoreMetrics,
)

from .translate import STRATEGIES

__all__ = [
    "CircuitBreaker",
    "CircuitOpenError",
    "CircuitState",
    "HTTPHealthCheck",
    "HealthCheck",
    "HealthCheckResult",
    "HealthMonitor",
    "HealthStatus",
    "LoadBalancer",
    "LoadBalancingStrategy",
    "MetricsCollector",
    "ResourceInfo",
    "ResourceMetrics",
]

T = TypeVar("T")


# -- circuit breaker ----------------------------------------------------------------------------
class CircuitState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitOpenError(Exception):
    """The resource's circuit is open: the call was not made."""

    def __init__(self, resource_id: str) -> None:
        super().__init__(f"circuit breaker open for {resource_id!r}; retry later")
        self.resource_id = resource_id


class CircuitBreaker:
    """``CircuitBreaker(failure_threshold=5, recovery_timeout=60, half_open_requests=3,
    success_threshold=2)``, per resource id; ``kind`` names the breaker plugin."""

    def __init__(
        self,
        failure_threshold: int = 5,
        recovery_timeout: float = 60.0,
        half_open_requests: int = 3,
        success_threshold: int = 2,
        *,
        kind: str = "consecutive",
    ) -> None:
        registries = PluginSelection.resolve().manager().load().registries
        if kind not in registries.breakers:
            raise ImportError(
                f"circuit breaker {kind!r} is not installed; `pip install gleitzeit-breaker-{kind}`"
            )
        self._factory = registries.breakers.get(kind)
        self._options = {
            "failures": failure_threshold,
            "open_for": float(recovery_timeout),
            "half_open_permits": half_open_requests,
            "successes_to_close": success_threshold,
            "backoff": 1.0,  # upstream reopened for the same time
        }
        build_component(self._factory, self._options, path="circuit_breaker")  # check now
        self._breakers: dict[str, Any] = {}

    def _breaker(self, resource_id: str) -> Any:
        breaker = self._breakers.get(resource_id)
        if breaker is None:
            breaker = build_component(self._factory, self._options, path="circuit_breaker")
            self._breakers[resource_id] = breaker
        return breaker

    def get_state(self, resource_id: str) -> CircuitState:
        breaker = self._breaker(resource_id)
        breaker.available()  # an expired open period turns half-open, as upstream's get_state
        state = breaker.state
        if state in (BreakerState.OPEN, BreakerState.FORCED_OPEN):
            return CircuitState.OPEN
        return CircuitState.HALF_OPEN if state is BreakerState.HALF_OPEN else CircuitState.CLOSED

    def can_execute(self, resource_id: str) -> bool:
        """Would a call be admitted now (no side effects)?"""
        return bool(self._breaker(resource_id).available())

    def _record(self, resource_id: str, outcome: CallOutcome, duration: float) -> None:
        breaker = self._breaker(resource_id)
        permit = breaker.acquire()
        if permit is not None:  # an outcome while open changes nothing, as upstream
            breaker.record(permit, outcome, duration)

    def record_success(self, resource_id: str, duration: float = 0.0) -> None:
        self._record(resource_id, CallOutcome.SUCCESS, duration)

    def record_failure(self, resource_id: str, error: BaseException | None = None) -> None:
        self._record(resource_id, CallOutcome.FAILURE, 0.0)

    async def call_with_circuit_breaker(
        self, resource_id: str, func: Callable[..., Awaitable[T] | T], *args: Any, **kwargs: Any
    ) -> T:
        """Call ``func`` if the circuit admits it (``CircuitOpenError`` if not)."""
        breaker = self._breaker(resource_id)
        permit = breaker.acquire()
        if permit is None:
            raise CircuitOpenError(resource_id)
        started = time.monotonic()
        try:
            result = func(*args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
        except asyncio.CancelledError:
            breaker.record(permit, CallOutcome.IGNORED, time.monotonic() - started)
            raise
        except BaseException:
            breaker.record(permit, CallOutcome.FAILURE, time.monotonic() - started)
            raise
        breaker.record(permit, CallOutcome.SUCCESS, time.monotonic() - started)
        return result

    def reset(self, resource_id: str) -> None:
        self._breaker(resource_id).reset()

    def get_stats(self, resource_id: str) -> dict[str, Any]:
        return {"resource_id": resource_id, "state": self.get_state(resource_id).value}


# -- metrics ------------------------------------------------------------------------------------
class ResourceMetrics:
    """Upstream's per-resource numbers, read from the core's metrics (ms, percent)."""

    def __init__(self, core: CoreMetrics | None = None) -> None:
        self.core = core or CoreMetrics(window=100)
        self.last_error: str | None = None
        self.last_error_time: float | None = None
        self.last_success_time: float | None = None
        self.consecutive_errors = 0
        self.consecutive_successes = 0
        self.custom_metrics: dict[str, Any] = {}

    def _snap(self) -> Any:
        return self.core.snapshot(time.monotonic())

    @property
    def total_requests(self) -> int:
        return self.core.requests

    @property
    def successful_requests(self) -> int:
        return self.core.successes

    @property
    def failed_requests(self) -> int:
        return self.core.requests - self.core.successes

    @property
    def active_requests(self) -> int:
        return self.core.in_flight

    @property
    def avg_response_time(self) -> float:
        return float(self._snap().latency_ewma_ms or 0.0)

    @property
    def median_response_time(self) -> float:
        return float(self._snap().p50_ms or 0.0)

    @property
    def p95_response_time(self) -> float:
        return float(self._snap().p95_ms or 0.0)

    @property
    def p99_response_time(self) -> float:
        return float(self._snap().p99_ms or 0.0)

    @property
    def success_rate(self) -> float:
        total = self.core.requests
        return 100.0 * self.core.successes / total if total else 100.0

    @property
    def error_rate(self) -> float:
        return 100.0 - self.success_rate

    @property
    def availability(self) -> float:
        return self.success_rate

    def to_dict(self) -> dict[str, Any]:
        names = (
            "total_requests",
            "successful_requests",
            "failed_requests",
            "active_requests",
            "avg_response_time",
            "median_response_time",
            "p95_response_time",
            "p99_response_time",
            "success_rate",
            "error_rate",
            "availability",
            "consecutive_errors",
            "consecutive_successes",
            "last_error",
        )
        return {name: getattr(self, name) for name in names}


class MetricsCollector:
    """Per-resource metrics: ``start_request(id)`` then ``record_request(id, ms, success)``."""

    def __init__(self) -> None:
        self._metrics: dict[str, ResourceMetrics] = {}

    def get_metrics(self, resource_id: str) -> ResourceMetrics:
        found = self._metrics.get(resource_id)
        if found is None:
            found = self._metrics[resource_id] = ResourceMetrics()
        return found

    def start_request(self, resource_id: str) -> None:
        self.get_metrics(resource_id).core.in_flight += 1

    def record_request(
        self,
        resource_id: str,
        response_time_ms: float,
        success: bool,
        error: str | None = None,
    ) -> None:
        metrics = self.get_metrics(resource_id)
        core = metrics.core
        core.in_flight = max(0, core.in_flight - 1)
        now = time.monotonic()
        core.record(response_time_ms / 1000.0, None if success else FailureClass.SERVER_ERROR, now)
        if success:
            metrics.consecutive_successes += 1
            metrics.consecutive_errors = 0
            metrics.last_success_time = time.time()
        else:
            metrics.consecutive_errors += 1
            metrics.consecutive_successes = 0
            metrics.last_error = error
            metrics.last_error_time = time.time()

    def get_all_metrics(self) -> dict[str, dict[str, Any]]:
        return {rid: m.to_dict() for rid, m in self._metrics.items()}


# -- health -------------------------------------------------------------------------------------
class HealthStatus(enum.StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"
    UNKNOWN = "unknown"


@attrs.frozen
class HealthCheckResult:
    status: HealthStatus
    response_time_ms: float | None = None
    message: str = ""


class HealthCheck:
    """A health check: ``await check(resource_id, endpoint) -> HealthCheckResult``."""

    async def check(self, resource_id: str, endpoint: str) -> HealthCheckResult:
        raise NotImplementedError


class HTTPHealthCheck(HealthCheck):
    """``GET endpoint + path`` within ``timeout`` (the core's ``HttpProbe``)."""

    def __init__(self, endpoint: str = "/health", timeout: float = 5.0) -> None:
        self.probe = HttpProbe(path=endpoint, timeout=timeout)

    async def check(self, resource_id: str, endpoint: str) -> HealthCheckResult:
        result = await self.probe.probe(Resource(ResourceSpec(id=resource_id, endpoint=endpoint)))
        ms = None if result.latency is None else result.latency * 1000.0
        status = HealthStatus.HEALTHY if result.ok else HealthStatus.UNHEALTHY
        return HealthCheckResult(status, ms, result.detail)

    async def close(self) -> None:
        await self.probe.close()


class _CheckProbe:
    """A ``HealthCheck`` as a core probe."""

    def __init__(self, check: HealthCheck) -> None:
        self.check = check

    async def probe(self, resource: Resource) -> ProbeResult:
        result = await self.check.check(resource.id, resource.endpoint)
        latency = None if result.response_time_ms is None else result.response_time_ms / 1000.0
        return ProbeResult(result.status is HealthStatus.HEALTHY, latency, result.message)

    async def close(self) -> None:
        close = getattr(self.check, "close", None)
        if close is not None:
            await close()


class HealthMonitor:
    """``HealthMonitor(check_interval=30, unhealthy_threshold=3, degraded_threshold=2)`` over
    the core's monitor (one probe loop per resource, jittered)."""

    def __init__(
        self,
        check_interval: float = 30.0,
        unhealthy_threshold: int = 3,
        degraded_threshold: int = 2,
    ) -> None:
        self.degraded_threshold = degraded_threshold
        self.settings = HealthSettings(
            interval=float(check_interval), unhealthy_threshold=unhealthy_threshold
        )
        self._resources: dict[str, Resource] = {}
        self._monitors: dict[str, Any] = {}  # the core's monitor of each resource's hub
        self._running = False

    def register_resource(
        self, resource_id: str, endpoint: str, health_check: HealthCheck | None = None
    ) -> None:
        resource = Resource(ResourceSpec(id=resource_id, endpoint=endpoint))
        # a hub of its own runs the core's probe loop for this resource (no leases are taken)
        hub = ResourceHub(
            f"legacy-health-{resource_id}",
            probe=_CheckProbe(health_check or HTTPHealthCheck()),
            health=self.settings,
        )
        monitor: Any = hub.monitor  # never None: the hub was given a probe
        self._resources[resource_id] = resource
        self._monitors[resource_id] = monitor
        if self._running:
            monitor.watch(resource)

    def unregister_resource(self, resource_id: str) -> None:
        self._resources.pop(resource_id, None)
        monitor = self._monitors.pop(resource_id, None)
        if monitor is not None:
            monitor.unwatch(resource_id)

    async def start(self) -> None:
        self._running = True
        for rid, monitor in self._monitors.items():
            monitor.watch(self._resources[rid])

    async def stop(self) -> None:
        self._running = False
        await asyncio.gather(*(m.stop() for m in self._monitors.values()))

    async def check_now(self, resource_id: str) -> HealthStatus:
        await self._monitors[resource_id].check(self._resources[resource_id])
        return self.get_health(resource_id)

    def get_health(self, resource_id: str) -> HealthStatus:
        resource = self._resources.get(resource_id)
        if resource is None:
            return HealthStatus.UNKNOWN
        if resource.health is Health.UNHEALTHY:
            return HealthStatus.UNHEALTHY
        if resource.probe_failures >= self.degraded_threshold:
            return HealthStatus.DEGRADED
        if resource.health is Health.UNKNOWN:
            return HealthStatus.UNKNOWN
        return HealthStatus.HEALTHY

    def get_status(self) -> dict[str, Any]:
        return {
            rid: {"status": self.get_health(rid).value, "detail": r.health_detail}
            for rid, r in self._resources.items()
        }


# -- load balancing -----------------------------------------------------------------------------
class LoadBalancingStrategy(enum.StrEnum):
    ROUND_ROBIN = "round_robin"
    LEAST_LOADED = "least_loaded"
    RANDOM = "random"
    WEIGHTED_RANDOM = "weighted_random"
    LEAST_RESPONSE_TIME = "least_response_time"
    HASH_BASED = "hash_based"
    PRIORITY_BASED = "priority_based"
    ADAPTIVE = "adaptive"


@attrs.define
class ResourceInfo:
    """What the balancer knows of one resource (``avg_response_time`` in ms)."""

    id: str
    weight: float = 1.0
    priority: int = 1
    active_requests: int = 0
    avg_response_time: float = 0.0
    error_rate: float = 0.0
    capabilities: set[str] = attrs.field(factory=set)
    metadata: dict[str, Any] = attrs.field(factory=dict)

    # the core strategies' view (Candidate)
    @property
    def in_flight(self) -> int:
        return self.active_requests

    @property
    def latency_ewma(self) -> float | None:
        return self.avg_response_time / 1000.0 if self.avg_response_time > 0 else None

    @property
    def peak_ewma(self) -> float | None:
        return self.latency_ewma

    @property
    def labels(self) -> frozenset[str]:
        return frozenset(self.capabilities)


_CORE_STRATEGIES = {str(getattr(cls, "name", "")): cls for cls in BUILTIN_STRATEGIES}


class LoadBalancer:
    """``LoadBalancer(default_strategy).select_resource(resources, strategy,
    required_capabilities, context)`` with the core's strategies."""

    def __init__(
        self, default_strategy: LoadBalancingStrategy | str = LoadBalancingStrategy.LEAST_LOADED
    ) -> None:
        self.default_strategy = LoadBalancingStrategy(default_strategy)
        self._strategies: dict[str, Any] = {}
        self._custom: dict[str, Callable[[Sequence[ResourceInfo], Mapping[str, Any]], Any]] = {}

    def add_custom_strategy(
        self, name: str, impl: Callable[[Sequence[ResourceInfo], Mapping[str, Any]], Any]
    ) -> None:
        self._custom[name] = impl

    def _strategy(self, name: str) -> Any:
        found = self._strategies.get(name)
        if found is None:
            hub_name = STRATEGIES[name][0]
            found = self._strategies[name] = _CORE_STRATEGIES[hub_name]()
        return found

    def select_resource(
        self,
        resources: Iterable[ResourceInfo],
        strategy: LoadBalancingStrategy | str | None = None,
        required_capabilities: Iterable[str] | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> ResourceInfo | None:
        needed = set(required_capabilities or ())
        candidates = [r for r in resources if needed <= r.capabilities]
        if not candidates:
            return None
        name = str(getattr(strategy, "value", strategy or self.default_strategy.value))
        if name in self._custom:
            chosen: ResourceInfo | None = self._custom[name](candidates, dict(context or {}))
            return chosen
        if name not in STRATEGIES:
            known = ", ".join([*(s.value for s in LoadBalancingStrategy), *self._custom])
            raise ValueError(f"unknown strategy {name!r}; known: {known}")
        ctx = dict(context or {})
        key = next((str(ctx[k]) for k in ("hash_key", "session_id", "user_id") if k in ctx), None)
        picked: ResourceInfo = self._strategy(name).select(candidates, Request(key=key))
        return picked
