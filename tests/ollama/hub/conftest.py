"""Fixtures for the Ollama hub tests: isolated environment, runtimes and hubs over simulators."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import uvloop
from gleitzeit_ollama.hub import OllamaHub
from gleitzeit_ollama.probe import OllamaProbe
from gleitzeit_ollama.provider import LlmProvider
from gleitzeit_ollama.settings import OllamaSettings
from gleitzeit_ollama.sim import OllamaSimulator

from gleitzeit_core import HealthSettings, OutlierSettings, ResourceSpec
from gleitzeit_core._runtime import Runtime
from tests.conftest import isolate_from_machine
from tests.ollama.hub.support import RecordingBreaker, config

# the gateway serves on uvloop with [gateway] speedups, whose transports are not asyncio's:
# the hub's own HTTP transport is tested on both loops
_BOTH_LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> Any:
    """The event loops each test here runs on."""
    module = getattr(item, "module", None)
    name = getattr(module, "__name__", "").rsplit(".", 1)[-1]
    return _BOTH_LOOPS if name == "test_transport" else {"asyncio": asyncio.new_event_loop}


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Only this plugin, no user config, no OLLAMA_HOST(S) leaking in from the machine."""
    isolate_from_machine(monkeypatch, tmp_path)


RuntimeFactory = Callable[..., Any]


@pytest.fixture
async def runtime_factory() -> AsyncIterator[RuntimeFactory]:
    """``await runtime_factory(sims, **hub_overrides)`` -> a started Runtime over the sims
    (hub ``llm``); ``raw=`` passes a whole config dict instead. Stopped at teardown."""
    started: list[Runtime] = []

    async def make(
        sims: Sequence[OllamaSimulator] = (), *, raw: dict[str, Any] | None = None, **overrides: Any
    ) -> Runtime:
        runtime = Runtime.from_config(raw if raw is not None else config(sims, **overrides))
        started.append(runtime)
        await runtime.start()
        return runtime

    try:
        yield make
    finally:
        for runtime in reversed(started):
            await runtime.stop()


HubFactory = Callable[..., Any]


@pytest.fixture
async def hub_factory() -> AsyncIterator[HubFactory]:
    """``await hub_factory(sims, breaker_failures=3, **hub_kwargs)`` -> (hub, provider) built
    directly, each resource with a ``RecordingBreaker``; stopped at teardown."""
    hubs: list[OllamaHub] = []

    async def make(
        sims: Sequence[OllamaSimulator],
        *,
        breaker_failures: int = 3,
        settings: OllamaSettings | None = None,
        num_parallel: int = 1,
        probe: bool = True,
        **kwargs: Any,
    ) -> tuple[OllamaHub, LlmProvider]:
        kwargs.setdefault("health", HealthSettings(interval=0.2, timeout=1.0))
        kwargs.setdefault("outlier", OutlierSettings(consecutive_failures=3))
        hub = OllamaHub(
            "llm",
            settings=settings or OllamaSettings(),
            breaker_factory=lambda: RecordingBreaker(failures=breaker_failures),
            **kwargs,
        )
        for i, sim in enumerate(sims):
            hub.add(
                ResourceSpec(id=f"s{i}", endpoint=sim.url, options={"num_parallel": num_parallel})
            )
        if probe:
            hub.set_probe(OllamaProbe(timeout=1.0, hub=hub))
        hubs.append(hub)
        await hub.start()
        provider = LlmProvider(hub)
        await provider.start()
        return hub, provider

    try:
        yield make
    finally:
        for hub in reversed(hubs):
            await hub.stop()
