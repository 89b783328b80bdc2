"""Failure handling: classification, failover, ejection, busy instances, broken and stalled
streams, deadlines, cancellation."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import aiohttp
import pytest
from gleitzeit_ollama.errors import StreamFailed, StreamStalled
from gleitzeit_ollama.settings import OllamaSettings
from gleitzeit_ollama.stream import ChunkStream

from gleitzeit_core import (
    BreakerState,
    CallOutcome,
    HealthSettings,
    OutlierSettings,
    RequestTimeout,
    ResourceError,
    RoundRobinStrategy,
)
from gleitzeit_core.testing.probe_contract import unused_endpoint
from tests.ollama.conftest import SimFactory
from tests.ollama.hub.conftest import HubFactory, RuntimeFactory
from tests.ollama.hub.support import (
    MODEL,
    RecordingBreaker,
    generate_count,
    preload,
    set_faults,
    sim_stats,
)

GEN = {"model": MODEL, "prompt": "fail me"}
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "stream me"}], "stream": True}


async def test_failing_instance_is_ejected_and_its_requests_fail_over(
    sim_factory: SimFactory,
    runtime_factory: RuntimeFactory,
    http: aiohttp.ClientSession,
    eventually: Any,
) -> None:
    """An instance that starts answering 500 is ejected after a few failures and stays
    ejected although /api/version still answers (the probe makes an ejected instance serve a
    load-only generate first); every request still succeeds, no error reaches the caller."""
    sims = await sim_factory(3, models=[MODEL])
    for sim in sims:
        await preload(http, sim)
    runtime = await runtime_factory(
        sims,
        strategy="round_robin",
        outlier={"consecutive_failures": 3, "base_ejection": 30.0},
    )
    hub = runtime.hubs["llm"]
    await set_faults(http, sims[0], error_rate=1.0, error_status=500)
    served = Counter()
    for _ in range(30):
        reply = await runtime.execute("llm/generate", GEN)
        served[reply["gleitzeit"]["instance"]] += 1
    s0 = hub.get("s0")
    assert served["s0"] == 0
    assert s0.is_ejected(hub.clock.now())
    assert s0.metrics.snapshot(0.0).failures == {"server_error": 3}
    assert s0.metrics.requests == 3  # given calls only until it was ejected
    assert hub.counters["failovers"] == 3
    # a probe round ran (polled, not slept for: a loaded machine is slow): /api/version is
    # fine, inference is not, and the instance stays ejected
    await eventually(lambda: "load-only generate" in s0.health_detail, timeout=30.0)
    assert s0.is_ejected(hub.clock.now())
    await set_faults(http, sims[0], error_rate=0.0)

    async def back() -> bool:
        return not s0.is_ejected(hub.clock.now())

    await eventually(back, timeout=30.0)  # healed: the next probe ends the ejection


async def test_every_instance_is_tried_at_most_once_per_request(
    sim_factory: SimFactory, runtime_factory: RuntimeFactory, http: aiohttp.ClientSession
) -> None:
    """When every instance fails, the caller gets the last real error after each instance
    was tried exactly once, however many retries are allowed."""
    sims = await sim_factory(3, models=[MODEL])
    runtime = await runtime_factory(sims, retries=10, outlier={"enabled": False})
    for sim in sims:
        await set_faults(http, sim, error_rate=1.0, error_status=502)
    with pytest.raises(ResourceError) as info:
        await runtime.execute("llm/generate", GEN)
    assert info.value.status == 502
    assert [await generate_count(http, sim) for sim in sims] == [1, 1, 1]


async def test_busy_instance_is_skipped_without_opening_its_breaker(
    sim_factory: SimFactory, hub_factory: HubFactory, http: aiohttp.ClientSession
) -> None:
    """A 503 "server busy" sends the call elsewhere; the busy instance's breaker hears only
    IGNORED outcomes, stays closed, and it is not ejected."""
    sims = await sim_factory(2, models=[MODEL])
    for sim in sims:
        await preload(http, sim)
    hub, provider = await hub_factory(sims, breaker_failures=1, strategy=RoundRobinStrategy())
    await set_faults(http, sims[0], busy=True)
    for _ in range(10):
        reply = await provider.execute("llm/generate", GEN)
        assert reply["gleitzeit"]["instance"] == "s1"
    s0 = hub.get("s0")
    breaker = s0.breaker
    assert isinstance(breaker, RecordingBreaker)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.outcomes
    assert set(breaker.outcomes) == {CallOutcome.IGNORED}
    assert s0.metrics.snapshot(0.0).failures == {"overloaded": len(breaker.outcomes)}
    assert not s0.is_ejected(hub.clock.now())
    assert (await sim_stats(http, sims[0]))["rejected_503"] == len(breaker.outcomes)


async def test_server_errors_open_the_breaker(
    sim_factory: SimFactory, hub_factory: HubFactory, http: aiohttp.ClientSession
) -> None:
    """5xx answers are the instance's fault: they reach its breaker as FAILURE and open it."""
    sims = await sim_factory(2, models=[MODEL])
    for sim in sims:
        await preload(http, sim)
    hub, provider = await hub_factory(
        sims,
        breaker_failures=2,
        strategy=RoundRobinStrategy(),
        outlier=OutlierSettings(enabled=False),
    )
    await set_faults(http, sims[0], error_rate=1.0, error_status=500)
    for _ in range(6):
        await provider.execute("llm/generate", GEN)
    assert hub.get("s0").breaker.state is BreakerState.OPEN


async def test_client_error_goes_back_unchanged(
    sim_factory: SimFactory, hub_factory: HubFactory, http: aiohttp.ClientSession
) -> None:
    """A 4xx other than 404/429 is the caller's problem: raised with Ollama's status and error
    text after one attempt, no failover, nothing counted against the instance."""
    sims = await sim_factory(2, models=[MODEL])
    for sim in sims:
        await preload(http, sim)
    hub, provider = await hub_factory(sims)
    for sim in sims:
        await set_faults(http, sim, error_rate=1.0, error_status=400, error_message="bad thing")
    with pytest.raises(ResourceError) as info:
        await provider.execute("llm/generate", GEN)
    assert info.value.status == 400
    assert info.value.body == {"error": "bad thing"}
    assert sum([await generate_count(http, sim) for sim in sims]) == 1
    for resource in hub.resources:
        assert CallOutcome.FAILURE not in resource.breaker.outcomes  # type: ignore[attr-defined]
        assert resource.consecutive_failures == 0


async def test_connection_refused_fails_over(
    sim_factory: SimFactory, runtime_factory: RuntimeFactory
) -> None:
    """An instance nobody listens on costs one quick attempt; the call succeeds elsewhere."""
    (sim,) = await sim_factory(1, models=[MODEL])
    raw = {
        "hubs": {
            "llm": {
                "kind": "ollama",
                "discovery": ["static"],
                "strategy": "round_robin",
                "health": {"enabled": False},
                "resources": [
                    {"id": "a-dead", "url": unused_endpoint(), "models": [MODEL]},
                    {"id": "b-live", "url": sim.url},
                ],
            }
        }
    }
    runtime = await runtime_factory(raw=raw)
    reply = await runtime.execute("llm/generate", GEN)
    assert reply["gleitzeit"] == {"instance": "b-live", "attempts": 2}
    dead = runtime.hubs["llm"].get("a-dead")
    assert dead.metrics.snapshot(0.0).failures == {"connection": 1}


async def test_error_line_before_the_first_chunk_fails_over(
    sim_factory: SimFactory, hub_factory: HubFactory, http: aiohttp.ClientSession
) -> None:
    """An ``{"error"}`` line that arrives before any chunk reached the caller is a PROTOCOL
    failure of that instance, and the stream is opened on another one instead."""
    sims = await sim_factory(2, models=[MODEL])
    for sim in sims:
        await preload(http, sim)
    hub, provider = await hub_factory(sims, strategy=RoundRobinStrategy())
    await set_faults(http, sims[0], error_line_after=0)
    await set_faults(http, sims[1], error_line_after=None)
    for _ in range(3):
        stream = await provider.execute("llm/chat", CHAT)
        assert isinstance(stream, ChunkStream)
        chunks = [chunk async for chunk in stream]
        assert chunks[-1]["done"] is True
        assert stream.instance == "s1"
    assert hub.get("s0").metrics.snapshot(0.0).failures == {"protocol": 3}


async def test_mid_stream_error_line_reaches_the_caller_and_is_counted(
    sim_factory: SimFactory, hub_factory: HubFactory, http: aiohttp.ClientSession
) -> None:
    """An error line after chunks were delivered cannot fail over: the caller's iterator
    raises ResourceError (StreamFailed), and the breaker and metrics count a PROTOCOL failure."""
    (sim,) = await sim_factory(1, models=[MODEL])
    hub, provider = await hub_factory([sim])
    await set_faults(http, sim, error_line_after=2)
    stream = await provider.execute("llm/chat", CHAT)
    got = []

    async def read_all() -> None:
        async for chunk in stream:
            got.append(chunk)

    with pytest.raises(StreamFailed) as info:
        await read_all()
    assert len(got) == 2
    assert isinstance(info.value, ResourceError)
    assert "unexpected EOF" in str(info.value)
    resource = hub.get("s0")
    assert resource.metrics.snapshot(0.0).failures == {"protocol": 1}
    assert resource.breaker.outcomes == [CallOutcome.FAILURE]  # type: ignore[attr-defined]
    assert resource.in_flight == 0
    assert resource.slots == {}


async def test_hang_is_bounded_by_the_deadline(
    sim_factory: SimFactory, runtime_factory: RuntimeFactory, http: aiohttp.ClientSession
) -> None:
    """An instance that never answers holds a call only until its deadline; the lease is
    released and the caller gets RequestTimeout (a TimeoutError)."""
    (sim,) = await sim_factory(1, models=[MODEL])
    runtime = await runtime_factory([sim])
    await set_faults(http, sim, hang=True)
    started = time.monotonic()
    with pytest.raises(RequestTimeout):
        await runtime.execute("llm/generate", {**GEN, "timeout": 0.4})
    with pytest.raises(TimeoutError):
        await runtime.execute("llm/chat", {**CHAT, "timeout": 0.4})
    # their own 0.4 s, far from the hub's request_timeout (generous: a loaded machine is slow)
    assert time.monotonic() - started < 20.0
    resource = runtime.hubs["llm"].get("s0")
    assert resource.in_flight == 0
    assert resource.metrics.snapshot(0.0).failures == {"timeout": 2}
    await set_faults(http, sim, hang=False)


async def test_stalled_stream_is_detected(sim_factory: SimFactory, hub_factory: HubFactory) -> None:
    """A stream that goes silent for longer than stall_timeout raises StreamStalled (a
    TimeoutError and a ResourceError) well before the deadline, counted as TIMEOUT."""
    (sim,) = await sim_factory(1, models=[MODEL], tokens_per_s=2.0, latency_ms=0.0)
    hub, provider = await hub_factory(
        [sim], settings=OllamaSettings(stall_timeout=0.2), request_timeout=30.0
    )
    stream = await provider.execute("llm/chat", CHAT)
    first = await anext(stream)  # read while the stream was opened
    assert first["done"] is False
    started = time.monotonic()
    with pytest.raises(StreamStalled) as info:
        await anext(stream)  # the next token would take 0.5 s: longer than stall_timeout
    assert time.monotonic() - started < 15.0  # well before the 30 s deadline (generous)
    assert isinstance(info.value, TimeoutError)
    assert hub.get("s0").metrics.snapshot(0.0).failures == {"timeout": 1}


async def test_caller_leaving_a_stream_releases_everything(
    sim_factory: SimFactory, hub_factory: HubFactory, http: aiohttp.ClientSession, eventually: Any
) -> None:
    """Breaking out of a stream and dropping it closes the upstream answer at once (the
    simulator stops generating) and the lease records CANCELLED, not a failure."""
    (sim,) = await sim_factory(1, models=[MODEL], tokens_per_s=20.0, max_tokens=200)
    hub, provider = await hub_factory([sim])
    stream = await provider.execute("llm/chat", CHAT)
    async for _ in stream:
        break
    del stream
    resource = hub.get("s0")
    assert resource.in_flight == 0
    assert resource.metrics.snapshot(0.0).failures == {"cancelled": 1}
    assert resource.breaker.outcomes == [CallOutcome.IGNORED]  # type: ignore[attr-defined]

    async def idle() -> bool:
        return (await sim_stats(http, sim))["current"]["overall"] == 0

    await eventually(idle, timeout=30.0)


async def test_cancelled_call_releases_its_lease(
    sim_factory: SimFactory, hub_factory: HubFactory, http: aiohttp.ClientSession, eventually: Any
) -> None:
    """Cancelling the caller's task mid-call closes the request upstream and releases the
    lease as CANCELLED, for plain calls and for streams being read."""
    (sim,) = await sim_factory(1, models=[MODEL], latency_ms=2000.0)
    hub, provider = await hub_factory([sim])
    task = asyncio.create_task(provider.execute("llm/generate", GEN))
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    resource = hub.get("s0")
    assert resource.in_flight == 0

    async def idle() -> bool:
        return (await sim_stats(http, sim))["current"]["overall"] == 0

    await eventually(idle, timeout=30.0)
    await set_faults(http, sim, slow_ms=0)
    sim.config.latency_ms = 0.0
    sim.config.tokens_per_s = 5.0

    received: list[dict[str, object]] = []

    async def read_all() -> None:
        stream = await provider.execute("llm/chat", CHAT)
        async with stream:
            received.extend([chunk async for chunk in stream])

    task = asyncio.create_task(read_all())
    await asyncio.sleep(0.5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert resource.in_flight == 0
    assert resource.metrics.snapshot(0.0).failures == {"cancelled": 2}
    await eventually(idle, timeout=30.0)


async def test_instance_killed_mid_stream(
    sim_factory: SimFactory,
    sim_process_factory: Any,
    hub_factory: HubFactory,
    http: aiohttp.ClientSession,
) -> None:
    """An instance process killed hard while streaming: the caller's iterator raises a
    ResourceError (CONNECTION, counted against it), and the next calls fail over to the
    surviving instance with no error reaching the caller."""
    doomed = await asyncio.to_thread(
        sim_process_factory, models=[MODEL], tokens_per_s=20.0, max_tokens=100
    )
    (survivor,) = await sim_factory(1, models=[MODEL])
    async with http.post(
        f"{doomed.url}/api/generate", json={"model": MODEL, "keep_alive": "1h"}
    ) as response:
        assert response.status == 200  # hot there, so the stream goes to it
    # the start-up inventory read is bounded by the health timeout: generous, so a busy
    # machine's slow /api/ps cannot leave s0's loaded model unknown (and the stream elsewhere)
    hub, provider = await hub_factory(
        [doomed, survivor], probe=False, health=HealthSettings(interval=0.2, timeout=30.0)
    )
    assert hub.describe(hub.get("s0"))["loaded"], "s0's loaded model was not read at start"
    stream = await provider.execute("llm/chat", CHAT)
    assert stream.instance == "s0"
    await anext(stream)
    await asyncio.to_thread(doomed.kill)

    async def rest() -> None:
        async for _ in stream:  # chunks already in flight may still arrive first
            continue

    with pytest.raises(StreamFailed) as info:
        await rest()
    assert info.value.failure.value in {"connection", "protocol"}
    for _ in range(3):
        reply = await provider.execute("llm/generate", GEN)
        assert reply["gleitzeit"]["instance"] == "s1"
    s0 = hub.get("s0")
    failures = s0.metrics.snapshot(0.0).failures
    assert set(failures) <= {"connection", "protocol"}
    assert hub.describe(s0)["loaded"] == {}  # unreachable: nothing hot there any more
