"""Status and plugin wiring: what the hub reports per instance, what the plugin registers."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import aiohttp
import pytest
from aiohttp import web
from gleitzeit_ollama.hub import OllamaHub

from gleitzeit_core._gateway import build_app
from gleitzeit_core._runtime import Runtime
from gleitzeit_core._status import to_json
from tests.ollama.conftest import SimFactory
from tests.ollama.hub.conftest import RuntimeFactory
from tests.ollama.hub.support import MODEL, MODEL_TAG, preload

CHAT = [{"role": "user", "content": "through the gateway"}]


async def test_status_shows_models_and_per_model_slots(
    sim_factory: SimFactory, runtime_factory: RuntimeFactory, http: aiohttp.ClientSession
) -> None:
    """While calls run, an instance's status lists its installed and loaded models and the
    in-flight calls per model against the num_parallel cap; the whole status is JSON."""
    (sim,) = await sim_factory(1, models=[MODEL, "qwen3:8b"], latency_ms=300.0, num_parallel=4)
    await preload(http, sim, keep_alive=-1)
    runtime = await runtime_factory([sim], resource_options={"num_parallel": 3})
    calls = [
        asyncio.create_task(runtime.execute("llm/generate", {"model": MODEL, "prompt": "x"}))
        for _ in range(2)
    ]
    await asyncio.sleep(0.15)
    status = to_json(runtime.status())
    (hub,) = status["hubs"]
    (resource,) = hub["resources"]
    details = resource["details"]
    assert details["installed"] == [MODEL_TAG, "qwen3:8b"]
    assert details["loaded"] == {MODEL_TAG: {"expires_in_s": None}}  # pinned: never expires
    assert details["slots"] == {MODEL_TAG: {"in_flight": 2, "cap": 3}}
    assert details["num_parallel"] == 3
    assert details["version"] == sim.config.version
    assert resource["in_flight"] == 2
    json.dumps(status)
    await asyncio.gather(*calls)
    assert to_json(runtime.status())["hubs"][0]["resources"][0]["details"]["slots"] == {}


async def test_hub_opens_one_session_and_closes_it(
    sim_factory: SimFactory, runtime_factory: RuntimeFactory
) -> None:
    """All calls share the hub's one session (pooled connections); stopping closes it."""
    (sim,) = await sim_factory(1, models=[MODEL])
    runtime = await runtime_factory([sim])
    hub = runtime.hubs["llm"]
    assert isinstance(hub, OllamaHub)
    session = hub.open_session()
    assert session is not None
    await asyncio.gather(
        *(runtime.execute("llm/generate", {"model": MODEL, "prompt": "x"}) for _ in range(5))
    )
    assert hub.open_session() is session
    await runtime.stop()
    assert session.closed
    assert hub.open_session() is None


async def test_plugin_registers_everything_by_name(runtime_factory: RuntimeFactory) -> None:
    """The plugin registers the hub kind, env/scan discoverers, the ollama probe, the
    model_aware strategy and the llm/v1 provider."""
    runtime = await runtime_factory(raw={"hubs": {"llm": {"kind": "ollama", "discovery": []}}})
    registries = runtime.registries
    assert "ollama" in registries.hubs
    assert {"env", "scan", "static"} <= set(registries.discoverers.names())
    assert "ollama" in registries.probes
    assert "model_aware" in registries.strategies
    assert "llm/v1" in registries.providers
    assert set(runtime.methods()) >= {
        "llm/generate",
        "llm/chat",
        "llm/vision",
        "llm/embed",
        "llm/list_models",
        "llm/pull_model",
    }


def test_plugin_module_imports_nothing_heavy() -> None:
    """Importing the hook module loads neither aiohttp nor the hub (lazy registrations)."""
    code = (
        "import sys, gleitzeit_ollama.plugin\n"
        "names = [m for m in sys.modules if m == 'aiohttp' or m.startswith('gleitzeit_ollama')]\n"
        "print(sorted(names))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    assert out.strip() == "['gleitzeit_ollama', 'gleitzeit_ollama.plugin']"


async def test_gateway_executes_and_streams_llm_calls(
    sim_factory: SimFactory, runtime_factory: RuntimeFactory, http: aiohttp.ClientSession
) -> None:
    """Through the core gateway, llm/chat answers as JSON, a streamed chat arrives as NDJSON
    ending with the done chunk, and /gleitzeit/status carries the per-model details."""
    (sim,) = await sim_factory(1, models=[MODEL])
    runtime = await runtime_factory([sim])
    runner = web.AppRunner(build_app(runtime))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        base = f"http://127.0.0.1:{runner.addresses[0][1]}"
        call = {"method": "llm/chat", "params": {"model": MODEL, "messages": CHAT}}
        async with http.post(f"{base}/gleitzeit/execute", json=call) as response:
            assert response.status == 200
            result = (await response.json())["result"]
        assert result["message"]["role"] == "assistant"
        call["params"] = {**call["params"], "stream": True}
        async with http.post(f"{base}/gleitzeit/execute", json=call) as response:
            lines = [json.loads(line) async for line in response.content if line.strip()]
        assert lines[-1]["done"] is True
        assert all("error" not in line for line in lines)
        async with http.get(f"{base}/gleitzeit/status") as response:
            status = await response.json()
        details = status["hubs"][0]["resources"][0]["details"]
        assert MODEL_TAG in details["loaded"]
    finally:
        await runner.cleanup()


def test_config_errors_name_the_key() -> None:
    """Wrong Ollama-specific keys in a config are reported with their key path."""
    from gleitzeit_core import ConfigError

    bad_hub = {"hubs": {"llm": {"kind": "ollama", "stall_timeout": -1, "auto_pul": True}}}
    with pytest.raises(ConfigError) as info:
        Runtime.from_config(bad_hub)
    text = str(info.value)
    assert "hubs.llm.stall_timeout: expected a number of seconds > 0" in text
    assert "hubs.llm.auto_pul: unknown key" in text
    resource = {"url": "http://127.0.0.1:1", "num_parallel": 0, "modells": ["x"]}
    bad_resource = {"hubs": {"llm": {"kind": "ollama", "resources": [resource]}}}
    with pytest.raises(ConfigError) as info:
        Runtime.from_config(bad_resource)
    text = str(info.value)
    assert "hubs.llm.resources[0].num_parallel: expected an integer between 1 and 1024" in text
    assert "hubs.llm.resources[0].modells: unknown key" in text
