"""Hook specifications: how plugins tell the core what they provide.

Every hook is a registration callback: the core calls it once per plugin with a ``register``
function (or the object to extend), and the plugin registers named things. Strategies, breakers
and probes are then chosen by name in the config, never by hook order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from collections.abc import Awaitable

    import click

    from ._gateway import RouteRegistrar
    from ._registry import Register
    from ._runtime import Runtime

__all__ = ["hookimpl", "hookspec"]

hookspec = pluggy.HookspecMarker("gleitzeit")
hookimpl = pluggy.HookimplMarker("gleitzeit")


@hookspec
def gleitzeit_register_hubs(register: Register) -> None:
    """Register hub kinds: ``register("ollama", HubKind(...))``."""


@hookspec
def gleitzeit_register_discoverers(register: Register) -> None:
    """Register resource discoverers: objects with ``async discover(hub) -> list[ResourceSpec]``."""


@hookspec
def gleitzeit_register_probes(register: Register) -> None:
    """Register health probes: factories of objects with ``async probe(resource)``."""


@hookspec
def gleitzeit_register_strategies(register: Register) -> None:
    """Register balancing strategies: factories of objects with ``select(candidates, request)``."""


@hookspec
def gleitzeit_register_breakers(register: Register) -> None:
    """Register circuit-breaker factories (attrs classes whose fields are their options)."""


@hookspec
def gleitzeit_register_state_backends(register: Register) -> None:
    """Register state backends shared by gateway replicas: ``register("redis", factory)``,
    where ``factory(**options)`` returns a ``StateBackend`` (options from ``[state]``)."""


@hookspec
def gleitzeit_register_providers(register: Register) -> None:
    """Register protocol providers: ``register("llm/v1", ProviderKind(...))``."""


@hookspec
def gleitzeit_register_commands(cli: click.Group) -> None:
    """Add commands to the ``gleitzeit`` command line."""


@hookspec
def gleitzeit_register_routes(router: RouteRegistrar) -> None:
    """Add HTTP routes to the gateway: ``router.add(method, path, handler)``; the runtime is
    ``router.runtime``."""


@hookspec
def gleitzeit_startup(runtime: Runtime) -> Awaitable[None] | None:
    """Called once the runtime has started its hubs and providers, before it serves requests;
    an ``async def`` implementation is awaited."""


@hookspec
def gleitzeit_shutdown(runtime: Runtime) -> Awaitable[None] | None:
    """Called when the runtime stops, before its hubs close; an ``async def`` implementation
    is awaited."""


@hookspec
def gleitzeit_plugin_notes() -> list[str]:
    """Problems with the installation that ``gleitzeit plugins list`` should show next to the
    plugin (say, another distribution shadowing its package); an empty list when all is well."""
    return []
