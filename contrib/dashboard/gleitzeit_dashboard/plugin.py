"""Hook implementations: the dashboard's routes on the gateway."""

from __future__ import annotations

from typing import Any

from gleitzeit_core import hookimpl


@hookimpl
def gleitzeit_register_routes(router: Any) -> None:
    from .app import Dashboard  # loads only when a gateway starts

    Dashboard(router).register()
