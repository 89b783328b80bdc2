# ruff: noqa: F811 - fixtures imported from tests.ollama.conftest are parameters here too
"""Fixtures for the gateway tests: simulators, runtimes over them and gateways on loopback.

Gateways run in the test's event loop (``build_app`` + ``AppRunner(handler_cancellation=True)``
on 127.0.0.1 port 0) with only the Ollama plugin loaded, and are torn down with everything
they started.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import pytest
from gleitzeit_ollama import plugin as ollama_plugin
from gleitzeit_ollama.sim import OllamaSimulator, SimProcess
from hypothesis import strategies as st

from gleitzeit_core._runtime import Runtime
from gleitzeit_core.testing.serve import InProcessGateways

# The simulator fixtures are the Ollama tests' own; importing them here makes them fixtures of
# this folder too.
from tests.conftest import isolate_from_machine
from tests.ollama.conftest import (  # noqa: F401
    SimFactory,
    SimProcessFactory,
    sim_factory,
    sim_process_factory,
)

LOOPBACK = "127.0.0.1"
# Models of the three-simulator pool: llama3.2 everywhere, the others on some instances only.
POOL_MODELS = (
    ["llama3.2", "nomic-embed-text"],
    ["llama3.2", "qwen2.5"],
    ["llama3.2", "nomic-embed-text"],
)
PULLABLE = ["phi3"]


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No user config, token or OLLAMA_HOST(S) leaking in from the machine; child processes
    (``gleitzeit serve``) load only the Ollama plugin."""
    isolate_from_machine(monkeypatch, tmp_path)


def hub_table(urls: Sequence[str], **overrides: Any) -> dict[str, Any]:
    """An ``ollama`` hub over ``urls`` (ids ``s0``, ``s1``, ...) with fast probes."""
    table: dict[str, Any] = {
        "kind": "ollama",
        "discovery": ["static"],
        "seed": 7,
        "health": {"interval": 0.2, "timeout": 1.0},
        "resources": [{"id": f"s{i}", "url": url} for i, url in enumerate(urls)],
    }
    table.update(overrides)
    return table


@attrs.define
class Gateway:
    url: str
    runtime: Runtime

    def hub(self, name: str = "llm") -> Any:
        return self.runtime.hubs[name]

    def in_flight(self) -> int:
        return sum(r.in_flight for hub in self.runtime.hubs.values() for r in hub.resources)

    async def status(self) -> dict[str, Any]:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{self.url}/gleitzeit/status") as reply,
        ):
            assert reply.status == 200
            data: dict[str, Any] = await reply.json()
            return data


GatewayFactory = Callable[..., Awaitable[Gateway]]


@pytest.fixture
async def gateway_factory() -> AsyncIterator[GatewayFactory]:
    """``await gateway_factory(config, token=None, max_body_bytes=None)`` -> a started runtime
    and its gateway on 127.0.0.1:<free port>; ``config`` is a whole config dict."""
    async with InProcessGateways() as gateways:

        async def start(
            config: dict[str, Any], *, token: str | None = None, max_body_bytes: int | None = None
        ) -> Gateway:
            served = await gateways.start(
                config,
                plugins=[(ollama_plugin, "ollama")],
                token=token,
                max_body_bytes=max_body_bytes,
            )
            return Gateway(served.url, served.runtime)

        yield start


@attrs.define
class Pool:
    gateway: Gateway
    sims: list[OllamaSimulator]

    @property
    def url(self) -> str:
        return self.gateway.url


async def start_pool(
    sim_factory: SimFactory,
    gateway_factory: GatewayFactory,
    models: Sequence[list[str]] = POOL_MODELS,
    *,
    sim: dict[str, Any] | None = None,
    hub: dict[str, Any] | None = None,
    keys: dict[str, Any] | None = None,
    **gateway: Any,
) -> Pool:
    """Simulators with ``models`` (ids ``s0``, ``s1``, ...) behind a gateway; ``keys`` is the
    ``[gateway.keys]`` table (clients then need ``Authorization: Bearer <token>``)."""
    sims = []
    for i, names in enumerate(models):
        (one,) = await sim_factory(1, models=names, name=f"s{i}", **(sim or {}))
        sims.append(one)
    config: dict[str, Any] = {"hubs": {"llm": hub_table([s.url for s in sims], **(hub or {}))}}
    if keys is not None:
        config["gateway"] = {"keys": keys}
    return Pool(await gateway_factory(config, **gateway), sims)


async def diverging_pool(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> Gateway:
    """Two simulators that answer differently (other seeds) behind a gateway; the first, which
    the hub prefers (the model loaded), sends an error line after 3 chunks: a stream cut
    there cannot be resumed on the other."""
    sims = [
        (await sim_factory(1, models=["llama3.2"], name="a", seed=1))[0],
        (await sim_factory(1, models=["llama3.2"], name="b", seed=2))[0],
    ]
    gateway = await gateway_factory({"hubs": {"llm": hub_table([s.url for s in sims])}})
    await preload(http, sims[0].url, "llama3.2")
    await gateway.hub("llm").refresh_models()
    await set_faults(http, sims[0].url, error_line_after=3)
    return gateway


@pytest.fixture
async def fuzz_pool(sim_factory: SimFactory, gateway_factory: GatewayFactory) -> Pool:
    """Two simulators (anything pulls) behind one gateway, shared by every fuzz example."""
    return await start_pool(
        sim_factory, gateway_factory, [["llama3.2", "nomic-embed-text"], ["qwen2.5"]]
    )


# any JSON value, a few levels deep: what a fuzzed client may put anywhere
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


async def killable_pool(
    sim_process_factory: SimProcessFactory,
    gateway_factory: GatewayFactory,
    models: list[str],
    **sim_config: Any,
) -> tuple[list[SimProcess], Gateway]:
    """Three simulator processes (``models``, 8 parallel each, ``sim_config``; kill one with
    ``akill``) behind a gateway with fast probes, outlier ejection and generous deadlines."""
    sim = {"models": models, "num_parallel": 8, **sim_config}
    procs = await asyncio.gather(
        *(asyncio.to_thread(sim_process_factory, name=f"p{i}", **sim) for i in range(3))
    )
    table = hub_table(
        [p.url for p in procs],
        health={"interval": 0.2, "timeout": 0.5},
        outlier={"consecutive_failures": 3, "base_ejection": 30.0},
        request_timeout=60.0,
        queue_timeout=60.0,
    )
    for resource in table["resources"]:
        resource["num_parallel"] = 8
    return list(procs), await gateway_factory({"hubs": {"llm": table}})


async def run_child(*argv: str, timeout: float, **options: Any) -> bytes:
    """Run a child process (``options``: ``cwd``, ``env``) while the test's event loop keeps
    serving; its standard output, after asserting it exited 0 (else its stderr is shown)."""
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, **options
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout=timeout)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, err.decode(errors="replace")[-4000:]
    return out


@pytest.fixture
async def pool(sim_factory: SimFactory, gateway_factory: GatewayFactory) -> Pool:
    """Three simulators (``POOL_MODELS``; only ``phi3`` can be pulled) behind one gateway."""
    return await start_pool(sim_factory, gateway_factory, sim={"pullable": PULLABLE})


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain aiohttp session with a 20 s overall timeout."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
        yield session


Predicate = Callable[[], "bool | Awaitable[bool]"]


async def eventually(predicate: Predicate, timeout: float = 5.0, interval: float = 0.02) -> None:
    """Poll a (sync or async) predicate until it holds; AssertionError after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if loop.time() >= deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


async def sim_stats(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with http.get(f"{url}/_sim/stats") as reply:
        assert reply.status == 200
        data: dict[str, Any] = await reply.json()
        return data


async def set_faults(http: aiohttp.ClientSession, url: str, **spec: Any) -> None:
    async with http.post(f"{url}/_sim/faults", json=spec) as reply:
        assert reply.status == 200, await reply.text()


async def preload(
    http: aiohttp.ClientSession, url: str, model: str, keep_alive: str = "1h"
) -> None:
    """Load ``model`` on the instance at ``url`` directly, as a warm server would have it."""
    async with http.post(
        f"{url}/api/generate", json={"model": model, "keep_alive": keep_alive}
    ) as reply:
        assert reply.status == 200, await reply.text()
