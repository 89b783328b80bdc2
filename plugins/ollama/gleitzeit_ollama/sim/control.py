"""Test/fault control endpoints under /_sim (not part of Ollama's API)."""

from __future__ import annotations

from aiohttp import web

from gleitzeit_ollama.sim.state import SimState
from gleitzeit_ollama.sim.wire import SimHTTPError, json_response, read_json

CONTROL_PREFIX = "/_sim"


class ControlRoutes:
    """``/_sim/stats`` (GET), ``/_sim/stats/reset`` (POST), ``/_sim/faults`` (GET/POST/DELETE)."""

    def __init__(self, state: SimState) -> None:
        self._state = state

    def register(self, app: web.Application) -> None:
        r = app.router
        r.add_get(f"{CONTROL_PREFIX}/stats", self.stats)
        r.add_post(f"{CONTROL_PREFIX}/stats/reset", self.reset_stats)
        r.add_get(f"{CONTROL_PREFIX}/faults", self.get_faults)
        r.add_post(f"{CONTROL_PREFIX}/faults", self.set_faults)
        r.add_delete(f"{CONTROL_PREFIX}/faults", self.clear_faults)

    async def stats(self, request: web.Request) -> web.StreamResponse:
        return json_response(self._state.snapshot())

    async def reset_stats(self, request: web.Request) -> web.StreamResponse:
        self._state.reset_stats()
        return json_response(self._state.snapshot())

    async def get_faults(self, request: web.Request) -> web.StreamResponse:
        return json_response(self._state.faults.spec.to_json())

    async def set_faults(self, request: web.Request) -> web.StreamResponse:
        """Merge the posted fields into the current faults; unknown fields are a 400."""
        body = await read_json(request)
        try:
            spec = self._state.faults.update(body)
        except ValueError as exc:
            raise SimHTTPError(400, str(exc)) from None
        return json_response(spec.to_json())

    async def clear_faults(self, request: web.Request) -> web.StreamResponse:
        return json_response(self._state.faults.clear().to_json())
