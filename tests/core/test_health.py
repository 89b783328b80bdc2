"""Health: the built-in probes over real sockets, the probe/threshold state machine, and
passive outlier ejection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import hypothesis.strategies as st
from aiohttp import web
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from gleitzeit_core import (
    FailureClass,
    Health,
    HealthSettings,
    HttpProbe,
    OutlierSettings,
    ProbeResult,
    Resource,
    ResourceSpec,
    TcpProbe,
)
from gleitzeit_core._health import HealthMonitor, OutlierDetector
from gleitzeit_core._hub import ResourceHub
from gleitzeit_core.testing import ProbeContract
from gleitzeit_core.testing.probe_contract import unused_endpoint
from tests.loopback import serving


@asynccontextmanager
async def http_server(status: int = 200) -> AsyncIterator[str]:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=status, text="ok")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    async with serving(app) as port:
        yield f"http://127.0.0.1:{port}"


class TestTcpProbe(ProbeContract):
    def make_probe(self) -> TcpProbe:
        return TcpProbe(timeout=1.0)

    @asynccontextmanager
    async def healthy_target(self) -> AsyncIterator[ResourceSpec]:
        async with http_server() as url:
            yield ResourceSpec(id="live", endpoint=url)


class TestHttpProbe(ProbeContract):
    def make_probe(self) -> HttpProbe:
        return HttpProbe(timeout=1.0, path="/health")

    @asynccontextmanager
    async def healthy_target(self) -> AsyncIterator[ResourceSpec]:
        async with http_server() as url:
            yield ResourceSpec(id="live", endpoint=url)


async def test_http_probe_fails_on_a_bad_status() -> None:
    """An HTTP probe reports a 500 as unhealthy, naming the status."""
    probe = HttpProbe(timeout=1.0)
    async with http_server(status=500) as url:
        result = await probe.probe(Resource(ResourceSpec(id="x", endpoint=url)))
    await probe.close()
    assert not result.ok
    assert "HTTP 500" in result.detail


async def until_health(hub: ResourceHub, resource_id: str, health: Health) -> None:
    """Wait (10 s at most: generous, a busy machine is slow) until the resource has ``health``."""
    for _ in range(200):
        if hub.get(resource_id).health is health:
            return
        await asyncio.sleep(0.05)
    assert hub.get(resource_id).health is health


async def test_monitor_marks_dead_resource_unhealthy_and_back() -> None:
    """Probing on an interval marks a dead endpoint unhealthy after the threshold, and a
    revived one healthy again; the hub then routes around it."""
    hub = ResourceHub("h", health=HealthSettings(interval=0.05, timeout=0.5, unhealthy_threshold=2))
    hub.set_probe(TcpProbe(timeout=0.5))
    async with http_server() as live_url:
        hub.add(ResourceSpec(id="live", endpoint=live_url))
        hub.add(ResourceSpec(id="dead", endpoint=unused_endpoint()))
        await hub.start()
        try:
            await until_health(hub, "dead", Health.UNHEALTHY)
            assert hub.get("live").health is Health.HEALTHY
            assert "ConnectionRefused" in hub.get("dead").health_detail
            for _ in range(10):
                lease = await hub.acquire()
                assert lease.resource.id == "live"
                lease.succeed()
        finally:
            await hub.stop()


class _RecordingProbe:
    """Answers healthy after ``delay`` (or never, for ids in ``hang``); records when each probe
    started and how many of one resource ran at once."""

    def __init__(self, delay: float = 0.0, hang: frozenset[str] = frozenset()) -> None:
        self.delay = delay
        self.hang = hang
        self.started: list[tuple[float, str]] = []
        self.in_flight: dict[str, int] = {}
        self.most_at_once = 0

    async def probe(self, resource: Resource) -> ProbeResult:
        self.started.append((asyncio.get_running_loop().time(), resource.id))
        self.in_flight[resource.id] = self.in_flight.get(resource.id, 0) + 1
        self.most_at_once = max(self.most_at_once, self.in_flight[resource.id])
        try:
            await asyncio.sleep(3600 if resource.id in self.hang else self.delay)
        finally:
            self.in_flight[resource.id] -= 1
        return ProbeResult(True, self.delay)


async def test_monitor_spreads_probes_over_the_interval() -> None:
    """Forty resources added together are not probed in one burst every interval: after the
    first round, no window of a tenth of the interval holds more than a quarter of them, and
    every resource is still probed about once per interval."""
    probe = _RecordingProbe()
    hub = ResourceHub("h", health=HealthSettings(interval=0.4, timeout=0.3))
    hub.set_probe(probe)
    for i in range(40):
        hub.add(ResourceSpec(id=f"r{i}", endpoint=f"http://127.0.0.1:{20000 + i}"))
    await hub.start()
    try:
        await asyncio.sleep(0.6)  # the first probes (all within the first tenth) are done
        probe.started.clear()
        await asyncio.sleep(1.6)  # four intervals
    finally:
        await hub.stop()
    times = sorted(t for t, _ in probe.started)
    assert times, "nothing was probed"
    window = 0.04
    busiest = max(sum(1 for t in times if start <= t < start + window) for start in times)
    assert busiest <= 10, f"{busiest} of 40 resources probed within {window} s"
    counts = [sum(1 for _, rid in probe.started if rid == f"r{i}") for i in range(40)]
    assert min(counts) >= 2, counts
    assert max(counts) <= 6, counts


async def test_monitor_times_out_a_hung_probe_without_stalling_the_others() -> None:
    """A probe that never answers reads as a failure naming the timeout once the timeout has
    passed, the resource turns unhealthy after the threshold, it is never probed twice at once,
    and the resources probed alongside it stay healthy."""
    probe = _RecordingProbe(hang=frozenset({"hung"}))
    settings = HealthSettings(interval=0.1, timeout=0.15, unhealthy_threshold=2)
    hub = ResourceHub("h", health=settings)
    hub.set_probe(probe)
    for rid in ("hung", "a", "b"):
        hub.add(ResourceSpec(id=rid, endpoint="http://127.0.0.1:20000"))
    await hub.start()
    try:
        await until_health(hub, "hung", Health.UNHEALTHY)
        assert "no answer within 0.15 s" in hub.get("hung").health_detail
        assert hub.get("a").health is Health.HEALTHY
        assert hub.get("b").health is Health.HEALTHY
        assert probe.most_at_once == 1
    finally:
        await hub.stop()
    assert not any(probe.in_flight.values()), "a probe outlived the monitor's stop"


async def test_unwatched_resource_is_no_longer_probed() -> None:
    """A resource removed from the hub is not probed again, while the others still are."""
    probe = _RecordingProbe()
    hub = ResourceHub("h", health=HealthSettings(interval=0.1, timeout=0.5))
    hub.set_probe(probe)
    hub.add(ResourceSpec(id="gone", endpoint="http://127.0.0.1:20000"))
    hub.add(ResourceSpec(id="kept", endpoint="http://127.0.0.1:20001"))
    await hub.start()
    try:
        await asyncio.sleep(0.3)
        await hub.remove("gone")
        await asyncio.sleep(0.05)
        probe.started.clear()
        # several rounds of "kept" (counted, not slept for: a loaded machine is slow), and
        # "gone" in none of them
        for _ in range(600):
            if sum(1 for _, rid in probe.started if rid == "kept") >= 3:
                break
            await asyncio.sleep(0.05)
    finally:
        await hub.stop()
    ids = {rid for _, rid in probe.started}
    assert ids == {"kept"}


class HealthMachine(RuleBasedStateMachine):
    """The probe-threshold state machine against a small reference model."""

    def __init__(self) -> None:
        super().__init__()
        self.settings = HealthSettings(unhealthy_threshold=3, healthy_threshold=2)
        self.monitor = HealthMonitor(_NeverProbe(), self.settings)
        self.resource = Resource(ResourceSpec(id="r"))
        self.model = "unknown"
        self.fails = 0
        self.oks = 0

    @rule(ok=st.booleans())
    def probe(self, ok: bool) -> None:
        self.monitor.apply(self.resource, ProbeResult(ok, 0.0 if ok else None, "" if ok else "x"))
        if ok:
            self.oks += 1
            self.fails = 0
            needed = 1 if self.model == "unknown" else self.settings.healthy_threshold
            if self.model != "healthy" and self.oks >= needed:
                self.model = "healthy"
        else:
            self.fails += 1
            self.oks = 0
            if self.fails >= self.settings.unhealthy_threshold:
                self.model = "unhealthy"

    @invariant()
    def agrees(self) -> None:
        assert self.resource.health.value == self.model


TestHealthMachine = HealthMachine.TestCase


class _NeverProbe:
    async def probe(self, resource: Resource) -> ProbeResult:  # pragma: no cover - unused
        raise AssertionError("not called")


def test_ejection_time_grows_and_is_capped() -> None:
    """Each ejection in a row lasts base x n seconds, up to the cap."""
    detector = OutlierDetector(
        OutlierSettings(consecutive_failures=1, base_ejection=10, max_ejection=25)
    )
    resource = Resource(ResourceSpec(id="r"))
    others = [resource, Resource(ResourceSpec(id="o1")), Resource(ResourceSpec(id="o2"))]
    now = 100.0
    durations = []
    for _ in range(4):
        assert detector.observe(resource, FailureClass.TIMEOUT, now, others)
        assert resource.ejected_until is not None
        durations.append(resource.ejected_until - now)
        now = resource.ejected_until + 0.001  # fails again right after coming back
    assert durations == [10, 20, 25, 25]


def test_at_most_a_share_of_the_hub_is_ejected() -> None:
    """No more than max_ejected_share of a hub is ejected at once (at least one may be)."""
    detector = OutlierDetector(OutlierSettings(consecutive_failures=1, max_ejected_share=0.5))
    pool = [Resource(ResourceSpec(id=f"r{i}")) for i in range(4)]
    ejected = [detector.observe(r, FailureClass.CONNECTION, 0.0, pool) for r in pool]
    assert ejected == [True, True, False, False]
    single = [Resource(ResourceSpec(id="only"))]
    assert detector.observe(single[0], FailureClass.CONNECTION, 0.0, single)


def test_success_resets_the_failure_run() -> None:
    """A success between failures resets the consecutive count, so no ejection happens."""
    detector = OutlierDetector(OutlierSettings(consecutive_failures=3))
    resource = Resource(ResourceSpec(id="r"))
    pool = [resource, Resource(ResourceSpec(id="o"))]
    for failure in [FailureClass.SERVER_ERROR, FailureClass.SERVER_ERROR, None] * 5:
        assert not detector.observe(resource, failure, 0.0, pool)
