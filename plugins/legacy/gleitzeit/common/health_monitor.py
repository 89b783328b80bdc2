"""Phase 1.4 path: ``from gleitzeit.common.health_monitor import HealthMonitor, ...`` (the
core's health monitor and HTTP probe)."""

from gleitzeit_legacy.common import (
    HealthCheck,
    HealthCheckResult,
    HealthMonitor,
    HealthStatus,
    HTTPHealthCheck,
)

__all__ = ["HTTPHealthCheck", "HealthCheck", "HealthCheckResult", "HealthMonitor", "HealthStatus"]
