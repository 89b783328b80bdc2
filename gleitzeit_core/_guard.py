"""The gateway's defences that come before any key: browsers, Host names and connections.

* **Origin** (what a web page in the operator's browser can do): a request that carries an
  ``Origin`` header is served only if the page is on a loopback host (``localhost``,
  ``127.0.0.0/8``, ``[::1]``, any port, http or https; Ollama's default) or matches
  ``[gateway] origins`` / ``GLEITZEIT_ORIGINS`` (comma-separated; globs, ``*`` allows all).
  Clients that are not browsers send no Origin and are not affected.
* **Host** (DNS rebinding: a page whose name was re-pointed at 127.0.0.1): the ``Host`` header
  must be an IP literal, ``localhost`` or the bound address, or match ``[gateway] hosts``. A
  rebinding page always has a name of its own, so an IP literal is never one.
* **Content type**: a page can send a cross-site POST without a CORS preflight only as
  ``text/plain``, ``multipart/form-data`` or ``application/x-www-form-urlencoded``; those are
  refused (415), every other type (``application/json``, none, the ``application/octet-stream``
  of a raw-bytes client) needs a preflight, which the gateway never grants. The form type is
  what ``curl -d`` sends, so it is accepted from a request with neither an Origin nor a
  cookie, i.e. not from a browser.
* **Connections**: at most ``max_connections`` open at once (more are answered 503 and
  closed), and a connection must finish sending a request's headers within ``header_timeout``
  of connecting, or of the first byte of a later request on it (slowloris), else it is
  closed. aiohttp has no header timeout of its own, so :class:`GuardedSite` wraps each
  connection's protocol to keep the clock.
"""

from __future__ import annotations

import asyncio
import fnmatch
import ipaddress
import json
from collections.abc import Iterable
from typing import Any, cast
from urllib.parse import urlsplit

from aiohttp import web

__all__ = [
    "ConnectionGuard",
    "Deadline",
    "Deadlines",
    "GuardedSite",
    "OriginPolicy",
    "is_loopback_host",
]

# the Content-Types a page may POST cross-site without a preflight (the Fetch standard's
# CORS-safelisted request headers)
_SIMPLE_TYPES = frozenset({"text/plain", "multipart/form-data"})
_FORM = "application/x-www-form-urlencoded"


def is_loopback_host(host: str | None) -> bool:
    """True for ``localhost`` and loopback IP literals (the only binds safe without a key)."""
    if not host:
        return False
    name = host.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _split_patterns(values: Iterable[str]) -> tuple[frozenset[str], tuple[str, ...]]:
    exact, globs = set(), []
    for value in values:
        value = value.strip().lower().rstrip("/")
        if not value:
            continue
        if any(c in value for c in "*?["):
            globs.append(value)
        else:
            exact.add(value)
    return frozenset(exact), tuple(globs)


class OriginPolicy:
    """Which ``Origin`` and ``Host`` headers and body types a request may carry."""

    def __init__(
        self,
        *,
        origins: Iterable[str] = (),
        hosts: Iterable[str] = (),
        bound: str | None = None,
    ) -> None:
        self._origins, self._origin_globs = _split_patterns(origins)
        names = ["localhost", *hosts]
        if bound and bound not in ("0.0.0.0", "::", ""):
            names.append(bound.strip("[]"))
        self._hosts, self._host_globs = _split_patterns(names)
        # decisions by header value: a gateway sees few distinct ones (bounded all the same)
        self._seen_hosts: dict[str, bool] = {}
        self._seen_origins: dict[str, bool] = {}

    # -- Origin ------------------------------------------------------------------------------------
    def origin_allowed(self, origin: str) -> bool:
        known = self._seen_origins.get(origin)
        if known is not None:
            return known
        allowed = self._check_origin(origin)
        if len(self._seen_origins) < 1024:
            self._seen_origins[origin] = allowed
        return allowed

    def _check_origin(self, origin: str) -> bool:
        value = origin.strip().lower().rstrip("/")
        if value in self._origins:
            return True
        if any(fnmatch.fnmatchcase(value, g) for g in self._origin_globs):
            return True
        try:
            parts = urlsplit(value)
        except ValueError:
            return False
        return parts.scheme in ("http", "https") and is_loopback_host(parts.hostname)

    # -- Host --------------------------------------------------------------------------------------
    def host_allowed(self, host: str) -> bool:
        known = self._seen_hosts.get(host)
        if known is not None:
            return known
        allowed = self._check_host(host)
        if len(self._seen_hosts) < 1024:  # bounded: a client can send any number of names
            self._seen_hosts[host] = allowed
        return allowed

    def _check_host(self, host: str) -> bool:
        name = host.strip().lower()
        port = ""
        if name.startswith("["):  # [v6] or [v6]:port
            name, bracket, rest = name[1:].partition("]")
            if not bracket:
                return False
            if rest:
                if not rest.startswith(":"):
                    return False  # "[::1]evil.example" is not [::1]
                port = rest[1:]
        elif name.count(":") == 1:
            name, _, port = name.partition(":")
        if port and not port.isdigit():
            return False  # "127.0.0.1:evil" is no literal with a port
        name = name.rstrip(".")
        if _is_ip(name) or name in self._hosts:
            return True
        return any(fnmatch.fnmatchcase(name, g) for g in self._host_globs)

    # -- body type ---------------------------------------------------------------------------------
    @staticmethod
    def body_type_problem(request: web.Request) -> str | None:
        """Why this request's body may not be read as JSON (None: it may)."""
        given = request.headers.get("Content-Type")
        if not given:
            return None
        media = given.partition(";")[0].strip().lower()
        if media == _FORM:
            headers = request.headers
            if "Origin" not in headers and "Cookie" not in headers:
                return None
        elif media not in _SIMPLE_TYPES:
            return None
        return f"Content-Type {media!r} is not accepted; send the body as application/json"


class Deadline:
    """One request's (or body's) time limit; ``expired`` once the sweep cancelled it."""

    __slots__ = ("at", "expired", "task")

    def __init__(self, at: float, task: asyncio.Task[Any]) -> None:
        self.at = at
        self.task = task
        self.expired = False


class Deadlines:
    """Time limits for handlers without a timer per request: a timer handle per request
    measured about 10 us of loop work, half the gateway's budget for all its checks; one
    sweep every ``resolution`` seconds (only while something is in flight) cancels the
    overdue tasks instead, so a limit fires up to ``resolution`` late."""

    def __init__(self, resolution: float = 0.25) -> None:
        self.resolution = resolution
        self.active: set[Deadline] = set()
        self._timer: asyncio.TimerHandle | None = None

    def enter(self, seconds: float) -> Deadline:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        deadline = Deadline(loop.time() + seconds, task)
        self.active.add(deadline)
        if self._timer is None:
            self._timer = loop.call_later(self.resolution, self._sweep)
        return deadline

    def leave(self, deadline: Deadline) -> None:
        self.active.discard(deadline)
        if deadline.expired:  # our cancel() must not leak into the code after the handler
            deadline.task.uncancel()

    def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        for deadline in self.active:
            if deadline.at <= now and not deadline.expired:
                deadline.expired = True
                deadline.task.cancel()
        self._timer = loop.call_later(self.resolution, self._sweep) if self.active else None

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class ConnectionGuard:
    """Open connections and their header clocks (see the module docstring).

    A connection's clock is a timestamp, not a timer: one sweep every ``resolution`` seconds
    (while connections are open) aborts those whose headers are overdue, because a timer per
    request costs more loop work than all the gateway's other checks together."""

    def __init__(self, *, max_connections: int, header_timeout: float) -> None:
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.resolution = min(0.25, header_timeout / 4)
        self.open: dict[Any, _GuardedProtocol] = {}  # aiohttp's protocol -> its wrapper
        self.refused = 0  # connections answered 503 because max_connections were open
        self.timed_out = 0  # connections closed for slow headers
        self._timer: asyncio.TimerHandle | None = None

    def request_started(self, protocol: Any) -> None:
        wrapper = self.open.get(protocol)
        if wrapper is not None:
            wrapper.header_since = None
            wrapper.idle_since = None

    def request_finished(self, protocol: Any) -> None:
        wrapper = self.open.get(protocol)
        if wrapper is not None:
            wrapper.waiting_first_byte = True
            wrapper.idle_since = asyncio.get_running_loop().time()

    def quiet_for(self, seconds: float) -> bool:
        """Whether every open connection has been idle (no request arriving or running)
        for ``seconds``: a client still using one would have sent its next request by now."""
        since = asyncio.get_running_loop().time() - seconds
        return all(
            w.header_since is None and w.idle_since is not None and w.idle_since <= since
            for w in self.open.values()
        )

    def abort_all(self) -> int:
        """Cut every open connection (a shutdown's grace is over); how many there were."""
        wrappers = list(self.open.values())
        for wrapper in wrappers:
            if wrapper.transport is not None:
                wrapper.transport.abort()
        return len(wrappers)

    def opened(self, wrapper: _GuardedProtocol) -> None:
        self.open[wrapper.inner] = wrapper
        if self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self.resolution, self._sweep)

    def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        too_early = loop.time() - self.header_timeout
        for wrapper in list(self.open.values()):
            since = wrapper.header_since
            if since is not None and since <= too_early:
                wrapper.too_slow()
        self._timer = loop.call_later(self.resolution, self._sweep) if self.open else None

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


_ATTACH_TURNS = 3  # loop turns for connections accepted just before a close to attach

_BUSY = json.dumps({"error": "too many open connections; retry later"}).encode()
_BUSY_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Retry-After: 1\r\nConnection: close\r\nContent-Length: "
    + str(len(_BUSY)).encode()
    + b"\r\n\r\n"
    + _BUSY
)


class _GuardedProtocol(asyncio.Protocol):
    """aiohttp's protocol for one connection, plus the connection cap and the header clock
    (``header_since``: when the current request's first byte came, None while none is due)."""

    def __init__(self, inner: Any, guard: ConnectionGuard) -> None:
        self.inner = inner
        self.guard = guard
        self.transport: asyncio.Transport | None = None
        self.header_since: float | None = None
        self.waiting_first_byte = False
        self.refused = False
        self.idle_since: float | None = None  # when its last request ended; None while busy

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transports are not asyncio.Transport subclasses; both have write/close
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        guard = self.guard
        if len(guard.open) >= guard.max_connections:
            self.refused = True
            guard.refused += 1
            transport.write(_BUSY_RESPONSE)
            transport.close()
            return
        # a connection that sends nothing at all is on the clock too
        self.header_since = self.idle_since = asyncio.get_running_loop().time()
        guard.opened(self)
        self.inner.connection_made(transport)

    def too_slow(self) -> None:
        self.header_since = None
        self.guard.timed_out += 1
        if self.transport is not None:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return
        if self.waiting_first_byte:
            self.waiting_first_byte = False
            self.header_since = asyncio.get_running_loop().time()
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        if self.refused:
            return None
        result: bool | None = self.inner.eof_received()
        return result

    def pause_writing(self) -> None:
        if not self.refused:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if not self.refused:
            self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.header_since = None
        if self.refused:
            return
        self.guard.open.pop(self.inner, None)
        self.inner.connection_lost(exc)


class GuardedSite(web.BaseSite):
    """A TCP site whose connections go through a :class:`ConnectionGuard`; ``reuse_port``
    sets ``SO_REUSEPORT`` so several processes share the port (the kernel spreads new
    connections over them)."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        guard: ConnectionGuard,
        *,
        reuse_port: bool = False,
    ) -> None:
        super().__init__(runner)
        self.host, self.port, self.guard = host, port, guard
        self.reuse_port = reuse_port
        self._listening: asyncio.Server | None = None

    @property
    def name(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        guard = self.guard
        loop = asyncio.get_running_loop()
        self._listening = await loop.create_server(
            lambda: _GuardedProtocol(server(), guard),
            self.host,
            self.port,
            reuse_port=self.reuse_port or None,
        )
        self._server = self._listening

    async def stop_accepting(self) -> None:
        """Close the listening socket(s) without losing a connection already accepted.

        asyncio accepts a connection and attaches it to the server in a task of its own; a
        server closed in between drops that connection (reset, request and all). So stop
        watching the socket first, let those tasks run, then close it; what the kernel has
        queued by then is reset, or, with ``net.ipv4.tcp_migrate_req = 1`` and another
        ``SO_REUSEPORT`` listener, handed to it."""
        listening = self._listening
        if listening is not None:
            loop = asyncio.get_running_loop()
            for sock in listening.sockets:
                loop.remove_reader(sock.fileno())
            for _ in range(_ATTACH_TURNS):
                await asyncio.sleep(0)
        await self.stop()
