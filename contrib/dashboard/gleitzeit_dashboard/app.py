"""The dashboard's routes: the page and its files, the history it draws from, and the login that
keeps a key in a cookie.

The page and its files are public (they hold no data); everything they show comes from
``GET /gleitzeit/status`` and ``GET /gleitzeit/ui/history``, which need the gateway's key like
every other route. Every response carries a Content-Security-Policy that allows only this
origin's scripts and styles, so a resource id or model name that smuggles markup into the page
cannot run (the page also only ever writes text, never HTML).
"""

from __future__ import annotations

import gzip
import math
import re
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from importlib.resources import files
from typing import Any

import attrs
from aiohttp import web

from gleitzeit_core import (
    COOKIE_NAME,
    COOKIE_PATH,
    current_caller,
    json_error,
    read_json_object,
    same_origin,
)

from .history import History

__all__ = ["CONTENT_SECURITY_POLICY", "Dashboard", "FailedLogins"]

PREFIX = "/gleitzeit/ui"
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".md": "text/plain; charset=utf-8",
    ".LICENSE": "text/plain; charset=utf-8",
}
_MAX_KEY_CHARS = 4096
# what a key can be and still travel in a header and a cookie unchanged
_KEY_SHAPE = re.compile(rf"[!-~]{{1,{_MAX_KEY_CHARS}}}")


class FailedLogins:
    """Failed logins per client address: after ``limit`` failures within ``window`` seconds an
    address gets 429 for every login, right key or not (the answer must not tell a guesser
    which key was right), until its oldest failure is ``window`` old. A success clears
    nothing, so a known weak key cannot reset the count while guessing an admin's. At most
    ``max_addresses`` addresses are remembered (the least recently failed are forgotten), so
    many addresses cannot grow it without bound."""

    def __init__(
        self,
        *,
        limit: int = 10,
        window: float = 60.0,
        max_addresses: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window
        self.max_addresses = max_addresses
        self.clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, address: str) -> float | None:
        """Seconds until ``address`` may try again, or None if it may now."""
        failures = self._failures.get(address)
        if failures is None or len(failures) < self.limit:
            return None
        wait = failures[0] + self.window - self.clock()
        return wait if wait > 0 else None

    def failed(self, address: str) -> None:
        failures = self._failures.pop(address, None) or deque(maxlen=self.limit)
        failures.append(self.clock())
        self._failures[address] = failures  # now the most recent
        while len(self._failures) > self.max_addresses:
            self._failures.popitem(last=False)


@attrs.frozen
class Asset:
    """One static file, read once, with its gzip encoding made once."""

    body: bytes
    gzipped: bytes
    content_type: str


def load_assets() -> dict[str, Asset]:
    """Every file of the package's ``static`` folder, by name (the only names served)."""
    assets = {}
    for entry in files("gleitzeit_dashboard").joinpath("static").iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1]
        content_type = _TYPES.get(suffix)
        if content_type is None or not entry.is_file():
            continue
        body = entry.read_bytes()
        assets[entry.name] = Asset(body, gzip.compress(body, 9, mtime=0), content_type)
    return assets


def _headers(content_type: str) -> dict[str, str]:
    return {
        "Content-Type": content_type,
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",
    }


class Dashboard:
    """The routes of one gateway's dashboard and the history its sampler keeps."""

    def __init__(self, router: Any, *, history: History | None = None) -> None:
        self.router = router
        self.history = history or History(router.runtime)
        self.assets = load_assets()
        self.failed_logins = FailedLogins()

    def register(self) -> None:
        router = self.router
        router.add("GET", PREFIX, self.page, public=True)
        router.add("GET", PREFIX + "/static/{name}", self.static, public=True)
        router.add("POST", PREFIX + "/login", self.login, public=True)
        router.add("POST", PREFIX + "/logout", self.logout, public=True)
        router.add("GET", PREFIX + "/history", self.history_since)
        router.app.on_startup.append(self._start)
        router.app.on_cleanup.append(self._stop)

    async def _start(self, app: web.Application) -> None:
        self.history.start()

    async def _stop(self, app: web.Application) -> None:
        await self.history.stop()

    def _serve(self, request: web.Request, name: str) -> web.Response:
        asset = self.assets.get(name)
        if asset is None:
            raise web.HTTPNotFound(text=f"no dashboard file {name!r}")
        headers = _headers(asset.content_type)
        headers["Vary"] = "Accept-Encoding"
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            headers["Content-Encoding"] = "gzip"
            return web.Response(body=asset.gzipped, headers=headers)
        return web.Response(body=asset.body, headers=headers)

    async def page(self, request: web.Request) -> web.Response:
        return self._serve(request, "index.html")

    async def static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name == "index.html":
            raise web.HTTPNotFound(text="the page is at " + PREFIX)
        return self._serve(request, name)

    async def history_since(self, request: web.Request) -> web.Response:
        raw = request.query.get("since", "0")
        try:
            since = float(raw)
        except ValueError:
            since = math.nan
        if not math.isfinite(since):
            return json_error(400, f"since: expected seconds since the epoch, got {raw!r}")
        data = self.history.since(since)
        caller = current_caller()
        data["caller"] = {
            "name": None if caller is None else caller.name,
            "admin": caller is None or caller.admin,
        }
        data["auth"] = self.router.auth_required
        response = web.json_response(data, headers={"Cache-Control": "no-store"})
        # the first answer holds 15 minutes of samples: ~50 KB of JSON per resource, ~4 KB gzip
        response.enable_compression()
        return response

    async def login(self, request: web.Request) -> web.Response:
        """Check a key once and keep it in an HttpOnly, SameSite=Strict cookie; an address
        that failed too often lately gets 429 instead of an answer."""
        if not same_origin(request):  # another page must not log this browser in as someone
            return json_error(403, "log in from the dashboard page of this gateway")
        address = request.remote or "unknown"
        wait = self.failed_logins.retry_after(address)
        if wait is not None:
            busy = json_error(
                429,
                f"too many failed logins from {address}; retry after {math.ceil(wait)} s",
            )
            busy.headers["Retry-After"] = str(math.ceil(wait))
            return busy
        data = await read_json_object(request)
        key = data.get("key")
        if isinstance(key, str):
            key = key.strip()
        if not isinstance(key, str) or not _KEY_SHAPE.fullmatch(key):
            self.failed_logins.failed(address)
            return json_error(
                400, f"key: expected the gateway key, 1 to {_MAX_KEY_CHARS} printable ASCII chars"
            )
        try:
            caller = self.router.authenticate(key)  # a 401 for an unknown key
        except web.HTTPUnauthorized:
            self.failed_logins.failed(address)
            raise
        response = web.json_response({"caller": caller.name, "admin": caller.admin})
        response.set_cookie(
            COOKIE_NAME,
            key,
            httponly=True,
            samesite="Strict",
            path=COOKIE_PATH,
            # an https page over plain http: TLS ends at a proxy in front (see same_origin)
            secure=request.secure or request.headers["Origin"].startswith("https://"),
        )
        return response

    async def logout(self, request: web.Request) -> web.Response:
        if not same_origin(request):
            return json_error(403, "log out from the dashboard page of this gateway")
        response = web.json_response({"logged_out": True})
        response.del_cookie(COOKIE_NAME, path=COOKIE_PATH)
        return response
