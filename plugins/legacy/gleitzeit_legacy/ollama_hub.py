"""The hub-era ``OllamaHub`` and ``OllamaConfig`` (``gleitzeit.hub.ollama_hub``).

An adapter over an Ollama hub of a ``Runtime`` (the Ollama plugin's model-aware hub): the
instances are that hub's resources, routing is that hub's (loaded > installed > pull), health is
its probes, and calls go through it. ``OllamaPoolProvider(provider_id, hub=hub)`` shares one;
``hub.runtime`` is the runtime to hand to anything else that should use the same instances.

``auto_discover=True`` finds instances the upstream way - loopback ports 11434-11439 answering
like an Ollama server - unless ``OLLAMA_HOSTS``/``OLLAMA_HOST`` name them, which then win.
The hub does not spawn ``ollama serve`` processes: ``start_instance`` registers a server that
answers and says so when none does.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import attrs
from gleitzeit_ollama.api import normalize_model

from gleitzeit_core import NoResourceAvailable, ResourceHub, ResourceSpec, Runtime

from .backend import Backend
from .hub_base import (
    ResourceHubBase,
    ResourceInstance,
    ResourceMetrics,
    ResourceStatus,
    ResourceType,
    status_of,
)
from .ollama_common import LegacyHttp, LoadBalancingStrategy
from .ollama_pool import OllamaPoolManager, make_ollama_backend
from .translate import STRATEGIES

__all__ = ["OllamaConfig", "OllamaHub"]

_PATHS = {"generate": "/api/generate", "chat": "/api/chat", "embeddings": "/api/embeddings"}


@attrs.define
class OllamaConfig:
    """One Ollama server, as upstream described it (``host``/``port`` make the URL)."""

    host: str = "127.0.0.1"
    port: int = 11434
    models: list[str] = attrs.field(factory=list)
    max_concurrent: int = 4
    gpu_layers: int | None = None
    cpu_threads: int | None = None
    context_size: int | None = None
    environment: dict[str, str] = attrs.field(factory=dict)
    auto_pull_models: bool = True
    process_id: int | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def _discovery(auto_discover: bool) -> list[str]:
    if not auto_discover:
        return ["static"]
    named = os.environ.get("OLLAMA_HOSTS", "").strip() or os.environ.get("OLLAMA_HOST", "").strip()
    return ["static", "env"] if named else ["static", "scan"]


class OllamaHub(ResourceHubBase):
    """``OllamaHub(hub_id="ollama-hub", health_check_interval=30, max_health_failures=3,
    enable_auto_recovery=True, enable_metrics=True, auto_discover=True)``.

    New keyword-only arguments: ``runtime`` (adapt that runtime's hub named ``hub_id`` instead
    of building one) and ``features`` (pin the dual-mode rules of calls made through it).
    """

    def __init__(
        self,
        hub_id: str = "ollama-hub",
        health_check_interval: float = 30,
        max_health_failures: int = 3,
        enable_auto_recovery: bool = True,
        enable_metrics: bool = True,
        auto_discover: bool = True,
        *,
        runtime: Runtime | None = None,
        features: Mapping[str, Any] | None = None,
        _backend: Backend | None = None,
    ) -> None:
        super().__init__(
            hub_id,
            ResourceType.OLLAMA,
            health_check_interval,
            max_health_failures,
            enable_auto_recovery,
            enable_metrics,
        )
        self.auto_discover = auto_discover
        if _backend is None:
            table: dict[str, Any] = {
                "kind": "ollama",
                "discovery": _discovery(auto_discover),
                "strategy": "least_loaded",
                "auto_pull": True,  # upstream pulled a missing model onto a healthy instance
                # upstream's OllamaConfig.max_concurrent (discovered instances had no cap)
                "default_num_parallel": 4,
                "health": {
                    "interval": float(health_check_interval),
                    "timeout": 5.0,
                    "unhealthy_threshold": self.max_health_failures,
                },
                "resources": [],
            }
            _backend = make_ollama_backend(table, hub=hub_id, runtime=runtime, features=features)
        self.backend = _backend
        self.manager = OllamaPoolManager(_backend=_backend)
        self.http = LegacyHttp()
        self._views: dict[str, ResourceInstance] = {}
        self._watching = False
        self._announced: set[str] = set()
        self.core_hub.observe(self._count)

    # -- the adapted hub ------------------------------------------------------------------------
    @property
    def runtime(self) -> Runtime:
        return self.backend.runtime

    @property
    def core_hub(self) -> ResourceHub:
        """The runtime's hub this object adapts."""
        return self.backend.hub

    @property
    def name(self) -> str:
        return self.backend.hub_name

    def _count(self, lease: Any, failure: Any, duration: float) -> None:
        if failure is not None and failure.resource_fault:
            self.stats["total_failures"] += 1

    async def _start(self) -> None:
        await self.backend.start()
        self._watch_health()
        resources = self.core_hub.resources
        for resource in resources:  # configured or discovered at start
            self._announce(resource.id, resource.endpoint)
        monitor = self.core_hub.monitor
        if monitor is not None:  # a first sweep now, as upstream checked each new instance
            await asyncio.gather(*(monitor.check(r) for r in resources))

    def _announce(self, instance_id: str, endpoint: str) -> None:
        if instance_id in self._announced:
            return
        self._announced.add(instance_id)
        self.stats["total_registered"] += 1
        self.events.emit("instance_registered", {"instance_id": instance_id, "endpoint": endpoint})

    async def _stop(self) -> None:
        await self.http.close()
        await self.backend.stop()

    def _watch_health(self) -> None:
        """Emit ``status_changed`` (and ``instance_recovered``) as probes change an
        instance's upstream state - by wrapping the monitor's ``apply``, no second loop."""
        monitor = self.core_hub.monitor
        if monitor is None or self._watching:
            return
        self._watching = True
        apply = monitor.apply
        hub = self.core_hub

        def observed(resource: Any, result: Any) -> None:
            before = status_of(resource, hub.clock.now(), self.max_health_failures)
            apply(resource, result)
            self.stats["total_health_checks"] += 1
            self._note_check(resource.id)
            after = status_of(resource, hub.clock.now(), self.max_health_failures)
            if after is before:
                return
            self.events.emit(
                "status_changed",
                {
                    "instance_id": resource.id,
                    "old_status": before.value,
                    "new_status": after.value,
                    "reason": getattr(result, "detail", "") or "probe succeeded",
                },
            )
            if before is ResourceStatus.UNHEALTHY and after is ResourceStatus.HEALTHY:
                self.stats["total_recoveries"] += 1
                self.events.emit(
                    "instance_recovered", {"instance_id": resource.id, "recovery_method": "probe"}
                )

        setattr(monitor, "apply", observed)  # noqa: B010 - an instance attribute over the method

    def _note_check(self, instance_id: str) -> None:
        self.last_checks[instance_id] = datetime.now(UTC)

    # -- instances ------------------------------------------------------------------------------
    def _view(self, resource: Any) -> ResourceInstance:
        view = self._views.get(resource.id)
        if view is None or view.endpoint != resource.endpoint:
            view = ResourceInstance(
                self,
                resource.id,
                name=str(resource.spec.options.get("name") or f"Ollama@{resource.endpoint}"),
                endpoint=resource.endpoint,
                metadata=dict(resource.spec.options.get("metadata") or {}),
                tags=resource.spec.labels,
                capabilities=resource.spec.capabilities,
                config=resource.spec.options.get("config"),
            )
            self._views[resource.id] = view
        return view

    def _instances(self) -> list[ResourceInstance]:
        members = self.core_hub.resources
        known = {r.id for r in members}
        for gone in set(self._views) - known:
            del self._views[gone]
        return [self._view(r) for r in members]

    def instance_status(self, instance: ResourceInstance) -> ResourceStatus:
        if instance.id not in self.core_hub:
            return ResourceStatus.STOPPED
        resource = self.core_hub.get(instance.id)
        return status_of(resource, self.core_hub.clock.now(), self.max_health_failures)

    def instance_metrics(self, instance: ResourceInstance) -> ResourceMetrics:
        if instance.id not in self.core_hub:
            return ResourceMetrics()
        hub = self.core_hub
        resource = hub.get(instance.id)
        details = hub.describe(resource)
        custom = {
            "running_models": [{"name": m} for m in details.get("loaded") or {}],
            "installed_models": list(details.get("installed") or []),
        }
        return ResourceMetrics(resource.metrics.snapshot(hub.clock.now()), custom)

    def instance_failures(self, instance: ResourceInstance) -> int:
        if instance.id not in self.core_hub:
            return 0
        return self.core_hub.get(instance.id).probe_failures

    async def register_instance(
        self,
        instance_id: str,
        name: str,
        endpoint: str,
        metadata: Mapping[str, Any] | None = None,
        tags: Iterable[str] | None = None,
        capabilities: Iterable[str] | None = None,
        config: OllamaConfig | None = None,
    ) -> ResourceInstance:
        """Add an instance (an id that exists returns the existing one, as upstream)."""
        if instance_id in self.core_hub:
            return self._view(self.core_hub.get(instance_id))
        if not isinstance(endpoint, str) or "://" not in endpoint:
            raise ValueError(
                f"endpoint: expected a URL such as http://host:11434, got {endpoint!r}"
            )
        models = list(config.models) if config is not None else list(capabilities or [])
        parallel = config.max_concurrent if config is not None else None
        resource = self.core_hub.add(
            ResourceSpec(
                id=instance_id,
                endpoint=endpoint.rstrip("/"),
                labels=frozenset(tags or ()),
                capabilities=frozenset(capabilities or ()),
                options={
                    "name": name,
                    "metadata": dict(metadata or {}),
                    "config": config,
                    "models": models,
                    "num_parallel": parallel,
                },
            )
        )
        self._announce(instance_id, endpoint)
        monitor = self.core_hub.monitor
        if self.running and monitor is not None:
            await monitor.check(resource)  # the first probe, awaited (upstream: fire and forget)
        return self._view(resource)

    async def unregister_instance(self, instance_id: str) -> bool:
        """Remove an instance once its calls in flight have finished."""
        if instance_id not in self.core_hub:
            return False
        await self.core_hub.remove(instance_id, drain=True, timeout=self.core_hub.request_timeout)
        self._views.pop(instance_id, None)
        self._announced.discard(instance_id)
        self.events.emit("instance_unregistered", {"instance_id": instance_id})
        return True

    async def start_instance(self, config: OllamaConfig) -> ResourceInstance:
        """Register the server ``config`` describes - if it answers. (Upstream spawned
        ``ollama serve`` when it did not; this hub never starts processes.)"""
        same = [i for i in self._instances() if i.endpoint.rstrip("/") == config.url]
        if same:  # already known (discovered, say): that instance, probed now
            await self.check_health(same[0])
            return same[0]
        instance_id = f"ollama-{config.host}-{config.port}"
        tags = {"local"} if config.host in ("127.0.0.1", "localhost", "::1") else {"remote"}
        view = await self.register_instance(
            instance_id,
            f"Ollama@{config.port}",
            config.url,
            {"host": config.host, "port": config.port},
            tags,
            config.models,
            config,
        )
        if not await self.check_health(view):
            await self.unregister_instance(instance_id)
            raise RuntimeError(
                f"no Ollama server answers at {config.url}; start it there (`ollama serve` "
                f"with OLLAMA_HOST={config.host}:{config.port}) - gleitzeit does not spawn "
                "server processes"
            )
        if config.auto_pull_models:
            for model in config.models:
                await self.ensure_model(instance_id, model)
        return view

    async def stop_instance(self, instance_id: str) -> bool:
        """Take the instance out of the hub (the server itself keeps running)."""
        return await self.unregister_instance(instance_id)

    async def restart_instance(self, instance_id: str) -> bool:
        """Probe the instance again now; ``True`` if it answers."""
        instance = self.get_instance(instance_id)
        return instance is not None and await self.check_health(instance)

    async def check_health(self, instance: ResourceInstance) -> bool:
        monitor = self.core_hub.monitor
        if monitor is None or instance.id not in self.core_hub:
            return instance.id in self.core_hub
        result = await monitor.check(self.core_hub.get(instance.id))
        return bool(result.ok)

    async def discover_instances(
        self, port_range: Iterable[int] = range(11434, 11440), host: str = "127.0.0.1"
    ) -> list[ResourceInstance]:
        """Probe ``host`` (loopback by default) on ``port_range`` and register what answers
        like an Ollama server (the plugin's ``scan`` discoverer with these ports)."""
        hub = self.core_hub
        factory = self.runtime.registries.discoverers.get("scan")
        settings = attrs.evolve(hub.settings, scan_host=host, scan_ports=list(port_range))
        specs = await factory(settings=settings, hub_name=hub.name).discover(hub)
        found = []
        fresh = []
        for spec in specs:
            existed = spec.id in hub
            resource = hub.add(spec) if not existed else hub.get(spec.id)
            if not existed:
                fresh.append(resource)
            found.append(self._view(resource))
            self._announce(spec.id, spec.endpoint)
        monitor = hub.monitor
        if monitor is not None and fresh:  # their state known at once, not at the next probe
            await asyncio.gather(*(monitor.check(r) for r in fresh))
        refresh = getattr(hub, "refresh_models", None)
        if refresh is not None and specs:
            await refresh([hub.get(s.id) for s in specs])
        return found

    # -- models and routing ---------------------------------------------------------------------
    def get_available_instance(
        self,
        tags: Iterable[str] | None = None,
        capabilities: Iterable[str] | None = None,
        strategy: str = "least_loaded",
    ) -> ResourceInstance | None:
        """An instance the hub would give a call now (its eligibility and strategy)."""
        return self._pick(None, tags, capabilities, strategy)

    async def get_instance_for_model(
        self, model_name: str, strategy: str = "least_loaded"
    ) -> ResourceInstance | None:
        """The instance a call for ``model_name`` would go to: one with it loaded, else
        installed; when nobody has it, it is pulled onto a healthy instance first."""
        await self.start()
        ensure = getattr(self.core_hub, "ensure_model", None)
        if ensure is not None:
            await ensure(normalize_model(model_name))
        return self._pick(model_name, None, None, strategy)

    def _pick(
        self,
        model: str | None,
        tags: Iterable[str] | None,
        capabilities: Iterable[str] | None,
        strategy: str,
    ) -> ResourceInstance | None:
        name = str(getattr(strategy, "value", strategy))
        if name not in STRATEGIES:
            known = ", ".join(sorted(STRATEGIES))
            raise ValueError(f"unknown strategy {strategy!r}; known strategies: {known}")
        request = self.manager.hub_request(model, tags)
        if capabilities:
            request = attrs.evolve(request, capabilities=frozenset(capabilities))
        olds = {s.value: s for s in LoadBalancingStrategy}
        # an old pool name: that hub strategy; a generic balancer name: the hub's own
        chosen = self.manager.strategy_object(olds[name]) if name in olds else None
        lease, _ = self.core_hub.try_lease(request, strategy=chosen)
        if lease is None:
            return None
        lease.release()  # the choice only; the caller's own call takes its own lease
        return self._view(lease.resource)

    async def ensure_model(self, instance_id: str, model: str) -> bool:
        """Pull ``model`` onto the instance unless it has it; ``True`` when it is there."""
        hub = self.core_hub
        resource = hub.get(instance_id)
        installed = hub.describe(resource).get("installed") or []
        if normalize_model(model) in {normalize_model(m) for m in installed}:
            return True
        stream = await hub.open_pull(normalize_model(model), resource)  # type: ignore[attr-defined]
        async for _ in stream:
            pass
        await hub.refresh_models([resource])  # type: ignore[attr-defined]
        installed = hub.describe(resource).get("installed") or []
        return normalize_model(model) in {normalize_model(m) for m in installed}

    def get_model_distribution(self) -> dict[str, list[str]]:
        """Model -> the instances that have it installed."""
        out: dict[str, list[str]] = {}
        for resource in self.core_hub.resources:
            for model in self.core_hub.describe(resource).get("installed") or []:
                out.setdefault(model, []).append(resource.id)
        return out

    async def execute_on_instance(
        self, instance_id: str, method: str, params: Mapping[str, Any]
    ) -> dict[str, Any]:
        """POST ``params`` to ``/api/<method>`` of one instance (``generate``, ``chat``,
        ``embeddings``, ...), holding a hub lease for it and bounded by the hub's timeout;
        ``stream`` is false unless ``params`` say otherwise."""
        await self.start()
        if instance_id not in self.core_hub:
            raise KeyError(f"hub {self.hub_id!r} has no instance {instance_id!r}")
        instance = self.manager.instances[instance_id]
        lease = self.manager.lease_on(instance)
        if lease is None:
            reasons = {instance_id: self.manager.why_not(instance, None, None) or "busy"}
            raise NoResourceAvailable(self.name, reasons, "the instance cannot take a call now")
        path = _PATHS.get(method, f"/api/{method.strip('/')}")
        timeout = self.core_hub.request_timeout
        body = {"stream": False, **params}  # one JSON answer unless the caller asks otherwise
        try:
            answer = await self.http.post(instance_id, instance.url, path, body, timeout)
        except BaseException as exc:
            lease.fail(self.core_hub.classify(exc))
            raise
        lease.succeed()
        return answer
