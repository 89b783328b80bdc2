"""Gleitzeit core: route work to pools of resources through plugins.

The core defines hook specifications and the machinery every resource kind shares (hubs,
leases, strategies, breakers, health, metrics, config, runtime); plugins bring the concrete
kinds. ``__all__`` below is the whole API a plugin may use (with ``gleitzeit_core.testing``);
docs/plugins.md documents exactly these names and the import-linter contracts in
pyproject.toml keep plugins from reaching past them. Every other module is private.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the same names, for type checkers; at run time they load on first use
    from ._balancing import (
        BUILTIN_STRATEGIES,
        ConsistentHashStrategy,
        LeastLatencyStrategy,
        LeastLoadedStrategy,
        PeakEwmaStrategy,
        PowerOfTwoChoicesStrategy,
        PriorityStrategy,
        RandomStrategy,
        RoundRobinStrategy,
        Strategy,
        WeightedRandomStrategy,
        WeightedRoundRobinStrategy,
    )
    from ._bounded import (
        BoundedLines,
        ByteSource,
        LimitExceeded,
        loads_bounded,
        read_capped,
    )
    from ._breaker import (
        BaseBreaker,
        Breaker,
        BreakerListener,
        BreakerState,
        BreakerTransition,
        BucketRing,
        GatedBreaker,
        PassThroughBreaker,
        Permit,
    )
    from ._caller import (
        Caller,
        PermissionDenied,
        acting_as,
        current_caller,
    )
    from ._cli import (
        guarded,
    )
    from ._clock import (
        Clock,
        ManualClock,
        SystemClock,
    )
    from ._config import (
        ComponentRef,
        FeaturesConfig,
        GatewayConfig,
        GleitzeitConfig,
        HubConfig,
        PluginsConfig,
        ProviderConfig,
        ResourceConfig,
        StateConfig,
        load_config,
    )
    from ._errors import (
        ConfigError,
        DuplicateNameError,
        EmptyPool,
        GleitzeitError,
        InvalidParams,
        NoResourceAvailable,
        PluginLoadError,
        ProviderUnavailable,
        RequestTimeout,
        ResourceError,
        UnknownMethod,
        UnknownNameError,
    )
    from ._features import (
        FeatureFlags,
    )
    from ._gateway import (
        COOKIE_NAME,
        COOKIE_PATH,
        RouteRegistrar,
        build_app,
        json_error,
        read_json_object,
        same_origin,
        status_for,
    )
    from ._health import (
        HealthSettings,
        HttpProbe,
        OutlierSettings,
        Probe,
        ProbeResult,
        TcpProbe,
    )
    from ._hookspecs import (
        hookimpl,
        hookspec,
    )
    from ._hub import (
        HubEvent,
        HubEventListener,
        ResourceHub,
        SharedFactHandler,
    )
    from ._jsonwire import json_bytes
    from ._keys import KeyConfig
    from ._kinds import (
        HubKind,
        ProviderKind,
    )
    from ._lease import (
        Lease,
    )
    from ._metrics import (
        MetricsSnapshot,
        ResourceMetrics,
    )
    from ._outcomes import (
        CallOutcome,
        FailureClass,
    )
    from ._plugins import (
        PluginManager,
        PluginRecord,
        PluginSelection,
    )
    from ._provider import (
        Method,
        ProtocolProvider,
    )
    from ._reachability import (
        connect_problem,
    )
    from ._registry import (
        Register,
    )
    from ._reload import (
        ReloadReport,
    )
    from ._request import (
        Request,
    )
    from ._resources import (
        Candidate,
        Health,
        Resource,
        ResourceSpec,
        public_endpoint,
        resource_id_for,
    )
    from ._runtime import (
        Runtime,
    )
    from ._state import (
        ReplicaInfo,
        StateBackend,
        StateStatus,
        sliding_window_take,
    )
    from ._status import (
        HubStatus,
        ResourceStatus,
        RuntimeStatus,
        to_json,
    )
    from ._status_view import (
        show_status,
    )
    from ._structuring import (
        build_component,
    )
    from ._validators import (
        FieldError,
        InvalidValue,
        at_least,
        fraction,
        in_range,
        one_of,
        positive,
        satisfies,
        seconds,
        shown,
    )

__version__ = "0.1.0"

__all__ = [
    "BUILTIN_STRATEGIES",
    "COOKIE_NAME",
    "COOKIE_PATH",
    "BaseBreaker",
    "BoundedLines",
    "Breaker",
    "BreakerListener",
    "BreakerState",
    "BreakerTransition",
    "BucketRing",
    "ByteSource",
    "CallOutcome",
    "Caller",
    "Candidate",
    "Clock",
    "ComponentRef",
    "ConfigError",
    "ConsistentHashStrategy",
    "DuplicateNameError",
    "EmptyPool",
    "FailureClass",
    "FeatureFlags",
    "FeaturesConfig",
    "FieldError",
    "GatedBreaker",
    "GatewayConfig",
    "GleitzeitConfig",
    "GleitzeitError",
    "Health",
    "HealthSettings",
    "HttpProbe",
    "HubConfig",
    "HubEvent",
    "HubEventListener",
    "HubKind",
    "HubStatus",
    "InvalidParams",
    "InvalidValue",
    "KeyConfig",
    "Lease",
    "LeastLatencyStrategy",
    "LeastLoadedStrategy",
    "LimitExceeded",
    "ManualClock",
    "Method",
    "MetricsSnapshot",
    "NoResourceAvailable",
    "OutlierSettings",
    "PassThroughBreaker",
    "PeakEwmaStrategy",
    "PermissionDenied",
    "Permit",
    "PluginLoadError",
    "PluginManager",
    "PluginRecord",
    "PluginSelection",
    "PluginsConfig",
    "PowerOfTwoChoicesStrategy",
    "PriorityStrategy",
    "Probe",
    "ProbeResult",
    "ProtocolProvider",
    "ProviderConfig",
    "ProviderKind",
    "ProviderUnavailable",
    "RandomStrategy",
    "Register",
    "ReloadReport",
    "ReplicaInfo",
    "Request",
    "RequestTimeout",
    "Resource",
    "ResourceConfig",
    "ResourceError",
    "ResourceHub",
    "ResourceMetrics",
    "ResourceSpec",
    "ResourceStatus",
    "RoundRobinStrategy",
    "RouteRegistrar",
    "Runtime",
    "RuntimeStatus",
    "SharedFactHandler",
    "StateBackend",
    "StateConfig",
    "StateStatus",
    "Strategy",
    "SystemClock",
    "TcpProbe",
    "UnknownMethod",
    "UnknownNameError",
    "WeightedRandomStrategy",
    "WeightedRoundRobinStrategy",
    "__version__",
    "acting_as",
    "at_least",
    "build_app",
    "build_component",
    "connect_problem",
    "current_caller",
    "fraction",
    "guarded",
    "hookimpl",
    "hookspec",
    "in_range",
    "json_bytes",
    "json_error",
    "load_config",
    "loads_bounded",
    "one_of",
    "positive",
    "public_endpoint",
    "read_capped",
    "read_json_object",
    "resource_id_for",
    "same_origin",
    "satisfies",
    "seconds",
    "show_status",
    "shown",
    "sliding_window_take",
    "status_for",
    "to_json",
]

# each public name -> the private module that defines it
_EXPORTS: dict[str, str] = {
    "hookimpl": "_hookspecs",
    "hookspec": "_hookspecs",
    "Register": "_registry",
    "HubKind": "_kinds",
    "ProviderKind": "_kinds",
    "HubEvent": "_hub",
    "HubEventListener": "_hub",
    "SharedFactHandler": "_hub",
    "ResourceHub": "_hub",
    "Lease": "_lease",
    "Candidate": "_resources",
    "Health": "_resources",
    "Resource": "_resources",
    "ResourceSpec": "_resources",
    "public_endpoint": "_resources",
    "resource_id_for": "_resources",
    "Request": "_request",
    "Method": "_provider",
    "ProtocolProvider": "_provider",
    "BUILTIN_STRATEGIES": "_balancing",
    "ConsistentHashStrategy": "_balancing",
    "LeastLatencyStrategy": "_balancing",
    "LeastLoadedStrategy": "_balancing",
    "PeakEwmaStrategy": "_balancing",
    "PowerOfTwoChoicesStrategy": "_balancing",
    "PriorityStrategy": "_balancing",
    "RandomStrategy": "_balancing",
    "RoundRobinStrategy": "_balancing",
    "Strategy": "_balancing",
    "WeightedRandomStrategy": "_balancing",
    "WeightedRoundRobinStrategy": "_balancing",
    "BaseBreaker": "_breaker",
    "Breaker": "_breaker",
    "BreakerListener": "_breaker",
    "BreakerState": "_breaker",
    "BreakerTransition": "_breaker",
    "BucketRing": "_breaker",
    "GatedBreaker": "_breaker",
    "PassThroughBreaker": "_breaker",
    "Permit": "_breaker",
    "HealthSettings": "_health",
    "HttpProbe": "_health",
    "OutlierSettings": "_health",
    "Probe": "_health",
    "ProbeResult": "_health",
    "TcpProbe": "_health",
    "CallOutcome": "_outcomes",
    "FailureClass": "_outcomes",
    "MetricsSnapshot": "_metrics",
    "ResourceMetrics": "_metrics",
    "ReplicaInfo": "_state",
    "StateBackend": "_state",
    "StateStatus": "_state",
    "sliding_window_take": "_state",
    "HubStatus": "_status",
    "RuntimeStatus": "_status",
    "to_json": "_status",
    "ConfigError": "_errors",
    "DuplicateNameError": "_errors",
    "EmptyPool": "_errors",
    "GleitzeitError": "_errors",
    "InvalidParams": "_errors",
    "NoResourceAvailable": "_errors",
    "PluginLoadError": "_errors",
    "ProviderUnavailable": "_errors",
    "RequestTimeout": "_errors",
    "ResourceError": "_errors",
    "UnknownMethod": "_errors",
    "UnknownNameError": "_errors",
    "InvalidValue": "_validators",
    "at_least": "_validators",
    "fraction": "_validators",
    "in_range": "_validators",
    "one_of": "_validators",
    "positive": "_validators",
    "satisfies": "_validators",
    "seconds": "_validators",
    "shown": "_validators",
    "build_component": "_structuring",
    "Caller": "_caller",
    "PermissionDenied": "_caller",
    "acting_as": "_caller",
    "current_caller": "_caller",
    "Clock": "_clock",
    "ManualClock": "_clock",
    "SystemClock": "_clock",
    "BoundedLines": "_bounded",
    "LimitExceeded": "_bounded",
    "loads_bounded": "_bounded",
    "read_capped": "_bounded",
    "connect_problem": "_reachability",
    "COOKIE_NAME": "_gateway",
    "COOKIE_PATH": "_gateway",
    "RouteRegistrar": "_gateway",
    "json_bytes": "_jsonwire",
    "build_app": "_gateway",
    "json_error": "_gateway",
    "read_json_object": "_gateway",
    "same_origin": "_gateway",
    "status_for": "_gateway",
    "guarded": "_cli",
    "FeaturesConfig": "_config",
    "GleitzeitConfig": "_config",
    "load_config": "_config",
    "FeatureFlags": "_features",
    "PluginManager": "_plugins",
    "PluginRecord": "_plugins",
    "PluginSelection": "_plugins",
    "Runtime": "_runtime",
    "show_status": "_status_view",
    "ByteSource": "_bounded",
    "GatewayConfig": "_config",
    "HubConfig": "_config",
    "PluginsConfig": "_config",
    "ProviderConfig": "_config",
    "StateConfig": "_config",
    "ReloadReport": "_reload",
    "ResourceStatus": "_status",
    "FieldError": "_validators",
    "ComponentRef": "_config",
    "ResourceConfig": "_config",
    "KeyConfig": "_keys",
}


def __getattr__(name: str) -> Any:
    """Import a public name's module only when the name is first used, so that a plugin
    module doing ``from gleitzeit_core import hookimpl`` does not pay for the whole core."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'gleitzeit_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
