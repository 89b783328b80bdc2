"""``ResourceHub``: membership, leases, failover and drain over a pool of resources.

A call takes a *lease* on one resource: the hub finds the eligible resources (not draining,
not already tried by this request, able to serve it, under their concurrency caps, admitted by
their breaker, healthy - or all of them in panic mode, when nothing healthy is left), lets the
strategy choose within the best tier, and tracks the call in flight. When the lease ends, its
duration and outcome go to the metrics, the breaker and outlier detection. ``call`` wraps that
in failover: a retryable failure moves on to a resource this request has not tried yet, within
the request's deadline.

Plugin hubs subclass it and override the hooks ``serves``, ``tier``, ``capacity``,
``classify`` and ``describe``.
"""

from __future__ import annotations

import asyncio
import collections
import random
from collections.abc import Awaitable, Callable, Collection, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import attrs

from . import _selection as selection
from ._balancing import PowerOfTwoChoicesStrategy, Strategy
from ._breaker import Breaker, BreakerState, BreakerTransition, PassThroughBreaker
from ._clock import Clock, SystemClock
from ._errors import GleitzeitError, NoResourceAvailable, ResourceError
from ._failover import open_with_failover
from ._health import HealthMonitor, HealthSettings, OutlierDetector, OutlierSettings, Probe
from ._lease import Lease
from ._metrics import ResourceMetrics
from ._outcomes import CallOutcome, FailureClass
from ._request import Request
from ._resources import Health, Resource, ResourceSpec, public_endpoint
from ._status import HubStatus, ResourceStatus

if TYPE_CHECKING:
    from ._state import StateBackend

__all__ = ["HubEvent", "HubEventListener", "ResourceHub", "SharedFactHandler"]

# Above this many members, strategies that only compare a few random candidates (p2c) get a
# uniform sample of eligible ones instead of a scan of the whole hub.
_SAMPLE_ABOVE = 4

T = TypeVar("T")


@attrs.frozen
class HubEvent:
    """Something that happened to one resource of a hub, as delivered to ``hub.listen``.

    ``kind`` is one of ``added``, ``removed``, ``draining``, ``undrained``, ``health``,
    ``breaker`` and ``ejected``; ``detail`` says what changed (``"healthy -> unhealthy"``).
    ``at`` is the hub clock's reading (monotonic seconds).
    """

    hub: str
    resource: str
    kind: str
    detail: str
    at: float


HubEventListener = Callable[[HubEvent], None]
# ``handler(fact, replica)``: a fact another gateway replica shared (see ``ResourceHub.share``)
SharedFactHandler = Callable[[Any, str], None]


class _Waiter:
    """A caller waiting in ``acquire``: what it asks for, and where its lease will arrive."""

    __slots__ = ("exclude", "future", "request", "strategy")

    def __init__(
        self, request: Request, exclude: Collection[str], strategy: Strategy | None
    ) -> None:
        self.request = request
        self.exclude = exclude
        self.strategy = strategy
        self.future: asyncio.Future[Lease | None] = asyncio.get_running_loop().create_future()


class ResourceHub:
    kind: ClassVar[str] = "generic"

    def __init__(
        self,
        name: str,
        *,
        strategy: Strategy | None = None,
        breaker_factory: Callable[[], Breaker] | None = None,
        probe: Probe | None = None,
        health: HealthSettings | None = None,
        outlier: OutlierSettings | None = None,
        discoverers: Sequence[Any] = (),
        request_timeout: float = 120.0,
        attempt_timeout: float | None = None,
        retries: int = 2,
        queue_timeout: float = 30.0,
        max_waiting: int = 1000,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        metrics_window: int = 256,
        strategy_name: str | None = None,
        settings: Any = None,
    ) -> None:
        self.name = name
        self.rng = rng or random.Random()
        self.clock = clock or SystemClock()
        self._shared_handlers: dict[str, SharedFactHandler] = {}
        self.strategy: Strategy = strategy or PowerOfTwoChoicesStrategy(rng=self.rng)
        self.strategy_name: str = ""
        self.use_strategy(self.strategy, strategy_name)
        self.breaker_factory = breaker_factory or (lambda: PassThroughBreaker(clock=self.clock))
        self.health_settings = health or HealthSettings()
        self.outlier = OutlierDetector(outlier or OutlierSettings())
        self.monitor: HealthMonitor | None = None
        if probe is not None:
            self.set_probe(probe)
        self.discoverers = list(discoverers)
        self.request_timeout = request_timeout
        self.attempt_timeout = attempt_timeout
        self.retries = retries
        self.queue_timeout = queue_timeout
        self.max_waiting = max_waiting
        self.metrics_window = metrics_window
        self.settings = settings
        # set by the runtime: with a shared backend, caps hold across gateway replicas
        self.state: StateBackend | None = None
        self._resources: dict[str, Resource] = {}
        self._members: list[Resource] = []  # the same, as a list for cheap iteration
        # callers waiting for capacity, oldest first (see _wake)
        self._waiters: collections.deque[_Waiter] = collections.deque()
        self._handing_over = False
        self._hand_over_again = False
        self._drained: dict[str, asyncio.Event] = {}
        self._started = False
        self._probing = False  # probes start once on_start has run
        # a subclass that ranks resources in tiers needs the full scan to see every tier
        self._tiered = type(self).tier is not ResourceHub.tier
        self.panic = False
        self.counters: dict[str, int] = {
            "leases": 0,
            "failovers": 0,
            "no_resource": 0,
            "queued": 0,
            "queue_timeouts": 0,
            "panic_leases": 0,
        }
        self.discovery_errors: dict[str, str] = {}
        self._observers: list[Callable[[Lease, FailureClass | None, float], None]] = []
        self._listeners: list[HubEventListener] = []

    # -- membership ---------------------------------------------------------------------------
    @property
    def resources(self) -> list[Resource]:
        return list(self._members)

    def get(self, resource_id: str) -> Resource:
        try:
            return self._resources[resource_id]
        except KeyError:
            known = ", ".join(sorted(self._resources)) or "none"
            msg = f"hub {self.name!r} has no resource {resource_id!r}; it has: {known}"
            raise KeyError(msg) from None

    def __contains__(self, resource_id: object) -> bool:
        return resource_id in self._resources

    def add(self, spec: ResourceSpec) -> Resource:
        """Add a resource; adding an id that exists replaces its spec but keeps its state."""
        existing = self._resources.get(spec.id)
        if existing is not None:
            existing.spec = spec
            if existing.draining:
                self.undrain(spec.id)
            return existing
        resource = Resource(
            spec,
            breaker=self.breaker_factory(),
            metrics=ResourceMetrics(self.metrics_window),
        )
        resource.breaker.subscribe(self._breaker_listener(resource))
        self._resources[spec.id] = resource
        self._members.append(resource)
        self.on_added(resource)
        self._emit(resource, "added", spec.endpoint)
        if self._probing and self.monitor is not None:
            self.monitor.watch(resource)
        self._wake()
        return resource

    async def drain(self, resource_id: str, timeout: float | None = None) -> None:
        """Stop new leases on a resource and wait until its calls in flight have finished."""
        resource = self.get(resource_id)
        if not resource.draining:
            resource.draining = True
            self._emit(resource, "draining", f"{resource.in_flight} call(s) in flight")
        if resource.in_flight == 0:
            return
        event = self._drained.setdefault(resource_id, asyncio.Event())
        async with asyncio.timeout(timeout):
            await event.wait()

    def undrain(self, resource_id: str) -> None:
        """Put a draining resource back in rotation (a no-op for one that is not draining)."""
        resource = self.get(resource_id)
        if resource.draining:
            resource.draining = False
            self._emit(resource, "undrained", "back in rotation")
            self._wake()

    async def remove(
        self, resource_id: str, *, drain: bool = True, timeout: float | None = None
    ) -> None:
        """Take a resource out of the hub; by default only after its calls have finished."""
        if drain:
            await self.drain(resource_id, timeout)
        resource = self._resources.pop(resource_id, None)
        if resource is None:
            return
        self._members = [m for m in self._members if m is not resource]
        if self.monitor is not None:
            self.monitor.unwatch(resource_id)
        self.on_removed(resource)
        self._emit(resource, "removed", "left the hub")

    def replace_breakers(self, factory: Callable[[], Breaker]) -> None:
        """Give every resource a new breaker from ``factory`` (a reload changed the hub's
        breaker); calls in flight record their outcome on the breaker that admitted them."""
        self.breaker_factory = factory
        for resource in self._members:
            resource.breaker = factory()
            resource.breaker.subscribe(self._breaker_listener(resource))
        self._wake()

    def set_probe(self, probe: Probe) -> None:
        """Probe resources with ``probe`` (before ``start``)."""
        self.monitor = HealthMonitor(
            probe,
            self.health_settings,
            rng=self.rng,
            uneject=self.outlier.settings.uneject_on_probe,
            on_change=self._health_changed,
        )

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        """Discover resources, run ``on_start``, then start probing them."""
        if self._started:
            return
        self._started = True
        await self.discover()
        await self.on_start()
        self._probing = True
        if self.monitor is not None:
            for resource in self._members:
                self.monitor.watch(resource)

    async def discover(self) -> list[ResourceSpec]:
        """Ask every discoverer for resources and add the new ones; errors are kept, not raised."""
        found: list[ResourceSpec] = []
        for discoverer in self.discoverers:
            label = getattr(discoverer, "name", type(discoverer).__name__)
            try:
                specs = await discoverer.discover(self)
            except Exception as exc:  # one broken source must not take the hub down
                self.discovery_errors[label] = f"{type(exc).__name__}: {exc}"
                continue
            self.discovery_errors.pop(label, None)
            for spec in specs:
                if spec.id not in self._resources:
                    self.add(spec)
                found.append(spec)
        return found

    async def stop(self) -> None:
        """Stop probing, wake everyone waiting, then run ``on_stop`` (also when the hub was
        never started: it may have opened sessions on first use)."""
        self._started = self._probing = False
        if self.monitor is not None:
            await self.monitor.stop()
        self._wake()
        await self.on_stop()

    async def __aenter__(self) -> ResourceHub:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def _health_changed(self, resource: Resource, old: Health) -> None:
        detail = f"{old.value} -> {resource.health.value}"
        if resource.health_detail:
            detail += f": {resource.health_detail}"
        self._emit(resource, "health", detail)
        self.on_health_change(resource, old)

    # -- hooks for plugin hubs ------------------------------------------------------------------
    def serves(self, resource: Resource, request: Request) -> str | None:
        """Why ``resource`` cannot serve ``request`` (``None``: it can). Labels and capabilities."""
        if request.labels and not request.labels <= resource.spec.labels:
            return f"lacks labels {sorted(request.labels - resource.spec.labels)}"
        if request.capabilities and not request.capabilities <= resource.spec.capabilities:
            return f"lacks capabilities {sorted(request.capabilities - resource.spec.capabilities)}"
        return None

    def tier(self, resource: Resource, request: Request) -> int:
        """Preference class of an eligible resource; the lowest tier present is chosen from."""
        return 0

    def capacity(self, resource: Resource, slot: str) -> int | None:
        """The most calls in flight per slot (``None``: no cap)."""
        return None

    def classify(self, exc: BaseException) -> FailureClass:
        """Whose fault an exception raised during a lease was."""
        if isinstance(exc, ResourceError) and isinstance(exc.failure, FailureClass):
            return exc.failure
        if isinstance(exc, asyncio.CancelledError):
            return FailureClass.CANCELLED
        if isinstance(exc, TimeoutError):
            return FailureClass.TIMEOUT
        if isinstance(exc, ConnectionError | OSError):
            return FailureClass.CONNECTION
        return FailureClass.CLIENT_ERROR

    def describe(self, resource: Resource) -> dict[str, Any]:
        """Kind-specific facts for the status (an Ollama hub lists loaded models)."""
        return {}

    def on_health_change(self, resource: Resource, old: Health) -> None:
        """Called when a probe moved a resource to another health state."""
        self._wake()

    async def on_start(self) -> None:
        """Called by ``start`` after discovery and before probing begins (read inventories,
        open sessions, pre-start containers)."""

    async def on_stop(self) -> None:
        """Called by ``stop`` once probing has stopped (cancel background work, close
        sessions)."""

    def on_added(self, resource: Resource) -> None:
        """Called when a resource joins."""

    def on_removed(self, resource: Resource) -> None:
        """Called when a resource leaves."""

    # -- leasing --------------------------------------------------------------------------------
    def try_lease(
        self,
        request: Request,
        exclude: Collection[str] = (),
        strategy: Strategy | None = None,
    ) -> tuple[Lease | None, bool]:
        """Take a lease now if any resource is eligible; also say whether waiting could help."""
        now = self.clock.now()
        strategy = strategy or self.strategy
        sampling = strategy.sampling
        if sampling and len(self._members) > _SAMPLE_ABOVE and not self._tiered:
            sample = selection.sample(self, sampling, request, exclude, now)
            if sample is not None:
                resource = self._select(strategy, sample, request)
                permit = resource.breaker.acquire()
                if permit is not None:
                    self.panic = False
                    return self._open_lease(resource, permit, request, now), False
                # refused: the full scan must not ask the same breaker twice for one lease
                exclude = {*exclude, resource.spec.id}
        eligible, saturated, panic = selection.eligible(self, request, exclude, now)
        self.panic = panic
        while eligible:
            tier = eligible
            if self._tiered and len(eligible) > 1:
                ranks = [self.tier(r, request) for r in eligible]
                best = min(ranks)
                tier = [r for r, rank in zip(eligible, ranks, strict=True) if rank == best]
            resource = self._select(strategy, tier, request)
            permit = resource.breaker.acquire()
            if permit is not None:
                if panic:
                    self.counters["panic_leases"] += 1
                return self._open_lease(resource, permit, request, now), saturated
            eligible = [r for r in eligible if r is not resource]
        return None, saturated

    def _select(
        self, strategy: Strategy, candidates: Sequence[Resource], request: Request
    ) -> Resource:
        # A strategy is often a third party's code: its bug must say which one to fix.
        try:
            return strategy.select(candidates, request)
        except GleitzeitError:
            raise
        except Exception as exc:
            cls = type(strategy)
            raise GleitzeitError(
                f"hub {self.name!r}: strategy {getattr(strategy, 'name', '?')!r} "
                f"({cls.__module__}.{cls.__qualname__}) raised in select: "
                f"{type(exc).__name__}: {exc}; `gleitzeit plugins list` shows which plugin "
                "registers it"
            ) from exc

    def _open_lease(self, resource: Resource, permit: Any, request: Request, now: float) -> Lease:
        resource.metrics.in_flight += 1
        if request.slot is not None:
            resource.slots[request.slot] = resource.slots.get(request.slot, 0) + 1
        self.counters["leases"] += 1
        return Lease(self, resource, permit, request, now)

    async def acquire(
        self,
        request: Request | None = None,
        *,
        exclude: Collection[str] = (),
        strategy: Strategy | None = None,
        timeout: float | None = None,
        count_refusal: bool = True,
    ) -> Lease:
        """Take a lease, waiting up to ``timeout`` (default ``queue_timeout``) while the
        eligible resources are all busy. Raises ``NoResourceAvailable`` with every reason.
        ``count_refusal=False`` keeps a refusal out of the ``no_resource`` counter (a failover
        that finds nobody left is counted as the original failure, not as a refusal)."""
        request = request or Request()
        lease, saturated = await self._try_shared(request, exclude, strategy)
        if lease is not None:
            return lease
        wait = self.queue_timeout if timeout is None else timeout
        if request.deadline is not None:
            wait = min(wait, max(0.0, request.deadline - self.clock.now()))
        waiters = self._waiters
        if not saturated or wait <= 0 or len(waiters) >= self.max_waiting:
            self.counters["no_resource"] += count_refusal
            detail = "wait queue full" if saturated and wait > 0 else None
            raise NoResourceAvailable(
                self.name, selection.reasons(self, request, exclude, self.clock.now()), detail
            )
        self.counters["queued"] += 1
        try:
            async with asyncio.timeout(wait):
                while True:
                    handed = await self._wait_in_line(request, exclude, strategy)
                    if handed is None or await self._reserve(handed):
                        break
                    # the fleet has that resource full: wait in line again
        except TimeoutError:
            self.counters["queue_timeouts"] += 1
            raise NoResourceAvailable(
                self.name,
                selection.reasons(self, request, exclude, self.clock.now()),
                f"waited {wait:.1f} s for a free slot",
            ) from None
        if handed is not None:
            return handed
        self.counters["no_resource"] += count_refusal
        raise NoResourceAvailable(
            self.name, selection.reasons(self, request, exclude, self.clock.now())
        )

    async def _wait_in_line(
        self, request: Request, exclude: Collection[str], strategy: Strategy | None
    ) -> Lease | None:
        """Queue until ``_wake`` hands this caller a lease (or ``None``: waiting cannot help)."""
        waiters = self._waiters
        waiter = _Waiter(request, exclude, strategy)
        waiters.append(waiter)
        try:
            return await waiter.future
        except BaseException:
            # a lease handed over just as the wait ended goes to the next in line
            future = waiter.future
            late = future.result() if future.done() and not future.cancelled() else None
            if late is not None:
                late.release()
            raise
        finally:
            if waiter in waiters:
                waiters.remove(waiter)

    async def _try_shared(
        self, request: Request, exclude: Collection[str], strategy: Strategy | None
    ) -> tuple[Lease | None, bool]:
        """``try_lease``, plus the fleet-wide reservation of ``_reserve``; when that is
        refused the choice is made again (the refused resource now counts as full)."""
        while True:
            lease, saturated = self.try_lease(request, exclude, strategy)
            if lease is None or await self._reserve(lease):
                return lease, saturated

    async def _reserve(self, lease: Lease) -> bool:
        """With a shared state backend, take a place on the leased resource's cap across
        every replica. Refused: the lease is given back and the resource counts as full here
        until the backend's next sync."""
        state = self.state
        if state is None or not state.shared:
            return True
        resource = lease.resource
        slot = lease.request.slot
        cap = self.capacity(resource, slot) if slot is not None else None
        if cap is None:
            slot, cap = None, resource.spec.max_concurrency
        if cap is None:
            return True
        if await state.reserve(self.name, resource.spec.id, slot, cap):
            lease.reserved = slot or ""
            return True
        if slot is None:
            resource.remote_in_flight = max(resource.remote_in_flight, cap)
        else:
            resource.remote_slots[slot] = max(resource.remote_slots.get(slot, 0), cap)
        lease.release()
        return False

    @asynccontextmanager
    async def lease(
        self,
        request: Request | None = None,
        *,
        exclude: Collection[str] = (),
        strategy: Strategy | None = None,
        timeout: float | None = None,
    ) -> Any:
        """``async with hub.lease(request) as lease:`` - the outcome is recorded on exit:
        success if the block ends normally, else the exception's ``classify`` result."""
        lease = await self.acquire(request, exclude=exclude, strategy=strategy, timeout=timeout)
        try:
            yield lease
        except BaseException as exc:
            lease.fail(self.classify(exc))
            raise
        else:
            lease.succeed()

    def finish(self, lease: Lease, failure: FailureClass | None, *, record: bool = True) -> None:
        """Record a lease's outcome (called once, by the lease); ``record=False`` only frees
        its slot and permit."""
        resource = lease.resource
        now = self.clock.now()
        duration = now - lease.started
        metrics = resource.metrics
        metrics.in_flight -= 1
        slot = lease.request.slot
        if slot is not None:
            left = resource.slots.get(slot, 1) - 1
            if left > 0:
                resource.slots[slot] = left
            else:
                resource.slots.pop(slot, None)
        if not record:
            lease.breaker.record(lease.permit, CallOutcome.IGNORED, duration)
        else:
            metrics.record(duration, failure, now)
            if failure is None:
                outcome = CallOutcome.SUCCESS
            elif failure.resource_fault:
                outcome = CallOutcome.FAILURE
            else:
                outcome = CallOutcome.IGNORED
            lease.breaker.record(lease.permit, outcome, duration)
            if self.outlier.observe(resource, failure, now, self._members):
                until = resource.ejected_until or now
                cause = failure.value if failure is not None else "failure"
                self._emit(resource, "ejected", f"for {until - now:.0f} s after {cause} errors")
            for callback in self._observers:
                callback(lease, failure, duration)
        if lease.reserved is not None and self.state is not None:
            self.state.release(self.name, resource.spec.id, lease.reserved or None)
        if resource.draining and metrics.in_flight == 0:
            event = self._drained.pop(resource.spec.id, None)
            if event is not None:
                event.set()
        self._wake()

    def observe(self, callback: Callable[[Lease, FailureClass | None, float], None]) -> None:
        """Call ``callback(lease, failure, duration)`` after every finished lease (exporters
        such as the Prometheus plugin build histograms from it)."""
        self._observers.append(callback)

    def wake(self) -> None:
        """Wake the callers waiting for a free resource (a shared state backend calls it when
        other replicas freed capacity)."""
        self._wake()

    def listen(self, callback: HubEventListener) -> None:
        """Call ``callback(event)`` for every :class:`HubEvent` of this hub (dashboards and
        audit logs build their timelines from it). Callbacks run inline and must be quick."""
        self._listeners.append(callback)

    def use_strategy(self, strategy: Strategy, name: str | None = None) -> None:
        """Route with ``strategy`` from the next call on. A strategy that learns across
        replicas has a ``bind_hub(hub)`` method, called here: it may ``share`` facts and
        register ``on_shared`` handlers; the handlers of the strategy it replaces go."""
        old = self.strategy
        if old is not strategy:
            for topic, handler in list(self._shared_handlers.items()):
                if getattr(handler, "__self__", None) is old:
                    del self._shared_handlers[topic]
        self.strategy, self.strategy_name = strategy, name or strategy.name
        bind = getattr(strategy, "bind_hub", None)
        if bind is not None:
            bind(self)

    # -- facts shared between gateway replicas (through the state backend) --------------------
    @property
    def sharing(self) -> bool:
        """Whether ``share`` reaches other replicas (a shared state backend is attached)."""
        state = self.state
        return state is not None and state.shared

    def share(self, topic: str, fact: Any) -> None:
        """Tell the other replicas of this gateway ``fact`` (JSON-able, small: a backend drops
        one over its limit, and a client's request must not decide its size) under
        ``topic``: each one's handler for ``topic`` on its hub of the same name receives it,
        within milliseconds while the store answers. Never blocks, never fails for the store:
        without a shared backend, or while it is down, the fact stays here. Raises
        ``TypeError``/``ValueError`` at once for a fact JSON cannot carry."""
        state = self.state
        if state is not None and state.shared:
            state.share(self.name, topic, fact)

    def on_shared(self, topic: str, handler: SharedFactHandler) -> None:
        """Call ``handler(fact, replica)`` for each fact another replica shares on ``topic``
        (one handler per topic; a later one replaces it). The fact comes from the store:
        the handler must check it and raise ``ValueError``/``TypeError`` for what it cannot
        use (the backend counts those as ``bad_events``); it runs inline and must be quick."""
        self._shared_handlers[topic] = handler

    def receive_shared(self, topic: str, fact: Any, replica: str) -> bool:
        """Hand a peer's fact to the handler of ``topic`` (called by the state backend);
        False when nothing here handles the topic."""
        handler = self._shared_handlers.get(topic)
        if handler is None:
            return False
        handler(fact, replica)
        return True

    def _emit(self, resource: Resource, kind: str, detail: str) -> None:
        if self._listeners:
            event = HubEvent(self.name, resource.spec.id, kind, detail, self.clock.now())
            for callback in self._listeners:
                callback(event)

    def _wake(self) -> None:
        """Hand freed capacity to the waiting callers, oldest first, before any newcomer can
        take it (a caller that finishes and asks again queues behind them). Each waiter takes
        only what suits its request, so one waiting for a busy model does not hold up one
        waiting for another; a waiter that waiting can no longer help is told so (``None``)."""
        if not self._waiters:
            return
        if self._handing_over:  # woken again from inside a hand-over (a breaker transition)
            self._hand_over_again = True
            return
        self._handing_over = True
        try:
            self._hand_over_again = True
            while self._hand_over_again:
                self._hand_over_again = False
                self._hand_over()
        finally:
            self._handing_over = False

    def _hand_over(self) -> None:
        waiters = self._waiters
        for waiter in list(waiters):
            future = waiter.future
            if future.done():
                waiters.remove(waiter)
                continue
            try:
                lease, saturated = self.try_lease(waiter.request, waiter.exclude, waiter.strategy)
            except GleitzeitError as exc:  # the waiter's strategy failed: its caller hears it
                waiters.remove(waiter)
                future.set_exception(exc)
                continue
            if lease is not None:
                waiters.remove(waiter)
                future.set_result(lease)
            elif not saturated:
                waiters.remove(waiter)
                future.set_result(None)

    # -- failover -------------------------------------------------------------------------------
    def deadline_for(self, request: Request) -> float:
        return (
            request.deadline
            if request.deadline is not None
            else self.clock.now() + self.request_timeout
        )

    async def open(
        self,
        operation: Callable[[Lease], Awaitable[T]],
        request: Request | None = None,
        *,
        retries: int | None = None,
        strategy: Strategy | None = None,
        exclude: Collection[str] = (),
    ) -> tuple[T, Lease]:
        """Run ``operation`` on a leased resource, failing over to untried resources on
        retryable failures, within the request's deadline and at most ``retries`` times.

        On success the lease stays open and is returned with the result: the caller records
        the outcome later (a stream holds its slot until its last chunk, and may still fail).
        ``exclude`` names resources this request already tried elsewhere.
        """
        return await open_with_failover(
            self, operation, request, retries=retries, strategy=strategy, exclude=exclude
        )

    async def call(
        self,
        operation: Callable[[Lease], Awaitable[T]],
        request: Request | None = None,
        *,
        retries: int | None = None,
        strategy: Strategy | None = None,
        exclude: Collection[str] = (),
    ) -> T:
        """``open`` for calls that are complete when ``operation`` returns: the lease is
        recorded as a success at once."""
        result, lease = await self.open(
            operation, request, retries=retries, strategy=strategy, exclude=exclude
        )
        lease.succeed()
        return result

    # -- status ---------------------------------------------------------------------------------
    def _breaker_listener(self, resource: Resource) -> Callable[[BreakerTransition], None]:
        def listener(event: BreakerTransition) -> None:
            if event.new is BreakerState.OPEN:
                resource.breaker_opens += 1
            detail = f"{event.old.value} -> {event.new.value}"
            self._emit(resource, "breaker", f"{detail}: {event.reason}" if event.reason else detail)
            self._wake()

        return listener

    def resource_status(self, resource: Resource, now: float) -> ResourceStatus:
        ejected = resource.is_ejected(now)
        return ResourceStatus(
            id=resource.spec.id,
            endpoint=public_endpoint(resource.spec.endpoint),
            health=resource.health.value,
            health_detail=resource.health_detail,
            breaker=resource.breaker.state.value,
            breaker_opens=resource.breaker_opens,
            in_flight=resource.in_flight,
            ejected=ejected,
            ejected_for_s=round(resource.ejected_until - now, 3)
            if ejected and resource.ejected_until
            else 0.0,
            ejections=resource.ejections_total,
            draining=resource.draining,
            weight=resource.spec.weight,
            labels=sorted(resource.spec.labels),
            metrics=resource.metrics.snapshot(now),
            details=self.describe(resource),
        )

    def status(self) -> HubStatus:
        now = self.clock.now()
        return HubStatus(
            name=self.name,
            kind=self.kind,
            strategy=self.strategy_name,
            panic=self.panic,
            waiting=len(self._waiters),
            counters=dict(self.counters),
            discovery_errors=dict(self.discovery_errors),
            resources=[self.resource_status(r, now) for r in self._members],
        )

    def members(self) -> Sequence[Resource]:
        """The resources, without copying them (read-only: change them with ``add`` and
        ``remove``)."""
        return self._members

    @property
    def started(self) -> bool:
        """Whether ``start`` ran and ``stop`` has not."""
        return self._started
