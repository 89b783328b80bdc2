"""ResourceHub: leases, eligibility, failover, waiting, drain, panic routing and ejection."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from typing import TypeVar

import pytest

from gleitzeit_core import (
    BreakerState,
    Candidate,
    FailureClass,
    GleitzeitError,
    Health,
    NoResourceAvailable,
    OutlierSettings,
    Request,
    RequestTimeout,
    ResourceError,
    ResourceSpec,
    RoundRobinStrategy,
)
from gleitzeit_core._hub import ResourceHub


def make_hub(*ids: str, **kwargs: object) -> ResourceHub:
    hub = ResourceHub("test", rng=random.Random(1), **kwargs)  # type: ignore[arg-type]
    for rid in ids:
        hub.add(ResourceSpec(id=rid, endpoint=f"http://{rid}"))
    return hub


async def test_lease_tracks_in_flight_and_records_success() -> None:
    """A lease counts one call in flight while open, and a success in the metrics after."""
    hub = make_hub("a")
    async with hub.lease() as lease:
        assert lease.resource.id == "a"
        assert lease.resource.in_flight == 1
    resource = hub.get("a")
    assert resource.in_flight == 0
    assert resource.metrics.requests == 1
    assert resource.metrics.successes == 1


async def test_exception_in_lease_is_classified_and_reraised() -> None:
    """An exception inside ``async with hub.lease()`` is recorded by its failure class."""
    hub = make_hub("a")
    with pytest.raises(ResourceError):
        async with hub.lease():
            raise ResourceError("boom", failure=FailureClass.SERVER_ERROR)
    assert hub.get("a").metrics.failures == {FailureClass.SERVER_ERROR: 1}


async def test_call_fails_over_to_untried_resources_only() -> None:
    """A retryable failure moves to a resource this request has not tried; none twice."""
    hub = make_hub("a", "b", "c", retries=5)
    tried: list[str] = []

    async def flaky(lease):  # type: ignore[no-untyped-def]
        tried.append(lease.resource.id)
        if len(tried) < 3:
            raise ResourceError("down", failure=FailureClass.CONNECTION)
        return lease.resource.id

    result = await hub.call(flaky)
    assert len(tried) == 3
    assert len(set(tried)) == 3
    assert result == tried[-1]
    assert hub.counters["failovers"] == 2


async def test_call_does_not_retry_client_errors() -> None:
    """A caller's 4xx goes back unchanged after one attempt, and no resource is blamed."""
    hub = make_hub("a", "b")
    calls = 0

    async def bad_request(lease):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        raise ResourceError("bad", failure=FailureClass.CLIENT_ERROR, status=400)

    with pytest.raises(ResourceError) as info:
        await hub.call(bad_request)
    assert info.value.status == 400
    assert calls == 1
    assert all(r.consecutive_failures == 0 for r in hub.resources)


async def test_call_raises_last_error_when_every_resource_failed() -> None:
    """When all resources fail, the caller sees the last real error, not a generic one."""
    hub = make_hub("a", "b", retries=5)

    async def down(lease):  # type: ignore[no-untyped-def]
        raise ResourceError(f"{lease.resource.id} refused", failure=FailureClass.CONNECTION)

    with pytest.raises(ResourceError, match="refused"):
        await hub.call(down)


async def test_call_respects_the_request_deadline() -> None:
    """A hanging resource cannot hold a request past its deadline."""
    hub = make_hub("a", request_timeout=0.2)

    async def hang(lease):  # type: ignore[no-untyped-def]
        await asyncio.sleep(30)

    with pytest.raises(RequestTimeout):
        await hub.call(hang)
    assert hub.get("a").in_flight == 0


async def test_no_resource_lists_each_reason() -> None:
    """NoResourceAvailable names every candidate with why it was not eligible."""
    hub = make_hub("a", "b", "c")
    hub.add(ResourceSpec(id="gpu", endpoint="http://gpu", labels={"gpu"}, max_concurrency=1))
    hub.get("a").draining = True
    hub.get("b").breaker.force_open()
    hub.get("c").health = Health.UNHEALTHY
    held = await hub.acquire(Request(labels={"gpu"}))
    with pytest.raises(NoResourceAvailable) as info:
        await hub.acquire(Request(labels={"gpu"}), timeout=0)
    reasons = info.value.reasons
    assert reasons["a"] == "draining"
    assert reasons["b"].startswith("lacks labels")
    assert reasons["gpu"] == "at max_concurrency (1)"
    held.succeed()


async def test_saturated_request_waits_for_a_free_slot() -> None:
    """When every eligible resource is at its cap, a request waits and gets the freed slot."""
    hub = ResourceHub("test")
    hub.add(ResourceSpec(id="a", max_concurrency=1))
    first = await hub.acquire()
    waiter = asyncio.create_task(hub.acquire(timeout=5))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    first.succeed()
    second = await asyncio.wait_for(waiter, 5)
    assert second.resource.id == "a"
    second.succeed()


async def test_waiting_is_bounded_and_says_so() -> None:
    """A request that cannot get a slot in time fails saying how long it waited."""
    hub = ResourceHub("test")
    hub.add(ResourceSpec(id="a", max_concurrency=1))
    held = await hub.acquire()
    with pytest.raises(NoResourceAvailable, match=r"waited 0\.1 s"):
        await hub.acquire(timeout=0.1)
    held.succeed()


async def test_waiting_callers_are_served_in_turn_not_overtaken() -> None:
    """A caller that finishes and asks again at once queues behind the callers already
    waiting: 24 callers looping over 8 places all get an even share (none is starved)."""
    hub = ResourceHub("test", queue_timeout=30)
    hub.add(ResourceSpec(id="a", max_concurrency=4))
    hub.add(ResourceSpec(id="b", max_concurrency=4))
    served = [0] * 24
    total = 24 * 20

    async def caller(index: int) -> None:
        while sum(served) < total:
            lease = await hub.acquire()
            await asyncio.sleep(0)  # hold the place while the others queue up
            lease.succeed()  # ... and ask again at once
            served[index] += 1

    await asyncio.wait_for(asyncio.gather(*(caller(i) for i in range(24))), 60)
    assert min(served) >= 10, served  # a fair share is 20; before, 16 of 24 got none


async def test_a_waiter_whose_wait_ends_passes_a_late_lease_on() -> None:
    """A lease handed to a waiter in the same moment its wait is cancelled is not lost: the
    next waiter in line gets it."""
    hub = ResourceHub("test", queue_timeout=30)
    hub.add(ResourceSpec(id="a", max_concurrency=1))
    held = await hub.acquire()
    first = asyncio.create_task(hub.acquire())
    second = asyncio.create_task(hub.acquire())
    await asyncio.sleep(0.01)
    held.succeed()  # hands the place to `first` ...
    first.cancel()  # ... which is cancelled before it could run
    lease = await asyncio.wait_for(second, 5)
    assert lease.resource.id == "a"
    lease.succeed()
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_drain_waits_for_in_flight_and_blocks_new_leases() -> None:
    """drain() stops new leases at once and returns when the last call finished."""
    hub = make_hub("a", "b")
    hub.strategy = RoundRobinStrategy()
    lease = await hub.acquire(Request(), exclude=["b"])
    drain = asyncio.create_task(hub.drain("a"))
    await asyncio.sleep(0.05)
    assert not drain.done()
    for _ in range(5):
        other = await hub.acquire()
        assert other.resource.id == "b"
        other.succeed()
    lease.succeed()
    await asyncio.wait_for(drain, 2)
    await hub.remove("a")
    assert "a" not in hub


async def test_panic_routes_to_unhealthy_when_nothing_healthy_is_left() -> None:
    """With every resource unhealthy, requests still go out and the status says panic."""
    hub = make_hub("a", "b")
    for resource in hub.resources:
        resource.health = Health.UNHEALTHY
    lease = await hub.acquire()
    lease.succeed()
    assert hub.status().panic
    hub.get("a").health = Health.HEALTHY
    for _ in range(10):
        lease = await hub.acquire()
        assert lease.resource.id == "a"
        lease.succeed()
    assert not hub.status().panic


async def test_consecutive_failures_eject_and_traffic_moves() -> None:
    """After N consecutive resource failures a resource is ejected and others take over."""
    hub = make_hub("a", "b", outlier=OutlierSettings(consecutive_failures=3, base_ejection=60))
    target = hub.get("a")
    for _ in range(3):
        lease = await hub.acquire(exclude=["b"])
        lease.fail(FailureClass.SERVER_ERROR)
    assert target.is_ejected(hub.clock.now())
    for _ in range(10):
        lease = await hub.acquire()
        assert lease.resource.id == "b"
        lease.succeed()
    status = {r.id: r for r in hub.status().resources}
    assert status["a"].ejected
    assert status["a"].ejections == 1


async def test_overloaded_and_client_errors_never_eject() -> None:
    """503-busy and caller errors are not the resource's fault and never eject it."""
    hub = make_hub("a", outlier=OutlierSettings(consecutive_failures=2))
    for failure in [FailureClass.OVERLOADED, FailureClass.CLIENT_ERROR] * 5:
        lease = await hub.acquire()
        lease.fail(failure)
    assert not hub.get("a").is_ejected(hub.clock.now())


async def test_breaker_refusal_moves_to_another_resource() -> None:
    """A forced-open breaker makes its resource ineligible; traffic goes elsewhere."""
    hub = make_hub("a", "b")
    hub.get("a").breaker.force_open()
    for _ in range(10):
        lease = await hub.acquire()
        assert lease.resource.id == "b"
        lease.succeed()
    assert hub.get("a").breaker.state is BreakerState.FORCED_OPEN


async def test_slot_capacity_is_enforced_per_slot() -> None:
    """A hub's per-slot cap (an Ollama model's num_parallel, say) is never exceeded."""

    class SlotHub(ResourceHub):
        def capacity(self, resource, slot):  # type: ignore[no-untyped-def]
            return 2

    hub = SlotHub("slots")
    hub.add(ResourceSpec(id="a"))
    leases = [await hub.acquire(Request(slot="m1")) for _ in range(2)]
    other = await hub.acquire(Request(slot="m2"))
    with pytest.raises(NoResourceAvailable, match="m1: all 2 slots busy"):
        await hub.acquire(Request(slot="m1"), timeout=0)
    for lease in [*leases, other]:
        lease.succeed()
    assert hub.get("a").slots == {}


async def test_tiers_prefer_the_best_tier() -> None:
    """Only resources of the lowest tier present are chosen from."""

    class TierHub(ResourceHub):
        def tier(self, resource, request):  # type: ignore[no-untyped-def]
            return 0 if resource.id == "warm" else 1

    hub = TierHub("tiers")
    for rid in ("cold1", "warm", "cold2"):
        hub.add(ResourceSpec(id=rid))
    for _ in range(10):
        lease = await hub.acquire()
        assert lease.resource.id == "warm"
        lease.succeed()


async def test_cancelled_caller_releases_the_lease() -> None:
    """A caller cancelled mid-call frees its slot and blames nobody."""
    hub = ResourceHub("test")
    hub.add(ResourceSpec(id="a", max_concurrency=1))
    started = asyncio.Event()

    async def slow(lease):  # type: ignore[no-untyped-def]
        started.set()
        await asyncio.sleep(30)

    task = asyncio.create_task(hub.call(slow))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    resource = hub.get("a")
    assert resource.in_flight == 0
    assert resource.metrics.failures == {FailureClass.CANCELLED: 1}
    assert resource.consecutive_failures == 0


async def test_large_hub_sampling_only_picks_eligible_resources() -> None:
    """In a big hub, the sampled fast path of p2c never returns an ineligible resource and
    still finds the few eligible ones when most are unhealthy."""
    hub = make_hub(*[f"r{i:03d}" for i in range(200)])
    bad = {f"r{i:03d}" for i in range(200) if i % 10}
    for rid in bad:
        hub.get(rid).health = Health.UNHEALTHY
    chosen = set()
    for _ in range(300):
        lease = await hub.acquire()
        assert lease.resource.id not in bad
        chosen.add(lease.resource.id)
        lease.succeed()
    assert len(chosen) == 20
    assert not hub.status().panic


async def test_large_hub_spreads_load_like_p2c() -> None:
    """With every resource eligible, sampled p2c keeps the load spread: no resource gets
    more than a few calls in flight while 200 are open."""
    hub = make_hub(*[f"r{i:03d}" for i in range(100)])
    leases = [await hub.acquire() for _ in range(200)]
    loads = [r.in_flight for r in hub.resources]
    assert max(loads) <= 4
    for lease in leases:
        lease.succeed()


async def test_open_keeps_the_lease_for_the_caller() -> None:
    """hub.open fails over like call, but hands back the lease still open (for streams)."""
    hub = make_hub("a", "b", retries=3)
    tried: list[str] = []

    async def first_fails(lease):  # type: ignore[no-untyped-def]
        tried.append(lease.resource.id)
        if len(tried) == 1:
            raise ResourceError("down", failure=FailureClass.CONNECTION)
        return "stream"

    result, lease = await hub.open(first_fails)
    assert result == "stream"
    assert not lease.done
    assert lease.resource.in_flight == 1
    lease.fail(FailureClass.PROTOCOL)
    assert lease.resource.in_flight == 0
    assert lease.resource.metrics.failures == {FailureClass.PROTOCOL: 1}


async def test_probe_can_be_told_not_to_end_ejections() -> None:
    """With uneject_on_probe off, a passing probe does not end an ejection early."""
    from gleitzeit_core import ProbeResult

    hub = make_hub(
        "a", "b", outlier=OutlierSettings(consecutive_failures=1, uneject_on_probe=False)
    )

    class Up:
        async def probe(self, resource):  # type: ignore[no-untyped-def]
            return ProbeResult(True, 0.0)

    hub.set_probe(Up())
    lease = await hub.acquire(exclude=["b"])
    lease.fail(FailureClass.SERVER_ERROR)
    assert hub.monitor is not None
    await hub.monitor.check(hub.get("a"))
    assert hub.get("a").is_ejected(hub.clock.now())


async def test_attempt_timeout_fails_over_from_a_hung_resource() -> None:
    """With attempt_timeout set, a resource that never answers costs one try and the request
    is served by another resource within its deadline."""
    hub = make_hub("a", "b", request_timeout=5.0, attempt_timeout=0.2, retries=2)

    async def first_hangs(lease):  # type: ignore[no-untyped-def]
        if lease.resource.id == "a":
            await asyncio.sleep(30)
        return lease.resource.id

    for _ in range(5):
        assert await hub.call(first_hangs) == "b"
    assert hub.get("a").metrics.failures.get(FailureClass.TIMEOUT, 0) >= 1


class _BrokenStrategy:
    """A third-party strategy with a bug: its select raises."""

    name = "broken_select"
    sampling = 0
    guarantees: frozenset[str] = frozenset()

    def select(self, candidates: object, request: Request) -> object:
        raise ZeroDivisionError("bug in select")


async def test_a_strategy_that_raises_is_reported_naming_hub_strategy_and_hook() -> None:
    """A strategy whose ``select`` raises fails the request with a GleitzeitError naming the
    hub, the strategy's name, its class and the hook, instead of a bare ZeroDivisionError
    that says nothing about which plugin to fix; nothing is left in flight."""
    hub = make_hub("a", "b", strategy=_BrokenStrategy())
    with pytest.raises(GleitzeitError) as raised:
        async with hub.lease():
            pass
    message = str(raised.value)
    assert "hub 'test'" in message
    assert "strategy 'broken_select'" in message
    assert "_BrokenStrategy) raised in select" in message
    assert "ZeroDivisionError: bug in select" in message
    assert isinstance(raised.value.__cause__, ZeroDivisionError)
    assert all(hub.get(rid).in_flight == 0 for rid in ("a", "b"))


C = TypeVar("C", bound=Candidate)


class _BreaksAfterFirstPick:
    """A strategy that picks once, then raises (a bug met only under load)."""

    name = "breaks_later"
    sampling = 0
    guarantees: frozenset[str] = frozenset()

    def __init__(self) -> None:
        self.picks = 0

    def select(self, candidates: Sequence[C], request: Request) -> C:
        self.picks += 1
        if self.picks > 1:
            raise ZeroDivisionError("bug in select")
        return candidates[0]


async def test_a_strategy_raising_for_a_waiter_fails_that_waiter_not_the_releasing_call() -> None:
    """When a freed slot is handed to a waiting request and the strategy raises while picking
    for it, the waiter gets the error naming the strategy at once; the call that freed the
    slot finishes normally (it did nothing wrong)."""
    hub = ResourceHub("test", strategy=_BreaksAfterFirstPick())
    hub.add(ResourceSpec(id="a", max_concurrency=1))
    first = await hub.acquire()
    waiter = asyncio.create_task(hub.acquire(timeout=30))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    first.succeed()  # must not raise the waiter's strategy error into this caller
    with pytest.raises(GleitzeitError, match="strategy 'breaks_later'"):
        await asyncio.wait_for(waiter, 10)
