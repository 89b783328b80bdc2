"""What a caller asks a hub for when it wants a resource."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs

__all__ = ["Request"]


def _names(value: Iterable[str] | str) -> frozenset[str]:
    return frozenset({value}) if isinstance(value, str) else frozenset(value)


@attrs.frozen
class Request:
    """The requirements of one call, as hubs and strategies see them.

    ``key`` ties related calls to one resource under ``consistent_hash`` (a session id, say).
    ``slot`` names a capacity bucket inside a resource: a hub may cap in-flight calls per slot
    (an Ollama hub uses the model name, capped at the instance's ``num_parallel``).
    ``attributes`` carries whatever a hub kind's eligibility logic reads (the model, say).
    ``deadline`` is an absolute time on the hub's clock.
    """

    key: str | None = None
    slot: str | None = None
    labels: frozenset[str] = attrs.field(default=frozenset(), converter=_names)
    capabilities: frozenset[str] = attrs.field(default=frozenset(), converter=_names)
    attributes: Mapping[str, Any] = attrs.field(factory=dict)
    deadline: float | None = None
