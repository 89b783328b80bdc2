"""The ``ollama`` probe: the core's ProbeContract, model bookkeeping, tags interval, failures."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from gleitzeit_ollama.probe import OllamaProbe
from gleitzeit_ollama.sim import OllamaSimulator

from gleitzeit_core import Health, Resource, ResourceSpec
from gleitzeit_core.testing import ProbeContract
from tests.ollama.conftest import SimFactory, fast_config
from tests.ollama.hub.conftest import RuntimeFactory
from tests.ollama.hub.support import MODEL, MODEL_TAG, preload, set_faults, sim_stats


class TestOllamaProbeContract(ProbeContract):
    """The core's probe contract, against a real simulator on loopback."""

    max_seconds_for_dead = 2.0

    def make_probe(self) -> OllamaProbe:
        return OllamaProbe(timeout=1.0)

    @asynccontextmanager
    async def healthy_target(self) -> AsyncIterator[ResourceSpec]:
        sim = OllamaSimulator(fast_config())
        await sim.start("127.0.0.1", 0)
        try:
            yield ResourceSpec(id="sim", endpoint=sim.url)
        finally:
            await sim.stop()


async def test_probe_records_installed_and_loaded_models(
    sim_factory: SimFactory, http: aiohttp.ClientSession
) -> None:
    """One probe fills the installed set from /api/tags and the loaded set, with its
    expiry, from /api/ps; the version answer gives the latency."""
    (sim,) = await sim_factory(1, models=[MODEL, "qwen3:8b"])
    await preload(http, sim, keep_alive="10m")
    probe = OllamaProbe(timeout=1.0)
    resource = Resource(ResourceSpec(id="s0", endpoint=sim.url))
    try:
        result = await probe.probe(resource)
    finally:
        await probe.close()
    assert result.ok
    assert result.latency is not None
    assert result.latency >= 0
    assert resource.attributes["installed"] == {MODEL_TAG, "qwen3:8b"}
    expires = resource.attributes["loaded"][MODEL_TAG]
    assert 590 < expires - time.time() <= 600
    assert resource.attributes["version"] == sim.config.version


async def test_probe_reads_tags_only_every_tags_interval(
    sim_factory: SimFactory, runtime_factory: RuntimeFactory, http: aiohttp.ClientSession
) -> None:
    """/api/ps is asked on every probe, /api/tags only once per tags_interval."""
    (sim,) = await sim_factory(1)
    await runtime_factory([sim], tags_interval=60.0, health={"interval": 0.05, "timeout": 1.0})
    await asyncio.sleep(0.5)
    requests = (await sim_stats(http, sim))["requests"]
    assert requests["/api/ps"] >= 4
    assert requests["/api/tags"] == 1  # the start-up inventory; the probes did not repeat it


async def test_probe_fails_without_raising_and_marks_unhealthy(
    sim_factory: SimFactory,
    runtime_factory: RuntimeFactory,
    http: aiohttp.ClientSession,
    eventually: Any,
) -> None:
    """An instance whose probes reset or hang turns unhealthy (with the reason) and gets no
    more calls; when it answers again it comes back."""
    sims = await sim_factory(2, models=[MODEL])
    runtime = await runtime_factory(
        # a generous probe deadline: the healthy s1 must not miss it on a loaded machine
        sims,
        health={"interval": 0.05, "timeout": 2.0, "unhealthy_threshold": 2},
    )
    hub = runtime.hubs["llm"]
    await set_faults(http, sims[0], probes_down=True)

    def down() -> bool:
        return hub.get("s0").health is Health.UNHEALTHY

    await eventually(down, timeout=30.0)
    assert hub.get("s0").health_detail
    for _ in range(5):
        reply = await runtime.execute("llm/generate", {"model": MODEL, "prompt": "x"})
        assert reply["gleitzeit"]["instance"] == "s1"
    await set_faults(http, sims[0], probes_down=False, hang_probes=True)
    await eventually(lambda: "no answer" in hub.get("s0").health_detail, timeout=30.0)
    assert hub.get("s0").health is Health.UNHEALTHY
    await set_faults(http, sims[0], hang_probes=False)

    def up() -> bool:
        return hub.get("s0").health is Health.HEALTHY

    await eventually(up, timeout=30.0)


async def test_probe_of_a_dead_instance_forgets_its_loaded_models() -> None:
    """A probe that cannot reach an instance reports why and stops counting its models as
    loaded (a restarted Ollama starts cold)."""
    from gleitzeit_core.testing.probe_contract import unused_endpoint

    resource = Resource(ResourceSpec(id="dead", endpoint=unused_endpoint()))
    resource.attributes["loaded"] = {MODEL_TAG: math.inf}
    probe = OllamaProbe(timeout=0.5)
    try:
        result = await probe.probe(resource)
    finally:
        await probe.close()
    assert not result.ok
    assert "Connect" in result.detail or "connect" in result.detail
    assert resource.attributes["loaded"] == {}
