"""The status shape every hub reports: attrs classes that cattrs turns into JSON."""

from __future__ import annotations

from typing import Any

import attrs
import cattrs

from ._metrics import MetricsSnapshot
from ._state import StateStatus

__all__ = ["HubStatus", "ResourceStatus", "RuntimeStatus", "to_json"]


@attrs.frozen
class ResourceStatus:
    id: str
    endpoint: str
    health: str
    health_detail: str
    breaker: str
    breaker_opens: int
    in_flight: int
    ejected: bool
    ejected_for_s: float
    ejections: int
    draining: bool
    weight: float
    labels: list[str]
    metrics: MetricsSnapshot
    details: dict[str, Any]


@attrs.frozen
class HubStatus:
    name: str
    kind: str
    strategy: str
    panic: bool  # nothing healthy was left, so the hub routed to every resource
    waiting: int
    counters: dict[str, int]
    discovery_errors: dict[str, str]
    resources: list[ResourceStatus]


@attrs.frozen
class RuntimeStatus:
    version: str
    hubs: list[HubStatus]
    providers: dict[str, str]  # protocol -> hub name
    plugins: dict[str, str]  # plugin name -> status
    # gateway key name (never its token) -> its request counters (gleitzeit_core._keys)
    callers: dict[str, Any] = attrs.field(factory=dict)
    # sections plugins add (Runtime.add_status_section); JSON shows each as a top-level key
    sections: dict[str, Any] = attrs.field(factory=dict)
    state: StateStatus | None = None  # the state backend: shared or not, and how it is doing


_json = cattrs.Converter()
_plain_runtime = _json.gen_unstructure_attrs_fromdict(RuntimeStatus)


def _runtime_json(status: RuntimeStatus) -> dict[str, Any]:
    data: dict[str, Any] = _plain_runtime(status)
    for name, value in data.pop("sections").items():
        data.setdefault(name, value)  # never over a core key (add_status_section refuses them)
    return data


_json.register_unstructure_hook(RuntimeStatus, _runtime_json)


def to_json(status: Any) -> Any:
    """Plain JSON-ready data (dicts, lists, numbers, strings) for any status object."""
    return _json.unstructure(status)
