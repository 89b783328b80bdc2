"""Gleitzeit core: route work to pools of resources through plugins.

The core defines hook specifications and the machinery every resource kind shares (hubs,
leases, strategies, breakers, health, metrics, config, runtime); plugins bring the concrete
kinds. Everything a plugin may use is exported here; anything else is private.
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
    from .bounded import BoundedLines, LimitExceeded, loads_bounded, read_capped
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
    from .caller import Caller, PermissionDenied, acting_as, current_caller
    from .clock import Clock, ManualClock, SystemClock
    from .errors import (
        BreakerOpen,
        ConfigError,
        DuplicateNameError,
        EmptyPool,
        GleitzeitError,
        InvalidParams,
        NoResourceAvailable,
        PluginLoadError,
        RequestTimeout,
        ResourceError,
        UnknownMethod,
        UnknownNameError,
    )
    from .health import (
        HealthMonitor,
        HealthSettings,
        HttpProbe,
        OutlierDetector,
        OutlierSettings,
        Probe,
        ProbeResult,
        TcpProbe,
    )
    from .hookspecs import hookimpl, hookspec
    from .hub import HubEvent, HubEventListener
    from .metrics import MetricsSnapshot, ResourceMetrics
    from .outcomes import CallOutcome, FailureClass
    from .reachability import connect_problem
    from .registry import Register
    from .request import Request
    from .resources import (
        Candidate,
        Health,
        Resource,
        ResourceSpec,
        public_endpoint,
        resource_id_for,
    )
    from .runtime import Runtime
    from .state import LocalState, ReplicaInfo, StateBackend, StateStatus

__version__ = "0.1.0"

__all__ = [
    "BUILTIN_STRATEGIES",
    "BaseBreaker",
    "BoundedLines",
    "Breaker",
    "BreakerListener",
    "BreakerOpen",
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
    "GatedBreaker",
    "GleitzeitError",
    "Health",
    "HealthMonitor",
    "HealthSettings",
    "HttpProbe",
    "HubEvent",
    "HubEventListener",
    "InvalidParams",
    "LeastLatencyStrategy",
    "LeastLoadedStrategy",
    "LimitExceeded",
    "LocalState",
    "ManualClock",
    "MetricsSnapshot",
    "NoResourceAvailable",
    "OutlierDetector",
    "OutlierSettings",
    "PassThroughBreaker",
    "PeakEwmaStrategy",
    "PermissionDenied",
    "Permit",
    "PluginLoadError",
    "PowerOfTwoChoicesStrategy",
    "PriorityStrategy",
    "Probe",
    "ProbeResult",
    "RandomStrategy",
    "Register",
    "ReplicaInfo",
    "Request",
    "RequestTimeout",
    "Resource",
    "ResourceError",
    "ResourceMetrics",
    "ResourceSpec",
    "RoundRobinStrategy",
    "Runtime",
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
    "connect_problem",
    "current_caller",
    "hookimpl",
    "hookspec",
    "loads_bounded",
    "public_endpoint",
    "read_capped",
    "resource_id_for",
]

_EXPORTS: dict[str, str] = {
    "StateStatus": "state",
    "StateBackend": "state",
    "ReplicaInfo": "state",
    "LocalState": "state",
    "BUILTIN_STRATEGIES": "balancing",
    "BaseBreaker": "breaker",
    "BoundedLines": "bounded",
    "Breaker": "breaker",
    "BreakerListener": "breaker",
    "BreakerOpen": "errors",
    "BreakerState": "breaker",
    "BreakerTransition": "breaker",
    "BucketRing": "breaker",
    "CallOutcome": "outcomes",
    "Caller": "caller",
    "Candidate": "resources",
    "Clock": "clock",
    "ConfigError": "errors",
    "ConsistentHashStrategy": "balancing",
    "DuplicateNameError": "errors",
    "EmptyPool": "errors",
    "FailureClass": "outcomes",
    "GatedBreaker": "breaker",
    "GleitzeitError": "errors",
    "Health": "resources",
    "HealthMonitor": "health",
    "HealthSettings": "health",
    "HttpProbe": "health",
    "HubEvent": "hub",
    "HubEventListener": "hub",
    "InvalidParams": "errors",
    "LeastLatencyStrategy": "balancing",
    "LeastLoadedStrategy": "balancing",
    "LimitExceeded": "bounded",
    "ManualClock": "clock",
    "MetricsSnapshot": "metrics",
    "NoResourceAvailable": "errors",
    "OutlierDetector": "health",
    "OutlierSettings": "health",
    "PassThroughBreaker": "breaker",
    "PeakEwmaStrategy": "balancing",
    "Permit": "breaker",
    "PermissionDenied": "caller",
    "PluginLoadError": "errors",
    "PowerOfTwoChoicesStrategy": "balancing",
    "PriorityStrategy": "balancing",
    "Probe": "health",
    "ProbeResult": "health",
    "RandomStrategy": "balancing",
    "Register": "registry",
    "Request": "request",
    "RequestTimeout": "errors",
    "Resource": "resources",
    "ResourceError": "errors",
    "ResourceMetrics": "metrics",
    "ResourceSpec": "resources",
    "RoundRobinStrategy": "balancing",
    "Runtime": "runtime",
    "Strategy": "balancing",
    "SystemClock": "clock",
    "TcpProbe": "health",
    "UnknownMethod": "errors",
    "UnknownNameError": "errors",
    "WeightedRandomStrategy": "balancing",
    "WeightedRoundRobinStrategy": "balancing",
    "acting_as": "caller",
    "connect_problem": "reachability",
    "current_caller": "caller",
    "public_endpoint": "resources",
    "resource_id_for": "resources",
    "hookimpl": "hookspecs",
    "hookspec": "hookspecs",
    "loads_bounded": "bounded",
    "read_capped": "bounded",
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
