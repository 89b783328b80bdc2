"""Per-path figures of the dual mode: every call through the shim, counted by the path that
served it (``hub`` or ``legacy``), for ``/gleitzeit/status``, ``gleitzeit status`` and
Prometheus.

``LEDGER`` counts the calls of the whole process; the shim's plugin adds it to every runtime's
status as the top-level section ``paths``::

    {"hub":    {"requests", "errors", "error_rate", "p50_ms", "p95_ms", "p99_ms"},
     "legacy": {...the same...},
     "rollout": {"use_hub_architecture", "hub_architecture_providers", "rollout_percent",
                 "configured_at_run_time"}}

``errors`` are failed calls whose failure lies with the path (not the caller's bad request,
not a cancellation); ``error_rate`` is errors / requests; latencies are of successful calls in
the last 1024 of each path.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from gleitzeit_core import FailureClass, ResourceMetrics

from .features import FEATURES

__all__ = ["HUB", "LEDGER", "LEGACY", "PathLedger", "section"]

HUB = "hub"
LEGACY = "legacy"
_NOT_ERRORS = frozenset({FailureClass.CLIENT_ERROR, FailureClass.CANCELLED})


class PathLedger:
    """Requests, errors and latency per path (O(1) per call)."""

    def __init__(self, window: int = 1024) -> None:
        self._lock = threading.Lock()
        self.metrics = {HUB: ResourceMetrics(window=window), LEGACY: ResourceMetrics(window=window)}
        self.errors = {HUB: 0, LEGACY: 0}

    def record(self, path: str, duration: float, failure: FailureClass | None) -> None:
        with self._lock:
            self.metrics[path].record(duration, failure, time.monotonic())
            if failure is not None and failure not in _NOT_ERRORS:
                self.errors[path] += 1

    def figures(self, path: str) -> dict[str, Any]:
        with self._lock:
            snapshot = self.metrics[path].snapshot(time.monotonic())
            errors = self.errors[path]
        requests = snapshot.requests
        return {
            "requests": requests,
            "errors": errors,
            "error_rate": round(errors / requests, 6) if requests else 0.0,
            "p50_ms": snapshot.p50_ms or 0.0,
            "p95_ms": snapshot.p95_ms or 0.0,
            "p99_ms": snapshot.p99_ms or 0.0,
        }

    def requests(self) -> dict[str, int]:
        """Requests per path so far."""
        return {path: metrics.requests for path, metrics in self.metrics.items()}


LEDGER = PathLedger()


def rollout() -> dict[str, Any]:
    """The live feature settings (``FEATURES`` over ``$GLEITZEIT_CONFIG``'s ``[features]``)."""
    from .backend import overlay_from_env_config

    configured = overlay_from_env_config().get("features")
    settings = FEATURES.effective(configured)
    settings["configured_at_run_time"] = sorted(FEATURES.explicit())
    return settings


def section() -> dict[str, Any]:
    """The ``paths`` status section."""
    return {HUB: LEDGER.figures(HUB), LEGACY: LEDGER.figures(LEGACY), "rollout": rollout()}
