"""What a plugin registers for a hub kind or a protocol provider."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._hub import ResourceHub
    from ._provider import ProtocolProvider

__all__ = ["HubKind", "ProviderKind"]

# dataclasses, not attrs: plugins import this module at start-up, where attrs costs 20 ms


@dataclass(frozen=True, kw_only=True, slots=True)
class HubKind:
    """A kind of hub (``"ollama"``, ``"docker"``).

    ``factory`` (a class or a lazy ``"module:attribute"``) is called with the hub's name and
    the common settings as keyword arguments (see ``ResourceHub.__init__``) plus
    ``settings``: the kind-specific keys of the hub's table structured into ``settings_class``.
    ``resource_options`` likewise checks the kind-specific keys of each configured resource.
    ``default_config`` returns the table of a hub to create when the config names none;
    ``default_check`` (if given) says why that default hub would have nothing to work with
    (``"no Docker engine answers at ..."``) or ``None``, so a config-less start adds only the
    hubs whose backend answers.
    """

    factory: Callable[..., ResourceHub] | str
    settings_class: type | str | None = None  # an attrs class, or "module:attribute"
    resource_options: type | str | None = None
    default_probe: str | None = "tcp"
    default_discovery: tuple[str, ...] = ("static",)
    default_scheme: str = "http"
    default_port: int | None = None
    default_config: Callable[[], Mapping[str, Any]] | None = None
    default_check: Callable[[], str | None] | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class ProviderKind:
    """A protocol provider (``"llm/v1"``) and the hub kind it runs on.

    ``factory`` is called as ``factory(hub=..., runtime=..., options=...)`` and returns an
    object with a ``methods`` mapping (see ``gleitzeit_core._provider``).
    """

    factory: Callable[..., ProtocolProvider] | str
    hub_kind: str | None
