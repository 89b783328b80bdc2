"""Light stand-ins for hub objects, for testing strategies and breakers without a hub."""

from __future__ import annotations

import attrs

__all__ = ["FakeCandidate"]


@attrs.define(eq=False)
class FakeCandidate:
    """A candidate with every field a strategy may read, settable by the test."""

    id: str
    weight: float = 1.0
    in_flight: int = 0
    latency_ewma: float | None = None
    peak_ewma: float | None = None
    priority: int = 0
    labels: frozenset[str] = frozenset()
    healthy: bool = True
