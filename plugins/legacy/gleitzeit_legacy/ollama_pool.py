"""``OllamaPoolManager``: the old pool manager over an Ollama hub.

The old manager handed out URLs and let the caller report back::

    url = await pool.get_instance(model="llama3.2", strategy="least_loaded", tags=["gpu"])
    ... call url yourself ...
    await pool.record_success(url, response_time=1.5)   # seconds
    await pool.release_instance(url)

Here ``get_instance`` takes a *lease* on a hub resource - so the hub counts the call in flight,
enforces ``max_concurrent`` and the circuit breaker - and ``record_success``/``record_failure``
end that lease with the outcome (the response time given in seconds becomes the lease's
duration). ``release_instance`` after a recorded outcome does nothing; without one it gives the
slot back without counting anything.

Dual mode: on the hub path the hub selects (its strategy, model tiers, waiting for a free slot
up to ``queue_timeout``); on the legacy path the old single-pass filter and strategy select and
the hub only accounts for the lease. Both count in the per-path figures (``paths``).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

from gleitzeit_ollama.api import normalize_model
from typing_extensions import deprecated

from gleitzeit_core import (
    BUILTIN_STRATEGIES,
    BreakerState,
    FailureClass,
    Lease,
    NoResourceAvailable,
    Request,
    Resource,
    ResourceHub,
    ResourceSpec,
    Runtime,
    Strategy,
)

from .backend import HUB, Backend, Timer, failure_of
from .deprecation import warn_once
from .ollama_common import (
    InstanceMetrics,
    InstanceState,
    LoadBalancingStrategy,
    OllamaInstance,
    select_legacy,
)
from .translate import STRATEGIES, ollama_hub_table

__all__ = [
    "CircuitBreakerView",
    "InstanceMetrics",
    "InstanceState",
    "LoadBalancingStrategy",
    "OllamaInstance",
    "OllamaPoolManager",
    "add_resources",
    "make_ollama_backend",
]

log = logging.getLogger("gleitzeit.legacy")

C = TypeVar("C")
_STRATEGY_CLASSES: dict[str, type] = {
    str(getattr(cls, "name", "")): cls for cls in BUILTIN_STRATEGIES
}


class _First:
    """Takes the one candidate left after every other resource was excluded."""

    name = "legacy_choice"
    guarantees: frozenset[str] = frozenset()
    sampling = 0

    def select(self, candidates: Sequence[C], request: Request) -> C:
        return candidates[0]


def make_ollama_backend(
    table: dict[str, Any],
    *,
    hub: str = "llm",
    runtime: Runtime | None = None,
    features: Mapping[str, Any] | None = None,
) -> Backend:
    """A backend with one Ollama hub built from ``table`` (its resources added at once, so the
    old ``instances`` view exists before ``initialize()``)."""
    backend = Backend(
        {"hubs": {hub: table}, "providers": {"llm/v1": {"hub": hub}}},
        hub=hub,
        protocol="llm/v1",
        runtime=runtime,
        features=features,
        require_kinds=("ollama",),
    )
    if backend.owned:
        add_resources(backend.hub, table)
    return backend


def add_resources(hub: ResourceHub, table: Mapping[str, Any]) -> None:
    """Add the ``resources`` of a translated hub table to ``hub`` at once (so the old
    ``instances`` view exists before ``initialize()``)."""
    for item in table["resources"]:
        hub.add(
            ResourceSpec(
                id=item["id"],
                endpoint=item["url"],
                labels=frozenset(item.get("labels", ())),
                weight=float(item.get("weight", 1.0)),
                max_concurrency=item.get("max_concurrency"),
                priority=int(item.get("priority", 0)),
                options={
                    "num_parallel": item.get("num_parallel"),
                    "models": list(item.get("models", [])),
                },
            )
        )


def _spec_view(resource: Resource) -> dict[str, Any]:
    spec = resource.spec
    return {
        "models": list(spec.options.get("models") or []),
        "max_concurrency": spec.max_concurrency or 5,
        "labels": sorted(spec.labels),
        "priority": spec.priority,
        "weight": spec.weight,
    }


class CircuitBreakerView:
    """``pool.circuit_breaker.is_open(instance_id)`` over the hub's per-resource breakers."""

    def __init__(self, hub: ResourceHub) -> None:
        self._hub = hub

    def state(self, instance_id: str) -> str:
        """``closed``, ``open`` or ``half_open`` (after the open period, as before)."""
        breaker = self._hub.get(instance_id).breaker
        breaker.available()  # lets an expired open period turn half-open, as is_open() did
        state = breaker.state
        if state in (BreakerState.OPEN, BreakerState.FORCED_OPEN):
            return "open"
        return "half_open" if state is BreakerState.HALF_OPEN else "closed"

    def is_open(self, instance_id: str) -> bool:
        return self.state(instance_id) == "open"


# PEP 702, so type checkers flag it (a literal: checkers read no expressions)
@deprecated(
    "OllamaPoolManager is deprecated. Use OllamaHub instead (docs/migration.md).",
    category=None,
)
class OllamaPoolManager:
    """The old ``OllamaPoolManager(instances, health_check_interval, circuit_breaker_config)``.

    New keyword-only arguments: ``features`` (a ``[features]`` table for the dual mode),
    ``runtime``/``hub`` (use an existing runtime's hub instead of building one) and
    ``rollout_key`` (the key that keeps this caller on one path during a rollout).
    """

    def __init__(
        self,
        instances: Sequence[Mapping[str, Any]] | None = None,
        health_check_interval: float = 30,
        circuit_breaker_config: Mapping[str, Any] | None = None,
        *,
        features: Mapping[str, Any] | None = None,
        runtime: Runtime | None = None,
        hub: str = "llm",
        rollout_key: str | None = None,
        _backend: Backend | None = None,
    ) -> None:
        if _backend is None:
            warn_once("OllamaPoolManager")
            table = ollama_hub_table(
                instances=list(instances or []),
                circuit_breaker=circuit_breaker_config,
                health_check_interval=health_check_interval,
            )
            _backend = make_ollama_backend(table, hub=hub, runtime=runtime, features=features)
            self._owns_backend = True
        else:
            self._owns_backend = False
        self.backend = _backend
        self.health_check_interval = health_check_interval
        self.circuit_breaker_config = dict(circuit_breaker_config or {})
        self.rollout_key = rollout_key
        self.names: tuple[str, ...] = ("OllamaPoolManager",)  # for FEATURES' provider list
        self.circuit_breaker = CircuitBreakerView(self.backend.hub)
        self._instances: dict[str, OllamaInstance] = {}
        self._by_url: dict[str, str] = {}
        self._open: dict[str, collections.deque[tuple[Lease, str, Timer]]] = {}
        self._rr = [0]
        self._rng = random.Random()
        self._strategies: dict[str, Strategy] = {}
        self._measured: dict[int, float] = {}
        self.backend.hub.observe(self._observe)

    # -- views ----------------------------------------------------------------------------------
    @property
    def runtime(self) -> Runtime:
        return self.backend.runtime

    @property
    def hub(self) -> ResourceHub:
        return self.backend.hub

    @property
    def instances(self) -> dict[str, OllamaInstance]:
        """Instance id -> ``OllamaInstance`` (url, models, max_concurrent, tags, state, metrics)."""
        members = self.hub.resources
        if len(members) != len(self._instances) or any(
            r.id not in self._instances for r in members
        ):
            current = {}
            for resource in members:
                instance = self._instances.get(resource.id)
                if instance is None or instance.resource is not resource:
                    instance = OllamaInstance(self.hub, _spec_view(resource), resource)
                current[resource.id] = instance
            self._instances = current
            self._by_url = {i.url: i.id for i in current.values()}
        return self._instances

    def instance_for_url(self, url: str) -> OllamaInstance | None:
        instances = self.instances
        rid = self._by_url.get(url.rstrip("/"))
        return instances.get(rid) if rid is not None else None

    def _observe(self, lease: Lease, failure: FailureClass | None, duration: float) -> None:
        duration = self._measured.pop(id(lease), duration)  # the caller's own number wins
        instance = self.instances.get(lease.resource.id)
        if instance is not None:
            instance.metrics.record(duration, failure)

    # -- lifecycle ------------------------------------------------------------------------------
    async def initialize(self) -> None:
        """Start the hub and probe every instance once, as the old first health sweep did."""
        await self.backend.start()
        monitor = self.hub.monitor
        if monitor is not None:
            await asyncio.gather(*(monitor.check(r) for r in self.hub.resources))

    async def _ready(self) -> None:
        if not self.backend.started:
            await self.initialize()

    async def shutdown(self) -> None:
        for queue in self._open.values():
            while queue:
                lease, _, _ = queue.popleft()
                lease.release()
        self._open.clear()
        if self._owns_backend:
            await self.backend.stop()

    # -- selection ------------------------------------------------------------------------------
    @staticmethod
    def _strategy(strategy: str | LoadBalancingStrategy | None) -> LoadBalancingStrategy:
        if strategy is None:
            return LoadBalancingStrategy.LEAST_LOADED
        try:
            return LoadBalancingStrategy(getattr(strategy, "value", strategy))
        except ValueError:
            known = ", ".join(s.value for s in LoadBalancingStrategy)
            raise ValueError(
                f"unknown load balancing strategy {strategy!r}; known strategies: {known}"
            ) from None

    def strategy_object(self, strategy: LoadBalancingStrategy) -> Strategy:
        """The hub strategy an old name maps to (one object per name, so round robin keeps
        its place)."""
        name = STRATEGIES[strategy.value][0]
        found = self._strategies.get(name)
        if found is None:
            found = self._strategies[name] = _STRATEGY_CLASSES[name](rng=self._rng)
        return found

    def why_not(
        self,
        instance: OllamaInstance,
        model: str | None,
        tags: Iterable[str] | None,
        require_healthy: bool = True,
        exclude: Iterable[str] = (),
    ) -> str | None:
        """Why the old filter leaves ``instance`` out (``None``: it passes)."""
        resource = instance.resource
        if instance.id in set(exclude):
            return "already tried by this request"
        if resource.draining:
            return "draining"
        if not resource.breaker.available():
            return f"circuit breaker {resource.breaker.state.value}"
        if resource.is_ejected(self.hub.clock.now()):
            return "ejected after failing requests"
        if require_healthy and instance.state is InstanceState.UNHEALTHY:
            return "unhealthy"
        if model and not instance.has_model(model):
            return f"does not have model {model!r}"
        missing = set(tags or ()) - set(instance.tags)
        if missing:
            return f"lacks tags {sorted(missing)}"
        if instance.metrics.active_requests >= instance.max_concurrent:
            return f"at max_concurrent ({instance.max_concurrent})"
        return None

    def _get_available_instances(
        self,
        model: str | None = None,
        tags: Iterable[str] | None = None,
        require_healthy: bool = True,
        exclude: Iterable[str] = (),
    ) -> list[OllamaInstance]:
        """The old filter, in configuration order: circuit not open, healthy or degraded (or
        not probed yet), the model configured or installed, every tag present, below
        ``max_concurrent``. Ejected instances are left out, as the hub would refuse them."""
        skip = list(exclude)
        return [
            instance
            for instance in self.instances.values()
            if self.why_not(instance, model, tags, require_healthy, skip) is None
        ]

    def legacy_reasons(
        self, model: str | None, tags: Iterable[str] | None, exclude: Iterable[str] = ()
    ) -> dict[str, str]:
        skip = list(exclude)
        reasons = {}
        for instance in self.instances.values():
            why = self.why_not(instance, model, tags, True, skip)
            reasons[instance.id] = why or "refused by the hub"
        return reasons

    def _select_instance(
        self,
        instances: Sequence[OllamaInstance],
        strategy: str | LoadBalancingStrategy = LoadBalancingStrategy.LEAST_LOADED,
        model: str | None = None,
    ) -> OllamaInstance | None:
        """The old single-pass strategy over already filtered instances."""
        return select_legacy(
            instances, self._strategy(strategy), model, rng=self._rng, counter=self._rr
        )

    def lease_on(self, instance: OllamaInstance) -> Lease | None:
        """A hub lease on exactly ``instance`` (``None`` if the hub refuses it now)."""
        others = [r.id for r in self.hub.resources if r.id != instance.id]
        lease, _ = self.hub.try_lease(Request(), exclude=others, strategy=_First())
        return lease

    def legacy_lease(
        self,
        model: str | None,
        tags: Iterable[str] | None,
        strategy: LoadBalancingStrategy,
        require_healthy: bool = True,
        exclude: Iterable[str] = (),
    ) -> Lease | None:
        """The legacy path: old filter, old strategy, then a lease on the chosen instance."""
        candidates = self._get_available_instances(model, tags, require_healthy, exclude)
        chosen = self._select_instance(candidates, strategy, model)
        return None if chosen is None else self.lease_on(chosen)

    def hub_request(
        self, model: str | None, tags: Iterable[str] | None, deadline: float | None = None
    ) -> Request:
        # Request.labels has converter=frozenset, which mypy types as Iterable[_T_co]: hence
        # the ignores (reported as a core typing gap)
        labels: frozenset[str] = frozenset(str(t) for t in tags or ())
        if model:
            name = normalize_model(model)
            return Request(
                slot=name,
                labels=labels,
                attributes={"model": name},
                deadline=deadline,
            )
        return Request(labels=labels, deadline=deadline)

    async def get_instance(
        self,
        model: str | None = None,
        strategy: str | LoadBalancingStrategy | None = None,
        tags: Sequence[str] | None = None,
        require_healthy: bool = True,
    ) -> str | None:
        """The URL of an instance for ``model`` (``None`` when none can take it)."""
        chosen = self._strategy(strategy)
        await self._ready()
        path = self.backend.path_for(self.rollout_key, self.names)
        timer = Timer()
        lease: Lease | None
        if path == HUB:
            try:
                lease = await self.hub.acquire(
                    self.hub_request(model, tags), strategy=self.strategy_object(chosen)
                )
            except NoResourceAvailable:
                lease = None
        else:
            lease = self.legacy_lease(model, tags, chosen, require_healthy)
        if lease is None:
            self.backend.record(path, timer.elapsed(), FailureClass.OVERLOADED)
            return None
        url = lease.resource.endpoint.rstrip("/")
        self._open.setdefault(url, collections.deque()).append((lease, path, timer))
        return url

    # -- outcomes -------------------------------------------------------------------------------
    def _pop(self, url: str) -> tuple[Lease, str, Timer] | None:
        queue = self._open.get(url.rstrip("/"))
        if not queue:
            return None
        entry = queue.popleft()
        if not queue:
            del self._open[url.rstrip("/")]
        return entry

    def _finish(self, url: str, failure: FailureClass | None, seconds: float | None) -> None:
        entry = self._pop(url)
        if entry is None:
            # an outcome for a URL this manager did not hand out: count it, no lease to end
            instance = self.instance_for_url(url)
            if instance is None:
                log.debug("gleitzeit legacy: outcome for unknown instance %s ignored", url)
                return
            instance.metrics.record(seconds, failure)
            instance.resource.metrics.record(seconds or 0.0, failure, self.hub.clock.now())
            return
        lease, path, timer = entry
        duration = timer.elapsed() if seconds is None else float(seconds)
        if seconds is not None:
            lease.started = self.hub.clock.now() - duration  # the caller's own measurement
            self._measured[id(lease)] = duration
        if failure is None:
            lease.succeed()
        else:
            lease.fail(failure)
        self.backend.record(path, duration, failure)

    async def record_success(self, url: str, response_time: float | None = None) -> None:
        """The call on ``url`` succeeded in ``response_time`` seconds."""
        self._finish(url, None, response_time)

    async def record_failure(self, url: str, error: BaseException | None = None) -> None:
        """The call on ``url`` failed (``error`` decides whose fault it was)."""
        failure = FailureClass.SERVER_ERROR if error is None else failure_of(error)
        self._finish(url, failure, None)

    async def release_instance(self, url: str) -> None:
        """Give the slot back; a no-op after ``record_success``/``record_failure``."""
        entry = self._pop(url)
        if entry is not None:
            entry[0].release()

    # -- health and status ----------------------------------------------------------------------
    def path_metrics(self) -> dict[str, Any]:
        """This pool's calls per path (hub/legacy): requests, errors, error rate, p50/95/99."""
        return self.backend.path_status()

    async def health_check(self, instance_id: str) -> bool:
        """Probe one instance now (by id); ``True`` if it answered."""
        await self._ready()
        instance = self.instances.get(instance_id)
        if instance is None:
            return False
        monitor = self.hub.monitor
        if monitor is None:
            return instance.state is not InstanceState.UNHEALTHY
        result = await monitor.check(instance.resource)
        return result.ok

    async def get_pool_status(self) -> dict[str, Any]:
        """The old status shape: counts by state and, per instance, ``avg_response_time`` in
        seconds (3 decimals), ``error_rate`` and ``availability`` in percent."""
        instances = self.instances
        per: dict[str, Any] = {}
        states = collections.Counter[InstanceState]()
        for rid, instance in instances.items():
            state = instance.state
            states[state] += 1
            metrics = instance.metrics
            per[rid] = {
                "url": instance.url,
                "state": state.value,
                "active_requests": metrics.active_requests,
                "total_requests": metrics.total_requests,
                "avg_response_time": round(metrics.avg_response_time, 3),
                "error_rate": round(metrics.error_rate * 100.0, 2),
                "availability": round(metrics.availability, 2),
                "models_loaded": instance.models_loaded,
                "circuit_breaker_open": self.circuit_breaker.is_open(rid),
            }
        return {
            "total_instances": len(instances),
            "healthy_instances": states[InstanceState.HEALTHY],
            "degraded_instances": states[InstanceState.DEGRADED],
            "unhealthy_instances": states[InstanceState.UNHEALTHY],
            "instances": per,
        }
