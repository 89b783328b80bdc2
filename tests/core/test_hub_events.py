"""The hub's event hook: every membership, drain, health, breaker and ejection change reaches
the listeners, once, with the resource and what changed."""

from __future__ import annotations

import asyncio
import random

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from gleitzeit_core import (
    FailureClass,
    Health,
    HubEvent,
    OutlierSettings,
    ProbeResult,
    Request,
    Resource,
    ResourceSpec,
)
from gleitzeit_core._hub import ResourceHub


def hub_with_log(*ids: str, **kwargs: object) -> tuple[ResourceHub, list[HubEvent]]:
    hub = ResourceHub("h", rng=random.Random(1), **kwargs)  # type: ignore[arg-type]
    events: list[HubEvent] = []
    hub.listen(events.append)
    for rid in ids:
        hub.add(ResourceSpec(id=rid, endpoint=f"http://{rid}"))
    return hub, events


def kinds(events: list[HubEvent]) -> list[tuple[str, str]]:
    return [(e.resource, e.kind) for e in events]


async def test_membership_and_drain_changes_are_events() -> None:
    """add, drain, undrain and remove each emit one event for that resource; draining twice
    or un-draining a resource in rotation emits nothing more."""
    hub, events = hub_with_log("a", "b")
    await hub.drain("a")
    await hub.drain("a")
    hub.undrain("a")
    hub.undrain("a")
    await hub.remove("b")
    assert kinds(events) == [
        ("a", "added"),
        ("b", "added"),
        ("a", "draining"),
        ("a", "undrained"),
        ("b", "draining"),
        ("b", "removed"),
    ]
    assert all(e.hub == "h" for e in events)


async def test_undrain_puts_a_drained_resource_back_in_rotation() -> None:
    """After drain (without removal) no lease goes to the resource; after undrain they do."""
    hub, _ = hub_with_log("a")
    await hub.drain("a")
    lease, _ = hub.try_lease(Request())
    assert lease is None
    hub.undrain("a")
    lease, _ = hub.try_lease(Request())
    assert lease is not None
    assert lease.resource.id == "a"
    lease.succeed()


class _Probe:
    def __init__(self) -> None:
        self.ok = True

    async def probe(self, resource: Resource) -> ProbeResult:
        return ProbeResult(self.ok, 0.0, "" if self.ok else "refused")


async def test_health_changes_are_events_with_the_transition() -> None:
    """A probe moving a resource between health states emits a ``health`` event naming the
    old and new state and the probe's reason."""
    probe = _Probe()
    hub, events = hub_with_log("a")
    hub.set_probe(probe)
    assert hub.monitor is not None
    resource = hub.get("a")
    await hub.monitor.check(resource)
    probe.ok = False
    for _ in range(5):
        await hub.monitor.check(resource)
    assert resource.health is Health.UNHEALTHY
    details = [e.detail for e in events if e.kind == "health"]
    assert details == ["unknown -> healthy", "healthy -> unhealthy: refused"]


async def test_ejection_is_an_event() -> None:
    """Consecutive resource-fault failures that eject a resource emit one ``ejected`` event."""
    settings = OutlierSettings(consecutive_failures=2, max_ejected_share=1.0)
    hub, events = hub_with_log("a", "b", outlier=settings)
    for _ in range(2):
        lease = await hub.acquire(exclude=["b"])
        lease.fail(FailureClass.CONNECTION)
    ejections = [e for e in events if e.kind == "ejected"]
    assert [(e.resource, e.detail.endswith("connection errors")) for e in ejections] == [
        ("a", True)
    ]


async def test_breaker_transitions_are_events() -> None:
    """An operator forcing a breaker open and resetting it emits ``breaker`` events that say
    from which state to which."""
    hub, events = hub_with_log("a")
    breaker = hub.get("a").breaker
    breaker.force_open()
    breaker.reset()
    details = [e.detail.split(":")[0] for e in events if e.kind == "breaker"]
    assert details == ["closed -> forced_open", "forced_open -> closed"]


IDS = st.sampled_from(["a", "b", "c"])


class HubEventMachine(RuleBasedStateMachine):
    """Any sequence of membership, drain and breaker operations: the hub's event log is
    exactly the changes a small model of the hub predicts, one event per change, none for an
    operation that changes nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.hub, self.events = hub_with_log()
        self.present: dict[str, dict[str, object]] = {}  # id -> {"draining", "breaker"}
        self.expected: list[tuple[str, str, str]] = []

    def teardown(self) -> None:
        self.loop.close()

    def _expect(self, rid: str, kind: str, detail: str = "") -> None:
        self.expected.append((rid, kind, detail))

    @rule(rid=IDS)
    def add(self, rid: str) -> None:
        self.hub.add(ResourceSpec(id=rid, endpoint=f"http://{rid}"))
        state = self.present.get(rid)
        if state is None:
            self.present[rid] = {"draining": False, "breaker": "closed"}
            self._expect(rid, "added")
        elif state["draining"]:
            state["draining"] = False
            self._expect(rid, "undrained")

    @rule(rid=IDS)
    def drain(self, rid: str) -> None:
        state = self.present.get(rid)
        if state is None:
            return
        self.loop.run_until_complete(self.hub.drain(rid))
        if not state["draining"]:
            state["draining"] = True
            self._expect(rid, "draining")

    @rule(rid=IDS)
    def undrain(self, rid: str) -> None:
        state = self.present.get(rid)
        if state is None:
            return
        self.hub.undrain(rid)
        if state["draining"]:
            state["draining"] = False
            self._expect(rid, "undrained")

    @rule(rid=IDS)
    def remove(self, rid: str) -> None:
        state = self.present.pop(rid, None)
        if state is None:
            return
        self.loop.run_until_complete(self.hub.remove(rid))
        if not state["draining"]:
            self._expect(rid, "draining")
        self._expect(rid, "removed")

    @rule(rid=IDS, goal=st.sampled_from(["forced_open", "disabled", "closed"]))
    def breaker(self, rid: str, goal: str) -> None:
        state = self.present.get(rid)
        if state is None:
            return
        breaker = self.hub.get(rid).breaker
        {"forced_open": breaker.force_open, "disabled": breaker.disable, "closed": breaker.reset}[
            goal
        ]()
        if state["breaker"] != goal:
            self._expect(rid, "breaker", f"{state['breaker']} -> {goal}")
            state["breaker"] = goal

    @invariant()
    def events_match_the_model(self) -> None:
        seen = [
            (e.resource, e.kind, e.detail.split(":")[0] if e.kind == "breaker" else "")
            for e in self.events
        ]
        assert seen == self.expected


TestHubEventMachine = HubEventMachine.TestCase
