"""API keys: a key outside its scopes, an unknown or malformed key, and a key over its
limits are refused with a JSON error naming what is missing, while the same request with
the right key works; tokens never appear in what the gateway shows."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from gleitzeit_core._config import load_config
from gleitzeit_core._errors import ConfigError
from gleitzeit_core._keys import KeyConfig, KeyRing
from tests.security.conftest import (
    ADMIN_TOKEN,
    CHAT,
    CHAT_TOKEN,
    KEYS,
    ServeFactory,
    bearer,
    raw_exchange,
    status_of,
)


async def test_a_key_outside_its_methods_gets_403_naming_the_scope(
    serve_gateway: ServeFactory, http: aiohttp.ClientSession
) -> None:
    """The ``chat`` key (llm/chat, llm/list_models) may chat but not generate or embed,
    neither through /gleitzeit/execute nor through the Ollama routes; the error names the
    ``methods`` scope and the key, never the token."""
    served = await serve_gateway(gateway={"keys": KEYS})
    key = bearer(CHAT_TOKEN)
    async with http.post(f"{served.url}/api/chat", json=CHAT, headers=key) as reply:
        assert reply.status == 200
    generate = {"model": "llama3.2", "prompt": "hi", "stream": False}
    for path, body in [
        ("/api/generate", generate),
        ("/api/embed", {"model": "llama3.2", "input": "x"}),
        ("/gleitzeit/execute", {"method": "llm/generate", "params": generate}),
    ]:
        async with http.post(f"{served.url}{path}", json=body, headers=key) as reply:
            assert reply.status == 403, path
            text = await reply.text()
            assert "methods" in text
            assert "chat" in text
            assert CHAT_TOKEN not in text
    stats = await served.sim_stats()
    assert "/api/generate" not in stats["requests"]


async def test_a_key_outside_its_models_gets_403(
    serve_gateway: ServeFactory, http: aiohttp.ClientSession
) -> None:
    """The ``chat`` key may use llama3.2 (also as llama3.2:latest) but not llava, on the
    Ollama routes and through execute; /api/show of another model is refused too, and the
    model listings show it only llama3.2."""
    served = await serve_gateway(gateway={"keys": KEYS})
    key = bearer(CHAT_TOKEN)
    latest = {**CHAT, "model": "llama3.2:latest"}
    async with http.post(f"{served.url}/api/chat", json=latest, headers=key) as reply:
        assert reply.status == 200
    other = {**CHAT, "model": "llava"}
    for path, body in [
        ("/api/chat", other),
        ("/gleitzeit/execute", {"method": "llm/chat", "params": other}),
        ("/api/show", {"model": "llava"}),
    ]:
        async with http.post(f"{served.url}{path}", json=body, headers=key) as reply:
            assert reply.status == 403, path
            assert "models" in (await reply.json())["error"]
    async with http.post(f"{served.url}/api/chat", json=other, headers=key) as reply:
        assert (await reply.json())["scope"] == "models"
    async with http.post(
        f"{served.url}/gleitzeit/execute",
        json={"method": "llm/chat", "params": other},
        headers=bearer(ADMIN_TOKEN),
    ) as reply:
        assert reply.status == 200
    # listings show the key only its own models; the admin key sees them all
    async with http.get(f"{served.url}/api/tags", headers=key) as reply:
        assert [m["model"] for m in (await reply.json())["models"]] == ["llama3.2:latest"]
    listing = {"method": "llm/list_models", "params": {}}
    async with http.post(f"{served.url}/gleitzeit/execute", json=listing, headers=key) as reply:
        names = [m["name"] for m in (await reply.json())["result"]["models"]]
        assert names == ["llama3.2:latest"]
    async with http.get(f"{served.url}/api/tags", headers=bearer(ADMIN_TOKEN)) as reply:
        assert len((await reply.json())["models"]) == 3


async def test_pool_changing_routes_need_an_admin_key(
    serve_gateway: ServeFactory, http: aiohttp.ClientSession
) -> None:
    """Drain and pull (route and llm/pull_model) are 403 ``admin`` for a scoped key, even one
    whose methods allow everything, whatever instance the pull names (the refusal comes
    before the instance is looked up, so it lists none); the admin key (and the single
    ``token``) may."""
    keys = {**KEYS, "wide": {"token": "wide-token", "methods": ["*"]}}
    served = await serve_gateway(gateway={"keys": keys}, sim={"pullable": ["phi3"]})
    drain = {"hub": "llm", "resource": "s0", "remove": False, "timeout": 5}
    pull = {"model": "phi3", "stream": False}
    execute_pull = {"method": "llm/pull_model", "params": {"model": "phi3"}}
    for path, body in [
        ("/gleitzeit/drain", drain),
        ("/api/pull", pull),
        ("/api/pull", {**pull, "instance": "no-such-instance"}),
        ("/gleitzeit/execute", execute_pull),
        ("/gleitzeit/execute", {**execute_pull, "params": {"model": "phi3", "instance": "x"}}),
    ]:
        async with http.post(
            f"{served.url}{path}", json=body, headers=bearer("wide-token")
        ) as reply:
            assert reply.status == 403, path
            assert "admin" in (await reply.json())["error"]
    assert "/api/pull" not in (await served.sim_stats())["requests"]
    assert not served.hub().get("s0").draining
    admin = bearer(ADMIN_TOKEN)
    async with http.post(f"{served.url}/api/pull", json=pull, headers=admin) as reply:
        assert reply.status == 200
    async with http.post(f"{served.url}/gleitzeit/drain", json=drain, headers=admin) as reply:
        assert reply.status == 200
    assert served.hub().get("s0").draining


async def test_unknown_missing_and_non_ascii_keys_are_401_never_500(
    serve_gateway: ServeFactory, http: aiohttp.ClientSession
) -> None:
    """No key, a wrong key, another scheme and an Authorization header of non-ASCII or
    invalid UTF-8 bytes all get 401 JSON; the health check needs no key."""
    served = await serve_gateway(gateway={"keys": KEYS})
    for headers in [{}, bearer("wrong"), {"Authorization": f"Basic {ADMIN_TOKEN}"}]:
        async with http.get(f"{served.url}/api/tags", headers=headers) as reply:
            assert reply.status == 401
            assert (await reply.json())["scope"] == "key"
    for value in ["Bearer tökén".encode(), b"Bearer \xff\xfe\x80", "Bearer 密钥".encode()]:
        raw = await raw_exchange(
            served.port,
            b"GET /api/tags HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            b"Authorization: " + value + b"\r\n\r\n",
        )
        assert status_of(raw) == 401, value
        assert b'"error"' in raw
    async with http.get(f"{served.url}/gleitzeit/health") as reply:
        assert reply.status == 200


async def test_a_non_ascii_token_can_be_configured_and_used(
    serve_gateway: ServeFactory,
) -> None:
    """Tokens are compared as bytes: a configured non-ASCII token works when sent as UTF-8."""
    served = await serve_gateway(gateway={"keys": {"u": {"token": "schlüssel", "admin": True}}})
    raw = await raw_exchange(
        served.port,
        b"GET /gleitzeit/status HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        + "Authorization: Bearer schlüssel\r\n\r\n".encode(),
    )
    assert status_of(raw) == 200


async def test_status_is_readable_with_any_key_and_counts_per_key_name(
    serve_gateway: ServeFactory, http: aiohttp.ClientSession
) -> None:
    """Any valid key reads /gleitzeit/status; a key sees its own counters by name, never
    another key's (an admin sees every key's), and no token anywhere (nor its hash)."""
    served = await serve_gateway(gateway={"keys": KEYS})
    key = bearer(CHAT_TOKEN)
    async with http.post(f"{served.url}/api/chat", json=CHAT, headers=key) as reply:
        assert reply.status == 200
    async with http.post(f"{served.url}/api/generate", json=CHAT, headers=key) as reply:
        assert reply.status == 403
    async with http.get(f"{served.url}/gleitzeit/status", headers=key) as reply:
        assert reply.status == 200
        text = await reply.text()
    callers = json.loads(text)["callers"]
    assert set(callers) == {"chat"}  # the admin key "ops" is another tenant's business
    assert callers["chat"]["requests"] == 3
    assert callers["chat"]["denied"] == 1
    assert callers["chat"]["in_flight"] == 1  # this status request itself
    for secret in [CHAT_TOKEN, ADMIN_TOKEN, KEYS["chat"]["token_sha256"]]:
        assert secret not in text
    async with http.get(f"{served.url}/gleitzeit/status", headers=bearer(ADMIN_TOKEN)) as reply:
        assert set((await reply.json())["callers"]) == {"ops", "chat"}


async def test_requests_per_minute_answers_429_with_retry_after(
    serve_gateway: ServeFactory, http: aiohttp.ClientSession
) -> None:
    """A key allowed 3 requests a minute gets 429 with Retry-After on the 4th; another key
    is not affected."""
    keys = {**KEYS, "slow": {"token": "slow-token", "requests_per_minute": 3}}
    served = await serve_gateway(gateway={"keys": keys})
    statuses = []
    for _ in range(4):
        async with http.get(f"{served.url}/api/tags", headers=bearer("slow-token")) as reply:
            statuses.append(reply.status)
            retry = reply.headers.get("Retry-After")
            body = await reply.json()
    assert statuses == [200, 200, 200, 429]
    assert retry is not None
    assert 1 <= int(retry) <= 60
    assert body["scope"] == "requests_per_minute"
    async with http.get(f"{served.url}/api/tags", headers=bearer(ADMIN_TOKEN)) as reply:
        assert reply.status == 200


async def test_max_concurrent_holds_one_key_to_its_share(
    serve_gateway: ServeFactory, http: aiohttp.ClientSession
) -> None:
    """With one request of a ``max_concurrent = 1`` key held open upstream, its second gets
    429 at once while another key is served; once the first ends the key works again."""
    keys = {**KEYS, "one": {"token": "one-token", "max_concurrent": 1}}
    served = await serve_gateway(gateway={"keys": keys})
    async with http.post(f"{served.sim_url}/_sim/faults", json={"hang": True}) as reply:
        assert reply.status == 200
    held = asyncio.create_task(
        http.post(f"{served.url}/api/chat", json=CHAT, headers=bearer("one-token"))
    )
    try:
        for _ in range(3000):  # until the held request is in flight (30 s at most)
            if served.runtime.callers["one"].in_flight == 1:
                break
            await asyncio.sleep(0.01)
        async with http.get(f"{served.url}/api/tags", headers=bearer("one-token")) as reply:
            assert reply.status == 429
            assert reply.headers["Retry-After"] == "1"
            assert (await reply.json())["scope"] == "max_concurrent"
        async with http.get(f"{served.url}/api/tags", headers=bearer(ADMIN_TOKEN)) as reply:
            assert reply.status == 200
    finally:
        async with http.delete(f"{served.sim_url}/_sim/faults") as reply:
            assert reply.status == 200
        first = await held
        first.release()
    assert first.status == 200
    async with http.get(f"{served.url}/api/tags", headers=bearer("one-token")) as reply:
        assert reply.status == 200


def test_key_config_errors_name_the_key() -> None:
    """A key needs exactly one token source; an unset token_env, two keys with one token and
    wrong values are config errors naming the key's path."""
    with pytest.raises(ValueError, match="exactly one"):
        KeyConfig(token="a", token_env="B")
    with pytest.raises(ValueError, match="exactly one"):
        KeyConfig()
    with pytest.raises(ConfigError, match=r"gateway\.keys\.x\.token_env.*NOPE_UNSET"):
        KeyRing({"x": KeyConfig(token_env="NOPE_UNSET")}, environ={})
    with pytest.raises(ConfigError, match="same token"):
        KeyRing({"a": KeyConfig(token="t"), "b": KeyConfig(token="t")})
    bad = {"keys": {"x": {"token_sha256": "zz", "max_concurrent": 0}}}
    with pytest.raises(ConfigError) as refused:
        load_config({"gateway": bad})
    assert "gateway.keys.x.token_sha256: expected 64 hex digits" in str(refused.value)
    assert "gateway.keys.x.max_concurrent: expected an integer >= 1" in str(refused.value)


def test_an_empty_single_token_is_a_config_error_not_an_open_gateway() -> None:
    """``[gateway] token = ""`` (say, templated from an unset variable) is refused naming
    ``gateway.token``, instead of silently leaving the gateway open to every local client as
    the anonymous admin; a real token still makes the ring closed."""
    with pytest.raises(ConfigError, match=r"gateway\.token: expected a non-empty token"):
        load_config({"gateway": {"token": ""}})
    ring = KeyRing.from_config(load_config({"gateway": {"token": "t"}}).gateway, environ={})
    assert not ring.open
    assert ring.lookup(None) is None
    assert ring.lookup("") is None


async def test_token_env_and_the_single_token_are_keys(
    serve_gateway: ServeFactory, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``token_env`` reads the token from the environment; ``[gateway] token`` stays an admin
    key (named ``admin``) beside the scoped keys."""
    monkeypatch.setenv("TEAM_KEY", "from-the-env")
    keys = {"team": {"token_env": "TEAM_KEY", "methods": ["llm/list_models"]}}
    served = await serve_gateway(gateway={"keys": keys, "token": "single"})
    async with http.get(f"{served.url}/api/tags", headers=bearer("from-the-env")) as reply:
        assert reply.status == 200
    drain = {"hub": "llm", "resource": "s0", "remove": False}
    async with http.post(
        f"{served.url}/gleitzeit/drain", json=drain, headers=bearer("single")
    ) as reply:
        assert reply.status == 200
    assert set(served.runtime.callers) == {"team", "admin"}
