"""Turning a checked config into hubs and providers, through what plugins registered.

Every name a config uses (hub kind, strategy, breaker, probe, discoverer, provider) is looked up
in the registries; a name nobody registered is reported with the names that are installed (and,
for our own plugins, the pip command that adds it). All problems of all hubs are collected and
raised as one ``ConfigError``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import attrs

from .breaker import Breaker, PassThroughBreaker
from .clock import Clock, SystemClock
from .config import GleitzeitConfig, HubConfig, ResourceConfig
from .errors import ConfigError, DuplicateNameError, UnknownNameError
from .hub import ResourceHub
from .kinds import HubKind, ProviderKind
from .registry import Registries
from .resources import ResourceSpec, resource_id_for
from .structuring import build_component, structure

__all__ = ["FIRST_PARTY", "build_hubs", "build_providers", "resource_spec"]

# Where our own plugins come from, for "not installed" messages. Names only: nothing imported.
FIRST_PARTY: dict[str, dict[str, str]] = {
    "hub kind": {"ollama": "gleitzeit-ollama", "docker": "gleitzeit-docker"},
    "breaker": {
        "consecutive": "gleitzeit-breaker-consecutive",
        "window": "gleitzeit-breaker-window",
        "adaptive": "gleitzeit-breaker-adaptive",
    },
    "provider": {"llm/v1": "gleitzeit-ollama", "python/v1": "gleitzeit-docker"},
}


def _hint(kind: str, name: str) -> str | None:
    dist = FIRST_PARTY.get(kind, {}).get(name)
    return f"install it with `pip install {dist}`" if dist else None


def _lookup(registries: Registries, kind: str, name: str, path: str) -> Any:
    registry = registries.of(kind)
    return registry.get(name, path=path, hint=_hint(registry.singular, name))


def resource_spec(hub: str, index: int, item: ResourceConfig, kind: HubKind) -> ResourceSpec:
    path = f"hubs.{hub}.resources[{index}]"
    if item.url:
        endpoint = item.url
    elif item.host:
        port = item.port or kind.default_port
        if port is None:
            raise ConfigError(f"{path}: give a url, or a host with a port")
        endpoint = f"{kind.default_scheme}://{item.host}:{port}"
    else:
        raise ConfigError(f"{path}: give a url, or a host and port")
    options: dict[str, Any] = {}
    if item.options:
        if kind.resource_options is None:
            raise ConfigError([f"{path}.{key}: unknown key" for key in sorted(item.options)])
        options_class = _load(kind.resource_options)
        options = attrs.asdict(structure(item.options, options_class, path=path))
    rid = item.id or resource_id_for(endpoint)
    return ResourceSpec(
        id=rid,
        endpoint=endpoint,
        labels=frozenset(item.labels),
        capabilities=frozenset(item.capabilities),
        weight=item.weight,
        max_concurrency=item.max_concurrency,
        priority=item.priority,
        options=options,
    )


def _load(target: Any) -> Any:
    if isinstance(target, str) and ":" in target:
        from .registry import resolve_reference

        return resolve_reference(target)
    return target


def _breaker_factory(
    registries: Registries, name: str, config: HubConfig, clock: Clock, rng: random.Random
) -> Callable[[], Breaker]:
    if config.breaker is None:
        return lambda: PassThroughBreaker(clock=clock)
    ref = config.breaker
    path = f"hubs.{name}.breaker"
    cls = _lookup(registries, "breakers", ref.kind, f"{path}.kind")
    inject = {"clock": clock, "rng": rng}
    build_component(cls, ref.options, path=path, inject=inject)  # check the options now
    return lambda: build_component(cls, ref.options, path=path, inject=inject)


def build_hub(
    name: str, config: HubConfig, registries: Registries, *, clock: Clock | None = None
) -> ResourceHub:
    """Build one hub; every problem of its table is collected and raised as one error."""
    clock = clock or SystemClock()
    rng = random.Random(config.seed)
    problems: list[str] = []

    def attempt(step: Callable[[], Any]) -> Any:
        try:
            return step()
        except (ConfigError, DuplicateNameError) as exc:
            problems.extend(getattr(exc, "problems", [str(exc)]))
            return None

    kind: HubKind = _lookup(registries, "hubs", config.kind, f"hubs.{name}.kind")
    settings = None
    if kind.settings_class is not None:
        settings = attempt(
            lambda: structure(config.options, _load(kind.settings_class), path=f"hubs.{name}")
        )
    elif config.options:
        problems.extend(f"hubs.{name}.{key}: unknown key" for key in sorted(config.options))
    strategy = attempt(
        lambda: build_component(
            _lookup(registries, "strategies", config.strategy.kind, f"hubs.{name}.strategy"),
            config.strategy.options,
            path=f"hubs.{name}.strategy",
            inject={"rng": rng, "clock": clock},
        )
    )
    breaker_factory = attempt(lambda: _breaker_factory(registries, name, config, clock, rng))
    specs: list[ResourceSpec] = []
    for index, item in enumerate(config.resources):
        try:
            specs.append(resource_spec(name, index, item, kind))
        except ConfigError as exc:
            problems.extend(exc.problems)
    makers = []
    for source in config.discovery if config.discovery is not None else kind.default_discovery:
        try:
            makers.append(_lookup(registries, "discoverers", source, f"hubs.{name}.discovery"))
        except ConfigError as exc:
            problems.extend(exc.problems)
    probe_name = config.health.probe or kind.default_probe
    probe_cls = None
    if probe_name is not None and config.health.enabled:
        probe_cls = attempt(
            lambda: _lookup(registries, "probes", probe_name, f"hubs.{name}.health.probe")
        )
    if problems:
        raise ConfigError(problems)
    discoverers = [
        make(specs=specs, config=config, settings=settings, hub_name=name) for make in makers
    ]
    hub: ResourceHub = _load(kind.factory)(
        name,
        strategy=strategy,
        strategy_name=config.strategy.kind,
        breaker_factory=breaker_factory,
        health=config.health,
        outlier=config.outlier,
        discoverers=discoverers,
        request_timeout=config.request_timeout,
        attempt_timeout=config.attempt_timeout,
        retries=config.retries,
        queue_timeout=config.queue_timeout,
        max_waiting=config.max_waiting,
        clock=clock,
        rng=rng,
        settings=settings,
    )
    if probe_cls is not None:
        probe = build_component(
            probe_cls,
            {},
            path=f"hubs.{name}.health.probe",
            inject={"timeout": config.health.timeout, "hub": hub},
        )
        hub.set_probe(probe)
    return hub


def build_hubs(
    config: GleitzeitConfig, registries: Registries, *, clock: Clock | None = None
) -> dict[str, ResourceHub]:
    """Every hub of the config (or the installed kinds' defaults when it names none)."""
    hub_configs = dict(config.hubs)
    problems: list[str] = []
    if not hub_configs:
        for kind_name in registries.hubs.names():
            try:
                kind = registries.hubs.get(kind_name)
                if kind.default_config is not None:
                    raw = kind.default_config()
                    hub_configs[kind_name] = structure(raw, HubConfig, path=f"hubs.{kind_name}")
            except (ConfigError, ImportError) as exc:
                problems.append(f"default hub of kind {kind_name!r}: {exc}")
    hubs: dict[str, ResourceHub] = {}
    for name, hub_config in hub_configs.items():
        try:
            hubs[name] = build_hub(name, hub_config, registries, clock=clock)
        except (ConfigError, DuplicateNameError) as exc:
            problems.extend(getattr(exc, "problems", [str(exc)]))
    if problems:
        raise ConfigError(problems, source=config.source)
    return hubs


def build_providers(
    config: GleitzeitConfig, hubs: dict[str, ResourceHub], registries: Registries, runtime: Any
) -> dict[str, Any]:
    """One provider per registered protocol that has a hub of its kind to run on."""
    problems: list[str] = []
    for protocol in config.providers:
        if protocol not in registries.providers:
            try:
                _lookup(registries, "providers", protocol, f"providers.{protocol!r}")
            except UnknownNameError as exc:
                problems.append(str(exc))
    providers: dict[str, Any] = {}
    for protocol in registries.providers.names():
        try:
            kind: ProviderKind = registries.providers.get(protocol)
        except (ImportError, DuplicateNameError) as exc:
            problems.append(f"provider {protocol!r}: {exc}")
            continue
        chosen = config.providers.get(protocol)
        hub_name = chosen.hub if chosen is not None else None
        if hub_name is None:
            hub_name = next((n for n, h in hubs.items() if h.kind == kind.hub_kind), None)
            if hub_name is None:
                continue  # nothing to run on; its methods say so when called
        elif hub_name not in hubs:
            problems.append(
                f"providers.{protocol!r}.hub: no hub named {hub_name!r}; hubs: "
                + (", ".join(sorted(hubs)) or "none")
            )
            continue
        options = chosen.options if chosen is not None else {}
        providers[protocol] = _load(kind.factory)(
            hub=hubs[hub_name], runtime=runtime, options=options
        )
    if problems:
        raise ConfigError(problems, source=config.source)
    return providers
