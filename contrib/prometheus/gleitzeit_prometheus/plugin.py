"""Hook implementations: ``GET /metrics`` on the gateway."""

from __future__ import annotations

from gleitzeit_core import RouteRegistrar, hookimpl


@hookimpl
def gleitzeit_register_routes(router: RouteRegistrar) -> None:
    from .exporter import Exporter  # prometheus-client only loads when a gateway starts

    exporter = Exporter(router.runtime)
    router.add("GET", "/metrics", exporter.handle)
