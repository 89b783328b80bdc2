"""Hook implementations: the dashboard's routes on the gateway."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gleitzeit_core import hookimpl

if TYPE_CHECKING:  # the gateway (and aiohttp) load only when routes are registered
    from gleitzeit_core import RouteRegistrar


@hookimpl
def gleitzeit_register_routes(router: RouteRegistrar) -> None:
    from .app import Dashboard  # loads only when a gateway starts

    Dashboard(router).register()
