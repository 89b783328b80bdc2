"""The hub's channel for facts shared between gateway replicas: free and silent without a shared
state backend, handed to the current strategy's handler, and a replaced strategy hears no more."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, TypeVar

from gleitzeit_core import (
    Candidate,
    PowerOfTwoChoicesStrategy,
    Request,
    ResourceHub,
    StateStatus,
)
from gleitzeit_core._state import LocalState

C = TypeVar("C", bound=Candidate)


class Learner:
    """A strategy that shares each pick and records what peers share."""

    name = "learner"
    guarantees: frozenset[str] = frozenset()
    sampling = 0

    def __init__(self) -> None:
        self.heard: list[tuple[Any, str]] = []
        self.hub: ResourceHub | None = None

    def bind_hub(self, hub: ResourceHub) -> None:
        self.hub = hub
        hub.on_shared("picks", self.hear)

    def hear(self, fact: Any, replica: str) -> None:
        self.heard.append((fact, replica))

    def select(self, candidates: Sequence[C], request: Request) -> C:
        choice = candidates[0]
        if self.hub is not None:
            self.hub.share("picks", choice.id)
        return choice


class Recorder:
    """A shared backend that only records what it is asked to share."""

    name = "recorder"
    shared = True

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, Any]] = []

    def share(self, hub: str, topic: str, fact: Any) -> None:
        self.sent.append((hub, topic, fact))

    def status(self) -> StateStatus:
        return StateStatus(backend=self.name, shared=True, connected=True)


def test_without_a_shared_backend_sharing_costs_nothing_and_goes_nowhere() -> None:
    """With no backend or the local one, ``sharing`` is False and ``share`` does nothing
    (the local backend's ``share`` is a plain no-op: nothing to await, nothing kept)."""
    learner = Learner()
    hub = ResourceHub("h", strategy=learner, rng=random.Random(1))  # type: ignore[arg-type]
    assert learner.hub is hub  # bound when the hub took it
    assert not hub.sharing
    hub.share("picks", "x")
    hub.state = LocalState()
    assert not hub.sharing
    assert hub.state.share("h", "picks", "x") is None
    hub.share("picks", "x")
    assert learner.heard == []


def test_facts_go_out_through_the_backend_and_peers_reach_the_current_strategy() -> None:
    """With a shared backend a fact leaves with the hub's name and topic; a peer's fact
    reaches the handler of its topic; once the strategy is replaced, the old one hears
    nothing more and a topic nobody handles is reported as such."""
    learner = Learner()
    hub = ResourceHub("h", strategy=learner, rng=random.Random(1))  # type: ignore[arg-type]
    backend = Recorder()
    hub.state = backend  # type: ignore[assignment]
    assert hub.sharing
    hub.share("picks", ["a", [1, 2]])
    assert backend.sent == [("h", "picks", ["a", [1, 2]])]
    assert hub.receive_shared("picks", "b", "replica-2")
    assert learner.heard == [("b", "replica-2")]
    hub.use_strategy(PowerOfTwoChoicesStrategy(rng=random.Random(1)), "p2c")
    assert not hub.receive_shared("picks", "c", "replica-2")
    assert learner.heard == [("b", "replica-2")]
    assert hub.strategy_name == "p2c"
