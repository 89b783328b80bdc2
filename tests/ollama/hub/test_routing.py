"""Model-aware routing over three simulators: spread, hot-model preference, per-model caps,
404 rerouting, unknown models and auto_pull."""

from __future__ import annotations

import asyncio
from collections import Counter

import aiohttp
import pytest

from gleitzeit_core import NoResourceAvailable, ResourceError
from tests.ollama.conftest import SimFactory
from tests.ollama.hub.conftest import RuntimeFactory
from tests.ollama.hub.support import (
    MODEL,
    MODEL_TAG,
    generate_count,
    preload,
    ps_names,
    sim_stats,
)

GEN = {"model": MODEL, "prompt": "route me"}


async def test_round_robin_spreads_evenly_over_warm_instances(
    sim_factory: SimFactory, runtime_factory: RuntimeFactory, http: aiohttp.ClientSession
) -> None:
    """With the model hot everywhere, round_robin sends each instance the same share."""
    sims = await sim_factory(3, models=[MODEL])
    for sim in sims:
        await preload(http, sim)
    runtime = await runtime_factory(sims, strategy="round_robin")
    served = Counter()
    for _ in range(30):
        reply = await runtime.execute("llm/generate", GEN)
        served[reply["gleitzeit"]["instance"]] += 1
    assert served == {"s0": 10, "s1": 10, "s2": 10}
    assert [await generate_count(http, sim) for sim in sims] == [10, 10, 10]


async def test_p2c_uses_every_instance_under_concurrency(
    sim_factory: SimFactory, runtime_factory: RuntimeFactory, http: aiohttp.ClientSession
) -> None:
    """Under concurrent load p2c spreads requests over all warm instances."""
    sims = await sim_factory(3, models=[MODEL], latency_ms=20.0, num_parallel=4)
    for sim in sims:
        await preload(http, sim)
    runtime = await runtime_factory(sims, strategy="p2c", resource_options={"num_parallel": 4})
    replies = await asyncio.gather(*(runtime.execute("llm/generate", GEN) for _ in range(24)))
    served = Counter(reply["gleitzeit"]["instance"] for reply in replies)
    assert set(served) == {"s0", "s1", "s2"}
    assert sum(served.values()) == 24


async def test_hot_instance_preferred_over_cold_ones(
    sim_factory: SimFactory, runtime_factory: RuntimeFactory, http: aiohttp.ClientSession
) -> None:
    """Sequential requests all go to the one instance that has the model loaded; the cold
    instances are never asked and stay cold (checked with /_sim/stats and /api/ps)."""
    sims = await sim_factory(3, models=[MODEL])
    await preload(http, sims[1])
    runtime = await runtime_factory(sims, strategy="round_robin")
    for _ in range(12):
        reply = await runtime.execute("llm/generate", GEN)
        assert reply["gleitzeit"]["instance"] == "s1"
        assert reply["load_duration"] == 0  # never paid a model load
    assert [await generate_count(http, sim) for sim in sims] == [0, 12, 0]
    assert [await ps_names(http, sim) for sim in sims] == [[], [MODEL_TAG], []]


async def test_cold_instance_used_when_the_hot_one_is_saturated(
    sim_factory: SimFactory, runtime_factory: RuntimeFactory, http: aiohttp.ClientSession
) -> None:
    """The hot instance takes what its slots allow; the overflow goes to an installed (cold)
    instance instead of queueing behind it."""
    sims = await sim_factory(2, models=[MODEL], latency_ms=60.0)
    await preload(http, sims[0])
    runtime = await runtime_factory(sims, resource_options={"num_parallel": 1})
    replies = await asyncio.gather(*(runtime.execute("llm/generate", GEN) for _ in range(2)))
    assert sorted(r["gleitzeit"]["instance"] for r in replies) == ["s0", "s1"]


async def test_per_model_parallel_cap_is_never_exceeded(
    sim_factory: SimFactory, runtime_factory: RuntimeFactory, http: aiohttp.ClientSession
) -> None:
    """30 concurrent requests against instances capped at num_parallel=2 per model: every
    request succeeds (the hub queues the rest) and no simulator ever runs more than 2."""
    sims = await sim_factory(3, models=[MODEL], latency_ms=30.0, num_parallel=8)
    runtime = await runtime_factory(sims, resource_options={"num_parallel": 2}, queue_timeout=20.0)
    replies = await asyncio.gather(*(runtime.execute("llm/generate", GEN) for _ in range(30)))
    assert len(replies) == 30
    peaks = [(await sim_stats(http, sim))["max_concurrency"]["models"] for sim in sims]
    assert all(peak.get(MODEL_TAG, 0) <= 2 for peak in peaks), peaks
    assert max(peak.get(MODEL_TAG, 0) for peak in peaks) == 2  # the cap was reached
    hub = runtime.hubs["llm"]
    assert hub.counters["queued"] > 0
    assert all(resource.slots == {} and resource.in_flight == 0 for resource in hub.resources)


async def test_404_marks_the_model_absent_and_reroutes(
    sim_factory: SimFactory, runtime_factory: RuntimeFactory, http: aiohttp.ClientSession
) -> None:
    """An instance that lost the model answers 404: the call moves to one that has it, the
    model is marked absent there, and the instance is not blamed (no failure counted)."""
    sims = await sim_factory(2, models=[MODEL])
    await preload(http, sims[0])
    runtime = await runtime_factory(sims, health={"enabled": False})
    hub = runtime.hubs["llm"]
    async with http.delete(f"{sims[0].url}/api/delete", json={"model": MODEL}) as response:
        assert response.status == 200  # s0 still looks hot to the hub
    reply = await runtime.execute("llm/generate", GEN)
    assert reply["gleitzeit"] == {"instance": "s1", "attempts": 2}
    s0 = hub.get("s0")
    assert MODEL_TAG not in hub.describe(s0)["installed"]
    assert s0.metrics.snapshot(0.0).failures == {"misrouted": 1}
    assert s0.consecutive_failures == 0
    assert not s0.is_ejected(hub.clock.now())
    reply = await runtime.execute("llm/generate", GEN)  # straight to s1 from now on
    assert reply["gleitzeit"] == {"instance": "s1", "attempts": 1}


async def test_unknown_model_lists_which_instance_has_what(
    sim_factory: SimFactory, runtime_factory: RuntimeFactory, http: aiohttp.ClientSession
) -> None:
    """Without auto_pull, a model nobody has fails at once, naming every instance's models,
    and no instance is asked."""
    sims = await sim_factory(2, models=[MODEL])
    runtime = await runtime_factory(sims)
    with pytest.raises(NoResourceAvailable) as info:
        await runtime.execute("llm/generate", {"model": "mistral", "prompt": "x"})
    message = str(info.value)
    assert "mistral:latest" in message
    assert "s0: has llama3.2:latest" in message
    assert "s1: has llama3.2:latest" in message
    assert "auto_pull" in message
    assert [await generate_count(http, sim) for sim in sims] == [0, 0]


async def test_auto_pull_pulls_once_onto_one_instance_then_routes(
    sim_factory: SimFactory, runtime_factory: RuntimeFactory, http: aiohttp.ClientSession
) -> None:
    """With auto_pull, concurrent requests for a model nobody has cause exactly one pull on
    one instance; all of them are then served there."""
    sims = await sim_factory(3, models=[MODEL])
    runtime = await runtime_factory(sims, auto_pull=True)
    replies = await asyncio.gather(
        *(runtime.execute("llm/generate", {"model": "mistral", "prompt": "hi"}) for _ in range(4))
    )
    pulls = [(await sim_stats(http, sim))["requests"].get("/api/pull", 0) for sim in sims]
    assert sum(pulls) == 1
    target = f"s{pulls.index(1)}"
    assert {reply["gleitzeit"]["instance"] for reply in replies} == {target}
    hub = runtime.hubs["llm"]
    assert "mistral:latest" in hub.describe(hub.get(target))["installed"]


async def test_models_of_different_instances_route_to_their_holders(
    sim_factory: SimFactory, runtime_factory: RuntimeFactory
) -> None:
    """Each model goes only to the instances that have it installed."""
    (a,) = await sim_factory(1, models=[MODEL])
    (b,) = await sim_factory(1, models=["qwen3:8b", "nomic-embed-text"])
    runtime = await runtime_factory([a, b])
    chat = {"messages": [{"role": "user", "content": "hi"}]}
    for _ in range(3):
        assert (await runtime.execute("llm/chat", {"model": MODEL, **chat}))["gleitzeit"][
            "instance"
        ] == "s0"
        assert (await runtime.execute("llm/chat", {"model": "qwen3:8b", **chat}))["gleitzeit"][
            "instance"
        ] == "s1"
    embedded = await runtime.execute("llm/embed", {"model": "nomic-embed-text", "input": "x"})
    assert embedded["gleitzeit"]["instance"] == "s1"


async def test_auto_pull_failure_reaches_the_caller(
    sim_factory: SimFactory, runtime_factory: RuntimeFactory
) -> None:
    """A model the registry does not know cannot be auto-pulled: the caller gets a
    ResourceError naming the model and Ollama's reason, and nothing is marked installed."""
    sims = await sim_factory(2, models=[MODEL], pullable=["mistral"])
    runtime = await runtime_factory(sims, auto_pull=True)
    with pytest.raises(ResourceError, match="no-such-model") as info:
        await runtime.execute("llm/generate", {"model": "no-such-model", "prompt": "x"})
    assert "file does not exist" in str(info.value)
    hub = runtime.hubs["llm"]
    assert not hub.has_anywhere("no-such-model:latest")
