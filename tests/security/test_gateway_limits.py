"""Limits a client cannot talk its way past: slow headers and bodies, too many connections,
oversized bodies and batches, long timeouts, pulls from foreign registries or without TLS
checks, and pulls by non-admin keys through ``auto_pull``. Each is tried for real while a
plain client is served alongside."""

from __future__ import annotations

import asyncio

import aiohttp

from gleitzeit_core._config import GatewayConfig
from tests.security.conftest import (
    ADMIN_TOKEN,
    CHAT,
    CHAT_TOKEN,
    KEYS,
    LOOPBACK,
    ServeFactory,
    bearer,
    raw_exchange,
    status_of,
)


async def test_slow_headers_are_cut_off_while_others_are_served(
    serve_gateway: ServeFactory, http: aiohttp.ClientSession
) -> None:
    """Slowloris: connections that send a header line now and then never finish; each is
    closed once ``header_timeout`` has passed, and a normal client is served meanwhile."""
    served = await serve_gateway(gateway={"header_timeout": 1.0})
    slow = [await asyncio.open_connection(LOOPBACK, served.port) for _ in range(5)]
    for _, writer in slow:
        writer.write(b"GET /api/tags HTTP/1.1\r\nHost: 127.0.0.1\r\n")

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
        async def feed() -> None:
            for index in range(200):  # one header every 0.1 s: 20 s if never cut
                writer.write(f"X-Slow-{index}: 1\r\n".encode())
                await asyncio.sleep(0.1)

        feeder = asyncio.create_task(feed())
        try:
            async with asyncio.timeout(20):
                try:
                    data = await reader.read()
                except ConnectionError:
                    data = b""
            return b"closed" if data == b"" else data
        except TimeoutError:
            return b"still open"
        finally:
            feeder.cancel()

    trickling = [asyncio.create_task(trickle(r, w)) for r, w in slow]
    async with http.get(f"{served.url}/api/tags") as reply:
        assert reply.status == 200
    outcomes = await asyncio.gather(*trickling)
    assert outcomes == [b"closed"] * 5
    for _, writer in slow:
        writer.close()
    async with http.get(f"{served.url}/api/tags") as reply:
        assert reply.status == 200


async def test_a_slow_header_on_a_kept_alive_connection_is_cut_too(
    serve_gateway: ServeFactory,
) -> None:
    """After one full request on a keep-alive connection, a second request whose headers
    never finish is closed after ``header_timeout`` as well."""
    served = await serve_gateway(gateway={"header_timeout": 1.0})
    reader, writer = await asyncio.open_connection(LOOPBACK, served.port)
    try:
        writer.write(b"GET /api/version HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        assert b" 200 " in head.split(b"\r\n")[0]
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if b"Length" in line)
        await reader.readexactly(length)
        writer.write(b"GET /api/tags HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finished
        async with asyncio.timeout(20):
            assert await reader.read() == b""  # closed by the gateway
    finally:
        writer.close()


async def test_idle_connections_beyond_the_cap_are_refused_not_the_server(
    serve_gateway: ServeFactory, http: aiohttp.ClientSession
) -> None:
    """With ``max_connections = 4`` held open by idle sockets, a fifth connection is answered
    503 and closed; when they go, a plain client is served again."""
    served = await serve_gateway(gateway={"max_connections": 4, "header_timeout": 30.0})
    idle = [await asyncio.open_connection(LOOPBACK, served.port) for _ in range(4)]
    for reader, writer in idle:  # one answered request each: all four are surely open
        writer.write(b"GET /api/version HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        assert b" 200 " in head.split(b"\r\n")[0]
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if b"Length" in line)
        await reader.readexactly(length)
    raw = await raw_exchange(
        served.port, b"GET /api/tags HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    assert status_of(raw) == 503
    assert b"too many open connections" in raw
    for _, writer in idle:
        writer.close()
        await writer.wait_closed()
    for _ in range(100):
        try:
            async with http.get(f"{served.url}/api/tags") as reply:
                if reply.status == 200:
                    break
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the gateway did not serve again after the idle sockets left")


async def test_a_body_that_never_arrives_is_a_408(serve_gateway: ServeFactory) -> None:
    """A request that promises 100 bytes of body and sends 10 is answered 408 after
    ``body_timeout``, not held forever."""
    served = await serve_gateway(gateway={"body_timeout": 1.0})
    raw = await raw_exchange(
        served.port,
        b"POST /api/chat HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n" + b'{"model": ',
        timeout=20,
    )
    assert status_of(raw) == 408


async def test_the_default_body_limit_refuses_large_bodies(
    serve_gateway: ServeFactory, http: aiohttp.ClientSession
) -> None:
    """The default body limit is 8 MiB: a 9 MiB body is 413, a chat with a 5 MiB base64
    image (about a 3.7 MB photo) is served."""
    served = await serve_gateway()
    assert GatewayConfig().max_body_bytes == 8 * 1024 * 1024
    big = {**CHAT, "padding": "x" * (9 * 1024 * 1024)}
    async with http.post(f"{served.url}/api/chat", json=big) as reply:
        assert reply.status == 413
    image = "QUFB" * (5 * 1024 * 1024 // 4)
    message = {"role": "user", "content": "what is it?", "images": [image]}
    with_image = {**CHAT, "model": "llava", "messages": [message]}
    async with http.post(f"{served.url}/api/chat", json=with_image) as reply:
        assert reply.status == 200


async def test_request_timeout_of_the_gateway_is_enforced(
    serve_gateway: ServeFactory, http: aiohttp.ClientSession
) -> None:
    """A request held upstream past ``[gateway] request_timeout`` is answered 504 by the
    gateway (the hub's own limits being longer)."""
    served = await serve_gateway(gateway={"request_timeout": 1.0}, hub={"request_timeout": 60.0})
    async with http.post(f"{served.sim_url}/_sim/faults", json={"hang": True}) as reply:
        assert reply.status == 200
    try:
        async with http.post(f"{served.url}/api/chat", json=CHAT) as reply:
            assert reply.status == 504
            assert "1 s" in (await reply.json())["error"]
    finally:
        async with http.delete(f"{served.sim_url}/_sim/faults"):
            pass


async def test_a_client_cannot_extend_the_hubs_timeout(
    serve_gateway: ServeFactory, http: aiohttp.ClientSession
) -> None:
    """``timeout`` in llm/* params is capped at the hub's ``request_timeout``: asking for an
    hour against a hub limit of 1 s still fails when the instance holds the call."""
    served = await serve_gateway(hub={"request_timeout": 1.0, "retries": 0})
    async with http.post(f"{served.sim_url}/_sim/faults", json={"hang": True}) as reply:
        assert reply.status == 200
    params = {**CHAT, "timeout": 3600}
    try:
        async with http.post(
            f"{served.url}/gleitzeit/execute", json={"method": "llm/chat", "params": params}
        ) as reply:
            assert reply.status == 504, await reply.text()
    finally:
        async with http.delete(f"{served.sim_url}/_sim/faults"):
            pass


async def test_batches_are_bounded_by_max_batch(
    serve_gateway: ServeFactory, http: aiohttp.ClientSession
) -> None:
    """A ``*/batch`` call with more tasks than ``[gateway] max_batch`` is a 400 naming the
    limit before any provider sees it."""
    served = await serve_gateway(gateway={"max_batch": 3})
    tasks = [{"code": "print(1)"}] * 4
    async with http.post(
        f"{served.url}/gleitzeit/execute",
        json={"method": "python/batch", "params": {"tasks": tasks}},
    ) as reply:
        assert reply.status == 400
        assert "max_batch (3)" in (await reply.json())["error"]


async def test_pulls_reach_only_allowed_registries_and_never_skip_tls(
    serve_gateway: ServeFactory, http: aiohttp.ClientSession
) -> None:
    """A pull from a registry outside ``pull_registries`` is 403 and never reaches the
    instance; ``insecure: true`` is dropped unless the hub sets ``pull_insecure``."""
    served = await serve_gateway(sim={"pullable": ["phi3"]})
    admin = bearer(ADMIN_TOKEN)
    for model in ["evil.example:5000/x/phi3", "https://evil.example/ns/phi3"]:
        async with http.post(
            f"{served.url}/api/pull", json={"model": model, "stream": False}, headers=admin
        ) as reply:
            assert reply.status == 403, model
            assert "pull_registries" in (await reply.json())["error"]
    assert "/api/pull" not in (await served.sim_stats())["requests"]
    body = {"model": "phi3", "stream": False, "insecure": True}
    async with http.post(f"{served.url}/api/pull", json=body) as reply:
        assert reply.status == 200
    stats = await served.sim_stats()
    assert stats["requests"]["/api/pull"] == 1
    assert stats["insecure_pulls"] == 0


async def test_insecure_passes_where_the_operator_allows_it(
    serve_gateway: ServeFactory, http: aiohttp.ClientSession
) -> None:
    """With ``pull_insecure = true`` the flag reaches the instance (so the test above can
    see it being dropped)."""
    served = await serve_gateway(sim={"pullable": ["phi3"]}, hub={"pull_insecure": True})
    body = {"model": "phi3", "stream": False, "insecure": True}
    async with http.post(f"{served.url}/api/pull", json=body) as reply:
        assert reply.status == 200
    assert (await served.sim_stats())["insecure_pulls"] == 1


async def test_auto_pull_runs_only_for_admin_keys(
    serve_gateway: ServeFactory, http: aiohttp.ClientSession
) -> None:
    """On a hub with ``auto_pull``, a scoped key asking for a model nobody has gets 404 and
    nothing is pulled; the admin key's same request pulls it and is answered."""
    keys = {**KEYS, "chat": {**KEYS["chat"], "models": ["*"]}}
    served = await serve_gateway(
        gateway={"keys": keys}, hub={"auto_pull": True}, sim={"pullable": ["phi3"]}
    )
    request = {**CHAT, "model": "phi3"}
    async with http.post(
        f"{served.url}/api/chat", json=request, headers=bearer(CHAT_TOKEN)
    ) as reply:
        assert reply.status == 404
    execute = {"method": "llm/chat", "params": request}
    async with http.post(
        f"{served.url}/gleitzeit/execute", json=execute, headers=bearer(CHAT_TOKEN)
    ) as reply:
        assert reply.status in (404, 503)
    assert "/api/pull" not in (await served.sim_stats())["requests"]
    async with http.post(
        f"{served.url}/api/chat", json=request, headers=bearer(ADMIN_TOKEN)
    ) as reply:
        assert reply.status == 200
    assert (await served.sim_stats())["requests"]["/api/pull"] == 1


async def test_a_stream_past_request_timeout_is_cut_and_the_gateway_goes_on(
    serve_gateway: ServeFactory, http: aiohttp.ClientSession
) -> None:
    """A streamed answer still running at ``request_timeout`` (a slow model, 5 tokens a
    second) has its connection closed, so the client sees the stream end early instead of
    waiting forever; the gateway serves the next request."""
    served = await serve_gateway(
        gateway={"request_timeout": 1.0}, sim={"tokens_per_s": 5.0, "max_tokens": 100}
    )
    async with http.post(f"{served.url}/api/chat", json={**CHAT, "stream": True}) as reply:
        assert reply.status == 200
        lines = []
        try:
            async with asyncio.timeout(20):
                async for line in reply.content:
                    lines.append(line)
        except aiohttp.ClientPayloadError:
            pass  # the cut shows as a broken chunked body
    assert lines  # some chunks came before the limit
    assert b'"done":true' not in lines[-1].replace(b" ", b"")
    async with http.get(f"{served.url}/api/tags") as reply:
        assert reply.status == 200
