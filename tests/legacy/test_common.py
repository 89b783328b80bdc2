"""The plan's Phase 1 components at ``gleitzeit.common.*``: adapters over the core's breakers,
metrics, health monitor and strategies, under the upstream names."""

from __future__ import annotations

import asyncio

import pytest

from tests.legacy.conftest import Sims


async def test_circuit_breaker_opens_and_enforces_the_half_open_budget() -> None:
    """Upstream's ``CircuitBreaker``: opens after ``failure_threshold`` failures in a row and
    refuses calls (``CircuitOpenError``); after ``recovery_timeout`` it admits exactly
    ``half_open_requests`` trials - also through ``can_execute``/``record_*``, which upstream
    did not count - and closes after ``success_threshold`` successes."""
    from gleitzeit.common.circuit_breaker import CircuitBreaker, CircuitOpenError, CircuitState

    from gleitzeit_core import CallOutcome

    breaker = CircuitBreaker(
        failure_threshold=3, recovery_timeout=0.2, half_open_requests=1, success_threshold=1
    )
    for _ in range(3):
        assert breaker.can_execute("a")
        breaker.record_failure("a")
    assert breaker.get_state("a") is CircuitState.OPEN
    assert not breaker.can_execute("a")
    assert breaker.can_execute("b")  # per resource

    async def work() -> str:
        return "done"

    with pytest.raises(CircuitOpenError, match="'a'"):
        await breaker.call_with_circuit_breaker("a", work)
    await asyncio.sleep(0.3)  # past the open period
    assert breaker.get_state("a") is CircuitState.HALF_OPEN
    trial = breaker._breaker("a").acquire()  # one trial in flight uses the whole budget
    assert trial is not None
    assert not breaker.can_execute("a")
    with pytest.raises(CircuitOpenError):
        await breaker.call_with_circuit_breaker("a", work)
    breaker._breaker("a").record(trial, CallOutcome.SUCCESS, 0.01)
    assert breaker.get_state("a") is CircuitState.CLOSED
    assert await breaker.call_with_circuit_breaker("a", work) == "done"


def test_load_balancer_uses_the_core_strategies_by_upstream_name() -> None:
    """``LoadBalancer.select_resource``: ``least_loaded`` takes the fewest active requests,
    ``required_capabilities`` filter first, ``hash_based`` keeps a session on one resource,
    custom strategies are called, unknown names are refused with the known ones."""
    from gleitzeit.common.load_balancer import LoadBalancer, ResourceInfo

    resources = [
        ResourceInfo("a", active_requests=5, capabilities={"gpu"}),
        ResourceInfo("b", active_requests=1),
        ResourceInfo("c", active_requests=3, capabilities={"gpu"}),
    ]
    balancer = LoadBalancer()
    assert balancer.select_resource(resources).id == "b"
    assert balancer.select_resource(resources, required_capabilities=["gpu"]).id == "c"
    assert balancer.select_resource(resources, required_capabilities=["tpu"]) is None
    chosen = {
        balancer.select_resource(resources, "hash_based", context={"session_id": "s1"}).id
        for _ in range(20)
    }
    assert len(chosen) == 1
    balancer.add_custom_strategy("last", lambda found, context: found[-1])
    assert balancer.select_resource(resources, "last").id == "c"
    with pytest.raises(ValueError, match="least_loaded"):
        balancer.select_resource(resources, "fastest")


def test_metrics_collector_counts_in_upstream_units() -> None:
    """``MetricsCollector``: requests, successes, failures, in-flight, latency in ms and rates
    in percent, per resource."""
    from gleitzeit.common.metrics import MetricsCollector

    collector = MetricsCollector()
    for ms, ok in ((10.0, True), (30.0, True), (5.0, False)):
        collector.start_request("r")
        collector.record_request("r", ms, ok, None if ok else "boom")
    collector.start_request("r")
    metrics = collector.get_metrics("r")
    assert metrics.total_requests == 3
    assert metrics.successful_requests == 2
    assert metrics.failed_requests == 1
    assert metrics.active_requests == 1
    assert metrics.median_response_time == 10.0
    assert metrics.p99_response_time == 30.0
    assert round(metrics.error_rate, 2) == 33.33
    assert metrics.last_error == "boom"
    assert collector.get_all_metrics()["r"]["consecutive_errors"] == 1


async def test_health_monitor_degraded_then_unhealthy(sims: Sims) -> None:
    """``HealthMonitor`` with ``HTTPHealthCheck`` against a simulator: healthy while it
    answers; with its probes down, degraded after ``degraded_threshold`` failures in a row and
    unhealthy after ``unhealthy_threshold``; healthy again once it answers."""
    from gleitzeit.common.health_monitor import HealthMonitor, HealthStatus, HTTPHealthCheck

    (sim,) = await sims(1)
    monitor = HealthMonitor(check_interval=60, unhealthy_threshold=3, degraded_threshold=2)
    monitor.register_resource("sim", sim.url, HTTPHealthCheck("/api/version", timeout=5))
    try:
        assert await monitor.check_now("sim") is HealthStatus.HEALTHY
        sim.set_faults(probes_down=True)
        seen = [await monitor.check_now("sim") for _ in range(3)]
        assert seen == [HealthStatus.HEALTHY, HealthStatus.DEGRADED, HealthStatus.UNHEALTHY]
        sim.set_faults(probes_down=False)
        assert await monitor.check_now("sim") is HealthStatus.HEALTHY
        assert monitor.get_status()["sim"]["status"] == "healthy"
    finally:
        await monitor.stop()
