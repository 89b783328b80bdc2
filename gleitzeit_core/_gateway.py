"""The HTTP gateway behind ``gleitzeit serve``.

The core serves only what knows no resource kind: ``POST /gleitzeit/execute`` for any provider
method, ``GET /gleitzeit/status``, ``GET /gleitzeit/health``, ``POST /gleitzeit/drain`` (take a
resource out without failing a request) and ``POST /gleitzeit/undrain``. Plugins add their own
routes through ``gleitzeit_register_routes`` (the Ollama plugin serves the Ollama API).

Safe by default (docs/security.md): it binds 127.0.0.1 and refuses a wider bind without a key;
foreign web pages and rebound Host names are refused (``guard``); with keys configured
(``keys``) every route but the health check and the routes a plugin registers as public (a
login page and its files) needs one, as ``Authorization: Bearer <token>`` or as the
``gleitzeit_key`` cookie a browser login set (under ``/gleitzeit`` only), and each request runs
as that key's ``Caller`` within its scopes and limits; a request that sends the key by cookie
must not be marked by the browser as another page's (``Sec-Fetch-Site``), and if it changes
something must carry the gateway's own Origin (another local page cannot ride on the cookie);
draining needs an admin caller; bodies are size- and time-limited; anything a client sends
that is wrong gets a 4xx with a JSON error, and nothing it sends can crash the server. A
client that disconnects cancels its handler, and with it the upstream request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import secrets
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import _jsonwire as jsonwire
from ._caller import Caller, PermissionDenied, acting_as, current_caller
from ._errors import (
    ConfigError,
    GleitzeitError,
    InvalidParams,
    NoResourceAvailable,
    ProviderUnavailable,
    RequestTimeout,
    ResourceError,
    UnknownMethod,
)
from ._guard import ConnectionGuard, Deadlines, GuardedSite, OriginPolicy, is_loopback_host
from ._keys import KeyRing
from ._reload import Commit, ReloadReport
from ._resources import Health
from ._status import to_json

if TYPE_CHECKING:
    from ._runtime import Runtime

log = logging.getLogger("gleitzeit.gateway")

__all__ = [
    "COOKIE_NAME",
    "COOKIE_PATH",
    "GATE_KEY",
    "KEYS_KEY",
    "RUNTIME_KEY",
    "Gate",
    "RouteRegistrar",
    "build_app",
    "check_bind",
    "json_error",
    "read_json_object",
    "same_origin",
    "serve",
    "speedups",
    "start_gateway",
    "status_for",
    "stream_ndjson",
]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
RUNTIME_KEY: web.AppKey[Any] = web.AppKey("gleitzeit_runtime", object)
GATE_KEY: web.AppKey[Gate] = web.AppKey("gleitzeit_gate")
KEYS_KEY: web.AppKey[KeyRing] = web.AppKey("gleitzeit_keys", KeyRing)
ROUTE_TIMEOUTS_KEY: web.AppKey[dict[Any, float]] = web.AppKey("gleitzeit_route_timeouts", dict)
BODY_TIMEOUT_KEY: web.AppKey[float] = web.AppKey("gleitzeit_body_timeout", float)
DEADLINES_KEY: web.AppKey[Deadlines] = web.AppKey("gleitzeit_deadlines", Deadlines)
COOKIE_NAME = "gleitzeit_key"  # where a browser keeps its key after the dashboard login
# the routes that cookie opens: the dashboard's (status, drain, its page's data), never the
# Ollama/OpenAI APIs or /metrics, which a browser page has no business calling with it
COOKIE_PATH = "/gleitzeit"
_KEEPALIVE = 75.0  # idle keep-alive connections close after this (aiohttp's own is an hour)
# draining: a connection kept alive by an answer sent before the drain and idle this long is
# closed. Closing races a request the client may be sending; a client that is merely slow
# (a busy event loop, a GC pause) must not lose it, so this is seconds, not milliseconds
_HANDOVER = 10.0
_DRAIN_POLL = 0.05  # seconds between looks at what a drain still waits for
_LAST_WRITES = 5.0  # after the drain: time for the last responses to leave
_PUBLIC_KEY: web.AppKey[set[Any]] = web.AppKey("gleitzeit_public_routes", set)
#: the plugin that added each route, so a route's bug names the plugin to fix
_ROUTE_OWNERS_KEY: web.AppKey[dict[Any, str]] = web.AppKey("gleitzeit_route_owners", dict)
# (status, message, extra fields) -> the error body an API under a path prefix uses
ErrorShape = Callable[[int, str, dict[str, Any]], dict[str, Any]]
_ERROR_SHAPES_KEY: web.AppKey[list[tuple[str, ErrorShape]]] = web.AppKey(
    "gleitzeit_error_shapes", list
)
#: the caller a request was admitted as, for the error middleware (outside ``acting_as``)
_CALLER_KEY: web.RequestKey[Caller] = web.RequestKey("gleitzeit_caller", Caller)
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Sec-Fetch-Site values of a request this gateway's own page (or the address bar) made
_OWN_FETCH_SITES = frozenset({"same-origin", "none"})


def json_error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


def _refusal(request: web.Request, status: int, message: str, **extra: Any) -> web.Response:
    """An error the gateway answers itself (key, limits, body type, no such route), in the
    shape of the API the path belongs to (``RouteRegistrar.error_shape``), else
    ``{"error": message, ...}``: a client reads it with the parser it has for that API."""
    for prefix, shape in request.app.get(_ERROR_SHAPES_KEY, ()):
        if request.path.startswith(prefix):
            return web.json_response(shape(status, message, extra), status=status)
    return json_error(status, message, **extra)


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

    def __init__(self, app: web.Application, runtime: Runtime) -> None:
        self.app = app
        self.runtime = runtime
        self._plugin: str | None = None  # whose gleitzeit_register_routes is running

    def _adding_for(self, plugin: str | None) -> None:
        self._plugin = plugin

    def add(
        self,
        method: str,
        path: str,
        handler: Handler,
        *,
        timeout: float | None = None,
        public: bool = False,
    ) -> None:
        """Serve ``handler``; ``timeout`` replaces ``[gateway] request_timeout`` for a route
        that legitimately runs longer (a model pull); ``public`` routes need no key (a login
        form and the static files of a page: nothing that shows or changes state)."""
        route = self.app.router.add_route(method, path, handler)
        if self._plugin is not None:
            self.app[_ROUTE_OWNERS_KEY][route] = self._plugin
        if timeout is not None:
            self.app[ROUTE_TIMEOUTS_KEY][route] = timeout
        if public:
            self.app[_PUBLIC_KEY].add(route)

    def error_shape(self, prefix: str, shape: ErrorShape) -> None:
        """Errors the gateway answers itself for paths under ``prefix`` (401, 403, 405, 408,
        413, 415, 429, 504, an unknown path) take the body ``shape(status, message, extra)``
        returns: an API with its own error format (OpenAI's ``/v1``) keeps it throughout."""
        self.app[_ERROR_SHAPES_KEY].append((prefix, shape))

    @property
    def auth_required(self) -> bool:
        """Whether the gateway asks clients for a key at all."""
        return not self.app[KEYS_KEY].open

    def authenticate(self, token: str) -> Caller:
        """The caller ``token`` belongs to, by the same lookup every request passes; a 401
        for an unknown key."""
        key = self.app[KEYS_KEY].lookup(token)
        if key is None:
            raise web.HTTPUnauthorized(text="unknown API key")
        caller: Caller = key.caller
        return caller


def _presented_token(request: web.Request) -> str | None:
    """The key a request carries: ``Authorization: Bearer``, else the ``gleitzeit_key``
    cookie (for a browser dashboard; the Origin check applies to it)."""
    given = request.headers.get("Authorization")
    if given is not None:
        scheme, _, value = given.partition(" ")
        return value.strip() if scheme.lower() == "bearer" else ""
    if "Cookie" in request.headers and _under_cookie_path(request.path):
        return request.cookies.get(COOKIE_NAME)
    return None


def _under_cookie_path(path: str) -> bool:
    return path == COOKIE_PATH or path.startswith(COOKIE_PATH + "/")


def same_origin(request: web.Request) -> bool:
    """Whether a browser says the request comes from a page of this gateway (its Origin): the
    scheme and name it was reached by, or an https page of that name when it came over http
    (a TLS-terminating proxy in front, as docs/security.md advises; nobody else can serve an
    https page of this name). The name itself passed the Host check."""
    origin = request.headers.get("Origin")
    if origin is None:
        return False
    if origin == f"{request.scheme}://{request.host}":
        return True
    return request.scheme == "http" and origin == f"https://{request.host}"


_UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _guard_middleware(
    ring: KeyRing,
    policy: OriginPolicy,
    connections: ConnectionGuard | None,
    timeouts: dict[Any, float],
    default_timeout: float,
    deadlines: Deadlines,
    gate: Gate,
) -> Any:
    """Every check before a handler runs, in the order an attacker meets them: Host, Origin,
    body type, key, limits; then the handler runs as the key's caller, within its time."""

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        protocol = request.protocol
        if connections is not None:
            connections.request_started(protocol)
        gate.in_flight += 1
        try:
            return await _guarded(request, handler)
        finally:
            gate.in_flight -= 1
            if connections is not None:
                connections.request_finished(protocol)

    async def _guarded(request: web.Request, handler: Handler) -> web.StreamResponse:
        headers = request.headers
        host = headers.get("Host")
        if host is not None and not policy.host_allowed(host):
            return _refusal(
                request,
                403,
                f"Host {host!r} is not allowed; add it to [gateway] hosts if this gateway is "
                "reached by that name",
            )
        origin = headers.get("Origin")
        # the gateway's own page (the dashboard opened by a name in [gateway] hosts) is no
        # foreign page, whatever [gateway] origins lists
        if origin is not None and not policy.origin_allowed(origin) and not same_origin(request):
            return _refusal(
                request,
                403,
                f"Origin {origin!r} is not allowed; add it to [gateway] origins or "
                "GLEITZEIT_ORIGINS to let that page use the gateway",
            )
        if request.method in _UNSAFE_METHODS and request.body_exists:
            problem = policy.body_type_problem(request)
            if problem is not None:
                return _refusal(request, 415, problem)
        if request.path == "/gleitzeit/health":
            return await handler(request)
        if request.match_info.route in request.app[_PUBLIC_KEY]:
            return await handler(request)
        key = ring.lookup(_presented_token(request))
        if key is None:
            return _refusal(
                request,
                401,
                "missing or unknown API key; send Authorization: Bearer <token>",
                scope="key",
            )
        by_cookie = (
            "Authorization" not in headers
            and COOKIE_NAME in request.cookies
            and _under_cookie_path(request.path)
        )
        if by_cookie and headers.get("Sec-Fetch-Site", "none") not in _OWN_FETCH_SITES:
            # a browser says another page (another port of this host included: SameSite
            # ignores ports) sent it, e.g. an <img> or a fetch to a GET route: the cookie is
            # this gateway's pages' only, for reading too (the key's rate budget is its own)
            return json_error(
                403, "the dashboard's key cookie works only on this gateway's own pages"
            )
        if by_cookie and request.method not in _SAFE_METHODS and not same_origin(request):
            # every local page passes the Origin check above, and a browser adds the cookie to
            # what any of them sends: a change by cookie must come from this gateway's own page
            return _refusal(
                request, 403, "a request authenticated by cookie must come from this origin"
            )
        refused = await ring.admit(key)
        if refused is not None:
            limit, wait = refused
            busy = _refusal(
                request,
                429,
                f"key {key.caller.name!r} is over its {limit}; retry after {wait:.1f} s",
                scope=limit,
            )
            busy.headers["Retry-After"] = ring.retry_header(wait)
            return busy
        request[_CALLER_KEY] = key.caller
        seconds = timeouts.get(request.match_info.route, default_timeout)
        deadline = deadlines.enter(seconds)
        try:
            with acting_as(key.caller):
                response = await handler(request)
            if response.status == 403:  # a plugin route that answered PermissionDenied itself
                key.counters.denied += 1
            return response
        except asyncio.CancelledError:
            if not deadline.expired:
                raise  # the client went away, or the server stops
            if request.writer.output_size:  # a stream already under way: no 504 can follow
                transport = request.transport
                if transport is not None:
                    transport.abort()
            return _refusal(request, 504, f"request took longer than the gateway's {seconds:g} s")
        except PermissionDenied:
            key.counters.denied += 1
            raise
        finally:
            deadlines.leave(deadline)
            ring.release(key)

    return guard


@web.middleware
async def _error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        reason = exc.text if exc.text and not exc.text.startswith(str(exc.status)) else exc.reason
        return _refusal(request, exc.status, reason or "request failed")
    except PermissionDenied as exc:
        return _refusal(request, 403, str(exc), scope=exc.scope, key=exc.caller)
    except GleitzeitError as exc:
        return _refusal(request, status_for(exc), str(exc))
    except (asyncio.CancelledError, KeyboardInterrupt):
        raise
    except Exception as exc:  # the server must survive any bug a request triggers
        trace = log.isEnabledFor(logging.DEBUG)  # the traceback with --debug
        owner = request.app.get(_ROUTE_OWNERS_KEY, {}).get(request.match_info.route)
        what = f"{request.method} {request.path}"
        where = f" in plugin {owner!r} (its route {what})" if owner else ""
        request_id = secrets.token_hex(8)
        log.error(
            "gateway: request %s: %s: %s%r",
            request_id,
            what,
            f"plugin {owner!r}: " if owner else "",
            exc,
            exc_info=trace,
        )
        message = f"internal error{where}; request id {request_id}"
        caller = request.get(_CALLER_KEY)
        # an exception's text can carry what the client must not see (a path, a token, an
        # upstream's answer): only an admin key, the operator, reads it here; others get the
        # request id to find it in the log
        if caller is not None and caller.admin:
            message += f": {type(exc).__name__}: {exc}"
        else:
            message += " (the gateway's log has the detail)"
        return _refusal(request, 500, message, request_id=request_id)


def _not_json(constant: str) -> Any:
    # Python's reader takes NaN and +-Infinity; they are not JSON, and would pass "> 0" style
    # checks or reach an upstream as they are
    raise ValueError(f"{constant} is not a JSON value")


def _finite(text: str) -> float:
    # 1e400 is valid JSON but Python reads it as inf, which the same checks would let through
    # and would go upstream as the non-JSON ``Infinity`` (orjson refuses it; the standard
    # library then decides, with this check)
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"the number {text[:40]} is out of range")
    return number


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object, or a 400 that says what is wrong with it; a body
    that does not arrive within ``[gateway] body_timeout`` is a 408."""
    seconds = request.app.get(BODY_TIMEOUT_KEY, 60.0)
    deadlines = request.app.get(DEADLINES_KEY) or Deadlines()
    deadline = deadlines.enter(seconds)
    try:
        body = await request.read()  # raises 413 past client_max_size
    except asyncio.CancelledError:
        if not deadline.expired:
            raise
        raise web.HTTPRequestTimeout(
            text=f"request body not received within {seconds:g} s"
        ) from None
    finally:
        deadlines.leave(deadline)
    if not body:
        raise web.HTTPBadRequest(text="request body is empty; expected a JSON object")
    try:
        data = jsonwire.loads(body, parse_constant=_not_json, parse_float=_finite)
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
            await response.write(jsonwire.dumps(chunk) + b"\n")
    except GleitzeitError as exc:  # headers are gone; say it the way Ollama does, in a line
        await response.write(jsonwire.dumps({"error": str(exc)}) + b"\n")
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
    caller = current_caller()
    if caller is not None:
        caller.check_method(method)
    tasks = params.get("tasks")
    limit = runtime.config.gateway.max_batch
    if method.endswith("/batch") and isinstance(tasks, list) and len(tasks) > limit:
        return json_error(
            400, f"params.tasks: {len(tasks)} tasks, more than [gateway] max_batch ({limit})"
        )
    result = await runtime.execute(method, params)
    if hasattr(result, "__aiter__"):
        return await stream_ndjson(request, result)
    return web.json_response({"result": result})


def _require_admin(what: str) -> None:
    caller = current_caller()
    if caller is not None:  # None: in-process operator code
        caller.check_admin(what)


def _hub_and_resource(runtime: Any, data: dict[str, Any]) -> tuple[Any, str]:
    """The hub and resource id a drain or undrain body names, or a 4xx that says which is wrong."""
    hub_name, resource_id = data.get("hub"), data.get("resource")
    if not isinstance(hub_name, str) or hub_name not in runtime.hubs:
        known = ", ".join(sorted(runtime.hubs)) or "none"
        raise web.HTTPBadRequest(text=f"hub: expected one of: {known}, got {hub_name!r}")
    hub = runtime.hubs[hub_name]
    if not isinstance(resource_id, str) or resource_id not in hub:
        raise web.HTTPNotFound(text=f"resource: hub {hub_name!r} has no resource {resource_id!r}")
    return hub, resource_id


async def _drain(request: web.Request) -> web.Response:
    """Take a resource out of rotation without failing a request: no new leases, wait for
    the calls in flight, then (``remove``: true, the default) remove it from the hub."""
    _require_admin("POST /gleitzeit/drain")
    runtime = request.app[RUNTIME_KEY]
    data = await read_json_object(request)
    hub, resource_id = _hub_and_resource(runtime, data)
    remove, timeout = data.get("remove", True), data.get("timeout", 60.0)
    if not isinstance(remove, bool):
        return json_error(400, "remove: expected true or false")
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        return json_error(400, "timeout: expected a number of seconds > 0")
    try:
        if remove:
            await hub.remove(resource_id, drain=True, timeout=float(timeout))
        else:
            await hub.drain(resource_id, timeout=float(timeout))
    except TimeoutError:
        return json_error(504, f"{resource_id}: calls still in flight after {timeout:g} s")
    return web.json_response({"hub": hub.name, "resource": resource_id, "removed": remove})


async def _undrain(request: web.Request) -> web.Response:
    """Put a resource that was drained with ``remove``: false back in rotation."""
    _require_admin("POST /gleitzeit/undrain")
    hub, resource_id = _hub_and_resource(request.app[RUNTIME_KEY], await read_json_object(request))
    hub.undrain(resource_id)
    return web.json_response({"hub": hub.name, "resource": resource_id, "draining": False})


async def _reload(request: web.Request) -> web.Response:
    """Re-read the config file (the same as ``SIGHUP``); a config with a problem changes
    nothing and is answered 400 with every problem, each naming its key path."""
    _require_admin("POST /gleitzeit/reload")
    report = await request.app[GATE_KEY].reload()
    body = report.to_json()
    if not report.ok:
        error = "config not reloaded, the running one stays: " + "; ".join(report.problems)
        return json_error(400, error, **body)
    return web.json_response(body)


async def _status(request: web.Request) -> web.Response:
    return web.json_response(to_json(request.app[RUNTIME_KEY].status()))


async def _health(request: web.Request) -> web.Response:
    """``ok`` when every hub has a resource that is not unhealthy; per hub, what is wrong;
    ``draining`` (503) once the gateway is shutting down."""
    runtime = request.app[RUNTIME_KEY]
    if request.app[GATE_KEY].draining:
        return web.json_response(
            {"status": "draining", "detail": "shutting down: finishing requests in flight"},
            status=503,
        )
    hubs: dict[str, dict[str, Any]] = {}
    ok = True
    for name, hub in runtime.hubs.items():
        members = hub.resources
        healthy = sum(1 for r in members if r.health is not Health.UNHEALTHY)
        problems = [f"discovery {src} failed: {err}" for src, err in hub.discovery_errors.items()]
        if not members:
            problems.append("no resources: none configured or discovered")
        problems.extend(
            f"{r.id} unhealthy: {r.health_detail or 'probe failed'}"
            for r in members
            if r.health is Health.UNHEALTHY
        )
        hubs[name] = {"resources": len(members), "healthy": healthy, "problems": problems}
        ok = ok and healthy > 0
    skipped = getattr(runtime, "skipped_hubs", {})
    return web.json_response(
        {"status": "ok" if ok else "degraded", "hubs": hubs, "not_added": skipped},
        status=200 if ok else 503,
    )


async def _not_for_caches(request: web.Request, response: web.StreamResponse) -> None:
    """What a key opened (status, metrics, listings, answers) is never kept by a browser's or
    a proxy's cache, which would hand it out again without the key; a handler that sets its
    own Cache-Control (the dashboard's public files) keeps it."""
    route = request.match_info.route
    if route not in request.app[_PUBLIC_KEY] and "Cache-Control" not in response.headers:
        response.headers["Cache-Control"] = "no-store"


def build_app(
    runtime: Runtime,
    *,
    token: str | None = None,
    max_body_bytes: int | None = None,
    host: str | None = None,
) -> web.Application:
    """The gateway as an aiohttp application, to serve in your own process (``token``: an
    admin key besides the config's; ``host``: the bound address, a Host it accepts). Served
    this way, the connection limits of ``[gateway]`` (``max_connections``,
    ``header_timeout``) are the server's to set; ``gleitzeit serve`` applies them."""
    return _gateway_app(runtime, token=token, max_body_bytes=max_body_bytes, host=host)


def _gateway_app(
    runtime: Runtime,
    *,
    token: str | None = None,
    max_body_bytes: int | None = None,
    host: str | None = None,
    connections: ConnectionGuard | None = None,
) -> web.Application:
    """``build_app``, and ``connections``: the guard of the :class:`GuardedSite` serving it
    (``start_gateway``'s)."""
    gateway = runtime.config.gateway
    ring = KeyRing.from_config(gateway, token=token, counters=runtime.callers, state=runtime.state)
    gate = Gate(runtime, ring, token=token)
    extra = os.environ.get("GLEITZEIT_ORIGINS", "")
    origins = [*gateway.origins, *(o for o in extra.split(",") if o.strip())]
    policy = OriginPolicy(origins=origins, hosts=gateway.hosts, bound=host or gateway.host)
    timeouts: dict[Any, float] = {}
    deadlines = Deadlines()
    app = web.Application(
        middlewares=[
            _error_middleware,
            _guard_middleware(
                ring, policy, connections, timeouts, gateway.request_timeout, deadlines, gate
            ),
        ],
        client_max_size=max_body_bytes or gateway.max_body_bytes,
    )
    app[RUNTIME_KEY] = runtime
    app[KEYS_KEY] = ring
    app[ROUTE_TIMEOUTS_KEY] = timeouts
    app[BODY_TIMEOUT_KEY] = gateway.body_timeout
    app[DEADLINES_KEY] = deadlines
    app[GATE_KEY] = gate
    app.on_response_prepare.append(gate.on_response_prepare)
    runtime.add_status_section("gateway", gate.status)

    async def stop_sweeping(_: web.Application) -> None:
        deadlines.close()
        if connections is not None:
            connections.close()

    app.on_cleanup.append(stop_sweeping)
    app.on_response_prepare.append(_not_for_caches)
    app[_PUBLIC_KEY] = set()
    app[_ERROR_SHAPES_KEY] = []
    app.router.add_post("/gleitzeit/execute", _execute)
    app.router.add_get("/gleitzeit/status", _status)
    app.router.add_get("/gleitzeit/health", _health)
    app.router.add_post("/gleitzeit/drain", _drain)
    app.router.add_post("/gleitzeit/undrain", _undrain)
    app.router.add_post("/gleitzeit/reload", _reload)
    app[_ROUTE_OWNERS_KEY] = {}
    registrar = RouteRegistrar(app, runtime)
    runtime.plugins.call_each(
        "gleitzeit_register_routes", router=registrar, before=registrar._adding_for
    )
    registrar._adding_for(None)  # a route added later has no known owner
    return app


def speedups(enabled: bool) -> tuple[Callable[[], asyncio.AbstractEventLoop] | None, list[str]]:
    """``[gateway] speedups``: orjson for JSON and uvloop's event loop, each when installed
    (``pip install 'gleitzeit-core[speed]'``); the loop factory for ``asyncio.Runner`` (None:
    the standard loop) and the names of those in use."""
    used = ["orjson"] if jsonwire.use_orjson(enabled) else []
    if not enabled:
        return None, used
    try:
        import uvloop
    except ImportError:
        return None, used
    return uvloop.new_event_loop, [*used, "uvloop"]


def check_bind(host: str, ring: KeyRing, *, insecure_no_auth: bool = False) -> str | None:
    """Refuse to serve an open gateway beyond loopback; the warning to print when the
    operator insists (``--insecure-no-auth``), else None."""
    if is_loopback_host(host) or not ring.open:
        return None
    if not insecure_no_auth:
        raise ConfigError(
            f"gateway: refusing to bind {host!r} without an API key; anyone who can reach it "
            "could use every model, sandbox and admin route. Configure [gateway] token or "
            "[gateway.keys.NAME], bind 127.0.0.1, or pass --insecure-no-auth"
        )
    return (
        f"WARNING: gleitzeit gateway on {host!r} with NO authentication (--insecure-no-auth): "
        "anyone who can reach this address may use every model, sandbox and admin route"
    )


async def start_gateway(
    runtime: Any,
    host: str,
    port: int,
    *,
    token: str | None = None,
    insecure_no_auth: bool = False,
) -> web.AppRunner:
    """Serve the gateway of a started runtime on ``host:port`` with every limit of
    ``[gateway]``; returns the runner (``runner.addresses``; ``await runner.cleanup()``)."""
    gateway = runtime.config.gateway
    connections = ConnectionGuard(
        max_connections=gateway.max_connections, header_timeout=gateway.header_timeout
    )
    app = _gateway_app(runtime, token=token, host=host, connections=connections)
    app[GATE_KEY].connections = connections
    warning = check_bind(host, app[KEYS_KEY], insecure_no_auth=insecure_no_auth)
    if warning is not None:
        log.warning("%s", warning)
    runner = web.AppRunner(
        app,
        handler_cancellation=True,
        access_log=None,
        keepalive_timeout=_KEEPALIVE,
        # Gate.drain has waited for the requests in flight by then: this only lets the
        # last responses leave
        shutdown_timeout=_LAST_WRITES,
    )
    await runner.setup()
    try:
        site = GuardedSite(runner, host, port, connections, reuse_port=gateway.reuse_port)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


async def serve(
    runtime: Any,
    *,
    host: str | None = None,
    port: int | None = None,
    ready: Callable[[str], None] | None = None,
    stop: asyncio.Event | None = None,
    insecure_no_auth: bool = False,
    signals: bool = False,
) -> None:
    """Run the gateway until ``stop`` is set (or forever), with the runtime started, then
    drain it (:meth:`Gate.drain`). ``signals``: ``SIGTERM``/``SIGINT`` set ``stop`` (a second
    one cuts the drain short) and ``SIGHUP`` reloads the config."""
    gateway = runtime.config.gateway
    host = host or gateway.host
    port = gateway.port if port is None else port
    stop = stop or asyncio.Event()
    # refuse an open non-loopback bind before starting anything
    check_bind(host, KeyRing.from_config(gateway), insecure_no_auth=insecure_no_auth)
    async with runtime:
        runner = await start_gateway(runtime, host, port, insecure_no_auth=insecure_no_auth)
        gate = runner.app[GATE_KEY]
        try:
            if signals:
                _handle_signals(gate, stop)
            bound = _bound_port(runner) or port
            if ready is not None:
                ready(f"http://{_host_for_url(host)}:{bound}")
            await stop.wait()
            await gate.drain(runner)
        finally:
            if signals:
                _unhandle_signals()
            await runner.cleanup()


_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _handle_signals(gate: Gate, stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()

    def stopping(name: str) -> None:
        if stop.is_set():  # asked twice: stop waiting for the requests in flight
            log.warning(
                "gateway: %s again: cutting %d request(s) still in flight", name, gate.in_flight
            )
            gate.cut()
            return
        grace = gate.runtime.config.gateway.shutdown_grace
        log.info(
            "gateway: %s: draining (%d request(s) in flight, grace %g s)",
            name,
            gate.in_flight,
            grace,
        )
        stop.set()

    def reloading() -> None:
        gate.runtime.keep_running(_reload_quietly(gate))

    for sig in _STOP_SIGNALS:
        loop.add_signal_handler(sig, stopping, sig.name)
    loop.add_signal_handler(signal.SIGHUP, reloading)


async def _reload_quietly(gate: Gate) -> None:
    await gate.reload()  # the report goes to the log and the status


def _unhandle_signals() -> None:
    loop = asyncio.get_running_loop()
    for sig in (*_STOP_SIGNALS, signal.SIGHUP):
        loop.remove_signal_handler(sig)


class Gate:
    """The gateway's life after start: draining on shutdown, and config reloads.

    **Drain** (``SIGTERM``): the listening socket closes at once (with ``reuse_port`` and
    ``net.ipv4.tcp_migrate_req = 1`` the connections queued on it move to another replica
    instead of being reset), the health check answers 503 ``draining``, and every response
    from then on carries ``Connection: close`` so keep-alive clients reconnect (to another
    replica). Requests and streams in flight run to their end within ``[gateway]
    shutdown_grace``. A connection kept alive by a response sent before the drain gets
    :data:`_HANDOVER` seconds to bring its next request (answered, with ``Connection:
    close``); only connections idle that long are closed, as an idle keep-alive timeout
    would. Past the grace whatever is left is cut. With no connection open and nothing in
    flight it returns at once."""

    def __init__(self, runtime: Any, ring: KeyRing, *, token: str | None) -> None:
        self.runtime, self.ring, self.token = runtime, ring, token
        self.connections: ConnectionGuard | None = None  # set when a GuardedSite serves it
        self.draining = False
        self.in_flight = 0  # requests inside the handlers, streams included
        self._cut = asyncio.Event()
        self._reloading = asyncio.Lock()

    async def on_response_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        if self.draining:  # the headers are made by now: say it, and end the connection after
            response.headers["Connection"] = "close"
            response.force_close()

    def cut(self) -> None:
        """End the drain now; requests still in flight are cut."""
        self._cut.set()

    async def drain(self, runner: web.BaseRunner) -> None:
        """Stop listening, let what is in flight finish within the grace, cut the rest."""
        self.draining = True
        grace = self.runtime.config.gateway.shutdown_grace
        for site in list(runner.sites):
            if isinstance(site, GuardedSite):
                await site.stop_accepting()
            else:
                await site.stop()
        loop = asyncio.get_running_loop()
        started = loop.time()
        handover = min(_HANDOVER, grace)
        connections = self.connections
        while not self._cut.is_set():
            waited = loop.time() - started
            if waited >= grace:
                break
            if self.in_flight == 0:
                if connections is None or not connections.open:
                    return  # nobody left to answer
                if waited >= handover and connections.quiet_for(handover):
                    return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_DRAIN_POLL):
                    await self._cut.wait()
        if self.in_flight:  # idle connections only: the runner's cleanup closes them politely
            log.warning(
                "gateway: grace over: cutting %d request(s) still in flight", self.in_flight
            )
            if connections is not None:
                connections.abort_all()

    async def reload(self) -> ReloadReport:
        """Re-read the config file and apply it whole, or report why not and keep the old."""
        async with self._reloading:
            report: ReloadReport = await self.runtime.reload(prepare=self._prepare)
        if report.ok:
            changes = "; ".join(report.applied) or "nothing changed"
            log.info("gateway: config reloaded from %s: %s", report.source, changes)
            if report.restart_needed:
                log.warning(
                    "gateway: applied at the next restart: %s", ", ".join(report.restart_needed)
                )
        else:
            log.warning(
                "gateway: config NOT reloaded, the running one stays: %s",
                "; ".join(report.problems),
            )
        return report

    def _prepare(self, config: Any) -> Commit:
        """Check the new config's keys (raises ``ConfigError``); the step that installs them."""
        ring = KeyRing.from_config(
            config.gateway,
            token=self.token,
            counters=self.runtime.callers,
            state=self.runtime.state,
        )
        if ring.open and not self.ring.open:
            # a file caught half-written (or emptied by mistake) must not switch keys off
            raise ConfigError(
                "gateway.keys: the new config has no key (no [gateway] token or "
                "[gateway.keys.NAME]); a reload never turns authentication off, restart "
                "the gateway to serve without keys"
            )

        def commit() -> list[str]:
            return self.ring.adopt(ring)

        return commit

    def status(self) -> dict[str, Any]:
        last = self.runtime.last_reload
        return {
            "draining": self.draining,
            "in_flight": self.in_flight,
            "reuse_port": self.runtime.config.gateway.reuse_port,
            "last_reload": last.to_json() if last is not None else None,
        }


def _bound_port(runner: web.AppRunner) -> int | None:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return None


def _host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host
