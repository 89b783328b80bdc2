"""Zero-downtime operation of `gleitzeit serve` (issue 15, item 3): SIGTERM drains, SIGHUP and
POST /gleitzeit/reload re-read the config, and replicas sharing a port (reuse_port) restart
one after the other under load without a failed request. Real child processes, real sockets,
in-process simulators; the clients are plain aiohttp sessions with keep-alive (aiohttp retries
no POST, so every reset or refused request would show as a failure)."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gleitzeit_core._reachability import MIGRATE_SYSCTL
from tests.ollama.conftest import SimFactory
from tests.scaleout.lifecycle import CHAT, Load, Served, config_text, free_port, sim_requests

ADMIN, ALICE, BOB = "admin-token-0123456789", "alice-token-0123456789", "bob-token-0123456789"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _serve(folder: Path, text: str, name: str = "gw") -> tuple[Served, Path]:
    config = folder / f"{name}.toml"
    config.write_text(text, encoding="utf-8")
    port = next(line for line in text.splitlines() if line.startswith("port = "))
    url = f"http://127.0.0.1:{port.split(' = ')[1]}"
    return await Served.start(config, folder / f"{name}.log", url), config


async def _status(url: str, token: str | None = None) -> dict[str, Any]:
    headers = _bearer(token) if token else {}
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10), headers=headers) as http,
        http.get(f"{url}/gleitzeit/status") as reply,
    ):
        data: dict[str, Any] = await reply.json()
    return data


def _resource_ids(status: dict[str, Any]) -> set[str]:
    hub = next(h for h in status["hubs"] if h["name"] == "llm")
    return {r["id"] for r in hub["resources"]}


async def test_sigterm_finishes_streams_refuses_new_connections_and_exits_0(
    sim_factory: SimFactory, tmp_path: Path
) -> None:
    """Streams in flight when SIGTERM arrives complete whole; new connections after it are
    refused; a kept-alive connection is answered (health: 503 draining) with Connection:
    close; the process exits 0."""
    (sim,) = await sim_factory(1, tokens_per_s=5.0, max_tokens=30, num_parallel=16)
    port = free_port()
    served, _ = await _serve(tmp_path, config_text(port, {"s0": sim.url}))
    url = served.url
    timeout = aiohttp.ClientTimeout(total=120)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as kept:
            async with kept.get(f"{url}/gleitzeit/health") as first:
                assert first.status == 200
            sessions = [aiohttp.ClientSession(timeout=timeout) for _ in range(4)]
            replies = [
                await s.post(f"{url}/api/chat", json={**CHAT, "stream": True}) for s in sessions
            ]
            firsts = [json.loads(await r.content.readline()) for r in replies]
            assert all(line.get("done") is False for line in firsts)

            served.signal(signal.SIGTERM)
            refused = None
            for _ in range(200):  # the listener closes as soon as the signal is handled
                try:
                    async with (
                        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as fresh,
                        fresh.get(f"{url}/gleitzeit/health"),
                    ):
                        pass
                except aiohttp.ClientConnectorError as exc:
                    refused = exc
                    break
                await asyncio.sleep(0.05)
            assert refused is not None, "new connections were still accepted while draining"

            async with kept.get(f"{url}/gleitzeit/health") as health:
                assert health.status == 503
                assert (await health.json())["status"] == "draining"
                assert health.headers.get("Connection", "").lower() == "close"

            for reply, session, head in zip(replies, sessions, firsts, strict=True):
                rest = [json.loads(line) async for line in reply.content if line.strip()]
                chunks = [head, *rest]
                assert chunks[-1]["done"] is True
                assert not any("error" in c for c in chunks)
                assert len(chunks) == 31  # 30 tokens and the final line: nothing was cut
                reply.release()
                await session.close()
        assert await served.exit_code() == 0
        assert "SIGTERM: draining (4 request(s) in flight" in served.text()
    finally:
        await served.kill()


async def test_past_the_grace_what_remains_is_cut(sim_factory: SimFactory, tmp_path: Path) -> None:
    """A stream longer than shutdown_grace is cut when the grace is over and the gateway
    exits anyway (0), saying how many requests it cut."""
    (sim,) = await sim_factory(1, tokens_per_s=2.0, max_tokens=200)
    served, _ = await _serve(tmp_path, config_text(free_port(), {"s0": sim.url}, grace=0.5))
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http:
            reply = await http.post(f"{served.url}/api/chat", json={**CHAT, "stream": True})
            assert json.loads(await reply.content.readline())["done"] is False
            served.signal(signal.SIGTERM)
            chunks: list[dict[str, Any]] = []

            async def read_all() -> None:
                async for line in reply.content:
                    chunks.append(json.loads(line))

            with pytest.raises(aiohttp.ClientPayloadError):
                await read_all()
            assert not any(c.get("done") for c in chunks)  # 200 tokens would take 100 s
        assert await served.exit_code() == 0
        assert "grace over: cutting 1 request(s) still in flight" in served.text()
    finally:
        await served.kill()


async def test_sighup_adds_and_removes_instances_under_load(
    sim_factory: SimFactory, tmp_path: Path
) -> None:
    """A SIGHUP that removes s0 and adds s2 while 20 clients call the gateway: no request
    fails, s2 receives traffic, s0 receives none once its drain is over. (Each instance
    runs 4 at a time: the hub prefers instances with the model loaded, so s2 gets work once
    s1 is full.)"""
    sims = await sim_factory(3, tokens_per_s=200.0, max_tokens=10, num_parallel=4)
    urls = {f"s{i}": sim.url for i, sim in enumerate(sims)}
    port = free_port()
    before = config_text(port, {"s0": urls["s0"], "s1": urls["s1"]}, num_parallel=4)
    served, config = await _serve(tmp_path, before)
    load = Load(served.url, 20)
    try:
        await load.until(100)
        assert await sim_requests(urls["s0"]) > 0
        after = config_text(port, {"s1": urls["s1"], "s2": urls["s2"]}, num_parallel=4)
        config.write_text(after, encoding="utf-8")
        served.signal(signal.SIGHUP)
        for _ in range(600):
            ids = _resource_ids(await _status(served.url))
            if ids == {"s1", "s2"}:
                break
            await asyncio.sleep(0.05)
        assert ids == {"s1", "s2"}
        s0_after_drain = await sim_requests(urls["s0"])
        await load.until(200)
    finally:
        await load.stop()
        status = await _status(served.url)
        served.signal(signal.SIGTERM)
        code = await served.exit_code()
    assert load.failures == []
    assert load.ok["stream"] > 0
    assert load.ok["plain"] > 0
    assert await sim_requests(urls["s2"]) > 0
    assert await sim_requests(urls["s0"]) == s0_after_drain
    reload = status["gateway"]["last_reload"]
    assert reload["ok"] is True
    assert any("added s2" in line for line in reload["applied"])
    assert any("removed s0" in line for line in reload["applied"])
    assert "config reloaded" in served.text()
    assert code == 0


async def test_reload_needs_admin_keeps_old_config_on_error_and_applies_keys(
    sim_factory: SimFactory, tmp_path: Path
) -> None:
    """POST /gleitzeit/reload: 403 for a key that is not admin; a file named in the request
    (body or query) is not read; a config with a mistake is refused with its key path (JSON
    answer, log, status) and the old config keeps serving; one without any key is refused (a
    reload never opens the gateway); a good one swaps keys, strategy and weights at once."""
    sims = await sim_factory(2)
    urls = {"s0": sims[0].url, "s1": sims[1].url}
    port = free_port()
    keys = f'token = "{ADMIN}"\n[gateway.keys.alice]\ntoken = "{ALICE}"'
    served, config = await _serve(tmp_path, config_text(port, urls, gateway_extra=keys))
    url = served.url
    timeout = aiohttp.ClientTimeout(total=30)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as http:

            async def reload(token: str) -> tuple[int, dict[str, Any]]:
                async with http.post(f"{url}/gleitzeit/reload", headers=_bearer(token)) as r:
                    return r.status, await r.json()

            async def chat(token: str) -> int:
                body = {**CHAT, "stream": False}
                async with http.post(f"{url}/api/chat", json=body, headers=_bearer(token)) as r:
                    await r.read()
                    return r.status

            code, body = await reload(ALICE)
            assert code == 403

            # a request never names a host file: a path in the body or the query is not read
            mallory = "mallory-token-0123456789abcdef"
            evil = tmp_path / "evil.toml"
            evil_keys = f'token = "{ADMIN}"\n[gateway.keys.mallory]\ntoken = "{mallory}"'
            evil.write_text(config_text(port, urls, gateway_extra=evil_keys), encoding="utf-8")
            named = {"config": str(evil), "path": str(evil), "source": str(evil)}
            async with http.post(
                f"{url}/gleitzeit/reload", params=named, json=named, headers=_bearer(ADMIN)
            ) as r:
                assert r.status == 200
                assert (await r.json())["source"] != str(evil)
            assert await chat(mallory) == 401
            assert await chat(ALICE) == 200

            bad = config_text(port, urls, gateway_extra=keys).replace(
                f'id = "s1"\nurl = "{urls["s1"]}"', f'id = "s1"\nurl = "{urls["s1"]}"\nweight = -2'
            )
            config.write_text(bad, encoding="utf-8")
            code, body = await reload(ADMIN)
            assert code == 400
            assert body["ok"] is False
            assert any(p.startswith("hubs.llm.resources[1].weight") for p in body["problems"])
            assert "hubs.llm.resources[1].weight" in body["error"]
            assert await chat(ALICE) == 200  # the old config, keys and all, still serves
            status = await _status(url, ADMIN)
            assert status["gateway"]["last_reload"]["ok"] is False
            assert "hubs.llm.resources[1].weight" in " ".join(
                status["gateway"]["last_reload"]["problems"]
            )
            assert "config NOT reloaded" in served.text()
            config.write_text(config_text(port, urls), encoding="utf-8")  # no key at all
            code, body = await reload(ADMIN)
            assert code == 400
            assert body["problems"][0].startswith("gateway.keys: the new config has no key")
            assert await chat(ALICE) == 200
            config.write_text(bad, encoding="utf-8")
            served.signal(signal.SIGHUP)  # the same through the signal: logged with its path
            await served.wait_for_log("hubs.llm.resources[1].weight", 60.0, count=2)
            assert await chat(ALICE) == 200

            good_keys = f'token = "{ADMIN}"\n[gateway.keys.bob]\ntoken = "{BOB}"'
            good = config_text(
                port, urls, gateway_extra=good_keys, hub_extra='strategy = "round_robin"'
            ).replace(f'url = "{urls["s1"]}"', f'url = "{urls["s1"]}"\nweight = 3')
            config.write_text(good, encoding="utf-8")
            code, body = await reload(ADMIN)
            assert code == 200, body
            assert body["ok"] is True
            assert await chat(BOB) == 200
            assert await chat(ALICE) == 401
            status = await _status(url, ADMIN)
            hub = next(h for h in status["hubs"] if h["name"] == "llm")
            assert hub["strategy"] == "round_robin"
            assert {r["id"]: r["weight"] for r in hub["resources"]} == {"s0": 1.0, "s1": 3.0}
    finally:
        served.signal(signal.SIGTERM)
        await served.exit_code()
        await served.kill()


def _migrate_enabled() -> None:
    try:
        with open(MIGRATE_SYSCTL, encoding="ascii") as file:
            value = file.read().strip()
    except OSError:
        pytest.fail(f"{MIGRATE_SYSCTL} is missing: the rolling restart needs Linux >= 5.14")
    if value != "1":
        pytest.fail(
            "net.ipv4.tcp_migrate_req is 0: a replica that stops would reset the connections "
            "queued on its socket; scripts/test.sh sets it as root "
            "(sysctl -w net.ipv4.tcp_migrate_req=1), see docs/scale-out.md"
        )


async def test_rolling_restart_of_two_replicas_sharing_a_port(
    sim_factory: SimFactory, tmp_path: Path
) -> None:
    """Two replicas on one port (reuse_port) under 50 clients, half of them streaming, a
    quarter opening a connection per request: A is SIGTERM'd and started again, then B; no
    request fails, streams included, and every replica exits 0."""
    _migrate_enabled()
    sims = await sim_factory(2, tokens_per_s=50.0, max_tokens=10, num_parallel=64)
    port = free_port()
    text = config_text(port, {"s0": sims[0].url, "s1": sims[1].url}, reuse_port=True, grace=60.0)
    running: dict[str, Served] = {}
    exits: list[int] = []
    load: Load | None = None
    try:
        running["a"], _ = await _serve(tmp_path, text, "a")
        running["b"], _ = await _serve(tmp_path, text, "b")
        load = Load(running["a"].url, 50)
        await load.until(200)
        for name in ("a", "b"):
            running[name].signal(signal.SIGTERM)
            exits.append(await running[name].exit_code())
            await load.until(100)  # the other replica alone
            running[name], _ = await _serve(tmp_path, text, f"{name}2")
            await load.until(200)
    finally:
        if load is not None:
            await load.stop()
        for replica in running.values():
            replica.signal(signal.SIGTERM)
            exits.append(await replica.exit_code())
            await replica.kill()
    assert load.failures == [], load.failures[:5]
    assert load.ok["stream"] > 0
    assert load.ok["plain"] > 0
    assert exits == [0, 0, 0, 0]
    assert all("draining" in replica.text() for replica in running.values())
