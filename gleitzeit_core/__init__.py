"""Gleitzeit core: route work to pools of resources through plugins.

The core defines hook specifications and the machinery every resource kind shares (hubs,
leases, strategies, breakers, health, metrics, config, runtime); plugins bring the concrete
kinds. Everything a plugin may use is exported here; anything else is private.
"""

from __future__ import annotations

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
from .breaker import (
    BaseBreaker,
    Breaker,
    BreakerListener,
    BreakerState,
    BreakerTransition,
    PassThroughBreaker,
    Permit,
)
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
from .metrics import MetricsSnapshot, ResourceMetrics
from .outcomes import CallOutcome, FailureClass
from .registry import Register
from .request import Request
from .resources import Candidate, Health, Resource, ResourceSpec
from .runtime import Runtime

__version__ = "0.1.0"

__all__ = [
    "BUILTIN_STRATEGIES",
    "BaseBreaker",
    "Breaker",
    "BreakerListener",
    "BreakerOpen",
    "BreakerState",
    "BreakerTransition",
    "CallOutcome",
    "Candidate",
    "Clock",
    "ConfigError",
    "ConsistentHashStrategy",
    "DuplicateNameError",
    "EmptyPool",
    "FailureClass",
    "GleitzeitError",
    "Health",
    "HealthMonitor",
    "HealthSettings",
    "HttpProbe",
    "InvalidParams",
    "LeastLatencyStrategy",
    "LeastLoadedStrategy",
    "ManualClock",
    "MetricsSnapshot",
    "NoResourceAvailable",
    "OutlierDetector",
    "OutlierSettings",
    "PassThroughBreaker",
    "PeakEwmaStrategy",
    "Permit",
    "PluginLoadError",
    "PowerOfTwoChoicesStrategy",
    "PriorityStrategy",
    "Probe",
    "ProbeResult",
    "RandomStrategy",
    "Register",
    "Request",
    "RequestTimeout",
    "Resource",
    "ResourceError",
    "ResourceMetrics",
    "ResourceSpec",
    "RoundRobinStrategy",
    "Runtime",
    "Strategy",
    "SystemClock",
    "TcpProbe",
    "UnknownMethod",
    "UnknownNameError",
    "WeightedRandomStrategy",
    "WeightedRoundRobinStrategy",
    "__version__",
    "hookimpl",
    "hookspec",
]
