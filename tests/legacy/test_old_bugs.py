"""Where the old code was wrong, the shim is right - on the hub path and on the legacy path.

Each test names the old bug (research section 3) it shows fixed. The Docker ones (host /tmp,
timeouts in containers) are in ``test_docker.py``; the half-open limit is in
``test_ollama_pool_manager.py``.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.legacy.conftest import MODEL, Sims, instances, requests_to

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

PATHS = ("hub", "legacy")


@pytest.mark.parametrize("path", PATHS)
async def test_failover_never_retries_the_same_instance(sims: Sims, path: str) -> None:
    """R3: with ``a`` always failing, the old provider hit ``a`` three times and gave up. Now a
    request tries ``a`` at most once, then ``b`` answers."""
    from gleitzeit.providers.ollama_pool_provider import OllamaPoolProvider

    a, b = await sims(2)
    a.set_faults(error_rate=1.0, error_status=500)
    provider = OllamaPoolProvider(
        "p",
        instances([a, b]),
        {"strategy": "least_loaded", "failover": True, "retry_attempts": 3},
        {"failure_threshold": 100, "recovery_timeout": 60, "half_open_requests": 3},
    )
    try:
        for _ in range(6):
            before = requests_to(a)
            result = await provider.execute_path(path, "llm/generate", {"prompt": "x"})
            assert result["done"] is True
            assert requests_to(a) - before <= 1
        assert requests_to(b) == 6
    finally:
        await provider.shutdown()


@pytest.mark.parametrize("path", PATHS)
async def test_no_failover_means_one_attempt(sims: Sims, path: str) -> None:
    """``failover: false`` makes exactly one attempt; the error comes back to the caller."""
    from gleitzeit.providers.ollama_pool_provider import OllamaPoolProvider

    from gleitzeit_core import ResourceError

    (a,) = await sims(1)
    a.set_faults(error_rate=1.0, error_status=500)
    provider = OllamaPoolProvider("p", instances([a]), {"failover": False, "retry_attempts": 3})
    try:
        with pytest.raises(ResourceError, match="500"):
            await provider.execute_path(path, "llm/generate", {"prompt": "x"})
        assert requests_to(a) == 1
    finally:
        await provider.shutdown()


@pytest.mark.parametrize("path", PATHS)
async def test_max_tokens_reaches_ollama(sims: Sims, path: str) -> None:
    """The pool provider sent ``options.max_tokens``, which Ollama ignores; now it is
    ``options.num_predict`` (the simulator honours only that), also inside ``options``."""
    from gleitzeit.providers.ollama_pool_provider import OllamaPoolProvider

    (sim,) = await sims(1, max_tokens=20)
    provider = OllamaPoolProvider("p", instances([sim]))
    try:
        plain = await provider.execute_path(path, "llm/generate", {"prompt": "count"})
        assert plain["eval_count"] == 20
        capped = await provider.execute_path(path, "llm/generate", {"prompt": "c", "max_tokens": 3})
        assert capped["eval_count"] == 3
        chat = await provider.execute_path(
            path, "llm/chat", {"messages": [{"role": "user", "content": "c"}], "max_tokens": 5}
        )
        assert chat["eval_count"] == 5
        inside = await provider.execute_path(
            path, "llm/generate", {"prompt": "c", "options": {"max_tokens": 4}}
        )
        assert inside["eval_count"] == 4
    finally:
        await provider.shutdown()


@pytest.mark.parametrize("path", PATHS)
async def test_timeout_bounds_the_whole_call(sims: Sims, path: str) -> None:
    """Timeouts were never enforced (and per attempt when they were): with every instance
    hanging, a call with ``timeout=0.5`` fails with a ``TimeoutError`` within about that,
    failovers included."""
    from gleitzeit.providers.ollama_pool_provider import OllamaPoolProvider

    a, b = await sims(2)
    a.set_faults(hang=True)
    b.set_faults(hang=True)
    provider = OllamaPoolProvider("p", instances([a, b]), timeout=0.5)
    try:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await provider.execute_path(path, "llm/generate", {"prompt": "x"})
        assert time.monotonic() - started < 1.5
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await provider.execute_path(path, "llm/generate", {"prompt": "x", "timeout": 0.2})
        assert time.monotonic() - started < 1.0
    finally:
        a.clear_faults()
        b.clear_faults()
        await provider.shutdown()


async def test_models_loaded_never_raises(sims: Sims) -> None:
    """R1: ``get_pool_status``, ``model_affinity`` and ``_get_available_instances(model=...)``
    crashed with AttributeError for instances that never passed a health check."""
    from gleitzeit.orchestration.ollama_pool import OllamaPoolManager

    (up,) = await sims(1)
    pool = OllamaPoolManager(
        [
            {"id": "up", "url": up.url},
            {"id": "down", "url": "http://127.0.0.1:9", "models": [MODEL]},
        ],
        features={"rollout_percent": 0.0},
    )
    await pool.initialize()
    try:
        status = await pool.get_pool_status()
        # what the hub knows: the configured models until the instance answers /api/tags
        assert status["instances"]["down"]["models_loaded"] == ["llama3.2:latest"]
        assert status["instances"]["down"]["state"] in ("degraded", "unhealthy")
        found = pool._get_available_instances(model=MODEL)
        assert {i.id for i in found} <= {"up", "down"}
        url = await pool.get_instance(model=MODEL, strategy="model_affinity")
        assert url == up.url
    finally:
        await pool.shutdown()


async def test_model_names_match_with_and_without_tag(sims: Sims) -> None:
    """R9: ``llama3.2`` (what users write) and ``llama3.2:latest`` (what ``/api/tags``
    reports) are the same model for routing; no pull is triggered."""
    from gleitzeit.providers.ollama_pool_provider import OllamaPoolProvider

    (sim,) = await sims(1, models=["llama3.2:latest"])
    provider = OllamaPoolProvider("p", [{"id": "a", "url": sim.url}])
    try:
        for path in PATHS:
            for model in ("llama3.2", "llama3.2:latest"):
                result = await provider.execute_path(
                    path, "llm/generate", {"prompt": "x", "model": model}
                )
                assert result["done"] is True
        assert requests_to(sim, "/api/pull") == 0
    finally:
        await provider.shutdown()


async def test_errors_are_real_exceptions(sims: Sims) -> None:
    """R4: the old structured errors were themselves TypeErrors. A missing instance now
    raises ``NoResourceAvailable`` (a ``LookupError``) that names every instance and why."""
    from gleitzeit.providers.ollama_pool_provider import OllamaPoolProvider

    from gleitzeit_core import NoResourceAvailable

    (sim,) = await sims(1)
    provider = OllamaPoolProvider("p", [{"id": "cpu", "url": sim.url, "tags": ["cpu"]}])
    try:
        for path in PATHS:
            with pytest.raises(NoResourceAvailable, match="cpu") as caught:
                await provider.execute_path(
                    path, "llm/generate", {"prompt": "x", "require_gpu": True}
                )
            assert isinstance(caught.value, LookupError)
    finally:
        await provider.shutdown()


async def test_requests_run_concurrently(sims: Sims) -> None:
    """Calls on the legacy path run side by side (nothing blocks the event loop): of eight
    calls on two 100 ms simulators, several are in flight on one simulator at once (the
    simulators count; no clock, so a loaded machine cannot fail it)."""
    from gleitzeit.providers.ollama_pool_provider import OllamaPoolProvider

    pair = await sims(2, latency_ms=100.0, num_parallel=4)
    provider = OllamaPoolProvider("p", instances(pair))
    try:
        await provider.initialize()
        for sim in pair:
            sim.reset_stats()
        await asyncio.gather(
            *(provider.execute_path("legacy", "llm/generate", {"prompt": "x"}) for _ in range(8))
        )
        peaks = [sim.stats()["max_concurrency"]["overall"] for sim in pair]
        assert max(peaks) >= 2, peaks
        assert sum(requests_to(sim) for sim in pair) == 8
    finally:
        await provider.shutdown()
