"""Hook implementations: ``GET /metrics`` on the gateway."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gleitzeit_core import hookimpl

if TYPE_CHECKING:  # the gateway (and aiohttp) load only when routes are registered
    from gleitzeit_core import RouteRegistrar


@hookimpl
def gleitzeit_register_routes(router: RouteRegistrar) -> None:
    from .exporter import Exporter  # prometheus-client only loads when a gateway starts

    exporter = Exporter(router.runtime)
    router.add("GET", "/metrics", exporter.handle)
