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
    from .balancing import (
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
    from .bounded import (
        BoundedLines,
        LimitExceeded,
        loads_bounded,
        read_capped,
    )
    from .breaker import (
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
    from .caller import (
        Caller,
        PermissionDenied,
        acting_as,
        current_caller,
    )
    from .cli import (
        guarded,
    )
    from .clock import (
        Clock,
        ManualClock,
        SystemClock,
    )
    from .config import (
        FeaturesConfig,
        GleitzeitConfig,
        load_config,
    )
    from .errors import (
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
    from .features import (
        FeatureFlags,
    )
    from .gateway import (
        COOKIE_NAME,
        COOKIE_PATH,
        RouteRegistrar,
        json_error,
        read_json_object,
        same_origin,
        status_for,
    )
    from .health import (
        HealthSettings,
        HttpProbe,
        OutlierSettings,
        Probe,
        ProbeResult,
        TcpProbe,
    )
    from .hookspecs import (
        hookimpl,
        hookspec,
    )
    from .hub import (
        HubEvent,
        HubEventListener,
        ResourceHub,
    )
    from .jsonwire import json_bytes
    from .kinds import (
        HubKind,
        ProviderKind,
    )
    from .lease import (
        Lease,
    )
    from .metrics import (
        MetricsSnapshot,
        ResourceMetrics,
    )
    from .outcomes import (
        CallOutcome,
        FailureClass,
    )
    from .plugins import (
        PluginManager,
        PluginRecord,
        PluginSelection,
    )
    from .provider import (
        Method,
        ProtocolProvider,
    )
    from .reachability import (
        connect_problem,
    )
    from .registry import (
        Register,
    )
    from .request import (
        Request,
    )
    from .resources import (
        Candidate,
        Health,
        Resource,
        ResourceSpec,
        public_endpoint,
        resource_id_for,
    )
    from .runtime import (
        Runtime,
    )
    from .state import (
        ReplicaInfo,
        StateBackend,
        StateStatus,
        sliding_window_take,
    )
    from .status import (
        HubStatus,
        RuntimeStatus,
        to_json,
    )
    from .status_view import (
        show_status,
    )
    from .structuring import (
        build_component,
    )
    from .validators import (
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
    "CallOutcome",
    "Caller",
    "Candidate",
    "Clock",
    "ConfigError",
    "ConsistentHashStrategy",
    "DuplicateNameError",
    "EmptyPool",
    "FailureClass",
    "FeatureFlags",
    "FeaturesConfig",
    "GatedBreaker",
    "GleitzeitConfig",
    "GleitzeitError",
    "Health",
    "HealthSettings",
    "HttpProbe",
    "HubEvent",
    "HubEventListener",
    "HubKind",
    "HubStatus",
    "InvalidParams",
    "InvalidValue",
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
    "PowerOfTwoChoicesStrategy",
    "PriorityStrategy",
    "Probe",
    "ProbeResult",
    "ProtocolProvider",
    "ProviderKind",
    "ProviderUnavailable",
    "RandomStrategy",
    "Register",
    "ReplicaInfo",
    "Request",
    "RequestTimeout",
    "Resource",
    "ResourceError",
    "ResourceHub",
    "ResourceMetrics",
    "ResourceSpec",
    "RoundRobinStrategy",
    "RouteRegistrar",
    "Runtime",
    "RuntimeStatus",
    "StateBackend",
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
    "hookimpl": "hookspecs",
    "hookspec": "hookspecs",
    "Register": "registry",
    "HubKind": "kinds",
    "ProviderKind": "kinds",
    "HubEvent": "hub",
    "HubEventListener": "hub",
    "ResourceHub": "hub",
    "Lease": "lease",
    "Candidate": "resources",
    "Health": "resources",
    "Resource": "resources",
    "ResourceSpec": "resources",
    "public_endpoint": "resources",
    "resource_id_for": "resources",
    "Request": "request",
    "Method": "provider",
    "ProtocolProvider": "provider",
    "BUILTIN_STRATEGIES": "balancing",
    "ConsistentHashStrategy": "balancing",
    "LeastLatencyStrategy": "balancing",
    "LeastLoadedStrategy": "balancing",
    "PeakEwmaStrategy": "balancing",
    "PowerOfTwoChoicesStrategy": "balancing",
    "PriorityStrategy": "balancing",
    "RandomStrategy": "balancing",
    "RoundRobinStrategy": "balancing",
    "Strategy": "balancing",
    "WeightedRandomStrategy": "balancing",
    "WeightedRoundRobinStrategy": "balancing",
    "BaseBreaker": "breaker",
    "Breaker": "breaker",
    "BreakerListener": "breaker",
    "BreakerState": "breaker",
    "BreakerTransition": "breaker",
    "BucketRing": "breaker",
    "GatedBreaker": "breaker",
    "PassThroughBreaker": "breaker",
    "Permit": "breaker",
    "HealthSettings": "health",
    "HttpProbe": "health",
    "OutlierSettings": "health",
    "Probe": "health",
    "ProbeResult": "health",
    "TcpProbe": "health",
    "CallOutcome": "outcomes",
    "FailureClass": "outcomes",
    "MetricsSnapshot": "metrics",
    "ResourceMetrics": "metrics",
    "ReplicaInfo": "state",
    "StateBackend": "state",
    "StateStatus": "state",
    "sliding_window_take": "state",
    "HubStatus": "status",
    "RuntimeStatus": "status",
    "to_json": "status",
    "ConfigError": "errors",
    "DuplicateNameError": "errors",
    "EmptyPool": "errors",
    "GleitzeitError": "errors",
    "InvalidParams": "errors",
    "NoResourceAvailable": "errors",
    "PluginLoadError": "errors",
    "ProviderUnavailable": "errors",
    "RequestTimeout": "errors",
    "ResourceError": "errors",
    "UnknownMethod": "errors",
    "UnknownNameError": "errors",
    "InvalidValue": "validators",
    "at_least": "validators",
    "fraction": "validators",
    "in_range": "validators",
    "one_of": "validators",
    "positive": "validators",
    "satisfies": "validators",
    "seconds": "validators",
    "shown": "validators",
    "build_component": "structuring",
    "Caller": "caller",
    "PermissionDenied": "caller",
    "acting_as": "caller",
    "current_caller": "caller",
    "Clock": "clock",
    "ManualClock": "clock",
    "SystemClock": "clock",
    "BoundedLines": "bounded",
    "LimitExceeded": "bounded",
    "loads_bounded": "bounded",
    "read_capped": "bounded",
    "connect_problem": "reachability",
    "COOKIE_NAME": "gateway",
    "COOKIE_PATH": "gateway",
    "RouteRegistrar": "gateway",
    "json_bytes": "jsonwire",
    "json_error": "gateway",
    "read_json_object": "gateway",
    "same_origin": "gateway",
    "status_for": "gateway",
    "guarded": "cli",
    "FeaturesConfig": "config",
    "GleitzeitConfig": "config",
    "load_config": "config",
    "FeatureFlags": "features",
    "PluginManager": "plugins",
    "PluginRecord": "plugins",
    "PluginSelection": "plugins",
    "Runtime": "runtime",
    "show_status": "status_view",
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
