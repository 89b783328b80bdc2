"""The HTTP gateway behind ``gleitzeit serve``.

The core serves only what knows no resource kind: ``POST /gleitzeit/execute`` for any provider
method, ``GET /gleitzeit/status``, ``GET /gleitzeit/health`` and ``POST /gleitzeit/drain``
(take a resource out without failing a request). Plugins add their own routes
through ``gleitzeit_register_routes`` (the Ollama plugin serves the Ollama API).

Safe by default: it binds 127.0.0.1; with a token configured, every route but the health check
needs ``Authorization: Bearer <token>``; bodies are size-limited; anything a client sends that
is wrong gets a 4xx with a JSON error, and nothing it sends can crash the server. A client that
disconnects cancels its handler, and with it the upstream request.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web

from .caller import PermissionDenied
from .errors import (
    ConfigError,
    GleitzeitError,
    InvalidParams,
    NoResourceAvailable,
    ProviderUnavailable,
    RequestTimeout,
    ResourceError,
    UnknownMethod,
)
from .resources import Health
from .status import to_json

__all__ = [
    "RUNTIME_KEY",
    "RouteRegistrar",
    "build_app",
    "json_error",
    "read_json_object",
    "serve",
    "status_for",
    "stream_ndjson",
]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
RUNTIME_KEY: web.AppKey[Any] = web.AppKey("gleitzeit_runtime", object)


def json_error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


def status_for(exc: BaseException) -> int:
    """The HTTP status that best describes an error raised while serving a request."""
    if isinstance(exc, InvalidParams | ConfigError):
        return 400
    if isinstance(exc, PermissionDenied):
        return 403
    if isinstance(exc, UnknownMethod):
        return 404
    if isinstance(exc, ProviderUnavailable | NoResourceAvailable):
        return 503
    if isinstance(exc, RequestTimeout | TimeoutError):
        return 504
    if isinstance(exc, ResourceError):
        status = exc.status
        return status if status is not None and 400 <= status < 600 else 502
    return 500


class RouteRegistrar:
    """What ``gleitzeit_register_routes`` receives: the app's router and the runtime."""

    def __init__(self, app: web.Application, runtime: Any) -> None:
        self.app = app
        self.runtime = runtime

    def add(self, method: str, path: str, handler: Handler) -> None:
        self.app.router.add_route(method, path, handler)


def _auth_middleware(token: str | None) -> Any:
    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        if token is None or request.path == "/gleitzeit/health":
            return await handler(request)
        given = request.headers.get("Authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip(), token):
            return json_error(401, "missing or wrong bearer token")
        return await handler(request)

    return auth


@web.middleware
async def _error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        reason = exc.text if exc.text and not exc.text.startswith(str(exc.status)) else exc.reason
        return json_error(exc.status, reason or "request failed")
    except GleitzeitError as exc:
        return json_error(status_for(exc), str(exc))
    except (asyncio.CancelledError, KeyboardInterrupt):
        raise
    except Exception as exc:  # the server must survive any bug a request triggers
        print(f"gleitzeit gateway: {request.method} {request.path}: {exc!r}", file=sys.stderr)
        return json_error(500, f"internal error: {type(exc).__name__}: {exc}")


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object, or a 400 that says what is wrong with it."""
    body = await request.read()  # raises 413 past client_max_size
    if not body:
        raise web.HTTPBadRequest(text="request body is empty; expected a JSON object")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise web.HTTPBadRequest(text=f"request body is not valid JSON: {exc}") from None
    except RecursionError:  # [[[[...]]]] within the size limit
        raise web.HTTPBadRequest(text="request body is nested too deeply") from None
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text=f"expected a JSON object, got {type(data).__name__}")
    return data


async def stream_ndjson(
    request: web.Request, chunks: AsyncIterator[Any], *, status: int = 200
) -> web.StreamResponse:
    """Send each chunk as one JSON line as soon as it arrives."""
    response = web.StreamResponse(status=status, headers={"Content-Type": "application/x-ndjson"})
    await response.prepare(request)
    try:
        async for chunk in chunks:
            await response.write(json.dumps(chunk).encode() + b"\n")
    except GleitzeitError as exc:  # headers are gone; say it the way Ollama does, in a line
        await response.write(json.dumps({"error": str(exc)}).encode() + b"\n")
    finally:
        close = getattr(chunks, "aclose", None)
        if close is not None:
            with contextlib.suppress(Exception):
                await close()
    await response.write_eof()
    return response


async def _execute(request: web.Request) -> web.StreamResponse:
    runtime = request.app[RUNTIME_KEY]
    data = await read_json_object(request)
    method = data.get("method")
    if not isinstance(method, str) or not method:
        return json_error(400, 'method: expected a method name such as "llm/chat"')
    params = data.get("params", {})
    if not isinstance(params, dict):
        return json_error(400, f"params: expected a JSON object, got {type(params).__name__}")
    unknown = sorted(set(data) - {"method", "params", "id"})
    if unknown:
        return json_error(400, f"unknown field(s): {', '.join(unknown)}")
    result = await runtime.execute(method, params)
    if hasattr(result, "__aiter__"):
        return await stream_ndjson(request, result)
    return web.json_response({"result": result})


async def _drain(request: web.Request) -> web.Response:
    """Take a resource out of rotation without failing a request: no new leases, wait for
    the calls in flight, then (``remove``: true, the default) remove it from the hub."""
    runtime = request.app[RUNTIME_KEY]
    data = await read_json_object(request)
    hub_name, resource_id = data.get("hub"), data.get("resource")
    remove, timeout = data.get("remove", True), data.get("timeout", 60.0)
    if not isinstance(hub_name, str) or hub_name not in runtime.hubs:
        known = ", ".join(sorted(runtime.hubs)) or "none"
        return json_error(400, f"hub: expected one of: {known}, got {hub_name!r}")
    hub = runtime.hubs[hub_name]
    if not isinstance(resource_id, str) or resource_id not in hub:
        return json_error(404, f"resource: hub {hub_name!r} has no resource {resource_id!r}")
    if not isinstance(remove, bool):
        return json_error(400, "remove: expected true or false")
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        return json_error(400, "timeout: expected a number of seconds > 0")
    try:
        if remove:
            await hub.remove(resource_id, drain=True, timeout=float(timeout))
        else:
            await hub.drain(resource_id, timeout=float(timeout))
    except TimeoutError:
        return json_error(504, f"{resource_id}: calls still in flight after {timeout:g} s")
    return web.json_response({"hub": hub_name, "resource": resource_id, "removed": remove})


async def _status(request: web.Request) -> web.Response:
    return web.json_response(to_json(request.app[RUNTIME_KEY].status()))


async def _health(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME_KEY]
    hubs: dict[str, dict[str, int]] = {}
    ok = True
    for name, hub in runtime.hubs.items():
        members = hub.resources
        healthy = sum(1 for r in members if r.health is not Health.UNHEALTHY)
        hubs[name] = {"resources": len(members), "healthy": healthy}
        ok = ok and healthy > 0
    return web.json_response(
        {"status": "ok" if ok else "degraded", "hubs": hubs}, status=200 if ok else 503
    )


def build_app(
    runtime: Any, *, token: str | None = None, max_body_bytes: int | None = None
) -> web.Application:
    gateway = runtime.config.gateway
    if token is None:
        token = gateway.token or os.environ.get(gateway.token_env) or None
    app = web.Application(
        middlewares=[_error_middleware, _auth_middleware(token)],
        client_max_size=max_body_bytes or gateway.max_body_bytes,
    )
    app[RUNTIME_KEY] = runtime
    app.router.add_post("/gleitzeit/execute", _execute)
    app.router.add_get("/gleitzeit/status", _status)
    app.router.add_get("/gleitzeit/health", _health)
    app.router.add_post("/gleitzeit/drain", _drain)
    runtime.plugins.call_each("gleitzeit_register_routes", router=RouteRegistrar(app, runtime))
    return app


async def serve(
    runtime: Any,
    *,
    host: str | None = None,
    port: int | None = None,
    ready: Callable[[str], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Run the gateway until ``stop`` is set (or forever), with the runtime started."""
    gateway = runtime.config.gateway
    host = host or gateway.host
    port = gateway.port if port is None else port
    async with runtime:
        app = build_app(runtime)
        runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        try:
            bound = _bound_port(runner) or port
            if ready is not None:
                ready(f"http://{_host_for_url(host)}:{bound}")
            await (stop or asyncio.Event()).wait()
        finally:
            await runner.cleanup()


def _bound_port(runner: web.AppRunner) -> int | None:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return None


def _host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host
