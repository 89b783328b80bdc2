"""Replicas of one runtime share what they learn through a real Redis: breaker openings,
ejections, the load per instance, caps and per-key limits; and a Redis failure costs the
clients nothing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
import redis.asyncio

from gleitzeit_core import BreakerState, Runtime
from gleitzeit_core._status import to_json as status_json
from tests.ollama.conftest import SimFactory
from tests.scaleout.conftest import Replicas, replica_config
from tests.scaleout.redis_server import free_port

CHAT = {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]}


async def eventually(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Poll ``check`` until it holds (generous: a loaded CI machine is slow, not wrong)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        await asyncio.sleep(0.02)


async def enters_eventually(runtime: Runtime, bucket: str, limit: int, what: str) -> None:
    """Ask ``runtime``'s backend for a place of ``bucket`` until it grants one (10 s at most:
    places come back in the background)."""
    for _ in range(500):
        if await runtime.state.enter(bucket, limit):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(what)


async def subscribers(replicas: Replicas, count: int) -> None:
    """Wait (20 s at most) until ``count`` listeners are subscribed to the events channel."""
    client = redis.asyncio.Redis.from_url(replicas.redis.url)
    channel = f"{replicas.namespace}:events"
    try:
        for _ in range(1000):
            ((_, listening),) = await client.pubsub_numsub(channel)
            if listening >= count:
                return
            await asyncio.sleep(0.02)
    finally:
        await client.aclose()
    raise AssertionError(f"fewer than {count} replicas listen on {channel} after 20 s")


def resource(runtime: Runtime, rid: str) -> Any:
    return runtime.hubs["llm"].get(rid)


async def warm(sims: list[Any]) -> None:
    """Load the model on every simulator first, so the model-aware hub ranks them alike and
    round-robin reaches each (a cold instance would only be tried after the warm ones)."""
    async with aiohttp.ClientSession() as http:
        for sim in sims:
            body = {"model": "llama3.2", "keep_alive": "1h"}
            async with http.post(f"{sim.url}/api/generate", json=body) as reply:
                assert reply.status == 200, await reply.text()


async def test_a_breaker_opened_on_one_replica_opens_on_the_others(
    sim_factory: SimFactory, replicas: Replicas
) -> None:
    """Failures seen only by replica A open s0's breaker on B and C too, although B and C
    never sent s0 a request; the clients of A saw no error (failover)."""
    sims = await sim_factory(3)
    await warm(sims)
    a, b, c = await replicas(
        3,
        [s.url for s in sims],
        strategy="round_robin",
        breaker={"kind": "consecutive", "failures": 2, "open_for": 30},
        outlier={"enabled": False},
    )
    sims[0].set_faults(error_rate=1.0, error_status=500)
    for _ in range(6):
        await a.execute("llm/chat", CHAT)
    assert resource(a, "s0").breaker.state is BreakerState.OPEN
    await eventually(
        lambda: all(resource(r, "s0").breaker.state is BreakerState.OPEN for r in (b, c)),
        "s0's breaker open on B and C",
    )
    for peer in (b, c):
        assert resource(peer, "s0").metrics.requests == 0
    for _ in range(6):  # B routes around s0 at once
        await b.execute("llm/chat", CHAT)
    assert resource(b, "s0").metrics.requests == 0


async def test_a_replica_that_joins_learns_the_breakers_already_open(
    sim_factory: SimFactory, replicas: Replicas
) -> None:
    """A replica started after a peer opened s0's breaker (news it never heard) has s0's
    breaker open as soon as it is connected, with no new failure anywhere, and its first
    requests never reach s0."""
    sims = await sim_factory(3)
    await warm(sims)
    hub: dict[str, Any] = {
        "strategy": "round_robin",
        "breaker": {"kind": "consecutive", "failures": 2, "open_for": 30},
        "outlier": {"enabled": False},
    }
    (a,) = await replicas(1, [s.url for s in sims], **hub)
    sims[0].set_faults(error_rate=1.0, error_status=500)
    for _ in range(6):
        await a.execute("llm/chat", CHAT)
    assert resource(a, "s0").breaker.state is BreakerState.OPEN
    sims[0].set_faults(error_rate=0.0)  # from now on nothing fails: B can only be told
    (b,) = await replicas(1, [s.url for s in sims], **hub)
    await eventually(lambda: b.state.status().connected, "B connected")
    await eventually(
        lambda: resource(b, "s0").breaker.state is BreakerState.OPEN,
        "s0's breaker open on the replica that joined",
    )
    for _ in range(6):
        await b.execute("llm/chat", CHAT)
    assert resource(b, "s0").metrics.requests == 0
    assert a.state.status().counters.get("resyncs_answered", 0) >= 1


async def test_connected_means_listening(replicas: Replicas) -> None:
    """A replica says ``connected`` only while its listener is subscribed to the events
    channel (news published before that would be lost): the moment the status says connected,
    at start and after Redis came back, Redis counts a subscriber for it."""

    async def listeners() -> int:
        client = redis.asyncio.Redis.from_url(replicas.redis.url)
        try:
            ((_, listening),) = await client.pubsub_numsub(f"{replicas.namespace}:events")
            return int(listening)
        finally:
            await client.aclose()

    (a,) = await replicas(1, [])
    for restart in (False, True):
        if restart:
            replicas.redis.kill()
            await eventually(lambda: not a.state.status().connected, "not connected")
            replicas.redis.restart()
        await eventually(lambda: a.state.status().connected, "connected", timeout=20.0)
        assert await listeners() == 1, f"connected but not listening (restart={restart})"


async def test_an_ejection_on_one_replica_ejects_on_the_others(
    sim_factory: SimFactory, replicas: Replicas
) -> None:
    """Outlier ejection by replica A takes s0 out of rotation on B and C for the same time."""
    sims = await sim_factory(3)
    await warm(sims)
    a, b, c = await replicas(
        3,
        [s.url for s in sims],
        strategy="round_robin",
        outlier={
            "consecutive_failures": 2,
            "base_ejection": 30,
            "max_ejected_share": 0.5,
            "uneject_on_probe": False,  # the probes see s1 healthy: only requests fail
        },
    )
    sims[0].set_faults(error_rate=1.0, error_status=500)
    for _ in range(9):
        await a.execute("llm/chat", CHAT)
    now = a.hubs["llm"].clock.now()
    assert resource(a, "s0").is_ejected(now)
    await eventually(
        lambda: all(resource(r, "s0").is_ejected(r.hubs["llm"].clock.now()) for r in (b, c)),
        "s0 ejected on B and C",
    )
    left = resource(b, "s0").ejected_until - b.hubs["llm"].clock.now()
    assert 20 < left <= 30


async def test_caps_hold_across_replicas(sim_factory: SimFactory, replicas: Replicas) -> None:
    """Three replicas pushing 30 concurrent chats at three instances with num_parallel = 2
    never run more than 2 at once on any instance (the simulators count), and every chat
    is answered; without shared state each replica would send up to 2 of its own."""
    sims = await sim_factory(3, num_parallel=16, latency_ms=60)
    runtimes = await replicas(
        3,
        [s.url for s in sims],
        strategy="least_loaded",
        queue_timeout=60,
        default_num_parallel=2,
    )
    for sim in sims:
        sim.reset_stats()
    calls = [rt.execute("llm/chat", CHAT) for rt in runtimes for _ in range(10)]
    replies = await asyncio.gather(*calls)
    assert len(replies) == 30
    peaks = [sim.stats()["max_concurrency"]["overall"] for sim in sims]
    assert max(peaks) <= 2, peaks
    assert sum(sim.stats()["requests"].get("/api/chat", 0) for sim in sims) == 30


async def test_the_load_of_the_other_replicas_is_seen(
    sim_factory: SimFactory, replicas: Replicas
) -> None:
    """While B has calls in flight on an instance, A counts them in that instance's load."""
    (sim,) = await sim_factory(1, num_parallel=8, latency_ms=400)
    a, b = await replicas(2, [sim.url], default_num_parallel=4)
    calls = [asyncio.ensure_future(b.execute("llm/chat", CHAT)) for _ in range(3)]
    await eventually(lambda: resource(a, "s0").remote_in_flight == 3, "A sees B's 3 calls")
    assert resource(a, "s0").in_flight == 3
    await asyncio.gather(*calls)
    await eventually(lambda: resource(a, "s0").in_flight == 0, "A sees them finish")


async def test_rate_limits_count_across_replicas(replicas: Replicas) -> None:
    """A bucket limited to 5 per minute admits exactly 5 requests across three replicas,
    then tells each how long to wait."""
    runtimes = await replicas(3, [])
    waits = [await rt.state.take("key:team-a", 5) for _ in range(3) for rt in runtimes]
    assert waits.count(0.0) == 5
    assert all(0 < w <= 60 for w in waits if w)


async def test_concurrency_limits_count_across_replicas(replicas: Replicas) -> None:
    """At most 2 requests of one key run at once across replicas; a finished one frees its
    place for any replica."""
    a, b, c = await replicas(3, [])
    assert await a.state.enter("key:k", 2)
    assert await b.state.enter("key:k", 2)
    assert not await c.state.enter("key:k", 2)
    a.state.leave("key:k")  # the release is sent in the background
    await enters_eventually(c, "key:k", 2, "the freed place never reached replica C")


async def test_redis_killed_mid_load_costs_clients_nothing(
    sim_factory: SimFactory, replicas: Replicas
) -> None:
    """Redis killed and restarted under steady load: every call succeeds, each replica
    reports itself degraded while Redis is gone and connected again after, and sharing
    works again (a breaker opened afterwards reaches the other replica)."""
    sims = await sim_factory(3)
    await warm(sims)
    a, b = await replicas(
        2,
        [s.url for s in sims],
        strategy="round_robin",
        breaker={"kind": "consecutive", "failures": 2, "open_for": 30},
        outlier={"enabled": False},
    )
    failures: list[BaseException] = []
    stop = asyncio.Event()

    async def client(runtime: Runtime) -> int:
        done = 0
        while not stop.is_set():
            try:
                await runtime.execute("llm/chat", CHAT)
                done += 1
            except Exception as exc:
                failures.append(exc)
        return done

    clients = [asyncio.ensure_future(client(rt)) for rt in (a, b) for _ in range(4)]
    await asyncio.sleep(0.3)
    replicas.redis.kill()
    await eventually(
        lambda: all(rt.state.status().degraded for rt in (a, b)), "both replicas degraded"
    )
    await asyncio.sleep(0.3)
    replicas.redis.restart()
    await eventually(
        lambda: all(rt.state.status().connected for rt in (a, b)), "both connected again"
    )
    await asyncio.sleep(0.3)
    stop.set()
    served = sum(await asyncio.gather(*clients))
    assert failures == []
    assert served > 0
    sims[2].set_faults(error_rate=1.0, error_status=500)
    # until A's breaker opens: A skips s2 while its one fleet place is still B's spare (given
    # back within a few sync intervals), so a fixed number of calls may never reach it twice
    deadline = time.monotonic() + 10.0
    while resource(a, "s2").breaker.state is not BreakerState.OPEN:
        assert time.monotonic() < deadline, "A's breaker for s2 never opened"
        await a.execute("llm/chat", CHAT)
    await eventually(
        lambda: resource(b, "s2").breaker.state is BreakerState.OPEN,
        "a breaker opened after the restart reaches B",
    )


async def test_a_place_is_reused_locally_then_given_back(replicas: Replicas) -> None:
    """A replica that ends a request keeps its place for its own next request (no round
    trip), yet a place it no longer uses goes back within a few sync intervals: another
    replica at the cap then gets it. The cap holds throughout."""
    a, b = await replicas(2, [])
    assert await a.state.enter("key:k", 2)
    a.state.leave("key:k")
    assert await a.state.enter("key:k", 2)  # the spare place, without asking Redis
    assert a.state.status().counters.get("places_reused") == 1
    a.state.leave("key:k")
    assert await b.state.enter("key:k", 2)  # the second place
    await enters_eventually(b, "key:k", 2, "the place A no longer used never reached replica B")
    assert not await a.state.enter("key:k", 2)  # both places are B's now


async def test_a_place_granted_to_a_caller_that_went_away_comes_back(replicas: Replicas) -> None:
    """A caller cancelled while Redis grants it a place (a client hanging up mid-admission)
    does not keep that place for good: the single place reaches another replica."""
    a, b = await replicas(2, [])
    pauser = redis.asyncio.Redis.from_url(replicas.redis.url)
    try:  # Redis holds every write for 300 ms: the script is sent, and waits there
        await pauser.execute_command("CLIENT", "PAUSE", 300, "WRITE")
    finally:
        await pauser.aclose()
    entering = asyncio.ensure_future(a.state.enter("key:gone", 1))
    await asyncio.sleep(0.1)
    assert not entering.done()
    entering.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await entering
    await enters_eventually(
        b, "key:gone", 1, "the place granted to the cancelled caller was never given back"
    )


async def test_forged_news_on_the_channel_cannot_take_a_resource_out_for_good(
    sim_factory: SimFactory, replicas: Replicas
) -> None:
    """Whoever can publish on the events channel is trusted, but only so far: a breaker
    opened by a peer's news half-opens within MAX_PEER_HOLD however long the message says,
    news with an infinite, NaN or negative time or that is not a JSON object is counted as
    bad and changes nothing, and after all of it the replica still applies real news."""
    from gleitzeit_redis.backend import MAX_PEER_HOLD

    sims = await sim_factory(2)
    (a,) = await replicas(
        1, [s.url for s in sims], breaker={"kind": "consecutive", "failures": 2, "open_for": 30}
    )
    backend: Any = a.state
    channel = f"{replicas.namespace}:events"
    client = redis.asyncio.Redis.from_url(replicas.redis.url)
    try:
        for raw in ("[1, 2]", "7", '"x"'):
            await client.publish(channel, raw)
        for left in ("Infinity", "NaN", "-5", "true"):
            raw = (
                '{"replica": "evil", "kind": "breaker_open", "hub": "llm", '
                f'"resource": "s0", "left": {left}, "detail": "forged"}}'
            )
            await client.publish(channel, raw)
        await eventually(lambda: backend.counters["bad_events"] >= 7, "7 bad events counted")
        assert resource(a, "s0").breaker.state is BreakerState.CLOSED
        forged = {"replica": "evil", "kind": "breaker_open", "hub": "llm", "resource": "s1"}
        await client.publish(channel, json.dumps({**forged, "left": 1e12, "detail": "x"}))
        breaker = resource(a, "s1").breaker
        await eventually(lambda: breaker.state is BreakerState.OPEN, "s1 opened by news")
        assert breaker.half_open_at - a.hubs["llm"].clock.now() <= MAX_PEER_HOLD
    finally:
        await client.aclose()


async def test_the_redis_password_never_reaches_the_log_or_the_status(
    sim_factory: SimFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A replica whose Redis is unreachable logs and shows why it serves from local state,
    naming the server but not the password in the URL (``user:password@`` or ``?password=``)."""
    sims = await sim_factory(1)
    for url in (
        f"redis://gw:hunter2secret@127.0.0.1:{free_port()}/0",
        f"redis://127.0.0.1:{free_port()}/0?password=hunter2secret",
    ):
        config = replica_config(url, "creds", [sims[0].url], "r0")
        runtime = Runtime.from_config(config)
        caplog.clear()
        with caplog.at_level(logging.INFO):
            await runtime.start()
            try:
                await eventually(lambda: "serving from local state" in caplog.text, "logged")
                shown = json.dumps(status_json(runtime.status())) + caplog.text
                assert "redis unreachable" in shown
            finally:
                await runtime.stop()
        assert "127.0.0.1" in caplog.text
        assert "hunter2secret" not in shown


async def test_a_redis_that_never_answers_is_logged_as_a_timeout(
    sim_factory: SimFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A "Redis" that accepts connections and never answers makes the replica serve from
    local state, and the log line gives the reason the status gives, the error's type
    included (an ``op_timeout``'s TimeoutError has no message: the line said nothing)."""
    sims = await sim_factory(1)

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            await reader.read()  # holds the connection open, answers nothing
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    config = replica_config(f"redis://127.0.0.1:{port}/0", "silent", [sims[0].url], "r0")
    config["state"]["op_timeout"] = 0.2
    runtime = Runtime.from_config(config)
    try:
        with caplog.at_level(logging.INFO):
            await runtime.start()
            await eventually(lambda: "serving from local state" in caplog.text, "logged")
        line = next(r.getMessage() for r in caplog.records if "local state" in r.getMessage())
        assert "redis unreachable: TimeoutError" in line
    finally:
        await runtime.stop()
        server.close()


async def test_garbage_in_the_registry_and_the_load_does_not_stop_the_exchange(
    sim_factory: SimFactory, replicas: Replicas
) -> None:
    """A live-looking replica whose registry entry and load entry are not the objects the
    backend writes (a list, a number) is ignored: A keeps reading B's load and lists B."""
    (sim,) = await sim_factory(1, num_parallel=8, latency_ms=400)
    client = redis.asyncio.Redis.from_url(replicas.redis.url)
    ns = replicas.namespace
    try:
        await client.hset(f"{ns}:replicas", "evil", "[]")
        await client.set(f"{ns}:alive:evil", "1", px=60_000)
        await client.hset(f"{ns}:load:llm", "evil", '{"at": 1e30, "load": [1]}')
        a, b = await replicas(2, [sim.url], default_num_parallel=4)
        await client.hset(f"{ns}:load:llm", "evil", '{"at": 1e30, "load": [1]}')
        await asyncio.sleep(0.3)  # several exchanges read the garbage
        calls = [asyncio.ensure_future(b.execute("llm/chat", CHAT)) for _ in range(3)]
        await eventually(lambda: resource(a, "s0").remote_in_flight == 3, "A sees B's 3 calls")
        await asyncio.gather(*calls)
        await eventually(  # listed once A's next heartbeat has read the registry
            lambda: "r1" in {replica.id for replica in a.status().state.replicas}, "A lists B"
        )
    finally:
        await client.aclose()
