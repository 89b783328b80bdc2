"""Sandbox profiles per API key, and request limits that cannot mint unbounded warm pools.

A gateway runs each request inside ``acting_as(Caller)``; these tests do the same in-process
(the gateway turns ``PermissionDenied`` into a 403). The attacks: a key choosing a profile
outside its scope (the 2g ``datascience``, the networked ``trusted``), a key without a list
reaching beyond the hub's client profiles, and a client cycling through limit values to
make a new pool key per request.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from gleitzeit_docker.engine import LABEL_HUB, LABEL_PROFILE, Engine
from gleitzeit_docker.profiles import limit_tiers

from gleitzeit_core import Caller, PermissionDenied, Runtime, acting_as
from gleitzeit_core._gateway import start_gateway

from ..docker.hub.conftest import _isolated  # noqa: F401 - autouse: only this plugin
from ..docker_engine import IMAGE, require_engine

HUB_ID = f"gz-sec-profiles-{uuid.uuid4().hex[:8]}"


def _config(**hub: Any) -> dict[str, Any]:
    table: dict[str, Any] = {
        "kind": "docker",
        "hub_id": HUB_ID,
        "engines": [os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")],
        "default_image": IMAGE,
        "datascience_image": IMAGE,
        "allow_trusted": True,  # enabled by the operator: still only for keys that name it
        "pool": {"max_size": 4, "acquire_timeout": 60.0},
        **hub,
    }
    return {"hubs": {"sandbox": table}}


@pytest_asyncio.fixture
async def runtime() -> AsyncIterator[Runtime]:
    require_engine()
    rt = Runtime.from_config(_config())
    await rt.start()
    yield rt
    await rt.stop()
    engine = Engine()
    try:
        await engine.remove_all(HUB_ID)
    finally:
        await engine.close()


SIX_BY_SEVEN = {"code": "result = 6 * 7"}


@pytest.mark.docker
async def test_a_key_may_use_only_its_profiles(runtime: Runtime) -> None:
    """A key listing `minimal` runs there, but `datascience` (2g) and the enabled networked
    `trusted` are refused with PermissionDenied naming the `profiles` scope, before any
    container starts; a batch with one such task is refused whole, and `python/info` about
    one too (its listing shows only what the key may use)."""
    reports = Caller(name="reports", profiles=("minimal",))
    with acting_as(reports):
        ok = await runtime.execute("python/execute", {**SIX_BY_SEVEN, "profile": "minimal"})
        assert (ok["success"], ok["result"]) == (True, 42)
        for profile in ("datascience", "trusted", "sandboxed"):
            with pytest.raises(PermissionDenied) as denied:
                await runtime.execute("python/execute", {**SIX_BY_SEVEN, "profile": profile})
            assert (denied.value.caller, denied.value.scope) == ("reports", "profiles")
            assert repr(profile) in denied.value.detail
        with pytest.raises(PermissionDenied):
            await runtime.execute(
                "python/batch",
                {"tasks": [{**SIX_BY_SEVEN, "profile": "minimal"}, {**SIX_BY_SEVEN}]},
            )
        with pytest.raises(PermissionDenied):
            await runtime.execute("python/info", {"profile": "datascience"})
        seen = await runtime.execute("python/info", {"profile": "minimal"})
        assert sorted(seen["profiles"]) == ["minimal"]


@pytest.mark.docker
async def test_a_key_without_a_list_gets_only_the_client_profiles(runtime: Runtime) -> None:
    """A key with no `profiles` may use the hub's client profiles (`sandboxed`, `minimal`)
    but not `datascience`, and never the networked `trusted`, even though the operator
    enabled it; the operator itself (no caller) may use every enabled profile."""
    anyone = Caller(name="anyone")
    with acting_as(anyone):
        ok = await runtime.execute("python/execute", SIX_BY_SEVEN)
        assert (ok["success"], ok["result"]) == (True, 42)
        for profile in ("datascience", "trusted"):
            with pytest.raises(PermissionDenied) as denied:
                await runtime.execute("python/execute", {**SIX_BY_SEVEN, "profile": profile})
            assert denied.value.scope == "profiles"
    provider = runtime.providers["python/v1"]
    assert provider.allowed_for(anyone) == {"sandboxed", "minimal"}
    assert provider.allowed_for(None) == {"sandboxed", "minimal", "datascience", "trusted"}
    named = Caller(name="crawler", profiles=("trusted",))
    assert provider.allowed_for(named) == {"trusted"}  # named and enabled: allowed


def test_trusted_stays_off_for_a_key_that_names_it_unless_the_operator_enables_it() -> None:
    """Naming `trusted` in a key is not enough: with `allow_trusted` off it is refused
    (as a disabled profile) for that key too."""
    rt = Runtime.from_config(_config(allow_trusted=False))
    provider = rt.providers["python/v1"]
    named = Caller(name="crawler", profiles=("trusted", "minimal"))
    assert provider.allowed_for(named) == {"minimal"}
    with acting_as(named), pytest.raises(Exception, match="disabled"):
        provider.profile("trusted", "python/execute")


def test_request_limits_map_to_a_bounded_set_of_pools() -> None:
    """Every memory from 16m to 256m, cpus from 0.01 to 1 and pids from 8 to 64 a client might
    ask for lands on one of a fixed, small set of container configs (pool keys) of the
    profile: each limit is the profile's halved k times, at most what was asked (but for
    cpus below the smallest tier) and at least half of it."""
    rt = Runtime.from_config(_config())
    provider = rt.providers["python/v1"]
    params_type = provider.methods()["python/execute"].params
    keys: set[str] = set()
    for memory in range(16, 257, 3):
        for cpus in (0.01, 0.02, 0.2, 0.26, 0.4, 0.5, 0.51, 0.75, 0.99, 1.0):
            for pids in (8, 15, 16, 17, 31, 32, 33, 63, 64):
                params = params_type(code="1", memory=f"{memory}m", cpus=cpus, pids=pids)
                profile, _ = provider.prepare(params)
                keys.add(profile.pool_key())
                assert (memory << 20) // 2 < profile.memory <= memory << 20
                assert cpus / 2 < profile.cpus <= max(cpus, 1 / 64)
                assert pids // 2 < profile.pids_limit <= pids
    tiers = [len(limit_tiers(*bounds)) for bounds in ((256 << 20, 16 << 20), (1.0, 0.01), (64, 8))]
    assert tiers == [5, 7, 4]
    assert 1 < len(keys) <= 5 * 7 * 4


def test_a_networked_client_profile_or_a_bad_validate_limit_is_a_config_error() -> None:
    """The operator cannot open a networked profile to every key through `client_profiles`,
    and a malformed `validate` limit is refused; both errors name the key's path."""
    with pytest.raises(Exception, match=r"hubs\.sandbox\.client_profiles.*'trusted' is networked"):
        Runtime.from_config(_config(client_profiles=["trusted"]))
    with pytest.raises(Exception, match=r"hubs\.sandbox\.validate\.max_size"):
        Runtime.from_config(_config(validate={"max_size": "lots"}))


@pytest.mark.docker
async def test_through_the_gateway_a_key_outside_its_profiles_gets_403() -> None:
    """Over a real socket: the key `reports` (profiles: minimal) gets 403 naming the
    `profiles` scope for `datascience` and `trusted`, never the token, and 200 with the
    answer for `minimal`; no `datascience` container is ever made."""
    require_engine()
    token = "reports-" + uuid.uuid4().hex
    config = _config()
    config["gateway"] = {"keys": {"reports": {"token": token, "profiles": ["minimal"]}}}
    rt = Runtime.from_config(config)
    await rt.start()
    runner = await start_gateway(rt, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/gleitzeit/execute"
    headers = {"Authorization": f"Bearer {token}"}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http:
            for profile in ("datascience", "trusted"):
                body = {"method": "python/execute", "params": {**SIX_BY_SEVEN, "profile": profile}}
                async with http.post(url, json=body, headers=headers) as reply:
                    assert reply.status == 403, profile
                    text = await reply.text()
                    assert "profiles" in text
                    assert token not in text
            body = {"method": "python/execute", "params": {**SIX_BY_SEVEN, "profile": "minimal"}}
            async with http.post(url, json=body, headers=headers) as reply:
                assert reply.status == 200
                assert (await reply.json())["result"]["result"] == 42
    finally:
        await runner.cleanup()
        await rt.stop()
    engine = Engine()
    try:
        assert await engine.list_containers({LABEL_HUB: HUB_ID, LABEL_PROFILE: "datascience"}) == []
        await engine.remove_all(HUB_ID)
    finally:
        await engine.close()


@pytest.mark.docker
async def test_a_batch_cannot_run_more_tasks_at_once_than_its_keys_max_concurrent() -> None:
    """A key with ``max_concurrent = 1`` that sends one ``python/batch`` asking for 4 tasks
    at once still holds at most one container at a time: its tasks run one after another
    in a single warm container (the engine never holds a second one for this hub), instead
    of one request taking the whole pool past the key's limit."""
    require_engine()
    token = "batch-" + uuid.uuid4().hex
    config = _config()
    config["gateway"] = {"keys": {"narrow": {"token": token, "max_concurrent": 1}}}
    rt = Runtime.from_config(config)
    await rt.start()
    runner = await start_gateway(rt, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/gleitzeit/execute"
    task = {"code": "import time\ntime.sleep(1)\nresult = 6 * 7"}
    body = {"method": "python/batch", "params": {"tasks": [task] * 4, "max_concurrent": 4}}
    engine = Engine()
    try:
        headers = {"Authorization": f"Bearer {token}"}
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=240)) as http,
            http.post(url, json=body, headers=headers) as reply,
        ):
            assert reply.status == 200
            answer = (await reply.json())["result"]
        assert [r["result"] for r in answer["results"]] == [42] * 4
        assert len(await engine.list_containers({LABEL_HUB: HUB_ID})) == 1
    finally:
        await runner.cleanup()
        await rt.stop()
        try:
            await engine.remove_all(HUB_ID)
        finally:
            await engine.close()
