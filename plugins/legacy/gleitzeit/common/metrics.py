"""Phase 1.3 path: ``from gleitzeit.common.metrics import MetricsCollector, ResourceMetrics``
(the core's metrics per resource id, read in the upstream names)."""

from gleitzeit_legacy.common import MetricsCollector, ResourceMetrics

__all__ = ["MetricsCollector", "ResourceMetrics"]
