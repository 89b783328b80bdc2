"""Three ``gleitzeit serve`` processes sharing one real Redis behave as one gateway to a key:
its ``requests_per_minute`` and ``max_concurrent`` count across the replicas, least-loaded
keeps every instance under its ``num_parallel``, and a Redis outage turns the limits into
per-replica ones (said in the status and /metrics) without one client error."""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.chaos.gateway_process import GatewayProcess, start_gateway
from tests.ollama.conftest import SimFactory
from tests.scaleout.redis_server import RedisServer

PLUGINS = "ollama,breaker-consecutive,redis,prometheus"
PER_MINUTE = 7
CHAT = {
    "model": "llama3.2",
    "messages": [{"role": "user", "content": "hi"}],
    "stream": False,
}


def fleet_config(
    redis_url: str,
    namespace: str,
    urls: list[str],
    replica: str,
    strategy: str = "least_loaded",
    num_parallel: int = 2,
) -> str:
    """One replica's config (after its ``[gateway]`` host and port): three keys, one hub over
    the simulators routed by ``strategy`` with ``num_parallel`` places per instance, the Redis
    backend with fast timings but a generous deadline per call (a loaded CI machine must not
    make a replica degrade: these tests are about sharing; a dead Redis is refused at once,
    not timed out)."""
    resources = "".join(
        f'[[hubs.llm.resources]]\nid = "s{i}"\nurl = "{url}"\n' for i, url in enumerate(urls)
    )
    return f"""
[gateway.keys.team]
token = "team-token"
requests_per_minute = {PER_MINUTE}

[gateway.keys.narrow]
token = "narrow-token"
max_concurrent = 2

[gateway.keys.ops]
token = "ops-token"

[hubs.llm]
kind = "ollama"
discovery = ["static"]
strategy = "{strategy}"
default_num_parallel = {num_parallel}
queue_timeout = 60

[hubs.llm.health]
interval = 0.2
timeout = 2.0

{resources}
[state]
backend = "redis"
url = "{redis_url}"
namespace = "{namespace}"
replica_id = "{replica}"
sync_interval = 0.05
# gone after 3 late beats (6 s): a gateway process starved on a loaded machine is not gone
heartbeat = 2.0
op_timeout = 2.0
"""


@attrs.define
class Fleet:
    redis: RedisServer
    gateways: list[GatewayProcess]
    http: aiohttp.ClientSession
    sims: list[Any]

    async def chat(self, replica: int, token: str) -> tuple[int, dict[str, str], Any]:
        """One non-streaming chat through one replica: status, headers, JSON body."""
        url = f"{self.gateways[replica].url}/api/chat"
        headers = {"Authorization": f"Bearer {token}"}
        async with self.http.post(url, json=CHAT, headers=headers) as reply:
            return reply.status, dict(reply.headers), await reply.json()

    async def state(self, replica: int) -> dict[str, Any]:
        url = f"{self.gateways[replica].url}/gleitzeit/status"
        headers = {"Authorization": "Bearer ops-token"}
        async with self.http.get(url, headers=headers) as reply:
            assert reply.status == 200, await reply.text()
            state: dict[str, Any] = (await reply.json())["state"]
            return state

    async def metrics(self, replica: int) -> dict[str, float]:
        url = f"{self.gateways[replica].url}/metrics"
        headers = {"Authorization": "Bearer ops-token"}
        async with self.http.get(url, headers=headers) as reply:
            assert reply.status == 200, await reply.text()
            text = await reply.text()
        return {
            s.name: s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name.startswith("gleitzeit_state_") and "event" not in s.labels
        }


@pytest.fixture
async def fleet(sim_factory: SimFactory, redis_server: RedisServer) -> AsyncIterator[Fleet]:
    """A real Redis, three simulators (16 parallel slots each, 400 ms per answer) and three
    gateway processes over them, sharing one namespace."""
    sims = await sim_factory(3, num_parallel=16, latency_ms=400)
    namespace = f"fleet-{uuid.uuid4().hex[:8]}"
    urls = [s.url for s in sims]
    gateways: list[GatewayProcess] = []
    with tempfile.TemporaryDirectory(prefix="gleitzeit-fleet-") as folder:
        try:
            for i in range(3):
                home = Path(folder) / f"r{i}"
                home.mkdir()
                config = fleet_config(redis_server.url, namespace, urls, f"r{i}")
                gateways.append(await start_gateway(config, home, PLUGINS))
            timeout = aiohttp.ClientTimeout(total=60)
            async with aiohttp.ClientSession(timeout=timeout) as http:
                made = Fleet(redis_server, gateways, http, sims)
                await _until_all_see_each_other(made)
                for sim in sims:
                    sim.reset_stats()
                yield made
        finally:
            for gateway in gateways:
                await gateway.stop()


async def _until_all_see_each_other(fleet: Fleet) -> None:
    for _ in range(300):
        states = [await fleet.state(i) for i in range(3)]
        if all(s["connected"] and len(s["replicas"]) == 3 for s in states):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the replicas never saw each other: {states}")


async def test_requests_per_minute_counts_across_replicas(fleet: Fleet) -> None:
    """A key with requests_per_minute = 7, asked in turn through three replicas, gets exactly
    7 answers in all (not 7 per replica), then 429 with a Retry-After of at most a minute
    from every replica; the status says its limits are the fleet's."""
    statuses = []
    for n in range(12):
        status, headers, body = await fleet.chat(n % 3, "team-token")
        statuses.append(status)
        if status == 429:
            assert 1 <= int(headers["Retry-After"]) <= 60, headers
            assert "requests_per_minute" in body["error"], body
    assert statuses == [200] * PER_MINUTE + [429] * (12 - PER_MINUTE), statuses
    for i in range(3):
        assert (await fleet.state(i))["limits"] == "fleet"


async def test_max_concurrent_holds_across_replicas(fleet: Fleet) -> None:
    """Six simultaneous slow chats of a key with max_concurrent = 2, two through each replica:
    two are answered and four refused with 429 (each replica alone would admit two); once they
    are done, the key may run again through any replica."""
    calls = [fleet.chat(i % 3, "narrow-token") for i in range(6)]
    results = await asyncio.gather(*calls)
    statuses = sorted(status for status, _, _ in results)
    assert statuses == [200, 200, 429, 429, 429, 429], results
    refused = [body for status, _, body in results if status == 429]
    assert all("max_concurrent" in body["error"] for body in refused), refused

    async def admitted_again() -> bool:
        return all([(await fleet.chat(i, "narrow-token"))[0] == 200 for i in range(3)])

    for _ in range(100):
        if await admitted_again():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the places the finished chats held were never given back")


async def test_least_loaded_keeps_instances_under_num_parallel(fleet: Fleet) -> None:
    """Thirty simultaneous chats, ten through each replica, over three instances with 2 places
    each: every chat is answered, and no simulator ever ran more than 2 at once (each replica
    alone would send up to 2 of its own)."""
    calls = [fleet.chat(i % 3, "ops-token") for i in range(30)]
    results = await asyncio.gather(*calls)
    assert [status for status, _, _ in results] == [200] * 30
    peaks = [sim.stats()["max_concurrency"]["overall"] for sim in fleet.sims]
    states = [await fleet.state(i) for i in range(3)]
    assert max(peaks) <= 2, (peaks, [(s["degraded_total_s"], s["counters"]) for s in states])
    assert sum(sim.stats()["requests"].get("/api/chat", 0) for sim in fleet.sims) == 30


async def test_redis_down_limits_fall_back_to_each_replica(fleet: Fleet) -> None:
    """With Redis killed, a key's chats are still answered (no 5xx): each replica counts the
    key's requests_per_minute on its own (7 each, then 429), and both the status and /metrics
    say the limits are per process; Redis back, they are the fleet's again, and /metrics counts
    the outage and the resync."""
    fleet.redis.kill()
    for i in range(3):  # the first call that meets the dead Redis degrades the replica
        status, _, body = await fleet.chat(i, "ops-token")
        assert status == 200, body
    for i in range(3):
        state = await fleet.state(i)
        assert state["limits"] == "per-process", state
        assert not state["connected"], state
        assert "redis unreachable" in state["degraded"], state
        metrics = await fleet.metrics(i)
        assert metrics["gleitzeit_state_connected"] == 0
        assert metrics["gleitzeit_state_fleet_limits"] == 0
    for i in range(3):
        statuses = [(await fleet.chat(i, "team-token"))[0] for _ in range(PER_MINUTE + 1)]
        assert statuses == [200] * PER_MINUTE + [429], (i, statuses)
    fleet.redis.restart()
    for i in range(3):
        await eventually_async(lambda i=i: _fleet_again(fleet, i), f"replica {i} reconnected")
        metrics = await fleet.metrics(i)
        assert metrics["gleitzeit_state_connected"] == 1
        assert metrics["gleitzeit_state_resyncs_total"] >= 1
        assert metrics["gleitzeit_state_degradations_total"] >= 1
        assert metrics["gleitzeit_state_degraded_seconds_total"] > 0
        assert metrics["gleitzeit_state_replicas"] == 3


async def _fleet_again(fleet: Fleet, replica: int) -> bool:
    state = await fleet.state(replica)
    return bool(state["limits"] == "fleet" and len(state["replicas"]) == 3)


async def eventually_async(check: Any, what: str, timeout: float = 20.0) -> None:
    """``eventually`` for a check that must itself await (a status read over HTTP)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        await asyncio.sleep(0.05)
