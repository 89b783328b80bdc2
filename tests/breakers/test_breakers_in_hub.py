"""Each breaker plugin, inside a real Ollama hub over simulators: it stops sending traffic to a
resource that keeps failing and sends it traffic again after the resource heals, while no
error reaches the caller."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from gleitzeit_ollama.sim import OllamaSimulator, SimConfig

from gleitzeit_core import Runtime
from gleitzeit_core._plugins import PluginManager

BREAKERS: dict[str, dict[str, Any]] = {
    "consecutive": {"kind": "consecutive", "failures": 3, "open_for": 0.5},
    "window": {
        "kind": "window",
        "window_size": 10,
        "minimum_calls": 4,
        "failure_rate_threshold": 50.0,
        "open_for": 0.5,
        "half_open_permits": 2,
    },
    "adaptive": {"kind": "adaptive", "window": 1.0, "buckets": 10, "k": 1.5},
}


@pytest.fixture
async def sims() -> AsyncIterator[list[OllamaSimulator]]:
    started = []
    for name in ("good", "flaky"):
        sim = OllamaSimulator(
            SimConfig(
                models=["llama3.2"],
                latency_ms=2,
                tokens_per_s=0,
                load_ms=1,
                max_tokens=4,
                num_parallel=4,
                name=name,
            )
        )
        await sim.start("127.0.0.1", 0)
        started.append(sim)
    yield started
    for sim in started:
        await sim.stop()


def runtime_for(breaker: dict[str, Any], sims: list[OllamaSimulator]) -> Runtime:
    config = {
        "hubs": {
            "llm": {
                "kind": "ollama",
                "strategy": "round_robin",
                "discovery": ["static"],
                "breaker": breaker,
                "retries": 1,
                # only the breaker may take the resource out: no ejection; probes only keep
                # the loaded-model view fresh (the flaky instance still answers them)
                "outlier": {"enabled": False},
                "health": {"interval": 0.1, "timeout": 1.0},
                "resources": [
                    {"id": sim.config.name, "url": sim.url, "num_parallel": 4} for sim in sims
                ],
            }
        }
    }
    manager = PluginManager(allow=["ollama", f"breaker-{breaker['kind']}"])
    return Runtime.from_config(config, plugins=manager)


async def chat(runtime: Runtime, n: int) -> None:
    for i in range(n):
        reply = await runtime.execute(
            "llm/chat", {"model": "llama3.2", "messages": [{"role": "user", "content": f"{i}"}]}
        )
        assert reply["message"]["content"]


async def warm_both(runtime: Runtime, sims: list[OllamaSimulator]) -> None:
    """Load the model on both instances and wait until the hub sees it loaded on both, so
    both are in the same (best) routing tier and the strategy alternates between them."""
    import aiohttp

    async with aiohttp.ClientSession() as http:
        for sim in sims:
            body = {"model": "llama3.2", "keep_alive": "10m"}
            async with http.post(f"{sim.url}/api/generate", json=body) as reply:
                assert reply.status == 200
    hub = runtime.hubs["llm"]
    for _ in range(100):
        if all(
            "loaded" in str(hub.describe(r)) and "llama3.2" in str(hub.describe(r).get("loaded"))
            for r in hub.resources
        ):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(
        f"the hub never saw the model loaded: {[hub.describe(r) for r in hub.resources]}"
    )


def calls_to(sim: OllamaSimulator) -> int:
    return int(sim.stats()["requests"].get("/api/chat", 0))


@pytest.mark.parametrize("name", sorted(BREAKERS))
async def test_breaker_stops_and_resumes_traffic(name: str, sims: list[OllamaSimulator]) -> None:
    """While one instance answers 500, its breaker takes it out of rotation (the adaptive one
    mostly: it throttles rather than opening), every call still succeeds through the other;
    once it heals and time passes, it gets calls again."""
    _, flaky = sims
    async with runtime_for(BREAKERS[name], sims) as runtime:
        await warm_both(runtime, sims)
        flaky.set_faults(error_rate=1.0, error_status=500)
        await chat(runtime, 20)  # trips (or throttles) the breaker
        before = calls_to(flaky)
        await chat(runtime, 40)
        during = calls_to(flaky) - before
        if name == "adaptive":
            assert during <= 12, f"adaptive throttling let {during} of 40 calls through"
        else:
            assert during <= 2, f"{name}: {during} of 40 calls still reached the failing instance"
        assert runtime.hubs["llm"].get("flaky").breaker_opens >= (0 if name == "adaptive" else 1)

        flaky.clear_faults()
        await asyncio.sleep(1.2)  # past open_for / the adaptive window
        before = calls_to(flaky)
        await chat(runtime, 40)
        assert calls_to(flaky) - before >= 10, "the healed instance got no traffic back"
        resource = runtime.hubs["llm"].get("flaky")
        assert resource.breaker.state.value == "closed"
