"""The simulator: aiohttp app, fault/stats middleware and the start/stop lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

from aiohttp import web

from gleitzeit_ollama.openai_wire import error_body
from gleitzeit_ollama.sim.config import SimConfig
from gleitzeit_ollama.sim.control import CONTROL_PREFIX, ControlRoutes
from gleitzeit_ollama.sim.faults import PROBE_PATHS, FaultSpec, FaultState, SimStopping
from gleitzeit_ollama.sim.hostile import hostile_answer
from gleitzeit_ollama.sim.models import ModelRegistry
from gleitzeit_ollama.sim.routes_infer import InferenceRoutes
from gleitzeit_ollama.sim.routes_info import InfoRoutes
from gleitzeit_ollama.sim.slots import QueueFull
from gleitzeit_ollama.sim.state import SimState
from gleitzeit_ollama.sim.wire import (
    BUSY_MESSAGE,
    SimHTTPError,
    abort_connection,
    error_response,
    json_response,
    read_json,
    reset_transport,
    want_stream,
)

STREAMING_PATHS = frozenset({"/api/generate", "/api/chat", "/api/pull"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _streamed(request: web.Request) -> bool:
    """Whether the client asked for a stream (Ollama streams unless told not to)."""
    if request.path not in STREAMING_PATHS:
        return False
    try:
        body = await read_json(request)
    except SimHTTPError:
        return True
    return want_stream(body)


async def _apply_request_faults(state: SimState, request: web.Request) -> web.StreamResponse | None:
    """Faults that act before the handler runs, in a fixed order; a hostile answer is
    returned instead of the handler's."""
    path = request.path
    spec = state.faults.spec
    if spec.probes_down and path in PROBE_PATHS:
        # Documented choice: a downed probe resets the connection (fails fast, no reply).
        abort_connection(request)
    if spec.hangs(path):
        if await state.faults.hold(path, state.config.hang_max_s):
            abort_connection(request)
        spec = state.faults.spec  # released: continue under the current faults
    mode = spec.hostile_on(path)
    if mode is not None:
        streamed = await _streamed(request)
        return await hostile_answer(
            request,
            mode,
            streamed=streamed,
            drip_ms=spec.drip_ms,
            seed=spec.seed,
            after=spec.hostile_after if streamed else 0,
        )
    if not spec.targets(path):
        return None
    if spec.slow_ms > 0:
        await asyncio.sleep(spec.slow_ms / 1000.0)
    if spec.reset_after == 0:
        abort_connection(request)
    if spec.busy:
        raise SimHTTPError(503, BUSY_MESSAGE)
    if state.faults.draw_error(path):
        raise SimHTTPError(spec.error_status, spec.error_message)
    return None


def _error(request: web.Request, status: int, message: str) -> web.Response:
    """Ollama's ``{"error": "..."}``; on ``/v1`` OpenAI's error object, as Ollama answers there."""
    if request.path.startswith("/v1/"):
        return json_response(error_body(status, message), status=status)
    return error_response(status, message)


def _middleware(state: SimState) -> Any:
    @web.middleware
    async def sim_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(CONTROL_PREFIX):
            try:
                return await handler(request)
            except SimHTTPError as exc:
                return error_response(exc.status, exc.message)
        state.stats.count(request.path)
        state.begin(request)
        try:
            hostile = await _apply_request_faults(state, request)
            if hostile is not None:
                return hostile
            return await handler(request)
        except SimHTTPError as exc:
            if exc.status == 503:
                state.stats.rejected_503 += 1
            return _error(request, exc.status, exc.message)
        except QueueFull:
            state.stats.rejected_503 += 1
            return _error(request, 503, BUSY_MESSAGE)
        except web.HTTPNotFound:
            # Gin's plain-text answer for unknown routes.
            return web.Response(status=404, text="404 page not found")
        except SimStopping:
            abort_connection(request)
        finally:
            state.end(request)

    return sim_middleware


def build_app(state: SimState) -> web.Application:
    app = web.Application(middlewares=[_middleware(state)], client_max_size=64 * 1024**2)
    InfoRoutes(state).register(app)
    InferenceRoutes(state).register(app)
    ControlRoutes(state).register(app)
    return app


class OllamaSimulator:
    """A fake Ollama server on a real socket. Use ``async with`` or start()/stop()."""

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        self.state = SimState(self.config)
        self._app = build_app(self.state)
        self._runner: web.AppRunner | None = None
        self._host = "127.0.0.1"
        self._port: int | None = None

    @property
    def app(self) -> web.Application:
        return self._app

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("simulator is not started")
        return self._port

    @property
    def host(self) -> str:
        return self._host

    @property
    def url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._runner is not None

    @property
    def faults(self) -> FaultState:
        return self.state.faults

    @property
    def registry(self) -> ModelRegistry:
        return self.state.registry

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Bind and serve; returns the bound port (``port=0`` picks a free one)."""
        if self._runner is not None:
            raise RuntimeError("simulator already started")
        # handler_cancellation: a client disconnect cancels the handler, like Ollama's
        # request context, so queued/streaming work stops and slots free up at once.
        runner = web.AppRunner(
            self._app, handler_cancellation=True, access_log=None, shutdown_timeout=2.0
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self.state.faults.reopen()
        self._runner = runner
        self._host = host
        self._port = int(runner.addresses[0][1])
        return self._port

    async def stop(self, grace_s: float = 0.0) -> None:
        """Stop serving. In-flight requests get ``grace_s`` to finish, then are reset.

        ``start()`` may be called again afterwards (e.g. on the same port).
        """
        runner, self._runner = self._runner, None
        if runner is None:
            return
        for site in list(runner.sites):
            await site.stop()  # no new connections from here on
        self.state.faults.shutdown()  # releases hung requests
        if grace_s > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace_s):
                    await self.state.idle.wait()
        for request in list(self.state.active.values()):
            reset_transport(request)
        await runner.cleanup()
        # Like a real restart: models start cold; installed models and stats persist.
        self.state.registry.unload_all()

    def stats(self) -> dict[str, Any]:
        return self.state.snapshot()

    def reset_stats(self) -> None:
        self.state.reset_stats()

    def set_faults(self, **changes: Any) -> FaultSpec:
        """Merge fault fields (same names as the JSON API) into the current faults."""
        return self.state.faults.update(changes)

    def clear_faults(self) -> FaultSpec:
        return self.state.faults.clear()

    async def __aenter__(self) -> OllamaSimulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
