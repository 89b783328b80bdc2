"""Attacks a web page in the operator's browser can make on a gateway on loopback: cross-site
posts (foreign Origin, text/plain and form bodies), DNS rebinding (a foreign Host name) and a
stolen-cookie replay from a foreign page. Each must fail while a plain local client and a
page on localhost still work."""

from __future__ import annotations

import json

import aiohttp
import ollama
import pytest

from tests.security.conftest import (
    ADMIN_TOKEN,
    CHAT,
    KEYS,
    ServeFactory,
    bearer,
    raw_exchange,
    status_of,
)

EVIL = "http://evil.example"


async def test_a_foreign_origin_cannot_drain_pull_or_chat(
    serve_gateway: ServeFactory, http: aiohttp.ClientSession
) -> None:
    """A page on another site gets 403 for every pool-changing and inference route, and the
    pool is untouched: the instance is still there and nothing was pulled or generated."""
    served = await serve_gateway(sim={"pullable": ["phi3"]})
    attacks = [
        ("/gleitzeit/drain", {"hub": "llm", "resource": "s0"}),
        ("/api/pull", {"model": "phi3", "stream": False}),
        ("/api/chat", CHAT),
        ("/gleitzeit/execute", {"method": "llm/chat", "params": CHAT}),
    ]
    for path, body in attacks:
        async with http.post(f"{served.url}{path}", json=body, headers={"Origin": EVIL}) as r:
            assert r.status == 403, path
            assert "Origin" in (await r.json())["error"]
    assert "s0" in served.hub()
    stats = await served.sim_stats()
    assert "/api/pull" not in stats["requests"]
    assert "/api/chat" not in stats["requests"]
    # the same requests from a plain client (no Origin) and from a page on localhost work
    async with http.post(f"{served.url}/api/chat", json=CHAT) as reply:
        assert reply.status == 200
    local = {"Origin": f"http://localhost:{served.port}"}
    async with http.post(f"{served.url}/api/chat", json=CHAT, headers=local) as reply:
        assert reply.status == 200


async def test_configured_origins_are_allowed(
    serve_gateway: ServeFactory, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``[gateway] origins`` (globs) and ``GLEITZEIT_ORIGINS`` add pages that may call; a
    ``null`` origin (sandboxed frame) and look-alike names stay refused."""
    monkeypatch.setenv("GLEITZEIT_ORIGINS", "https://webui.example.org")
    served = await serve_gateway(gateway={"origins": ["https://*.corp.example"]})
    for origin, status in [
        ("https://webui.example.org", 200),
        ("https://chat.corp.example", 200),
        ("https://corp.example.evil.example", 403),
        ("null", 403),
        ("http://localhost.evil.example", 403),
        ("http://127.0.0.1:3000", 200),
        ("http://[::1]:8080", 200),
    ]:
        async with http.get(f"{served.url}/api/tags", headers={"Origin": origin}) as reply:
            assert reply.status == status, origin


async def test_dns_rebinding_is_refused_by_host(
    serve_gateway: ServeFactory, http: aiohttp.ClientSession
) -> None:
    """A page whose name was re-pointed at 127.0.0.1 is same-origin to itself, so it sends
    no Origin on a GET; its Host header still names it and every route answers 403, reads
    included. IP literals, localhost and ``[gateway] hosts`` are served."""
    served = await serve_gateway(gateway={"hosts": ["gpu-box.lan"]})
    for path in ["/gleitzeit/status", "/api/tags", "/api/version"]:
        rebound = {"Host": f"rebind.evil.example:{served.port}"}
        async with http.get(f"{served.url}{path}", headers=rebound) as reply:
            assert reply.status == 403, path
            assert "Host" in (await reply.json())["error"]
    # names glued to a literal are not the literal: a parser reading up to "]" or ":" only
    # would take them for [::1] or 127.0.0.1
    for host in ["[::1]rebind.evil.example", "[::1]:1.evil.example", "127.0.0.1:rebind.evil"]:
        async with http.get(f"{served.url}/api/tags", headers={"Host": host}) as reply:
            assert reply.status == 403, host
    for host in ["localhost", "127.0.0.1", "[::1]", "gpu-box.lan", "192.0.2.7"]:
        headers = {"Host": f"{host}:{served.port}"}
        async with http.get(f"{served.url}/api/tags", headers=headers) as reply:
            assert reply.status == 200, host


async def test_text_plain_and_form_posts_are_refused(
    serve_gateway: ServeFactory, http: aiohttp.ClientSession
) -> None:
    """The bodies a page can post cross-site without a preflight (text/plain, multipart,
    form-encoded from a browser) are 415 even when they hold valid JSON, and do nothing;
    JSON, no type, and ``curl -d`` (form type, no Origin, no cookie) still work."""
    served = await serve_gateway()
    drain = json.dumps({"hub": "llm", "resource": "s0", "remove": False}).encode()
    for content_type, extra in [
        ("text/plain", {}),
        ("text/plain;charset=UTF-8", {}),
        ("multipart/form-data; boundary=x", {}),
        ("application/x-www-form-urlencoded", {"Origin": f"http://localhost:{served.port}"}),
        ("application/x-www-form-urlencoded", {"Cookie": "a=b"}),
    ]:
        headers = {"Content-Type": content_type, **extra}
        async with http.post(f"{served.url}/gleitzeit/drain", data=drain, headers=headers) as r:
            assert r.status == 415, content_type
            assert "application/json" in (await r.json())["error"]
    assert not served.hub().get("s0").draining
    chat = json.dumps(CHAT).encode()
    for content_type in ["application/json", None, "application/x-www-form-urlencoded"]:
        headers = {"Content-Type": content_type} if content_type else {}
        async with http.post(f"{served.url}/api/chat", data=chat, headers=headers) as reply:
            assert reply.status == 200, content_type


async def test_no_content_type_at_all_is_served(serve_gateway: ServeFactory) -> None:
    """A raw request with a JSON body and no Content-Type header is a plain client: served."""
    served = await serve_gateway()
    body = json.dumps(CHAT).encode()
    raw = await raw_exchange(
        served.port,
        b"POST /api/chat HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body,
    )
    assert status_of(raw) == 200


async def test_the_key_cookie_does_not_help_a_foreign_page(
    serve_gateway: ServeFactory, http: aiohttp.ClientSession
) -> None:
    """The ``gleitzeit_key`` cookie authenticates a request, but a request carrying it from a
    foreign Origin is 403 before the key is looked at; from the gateway's own page it works."""
    served = await serve_gateway(gateway={"keys": KEYS})
    cookie = {"Cookie": f"gleitzeit_key={ADMIN_TOKEN}"}
    body = {"hub": "llm", "resource": "s0", "remove": False}
    async with http.post(
        f"{served.url}/gleitzeit/drain", json=body, headers={**cookie, "Origin": EVIL}
    ) as reply:
        assert reply.status == 403
    assert not served.hub().get("s0").draining
    async with http.get(f"{served.url}/gleitzeit/status", headers=cookie) as reply:
        assert reply.status == 200
    own = {**cookie, "Origin": served.url}
    async with http.get(f"{served.url}/gleitzeit/status", headers=own) as reply:
        assert reply.status == 200
    async with http.get(f"{served.url}/gleitzeit/status") as reply:
        assert reply.status == 401


async def test_the_official_ollama_client_works_with_no_configuration(
    serve_gateway: ServeFactory,
) -> None:
    """The official ``ollama`` client on loopback, with no key and no configuration, lists,
    chats (streamed and not) and embeds through the guarded gateway as before."""
    served = await serve_gateway()
    client = ollama.AsyncClient(host=served.url)
    listed = await client.list()
    assert {m.model for m in listed.models} >= {"llama3.2:latest"}
    answer = await client.chat(model="llama3.2", messages=[{"role": "user", "content": "hi"}])
    assert answer.message.content
    chunks = [c async for c in await client.chat(model="llama3.2", messages=[], stream=True)]
    assert chunks[-1].done
    embedded = await client.embed(model="nomic-embed-text", input="hello")
    assert embedded.embeddings
    # a client configured with a token for some other gateway is not refused here
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{served.url}/api/tags", headers=bearer("ignored")) as reply,
    ):
        assert reply.status == 200
