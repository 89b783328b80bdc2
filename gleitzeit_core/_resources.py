"""What a resource is (``ResourceSpec``) and what a hub knows of it at run time (``Resource``)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any, Protocol

import attrs

from ._breaker import Breaker, PassThroughBreaker
from ._metrics import ResourceMetrics

__all__ = ["Candidate", "Health", "Resource", "ResourceSpec", "public_endpoint", "resource_id_for"]


def public_endpoint(endpoint: str) -> str:
    """``endpoint`` without ``user:password@``: what ids, status and logs may show."""
    scheme, sep, rest = endpoint.partition("://")
    if not sep:
        scheme, rest = "", endpoint
    authority, slash, path = rest.partition("/")
    authority = authority.rpartition("@")[2]
    return f"{scheme}{sep}{authority}{slash}{path}"


def resource_id_for(endpoint: str) -> str:
    """The id of a resource known only by its URL: ``host:port[/path]``, never credentials."""
    return public_endpoint(endpoint).split("://", 1)[-1].rstrip("/")


def _frozen_strings(value: Any) -> frozenset[str]:
    if isinstance(value, str):
        return frozenset({value})
    return frozenset(value or ())


@attrs.frozen
class ResourceSpec:
    """A resource as discovered or configured: who it is, where, and how much it can take.

    ``options`` carries kind-specific settings (an Ollama instance's ``num_parallel``, say) that
    the core passes through untouched.
    """

    id: str
    endpoint: str = ""
    labels: frozenset[str] = attrs.field(default=frozenset(), converter=_frozen_strings)
    capabilities: frozenset[str] = attrs.field(default=frozenset(), converter=_frozen_strings)
    weight: float = 1.0
    max_concurrency: int | None = None
    priority: int = 0
    options: Mapping[str, Any] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        if not self.id:
            msg = "a resource needs a non-empty id"
            raise ValueError(msg)
        if not self.weight > 0:
            msg = f"resource {self.id!r}: weight must be > 0, got {self.weight!r}"
            raise ValueError(msg)
        if self.max_concurrency is not None and self.max_concurrency < 1:
            msg = (
                f"resource {self.id!r}: max_concurrency must be >= 1, got {self.max_concurrency!r}"
            )
            raise ValueError(msg)


class Health(enum.Enum):
    UNKNOWN = "unknown"  # not probed yet: eligible, so a new resource serves at once
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"


class Candidate(Protocol):
    """What a balancing strategy may look at. ``Resource`` is one; tests use lighter ones."""

    @property
    def id(self) -> str: ...

    @property
    def weight(self) -> float: ...

    @property
    def in_flight(self) -> int: ...

    @property
    def latency_ewma(self) -> float | None: ...

    @property
    def peak_ewma(self) -> float | None: ...

    @property
    def priority(self) -> int: ...

    @property
    def labels(self) -> frozenset[str]: ...


class Resource:
    """The runtime state of one resource inside a hub.

    The hub owns every field; plugins read them and keep their own per-resource facts in
    ``attributes`` (an Ollama hub stores the loaded and installed models there).
    """

    __slots__ = (
        "attributes",
        "breaker",
        "breaker_opens",
        "consecutive_failures",
        "draining",
        "ejected_until",
        "ejections",
        "ejections_total",
        "health",
        "health_detail",
        "metrics",
        "probe_failures",
        "probe_successes",
        "remote_in_flight",
        "remote_slots",
        "slots",
        "spec",
    )

    def __init__(
        self,
        spec: ResourceSpec,
        *,
        breaker: Breaker | None = None,
        metrics: ResourceMetrics | None = None,
    ) -> None:
        self.spec = spec
        self.breaker: Breaker = breaker if breaker is not None else PassThroughBreaker()
        self.metrics = metrics if metrics is not None else ResourceMetrics()
        self.health = Health.UNKNOWN
        self.health_detail = ""
        self.probe_failures = 0  # consecutive
        self.probe_successes = 0  # consecutive
        self.consecutive_failures = 0  # of requests, for outlier ejection
        self.ejected_until: float | None = None
        self.ejections = 0  # in a row; earned back while in service
        self.ejections_total = 0
        self.breaker_opens = 0
        self.draining = False
        self.slots: dict[str, int] = {}  # in-flight per slot key (an Ollama model, say)
        # calls other gateway replicas have in flight here, as a shared state backend last
        # saw them (0 and empty with the in-process backend)
        self.remote_in_flight = 0
        self.remote_slots: dict[str, int] = {}
        self.attributes: dict[str, Any] = {}

    # Candidate view -----------------------------------------------------------------------
    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def endpoint(self) -> str:
        return self.spec.endpoint

    @property
    def weight(self) -> float:
        return self.spec.weight

    @property
    def priority(self) -> int:
        return self.spec.priority

    @property
    def labels(self) -> frozenset[str]:
        return self.spec.labels

    @property
    def in_flight(self) -> int:
        """Calls in flight here from this process and, with a shared state backend, from the
        other replicas (what load-aware strategies compare)."""
        return self.metrics.in_flight + self.remote_in_flight

    def slot_in_flight(self, slot: str) -> int:
        """Calls in flight in one slot, fleet-wide as far as known."""
        return self.slots.get(slot, 0) + self.remote_slots.get(slot, 0)

    @property
    def latency_ewma(self) -> float | None:
        return self.metrics.latency_ewma

    @property
    def peak_ewma(self) -> float | None:
        return self.metrics.peak_ewma

    def is_ejected(self, now: float) -> bool:
        return self.ejected_until is not None and now < self.ejected_until

    def __repr__(self) -> str:
        return f"<Resource {self.id} {self.health.value} in_flight={self.in_flight}>"
