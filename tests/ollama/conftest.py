"""Shared Ollama-simulator fixtures (loopback only, fast timings)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import ollama
import pytest
from gleitzeit_ollama.sim import OllamaSimulator, SimConfig, SimProcess

LOOPBACK = "127.0.0.1"

# Small but non-zero timings: real pacing, yet whole test files stay fast.
FAST: dict[str, Any] = {
    "latency_ms": 5.0,
    "tokens_per_s": 1000.0,
    "load_ms": 20.0,
    "max_tokens": 8,
    "pull_ms": 10.0,
}


def fast_config(**overrides: Any) -> SimConfig:
    return SimConfig(**(FAST | overrides))


class SimFactory:
    """``await sim_factory(n, **config_overrides)`` -> n started simulators on free ports."""

    def __init__(self) -> None:
        self.started: list[OllamaSimulator] = []

    async def __call__(self, n: int = 1, **overrides: Any) -> list[OllamaSimulator]:
        sims = []
        for _ in range(n):
            name = overrides.get("name", f"sim-{len(self.started)}")
            sim = OllamaSimulator(fast_config(**(overrides | {"name": name})))
            await sim.start(LOOPBACK, 0)
            self.started.append(sim)
            sims.append(sim)
        return sims

    async def stop_all(self) -> None:
        for sim in reversed(self.started):
            await sim.stop()
        self.started.clear()


class SimProcessFactory:
    """``sim_process_factory(**config_overrides)`` -> a started SimProcess, reaped at teardown."""

    def __init__(self) -> None:
        self.started: list[SimProcess] = []

    def __call__(self, *, port: int = 0, **overrides: Any) -> SimProcess:
        proc = SimProcess(fast_config(**overrides), host=LOOPBACK, port=port)
        self.started.append(proc)
        return proc.start()


@pytest.fixture
async def sim_factory() -> AsyncIterator[SimFactory]:
    """Start any number of in-process simulators; all are stopped after the test."""
    factory = SimFactory()
    try:
        yield factory
    finally:
        await factory.stop_all()


@pytest.fixture
async def sim(sim_factory: SimFactory) -> OllamaSimulator:
    """One started in-process simulator with the FAST config and default models."""
    (only,) = await sim_factory(1)
    return only


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain aiohttp client session with a 10 s overall timeout."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


@pytest.fixture
async def ollama_client(sim: OllamaSimulator) -> AsyncIterator[ollama.AsyncClient]:
    """The official ollama AsyncClient pointed at ``sim``."""
    client = ollama.AsyncClient(host=sim.url, timeout=10)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
def sim_process_factory() -> Iterator[SimProcessFactory]:
    """Start simulators as child processes; every child is killed and reaped at teardown."""
    factory = SimProcessFactory()
    try:
        yield factory
    finally:
        for proc in factory.started:
            proc.kill()


Predicate = Callable[[], "bool | Awaitable[bool]"]


async def _eventually(predicate: Predicate, timeout: float = 5.0, interval: float = 0.005) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    for _ in range(1_000_000):  # bounded; the deadline normally ends it
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if loop.time() >= deadline:
            break
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


@pytest.fixture
def eventually() -> Callable[..., Awaitable[None]]:
    """``await eventually(pred, timeout=5.0)``: poll a (sync or async) predicate until true."""
    return _eventually
