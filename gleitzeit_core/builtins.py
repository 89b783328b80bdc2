"""The core's own plugin: built-in strategies, the pass-through breaker, the ``tcp`` and
``http`` probes and the ``static`` discoverer, registered through the same hooks third parties
use."""

from __future__ import annotations

from typing import Any

from .balancing import BUILTIN_STRATEGIES
from .breaker import PassThroughBreaker
from .health import HttpProbe, TcpProbe
from .hookspecs import hookimpl
from .registry import Register
from .resources import ResourceSpec

__all__ = ["StaticDiscoverer"]


class StaticDiscoverer:
    """The resources listed in the hub's config."""

    name = "static"

    def __init__(self, specs: list[ResourceSpec]) -> None:
        self.specs = list(specs)

    async def discover(self, hub: Any) -> list[ResourceSpec]:
        return list(self.specs)


def make_static(*, specs: list[ResourceSpec], **_: Any) -> StaticDiscoverer:
    return StaticDiscoverer(specs)


@hookimpl
def gleitzeit_register_strategies(register: Register) -> None:
    for strategy in BUILTIN_STRATEGIES:
        register(strategy.name, strategy)  # type: ignore[attr-defined]


@hookimpl
def gleitzeit_register_breakers(register: Register) -> None:
    register("none", PassThroughBreaker)


@hookimpl
def gleitzeit_register_probes(register: Register) -> None:
    register("tcp", TcpProbe)
    register("http", HttpProbe)


@hookimpl
def gleitzeit_register_discoverers(register: Register) -> None:
    register("static", make_static)
