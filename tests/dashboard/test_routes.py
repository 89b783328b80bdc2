"""The dashboard's routes on a real gateway over loopback: what is public, what needs the key,
the login cookie, the attacks a page elsewhere could try, and the size and policy of the page."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gleitzeit_core import Caller, acting_as
from gleitzeit_core._plugins import PluginManager
from gleitzeit_core.testing import echo

from .conftest import TOKEN, ServeFactory, echo_config

PAGE = "/gleitzeit/ui"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
EVIL = "http://evil.example"


async def test_page_and_assets_are_small_and_allow_only_own_scripts(
    serve_gateway: ServeFactory,
) -> None:
    """The page and every file it loads come from the package, together under 200 KB as sent
    (gzip), each with a Content-Security-Policy that allows only this origin's scripts and
    styles; the HTML has no inline script, style or event-handler attribute."""
    served = await serve_gateway(echo_config("a"))
    async with aiohttp.ClientSession(auto_decompress=False) as raw:
        reply = await raw.get(served.url + PAGE, headers={"Accept-Encoding": "gzip"})
        assert reply.status == 200
        compressed = await reply.read()
        policies = [reply.headers["Content-Security-Policy"]]
        assert reply.headers["Content-Encoding"] == "gzip"
        total = len(compressed)
    async with aiohttp.ClientSession() as http:
        html = await (await http.get(served.url + PAGE)).text()
    assert not re.search(r"<script(?![^>]*\bsrc=)", html), "inline script"
    assert not re.search(r"\son\w+\s*=", html), "event-handler attribute"
    assert not re.search(r"\sstyle\s*=|<style", html), "inline style"
    files = re.findall(r'(?:src|href)="(ui/static/[^"]+)"', html)
    assert {"ui/static/dashboard.js", "ui/static/uPlot.iife.min.js"} <= set(files)
    async with aiohttp.ClientSession(auto_decompress=False) as raw:
        for path in files:
            reply = await raw.get(
                f"{served.url}/gleitzeit/{path}", headers={"Accept-Encoding": "gzip"}
            )
            assert reply.status == 200, path
            total += len(await reply.read())
            policies.append(reply.headers["Content-Security-Policy"])
            assert reply.headers["X-Content-Type-Options"] == "nosniff"
    assert total < 200_000, f"the page transfers {total} bytes"
    for policy in policies:
        assert "script-src 'self'" in policy
        assert "unsafe-inline" not in policy
        assert "unsafe-eval" not in policy
        assert "default-src 'none'" in policy


async def test_only_package_files_are_served(serve_gateway: ServeFactory) -> None:
    """Names outside the package's static folder (other modules, traversal, unknown files)
    are a 404, not a file of the server."""
    served = await serve_gateway(echo_config("a"))
    async with aiohttp.ClientSession() as http:
        for name in ("app.py", "..%2Fapp.py", "%2E%2E%2F%2E%2E%2Fpyproject.toml", "nope.js"):
            reply = await http.get(f"{served.url}/gleitzeit/ui/static/{name}")
            assert reply.status == 404, name
        reply = await http.get(f"{served.url}/gleitzeit/ui/static/dashboard.js")
        assert reply.status == 200
        assert reply.headers["Content-Type"].startswith("text/javascript")


async def test_the_page_is_public_but_its_data_needs_the_key(
    serve_gateway: ServeFactory, http: aiohttp.ClientSession
) -> None:
    """Without a key the page (with its login form) loads but the status and the history are
    a 401; with the key as a bearer token they answer."""
    served = await serve_gateway(echo_config("a"), token=TOKEN)
    assert (await http.get(served.url + PAGE)).status == 200
    for path in ("/gleitzeit/status", "/gleitzeit/ui/history"):
        assert (await http.get(served.url + path)).status == 401
        assert (await http.get(served.url + path, headers=BEARER)).status == 200


async def login(
    http: aiohttp.ClientSession, served: Any, key: str, origin: str | None = None
) -> aiohttp.ClientResponse:
    headers = {"Origin": origin or served.origin}
    return await http.post(served.url + "/gleitzeit/ui/login", json={"key": key}, headers=headers)


async def undrain(
    http: aiohttp.ClientSession, served: Any, resource: str, headers: dict[str, str]
) -> int:
    """The status of ``POST /gleitzeit/undrain`` for ``resource`` of hub ``e``."""
    body = {"hub": "e", "resource": resource}
    reply = await http.post(served.url + "/gleitzeit/undrain", json=body, headers=headers)
    return reply.status


async def test_login_keeps_the_key_in_an_httponly_strict_cookie(
    serve_gateway: ServeFactory, http: aiohttp.ClientSession
) -> None:
    """A right key posted once sets ``gleitzeit_key`` HttpOnly, SameSite=Strict,
    Path=/gleitzeit, and that cookie alone then opens the status and the history."""
    served = await serve_gateway(echo_config("a"), token=TOKEN)
    reply = await login(http, served, TOKEN)
    assert reply.status == 200
    header = reply.headers["Set-Cookie"]
    assert header.startswith(f"gleitzeit_key={TOKEN};")
    attributes = {part.strip().lower() for part in header.split(";")[1:]}
    assert {"httponly", "samesite=strict", "path=/gleitzeit"} <= attributes
    cookie = {"Cookie": f"gleitzeit_key={TOKEN}"}
    for path in ("/gleitzeit/status", "/gleitzeit/ui/history"):
        assert (await http.get(served.url + path, headers=cookie)).status == 200
    assert (
        await http.get(served.url + "/gleitzeit/status", headers={"Cookie": "gleitzeit_key=x"})
    ).status == 401


async def test_nothing_a_key_opened_is_left_in_a_cache(
    serve_gateway: ServeFactory, http: aiohttp.ClientSession
) -> None:
    """Every answer the login cookie (or a bearer key) opens - the status, the history,
    ``/metrics``, an execute, and the 401 and 403 answers too - says ``Cache-Control:
    no-store``, so neither the browser's cache nor a proxy on the way keeps it for whoever
    asks next without the key."""
    import gleitzeit_dashboard.plugin
    import gleitzeit_prometheus.plugin

    plugins = (
        (echo, "echo"),
        (gleitzeit_dashboard.plugin, "dashboard"),
        (gleitzeit_prometheus.plugin, "prometheus"),
    )
    served = await serve_gateway(echo_config("a"), token=TOKEN, plugins=plugins)
    cookie = {"Cookie": f"gleitzeit_key={TOKEN}"}
    for path in ("/gleitzeit/status", "/gleitzeit/ui/history", "/metrics"):
        for headers in (cookie, BEARER, {}):
            reply = await http.get(served.url + path, headers=headers)
            opened = headers == BEARER or (headers == cookie and path != "/metrics")
            assert reply.status == (200 if opened else 401), (path, headers)
            assert "no-store" in reply.headers.get("Cache-Control", ""), (path, headers)
    body = {"method": "echo/say", "params": {"text": "hi"}}
    reply = await http.post(served.url + "/gleitzeit/execute", json=body, headers=BEARER)
    assert reply.status == 200
    assert reply.headers["Cache-Control"] == "no-store"


async def test_login_refuses_a_wrong_key_and_other_origins(
    serve_gateway: ServeFactory, http: aiohttp.ClientSession
) -> None:
    """A wrong key is a 401 and sets no cookie; a login posted by a page of another origin
    (or with no Origin at all) is a 403, even with the right key, so no page can log a
    browser in under a key of its choosing; a malformed key is a 400."""
    served = await serve_gateway(echo_config("a"), token=TOKEN)
    wrong = await login(http, served, "guess")
    assert wrong.status == 401
    assert "Set-Cookie" not in wrong.headers
    assert (await wrong.json())["error"]
    forged = await login(http, served, TOKEN, origin=EVIL)
    assert forged.status == 403
    assert "Set-Cookie" not in forged.headers
    bare = await http.post(served.url + "/gleitzeit/ui/login", json={"key": TOKEN})
    assert bare.status == 403
    for bad in ("", "two words", "ü" * 3, 42):
        reply = await http.post(
            served.url + "/gleitzeit/ui/login", json={"key": bad}, headers={"Origin": served.origin}
        )
        assert reply.status == 400, bad


async def test_guessing_keys_at_the_login_is_cut_off_per_address(
    serve_gateway: ServeFactory, http: aiohttp.ClientSession
) -> None:
    """Brute force: after 10 failed logins from one address (a good login in between resets
    nothing), the next login from it is a 429 with Retry-After and no cookie even with the
    right key (so the answer tells a guesser nothing), while the same right key still logs
    in from another address."""
    served = await serve_gateway(echo_config("a"), token=TOKEN)
    for attempt in range(10):
        if attempt == 5:
            assert (await login(http, served, TOKEN)).status == 200
        reply = await login(http, served, f"guess-{attempt}")
        assert reply.status == 401, attempt
    refused = await login(http, served, TOKEN)
    assert refused.status == 429
    assert int(refused.headers["Retry-After"]) >= 1
    assert "Set-Cookie" not in refused.headers
    assert "failed logins" in (await refused.json())["error"]
    elsewhere = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    async with aiohttp.ClientSession(
        connector=elsewhere, timeout=aiohttp.ClientTimeout(total=20)
    ) as other:
        reply = await login(other, served, TOKEN)
        assert reply.status == 200
        assert reply.headers["Set-Cookie"].startswith(f"gleitzeit_key={TOKEN};")


def test_failed_logins_expire_and_stay_bounded() -> None:
    """An address is let in again once its oldest counted failure is a window old, and only
    then; however many addresses fail, only ``max_addresses`` are remembered (the least
    recently failed are forgotten)."""
    from gleitzeit_dashboard.app import FailedLogins

    now = [1000.0]
    limiter = FailedLogins(limit=3, window=60.0, max_addresses=100, clock=lambda: now[0])
    for _ in range(3):
        assert limiter.retry_after("10.0.0.1") is None
        limiter.failed("10.0.0.1")
        now[0] += 10.0
    assert limiter.retry_after("10.0.0.1") == pytest.approx(30.0)
    assert limiter.retry_after("10.0.0.2") is None
    now[0] += 30.0
    assert limiter.retry_after("10.0.0.1") is None  # the first failure is a window old
    limiter.failed("10.0.0.1")
    assert limiter.retry_after("10.0.0.1") is not None  # still 3 within the window
    for index in range(10_000):
        limiter.failed(f"192.0.2.{index}")
    assert len(limiter._failures) == 100
    assert limiter.retry_after("10.0.0.1") is None  # forgotten, not kept forever


async def test_a_page_elsewhere_cannot_drain_with_the_cookie(
    serve_gateway: ServeFactory, http: aiohttp.ClientSession
) -> None:
    """Cross-site request forgery: a POST that carries the key only in the cookie is refused
    (403) unless its Origin is the gateway's own (another local page included), and the
    resource stays in rotation; the same request from the dashboard's own origin drains it.
    Bearer clients need no Origin."""
    served = await serve_gateway(echo_config("a", "b"), token=TOKEN)
    hub = served.runtime.hubs["e"]
    cookie = {"Cookie": f"gleitzeit_key={TOKEN}"}
    body = {"hub": "e", "resource": "a", "remove": False}
    # another page on this machine passes the gateway's Origin check for local pages; only
    # the cookie rule stops it
    for origin in (EVIL, "null", None, "http://127.0.0.1:1", "http://localhost:8080"):
        headers = dict(cookie) if origin is None else {**cookie, "Origin": origin}
        reply = await http.post(served.url + "/gleitzeit/drain", json=body, headers=headers)
        assert reply.status == 403, origin
        assert not hub.get("a").draining
    own = {**cookie, "Origin": served.origin}
    reply = await http.post(served.url + "/gleitzeit/drain", json=body, headers=own)
    assert reply.status == 200
    assert hub.get("a").draining
    assert await undrain(http, served, "a", BEARER) == 200
    assert not hub.get("a").draining


async def test_the_cookie_opens_nothing_for_a_page_elsewhere_even_to_read(
    serve_gateway: ServeFactory, http: aiohttp.ClientSession
) -> None:
    """A page on another port of the same host is "same site", so the browser sends it the
    SameSite=Strict cookie, also for an ``<img>``/``fetch`` GET (no Origin): any request the
    browser marks ``Sec-Fetch-Site`` other than same-origin or none (the address bar) is a
    403 with the key only in the cookie, and is not counted against the key; the dashboard's
    own requests, typed addresses, clients that send no such header and bearer keys work."""
    served = await serve_gateway(echo_config("a"), token=TOKEN)
    cookie = {"Cookie": f"gleitzeit_key={TOKEN}"}
    before = served.runtime.callers["admin"].requests
    for site in ("same-site", "cross-site"):
        for path in ("/gleitzeit/status", "/gleitzeit/ui/history"):
            reply = await http.get(served.url + path, headers={**cookie, "Sec-Fetch-Site": site})
            assert reply.status == 403, (site, path)
            assert "own pages" in (await reply.json())["error"]
    assert served.runtime.callers["admin"].requests == before
    for site in ("same-origin", "none", None):
        headers = dict(cookie) if site is None else {**cookie, "Sec-Fetch-Site": site}
        reply = await http.get(served.url + "/gleitzeit/status", headers=headers)
        assert reply.status == 200, site
    bearer = {**BEARER, "Sec-Fetch-Site": "cross-site"}
    assert (await http.get(served.url + "/gleitzeit/status", headers=bearer)).status == 200


def acting(caller: Caller) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        with acting_as(caller):
            response: web.StreamResponse = await handler(request)
            return response

    return middleware


async def test_only_admin_callers_drain_and_undrain(
    serve_gateway: ServeFactory, http: aiohttp.ClientSession
) -> None:
    """A caller without the admin scope gets a 403 that names the scope from drain and
    undrain, and the resource is untouched; the history tells the page it is no admin."""
    served = await serve_gateway(
        echo_config("a", "b"), middlewares=(acting(Caller(name="viewer")),)
    )
    hub = served.runtime.hubs["e"]
    body = {"hub": "e", "resource": "a", "remove": False}
    reply = await http.post(served.url + "/gleitzeit/drain", json=body)
    assert reply.status == 403
    assert "admin" in (await reply.json())["error"]
    assert not hub.get("a").draining
    await hub.drain("a")
    reply = await http.post(served.url + "/gleitzeit/undrain", json={"hub": "e", "resource": "a"})
    assert reply.status == 403
    assert hub.get("a").draining
    history = await (await http.get(served.url + "/gleitzeit/ui/history")).json()
    assert history["caller"] == {"name": "viewer", "admin": False}


async def test_admin_callers_drain_and_undrain(
    serve_gateway: ServeFactory, http: aiohttp.ClientSession
) -> None:
    """An admin caller drains a resource without removing it and puts it back; unknown hubs
    and resources are a 400 and a 404 that name what is missing."""
    served = await serve_gateway(
        echo_config("a", "b"), middlewares=(acting(Caller(name="ops", admin=True)),)
    )
    hub = served.runtime.hubs["e"]
    url = served.url
    reply = await http.post(
        url + "/gleitzeit/drain", json={"hub": "e", "resource": "a", "remove": False}
    )
    assert reply.status == 200
    assert hub.get("a").draining
    assert "a" in hub
    reply = await http.post(url + "/gleitzeit/undrain", json={"hub": "e", "resource": "a"})
    assert reply.status == 200
    assert not hub.get("a").draining
    reply = await http.post(url + "/gleitzeit/undrain", json={"hub": "nope", "resource": "a"})
    assert reply.status == 400
    assert "nope" in (await reply.json())["error"]
    reply = await http.post(url + "/gleitzeit/undrain", json={"hub": "e", "resource": "zz"})
    assert reply.status == 404
    assert "zz" in (await reply.json())["error"]


async def test_history_has_samples_and_events_since_a_time(
    serve_gateway: ServeFactory, http: aiohttp.ClientSession
) -> None:
    """After calls, the history holds one-second samples per resource with their throughput,
    the drain shows up as an event, ``since`` returns only what is newer, and a ``since`` that
    is no number is a 400."""
    served = await serve_gateway(echo_config("a"))
    url = served.url
    for text in ("x", "y", "z"):
        reply = await http.post(
            url + "/gleitzeit/execute", json={"method": "echo/say", "params": {"text": text}}
        )
        assert reply.status == 200
    await served.runtime.hubs["e"].drain("a")
    data: dict[str, Any] = {}
    for _ in range(100):  # the sampler ticks once a second
        data = await (await http.get(url + "/gleitzeit/ui/history")).json()
        series = data["series"].get("e", {}).get("a")
        if series and sum(r * data["interval_s"] for r in series["rate"]) >= 3:
            break
        await asyncio.sleep(0.1)
    series = data["series"]["e"]["a"]
    assert round(sum(r * data["interval_s"] for r in series["rate"])) == 3
    assert len(series["t"]) == len(series["p95_ms"]) == len(series["in_flight"])
    assert any(v is not None for v in series["p50_ms"])
    assert ("a", "draining") in {(e["resource"], e["kind"]) for e in data["events"]}
    newer = await (await http.get(url + f"/gleitzeit/ui/history?since={data['now']}")).json()
    assert all(t > data["now"] for t in newer["series"]["e"]["a"]["t"])
    assert all(e["t"] > data["now"] for e in newer["events"])
    for bad in ("soon", "nan", "inf"):
        assert (await http.get(url + f"/gleitzeit/ui/history?since={bad}")).status == 400


@pytest.mark.parametrize("disabled", [True, False])
async def test_disabling_the_plugin_removes_the_dashboard(
    serve_gateway: ServeFactory, http: aiohttp.ClientSession, disabled: bool
) -> None:
    """The dashboard comes from its installed entry point: disabled, the gateway has no
    ``/gleitzeit/ui`` routes (404) while the core's status still answers; enabled, the same
    gateway serves it."""
    manager = PluginManager(allow=["dashboard"], disabled=["dashboard"] if disabled else [])
    manager.load()
    manager.add(echo, "echo")
    served = await serve_gateway(echo_config("a"), manager=manager)
    expected = 404 if disabled else 200
    assert (await http.get(served.url + PAGE)).status == expected
    assert (await http.get(served.url + "/gleitzeit/ui/history")).status == expected
    assert (await http.get(served.url + "/gleitzeit/status")).status == 200


async def test_the_dashboard_works_under_the_gateways_own_name_and_behind_tls(
    serve_gateway: ServeFactory, http: aiohttp.ClientSession
) -> None:
    """Opened from another machine under a name in ``[gateway] hosts`` (the page's Origin is
    the gateway's own, not a loopback page), the login and an admin's drain by cookie work
    without listing the gateway in ``origins``; behind a TLS-terminating proxy (the page is
    https, the gateway sees http under the same name) too, and the cookie is then ``Secure``.
    Another name's page, or a plain-http page claiming an https gateway's name, is still
    refused."""
    config = {**echo_config("a", "b"), "gateway": {"hosts": ["dash.test"]}}
    served = await serve_gateway(config, token=TOKEN)
    hub = served.runtime.hubs["e"]
    name = f"dash.test:{served.port}"
    for page, secure in ((f"http://{name}", False), ("https://dash.test", True)):
        host = name if page.startswith("http:") else "dash.test"
        headers = {"Host": host, "Origin": page}
        reply = await http.post(
            served.url + "/gleitzeit/ui/login", json={"key": TOKEN}, headers=headers
        )
        assert reply.status == 200, (page, await reply.text())
        attributes = {p.strip().lower() for p in reply.headers["Set-Cookie"].split(";")[1:]}
        assert ("secure" in attributes) is secure, page
        body = {"hub": "e", "resource": "a", "remove": False}
        cookie = {**headers, "Cookie": f"gleitzeit_key={TOKEN}"}
        reply = await http.post(served.url + "/gleitzeit/drain", json=body, headers=cookie)
        assert reply.status == 200, page
        assert hub.get("a").draining
        hub.undrain("a")
    for host, page in (
        (name, "http://other.test"),
        (name, f"http://other.test:{served.port}"),
        ("dash.test", "http://dash.test:1"),
    ):
        headers = {"Host": host, "Origin": page}
        reply = await http.post(
            served.url + "/gleitzeit/ui/login", json={"key": TOKEN}, headers=headers
        )
        assert reply.status == 403, (host, page)
        assert "Set-Cookie" not in reply.headers


async def test_a_viewer_key_logged_in_cannot_drain_or_undrain(
    serve_gateway: ServeFactory, http: aiohttp.ClientSession
) -> None:
    """With real keys: a non-admin key logged in at the dashboard, asking from the page's own
    origin with its cookie (or as a bearer), gets 403 naming the admin scope from drain and
    undrain, and the resource stays as it was; the history tells its page it is no admin."""
    keys = {"viewer": {"token": "viewer-key"}, "ops": {"token": "ops-key", "admin": True}}
    config = {**echo_config("a", "b"), "gateway": {"keys": keys}}
    served = await serve_gateway(config)
    hub = served.runtime.hubs["e"]
    assert (await login(http, served, "viewer-key")).status == 200
    as_page = {"Cookie": "gleitzeit_key=viewer-key", "Origin": served.origin}
    as_bearer = {"Authorization": "Bearer viewer-key"}
    body = {"hub": "e", "resource": "a", "remove": False}
    for headers in (as_page, as_bearer):
        reply = await http.post(served.url + "/gleitzeit/drain", json=body, headers=headers)
        assert reply.status == 403
        assert (await reply.json())["scope"] == "admin"
        assert not hub.get("a").draining
    await hub.drain("b")
    for headers in (as_page, as_bearer):
        assert await undrain(http, served, "b", headers) == 403
        assert hub.get("b").draining
    history = await (await http.get(served.url + "/gleitzeit/ui/history", headers=as_page)).json()
    assert history["caller"] == {"name": "viewer", "admin": False}
    ops = {"Cookie": "gleitzeit_key=ops-key", "Origin": served.origin}
    assert await undrain(http, served, "b", ops) == 200
    assert not hub.get("b").draining


async def test_the_cookie_opens_only_the_dashboards_routes(
    serve_gateway: ServeFactory, http: aiohttp.ClientSession
) -> None:
    """The login cookie is scoped to ``Path=/gleitzeit`` and the gateway takes it only there:
    sent to ``/metrics`` or the Ollama API (a browser with an older cookie, or any client),
    it opens nothing (401), while the same key as a bearer passes; under ``/gleitzeit`` it
    works, and a look-alike path such as ``/gleitzeitx`` is not under it."""
    import gleitzeit_dashboard.plugin
    import gleitzeit_ollama.plugin
    import gleitzeit_prometheus.plugin

    plugins = (
        (echo, "echo"),
        (gleitzeit_dashboard.plugin, "dashboard"),
        (gleitzeit_prometheus.plugin, "prometheus"),
        (gleitzeit_ollama.plugin, "ollama"),
    )
    served = await serve_gateway(echo_config("a"), token=TOKEN, plugins=plugins)
    cookie = {"Cookie": f"gleitzeit_key={TOKEN}"}
    for path in ("/metrics", "/api/tags", "/api/ps", "/v1/models"):
        reply = await http.get(served.url + path, headers=cookie)
        assert reply.status == 401, path
        as_bearer = await http.get(served.url + path, headers=BEARER)
        assert as_bearer.status not in (401, 403), path  # (no Ollama hub here: 404 past the key)
    assert (await http.get(served.url + "/gleitzeitx", headers=cookie)).status == 401
    assert (await http.get(served.url + "/gleitzeit/status", headers=cookie)).status == 200
