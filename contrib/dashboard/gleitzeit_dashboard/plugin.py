"""Hook implementations: the dashboard's routes on the gateway."""

from __future__ import annotations

from gleitzeit_core import RouteRegistrar, hookimpl


@hookimpl
def gleitzeit_register_routes(router: RouteRegistrar) -> None:
    from .app import Dashboard  # loads only when a gateway starts

    Dashboard(router).register()
