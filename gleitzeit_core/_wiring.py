"""Turning a checked config into hubs and providers, through what plugins registered.

Every name a config uses (hub kind, strategy, breaker, probe, discoverer, provider) is looked up
in the registries; a name nobody registered is reported with the names that are installed, the
closest one, and for our own plugins the pip command that adds it (or, when it is installed
but disabled, what disabled it). ``plan_hub`` checks a hub's table without building anything
(``gleitzeit config check`` uses it); all problems of all hubs are collected and raised as one
``ConfigError``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from ._breaker import Breaker, PassThroughBreaker
from ._clock import Clock, SystemClock
from ._config import GleitzeitConfig, HubConfig, ResourceConfig
from ._errors import ConfigError, DuplicateNameError, PluginLoadError, UnknownNameError
from ._hub import ResourceHub
from ._kinds import HubKind, ProviderKind
from ._registry import Registries
from ._resources import ResourceSpec, resource_id_for
from ._structuring import build_component, structure, unknown_keys
from ._validators import did_you_mean

__all__ = [
    "FIRST_PARTY",
    "HubPlan",
    "build_hub",
    "build_hubs",
    "build_providers",
    "build_state",
    "check_providers",
    "plan_hub",
    "resource_spec",
]

# Where our own plugins come from, for "not installed" messages. Names only: nothing imported.
FIRST_PARTY: dict[str, dict[str, str]] = {
    "hub kind": {"ollama": "gleitzeit-ollama", "docker": "gleitzeit-docker"},
    "breaker": {
        "consecutive": "gleitzeit-breaker-consecutive",
        "window": "gleitzeit-breaker-window",
        "adaptive": "gleitzeit-breaker-adaptive",
    },
    "provider": {"llm/v1": "gleitzeit-ollama", "python/v1": "gleitzeit-docker"},
    "state backend": {"redis": "gleitzeit-redis"},
}


def _hint(registries: Registries, kind: str, name: str) -> str | None:
    dist = FIRST_PARTY.get(kind, {}).get(name)
    # else a third party's name, known from a disabled plugin's metadata
    plugin = (
        dist.removeprefix("gleitzeit-") if dist else registries.disabled_names.get((kind, name))
    )
    if plugin is None:
        return None
    why = registries.disabled.get(plugin)
    if why is None and dist:
        why = registries.disabled.get(dist)
    if why is not None:  # installed, but switched off: installing it again would not help
        return f"its plugin {plugin!r} is installed but disabled ({why or 'a deny-list'})"
    return f"install it with `pip install {dist}`" if dist else None


def provider_hint(registries: Registries, protocol: str) -> str | None:
    """What to do about a first-party provider that is not registered: install its plugin,
    or (installed but disabled) what disabled it."""
    return _hint(registries, "provider", protocol)


def _lookup(registries: Registries, kind: str, name: str, path: str) -> Any:
    registry = registries.of(kind)
    return registry.get(name, path=path, hint=_hint(registries, registry.singular, name))


def _kind_keys(options_class: Any) -> list[str]:
    return [a.name for a in attrs.fields(options_class)] if attrs.has(options_class) else []


_COMMON_HUB_KEYS = [a.name for a in attrs.fields(HubConfig) if a.name != "options"]
_COMMON_RESOURCE_KEYS = [a.name for a in attrs.fields(ResourceConfig) if a.name != "options"]


def _kind_options(options: dict[str, Any], options_class: Any, common: list[str], path: str) -> Any:
    """Structure the kind-specific keys of a table; an unknown key is told the closest key of
    the whole table (``retry`` -> ``retries``), common or kind-specific."""
    allowed = _kind_keys(options_class)
    unknown = [key for key in options if key not in allowed]
    problems = unknown_keys(path.split("."), unknown, [*common, *allowed])
    known = {key: value for key, value in options.items() if key in allowed}
    try:
        settings = structure(known, options_class, path=path) if options_class else None
    except ConfigError as exc:
        problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    return settings


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
        options_class = _load(kind.resource_options) if kind.resource_options else None
        structured = _kind_options(item.options, options_class, _COMMON_RESOURCE_KEYS, path)
        options = attrs.asdict(structured) if structured is not None else {}
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


def _load(target: Any, owner: str | None = None) -> Any:
    """A lazy ``"module:attribute"`` reference, imported; one that cannot be imported is the
    plugin's fault, reported as such (never a traceback from deep inside the import)."""
    if isinstance(target, str) and ":" in target:
        from ._registry import resolve_reference

        try:
            return resolve_reference(target)
        except (ImportError, AttributeError) as exc:
            raise PluginLoadError(
                owner or "?", None, None, f"cannot import {target}: {type(exc).__name__}: {exc}"
            ) from exc
    return target


def _owner(registries: Registries, kind: str, name: str) -> str | None:
    try:
        return registries.of(kind).entry(name).plugin
    except (LookupError, DuplicateNameError):
        return None


_STRATEGY_READS = ("select", "name", "guarantees", "sampling")  # what the hub uses


def _strategy_problems(strategy: object, registries: Registries, kind: str, hub: str) -> list[str]:
    """A strategy lacking what the hub reads would fail every request with a bare
    AttributeError; say so once, at check time, naming the plugin to fix."""
    missing = [attr for attr in _STRATEGY_READS if not hasattr(strategy, attr)]
    if not missing:
        return []
    cls = type(strategy)
    owner = _owner(registries, "strategies", kind)
    source = f", plugin {owner!r}" if owner else ""
    return [
        f"hubs.{hub}.strategy: strategy {kind!r} ({cls.__module__}.{cls.__qualname__}{source}) "
        f"lacks {', '.join(missing)}; a strategy has select, name, guarantees and sampling "
        "(the Strategy protocol in docs/plugins.md)"
    ]


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


@attrs.frozen
class HubPlan:
    """Everything a hub's table resolves to, checked, before anything is built."""

    name: str
    config: HubConfig
    kind: HubKind
    factory: Any
    settings: Any
    strategy: Any
    breaker_factory: Callable[[], Breaker]
    specs: list[ResourceSpec]
    makers: list[Any]
    probe_cls: Any
    rng: random.Random
    clock: Clock


def plan_hub(
    name: str, config: HubConfig, registries: Registries, *, clock: Clock | None = None
) -> HubPlan:
    """Check one hub's table against what is installed; every problem is collected and
    raised as one error. Nothing is started or connected."""
    clock = clock or SystemClock()
    rng = random.Random(config.seed)
    problems: list[str] = []

    def attempt(step: Callable[[], Any]) -> Any:
        try:
            return step()
        except (ConfigError, DuplicateNameError) as exc:
            problems.extend(getattr(exc, "problems", [str(exc)]))
            return None

    kind: HubKind | None = attempt(
        lambda: _lookup(registries, "hubs", config.kind, f"hubs.{name}.kind")
    )
    known = kind is not None
    if kind is None:  # nothing kind-specific can be checked; the common parts still can
        kind = HubKind(factory=ResourceHub)  # for the common defaults only: nothing is built
    owner = _owner(registries, "hubs", config.kind)
    # imported now, so a broken plugin shows at check time
    factory = _load(kind.factory, owner) if known else None
    settings_class = _load(kind.settings_class, owner) if known and kind.settings_class else None
    if config.options and (settings_class is not None or known):
        settings = attempt(
            lambda: _kind_options(config.options, settings_class, _COMMON_HUB_KEYS, f"hubs.{name}")
        )
    else:
        settings = attempt(lambda: structure({}, settings_class)) if settings_class else None
    strategy = attempt(
        lambda: build_component(
            _lookup(registries, "strategies", config.strategy.kind, f"hubs.{name}.strategy"),
            config.strategy.options,
            path=f"hubs.{name}.strategy",
            inject={"rng": rng, "clock": clock},
        )
    )
    if strategy is not None:
        problems += _strategy_problems(strategy, registries, config.strategy.kind, name)
    breaker_factory = attempt(lambda: _breaker_factory(registries, name, config, clock, rng))
    specs: list[ResourceSpec] = []
    first_of: dict[str, int] = {}
    for index, item in enumerate(config.resources):
        spec = None
        try:
            spec = resource_spec(name, index, item, kind)
        except ConfigError as exc:
            problems.extend(exc.problems)
        rid = item.id or (spec.id if spec is not None else None)
        if rid is not None and rid in first_of:
            what = "id" if item.id else "url (the default id)"
            problems.append(
                f"hubs.{name}.resources[{index}].id: duplicate id {rid!r}, the same {what} "
                f"as resources[{first_of[rid]}]; give each resource its own id"
            )
            continue
        if rid is not None:
            first_of[rid] = index
        if spec is not None:
            specs.append(spec)
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
    return HubPlan(
        name,
        config,
        kind,
        factory,
        settings,
        strategy,
        breaker_factory,
        specs,
        makers,
        probe_cls,
        rng,
        clock,
    )


def build_hub(
    name: str, config: HubConfig, registries: Registries, *, clock: Clock | None = None
) -> ResourceHub:
    """Build one hub; every problem of its table is collected and raised as one error."""
    plan = plan_hub(name, config, registries, clock=clock)
    settings = plan.settings
    discoverers = [
        make(specs=plan.specs, config=config, settings=settings, hub_name=name)
        for make in plan.makers
    ]
    hub: ResourceHub = plan.factory(
        name,
        strategy=plan.strategy,
        strategy_name=config.strategy.kind,
        breaker_factory=plan.breaker_factory,
        health=config.health,
        outlier=config.outlier,
        discoverers=discoverers,
        request_timeout=config.request_timeout,
        attempt_timeout=config.attempt_timeout,
        retries=config.retries,
        queue_timeout=config.queue_timeout,
        max_waiting=config.max_waiting,
        clock=plan.clock,
        rng=plan.rng,
        settings=settings,
    )
    if plan.probe_cls is not None:
        probe = build_component(
            plan.probe_cls,
            {},
            path=f"hubs.{name}.health.probe",
            inject={"timeout": config.health.timeout, "hub": hub},
        )
        hub.set_probe(probe)
    return hub


def build_hubs(
    config: GleitzeitConfig,
    registries: Registries,
    *,
    clock: Clock | None = None,
    skipped: dict[str, str] | None = None,
) -> dict[str, ResourceHub]:
    """Every hub of the config, or, when it names none, the default hub of each installed
    kind whose backend answers (the others land in ``skipped`` with the reason)."""
    hub_configs = dict(config.hubs)
    problems: list[str] = []
    if not hub_configs:
        for kind_name in registries.hubs.names():
            try:
                kind = registries.hubs.get(kind_name)
                why_not = kind.default_check() if kind.default_check is not None else None
                if why_not is not None:
                    if skipped is not None:
                        skipped[kind_name] = why_not
                    continue
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


def check_providers(
    config: GleitzeitConfig, hub_kinds: Mapping[str, str | None], registries: Registries
) -> list[str]:
    """``[providers]``: each protocol installed, each ``hub`` one of the config's hubs and of
    the kind the provider runs on."""
    problems: list[str] = []
    for protocol, chosen in config.providers.items():
        path = f"providers.{_quoted(protocol)}"
        if protocol not in registries.providers:
            try:
                _lookup(registries, "providers", protocol, path)
            except UnknownNameError as exc:
                problems.append(str(exc))
            continue
        if chosen.hub is None:
            continue
        if chosen.hub not in hub_kinds:
            guess = did_you_mean(chosen.hub, list(hub_kinds))
            problems.append(
                f"{path}.hub: no hub named {chosen.hub!r}; hubs: "
                + (", ".join(sorted(hub_kinds)) or "none")
                + (f'; did you mean "{guess}"?' if guess else "")
            )
            continue
        try:
            wanted = registries.providers.get(protocol).hub_kind
        except (ImportError, DuplicateNameError):
            continue
        actual = hub_kinds[chosen.hub]
        if wanted is not None and actual is not None and actual != wanted:
            problems.append(
                f"{path}.hub: hub {chosen.hub!r} is of kind {actual!r}; "
                f"{protocol} runs on a hub of kind {wanted!r}"
            )
    return problems


def _quoted(key: str) -> str:
    """A TOML key as it is written in a file: bare when it can be, quoted otherwise."""
    bare = key.replace("-", "").replace("_", "").isalnum()
    return key if bare else f'"{key}"'


def build_providers(
    config: GleitzeitConfig, hubs: dict[str, ResourceHub], registries: Registries, runtime: Any
) -> dict[str, Any]:
    """One provider per registered protocol that has a hub of its kind to run on."""
    problems = check_providers(config, {n: h.kind for n, h in hubs.items()}, registries)
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
            continue  # check_providers said so
        options = chosen.options if chosen is not None else {}
        providers[protocol] = _load(kind.factory, _owner(registries, "providers", protocol))(
            hub=hubs[hub_name], runtime=runtime, options=options
        )
    if problems:
        raise ConfigError(problems, source=config.source)
    return providers


def build_state(config: GleitzeitConfig, registries: Registries, *, clock: Clock) -> Any:
    """The state backend ``[state]`` names, built with its options (checked strictly when it
    is an attrs class)."""
    state = config.state
    factory = _lookup(registries, "state_backends", state.backend, "state.backend")
    return build_component(factory, state.options, path="state", inject={"clock": clock})
