"""``gleitzeit.orchestration.ollama_pool``: the old ``OllamaPoolManager`` usage (research
section 2.1) runs unchanged against simulators and returns the old shapes and units."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.legacy.conftest import MODEL, Sims, instances

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

STATUS_KEYS = {
    "url",
    "state",
    "active_requests",
    "total_requests",
    "avg_response_time",
    "error_rate",
    "availability",
    "models_loaded",
    "circuit_breaker_open",
}


async def test_old_usage_runs_unchanged(sims: Sims) -> None:
    """The snippet of section 2.1, verbatim in spirit: construct, initialize, get an instance
    by model/strategy/tags, record success in seconds, release, health-check by id, status,
    shutdown - with the old result types and the old status shape."""
    from gleitzeit.orchestration.ollama_pool import OllamaPoolManager

    cpu, gpu = await sims(2)
    pool = OllamaPoolManager(
        instances=[
            {
                "id": "cpu-1",
                "url": cpu.url,
                "models": [MODEL],
                "max_concurrent": 5,
                "tags": ["cpu"],
            },
            {
                "id": "gpu-1",
                "url": gpu.url,
                "models": [MODEL],
                "max_concurrent": 2,
                "tags": ["gpu"],
            },
        ],
        health_check_interval=30,
        circuit_breaker_config={
            "failure_threshold": 5,
            "recovery_timeout": 60,
            "half_open_requests": 3,
        },
    )
    await pool.initialize()
    try:
        url = await pool.get_instance(
            model="llama3.2", strategy="least_loaded", tags=["gpu"], require_healthy=True
        )
        assert url == gpu.url
        await pool.record_success(url, response_time=1.5)
        await pool.release_instance(url)
        assert await pool.health_check("gpu-1") is True
        status = await pool.get_pool_status()
        assert set(status) == {
            "total_instances",
            "healthy_instances",
            "degraded_instances",
            "unhealthy_instances",
            "instances",
        }
        assert status["total_instances"] == 2
        assert status["healthy_instances"] == 2
        entry = status["instances"]["gpu-1"]
        assert set(entry) == STATUS_KEYS
        assert entry["url"] == gpu.url
        assert entry["state"] == "healthy"
        assert entry["avg_response_time"] == 1.5  # seconds, as recorded
        assert entry["error_rate"] == 0.0
        assert entry["availability"] == 100.0
        assert entry["total_requests"] == 1
        assert entry["active_requests"] == 0
        assert "llama3.2:latest" in entry["models_loaded"]  # what /api/tags reports
        assert entry["circuit_breaker_open"] is False
    finally:
        await pool.shutdown()


async def test_stub_call_shape_and_public_attributes(sims: Sims) -> None:
    """``OllamaPoolManager(instances)`` and ``get_instance(model=None, strategy=...)`` (the
    first stub) still work; the attributes old tests touched are there and typed as before,
    ``models_loaded`` included before any health check (it used to raise AttributeError)."""
    from gleitzeit.orchestration.ollama_pool import (
        InstanceState,
        LoadBalancingStrategy,
        OllamaPoolManager,
    )

    (sim,) = await sims(1)
    pool = OllamaPoolManager([{"id": "a", "url": sim.url}])
    instance = pool.instances["a"]
    assert instance.url == sim.url
    assert instance.models == []
    assert instance.max_concurrent == 5
    assert instance.tags == []
    assert instance.models_loaded == []  # not probed yet: empty, not AttributeError
    assert instance.metrics.active_requests == 0
    assert instance.metrics.response_times == []
    await pool.initialize()
    try:
        assert instance.state is InstanceState.HEALTHY
        assert instance.state == "healthy"
        url = await pool.get_instance()
        assert url == sim.url
        await pool.release_instance(url)
        assert await pool.get_instance(model=None, strategy="least_loaded") == sim.url
        await pool.release_instance(sim.url)
        available = pool._get_available_instances(model=MODEL, tags=None, require_healthy=True)
        assert [i.id for i in available] == ["a"]
        chosen = pool._select_instance(available, LoadBalancingStrategy.LEAST_LOADED, MODEL)
        assert chosen is instance
        assert pool.circuit_breaker.is_open("a") is False
        assert [s.value for s in LoadBalancingStrategy] == [
            "round_robin",
            "least_loaded",
            "random",
            "model_affinity",
            "latency_based",
            "weighted",
        ]
    finally:
        await pool.shutdown()


async def test_unknown_strategy_is_a_value_error(sims: Sims) -> None:
    """An unknown strategy string raises ``ValueError`` naming the known ones, as before."""
    from gleitzeit.orchestration.ollama_pool import OllamaPoolManager

    (_sim,) = await sims(1)
    pool = OllamaPoolManager(instances(sims.started))
    try:
        with pytest.raises(ValueError, match="least_loaded"):
            await pool.get_instance(strategy="fastest")
    finally:
        await pool.shutdown()


async def test_units_seconds_and_fractions(sims: Sims) -> None:
    """Response times are seconds; ``metrics.error_rate`` is a 0..1 fraction while the status
    shows percent; availability is the success percentage."""
    from gleitzeit.orchestration.ollama_pool import OllamaPoolManager

    (sim,) = await sims(1)
    pool = OllamaPoolManager([{"id": "a", "url": sim.url, "max_concurrent": 10}])
    await pool.initialize()
    try:
        for seconds in (0.5, 1.5):
            url = await pool.get_instance()
            assert url is not None
            await pool.record_success(url, response_time=seconds)
        url = await pool.get_instance()
        assert url is not None
        await pool.record_failure(url, RuntimeError("boom"))
        url = await pool.get_instance()
        assert url is not None
        await pool.record_failure(url)
        metrics = pool.instances["a"].metrics
        assert metrics.response_times == [0.5, 1.5]
        assert metrics.avg_response_time == 1.0
        assert metrics.success_count == 2
        assert metrics.error_count == 2
        assert metrics.error_rate == 0.5
        entry = (await pool.get_pool_status())["instances"]["a"]
        assert entry["avg_response_time"] == 1.0
        assert entry["error_rate"] == 50.0
        assert entry["availability"] == 50.0
        # the hub's own metrics hold the same calls, in milliseconds
        snapshot = pool.hub.get("a").metrics.snapshot(pool.hub.clock.now())
        assert snapshot.requests == 4
        assert snapshot.p50_ms is not None
        assert 499.0 <= snapshot.p50_ms <= 1501.0
    finally:
        await pool.shutdown()


async def test_max_concurrent_is_a_hard_limit(sims: Sims) -> None:
    """``max_concurrent`` caps instances handed out and not released: the legacy path says
    ``None`` at once; the hub path waits for a free slot and gets the released one."""
    from gleitzeit.orchestration.ollama_pool import OllamaPoolManager

    (sim,) = await sims(1)
    for path in ("legacy", "hub"):
        features = {"rollout_percent": 0.0 if path == "legacy" else 100.0}
        pool = OllamaPoolManager(
            [{"id": "a", "url": sim.url, "max_concurrent": 2}], features=features
        )
        await pool.initialize()
        try:
            first = await pool.get_instance(model=MODEL)
            second = await pool.get_instance(model=MODEL)
            assert first == second == sim.url
            assert pool.instances["a"].metrics.active_requests == 2
            if path == "legacy":
                assert await pool.get_instance(model=MODEL) is None
            else:
                waiting = asyncio.ensure_future(pool.get_instance(model=MODEL))
                await asyncio.sleep(0.05)
                assert not waiting.done()
                await pool.release_instance(sim.url)
                assert await asyncio.wait_for(waiting, 5) == sim.url
        finally:
            await pool.shutdown()


async def test_half_open_limit_is_enforced(sims: Sims) -> None:
    """After ``failure_threshold`` failures the circuit opens; after ``recovery_timeout`` at
    most ``half_open_requests`` calls are let through at once (the old pool let any number
    through), and one success closes it again."""
    from gleitzeit.orchestration.ollama_pool import OllamaPoolManager

    a, _b = await sims(2)
    config = {"failure_threshold": 2, "recovery_timeout": 0.2, "half_open_requests": 2}
    pool = OllamaPoolManager(
        [{"id": "a", "url": a.url, "max_concurrent": 10}],
        circuit_breaker_config=config,
        features={"rollout_percent": 0.0},
    )
    await pool.initialize()
    try:
        for _ in range(2):
            url = await pool.get_instance()
            assert url == a.url
            await pool.record_failure(url, ConnectionError("refused"))
        assert pool.circuit_breaker.is_open("a") is True
        assert await pool.get_instance() is None
        await asyncio.sleep(0.25)
        trial = [await pool.get_instance() for _ in range(4)]
        assert trial == [a.url, a.url, None, None]
        assert pool.circuit_breaker.state("a") == "half_open"
        await pool.record_success(a.url, response_time=0.01)
        await pool.record_success(a.url, response_time=0.01)
        assert pool.circuit_breaker.state("a") == "closed"
        status = await pool.get_pool_status()
        assert status["instances"]["a"]["circuit_breaker_open"] is False
    finally:
        await pool.shutdown()


async def test_unhealthy_instance_is_reported_and_skipped(sims: Sims) -> None:
    """An instance that stops answering probes shows ``unhealthy`` and is not handed out."""
    from gleitzeit.orchestration.ollama_pool import OllamaPoolManager

    a, b = await sims(2)
    pool = OllamaPoolManager(instances([a, b]), health_check_interval=30)
    await pool.initialize()
    try:
        await b.stop()
        for _ in range(3):  # the hub's unhealthy threshold
            assert await pool.health_check("i1") is False
        status = await pool.get_pool_status()
        assert status["instances"]["i1"]["state"] == "unhealthy"
        assert status["unhealthy_instances"] == 1
        urls: set[Any] = set()
        for _ in range(4):
            url = await pool.get_instance(model=MODEL)
            urls.add(url)
            await pool.release_instance(url)
        assert urls == {a.url}
    finally:
        await pool.shutdown()
