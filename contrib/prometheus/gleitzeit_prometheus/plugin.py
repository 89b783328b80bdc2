"""Hook implementations: ``GET /metrics`` on the gateway."""

from __future__ import annotations

from typing import Any

from gleitzeit_core import hookimpl


@hookimpl
def gleitzeit_register_routes(router: Any) -> None:
    from .exporter import Exporter  # prometheus-client only loads when a gateway starts

    exporter = Exporter(router.runtime)
    router.add("GET", "/metrics", exporter.handle)
