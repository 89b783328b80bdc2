"""The core's own plugin: built-in strategies, the pass-through breaker, the ``tcp`` and
``http`` probes and the ``static`` discoverer, registered through the same hooks third parties
use."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._hookspecs import hookimpl

if TYPE_CHECKING:  # the resource model is not needed to register names (start-up time)
    from ._registry import Register
    from ._resources import ResourceSpec

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


# Registered as "module:attribute" references, like any plugin's: loading the plugins imports
# none of these modules until a config selects one of the names.
_STRATEGIES = {
    "round_robin": "RoundRobinStrategy",
    "weighted_round_robin": "WeightedRoundRobinStrategy",
    "random": "RandomStrategy",
    "weighted_random": "WeightedRandomStrategy",
    "least_loaded": "LeastLoadedStrategy",
    "p2c": "PowerOfTwoChoicesStrategy",
    "least_latency": "LeastLatencyStrategy",
    "peak_ewma": "PeakEwmaStrategy",
    "consistent_hash": "ConsistentHashStrategy",
    "priority": "PriorityStrategy",
}


@hookimpl
def gleitzeit_register_strategies(register: Register) -> None:
    for name, cls in _STRATEGIES.items():
        register(name, f"gleitzeit_core._balancing:{cls}")


@hookimpl
def gleitzeit_register_breakers(register: Register) -> None:
    register("none", "gleitzeit_core._breaker:PassThroughBreaker")


@hookimpl
def gleitzeit_register_state_backends(register: Register) -> None:
    register("local", "gleitzeit_core._state:LocalState")


@hookimpl
def gleitzeit_register_probes(register: Register) -> None:
    register("tcp", "gleitzeit_core._health:TcpProbe")
    register("http", "gleitzeit_core._health:HttpProbe")


@hookimpl
def gleitzeit_register_discoverers(register: Register) -> None:
    register("static", "gleitzeit_core._builtins:make_static")
