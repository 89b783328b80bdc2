"""``ModelAwareStrategy`` (registered as ``model_aware``): the core's StrategyContract and
its own preference property, over FakeCandidates and inside a hub."""

from __future__ import annotations

import random
from collections import Counter

import aiohttp
import pytest
from gleitzeit_ollama.strategy import ModelAwareStrategy
from hypothesis import given, settings
from hypothesis import strategies as st

from gleitzeit_core import Request, Strategy
from gleitzeit_core.testing import FakeCandidate, StrategyContract
from gleitzeit_core.testing import strategies as gst
from tests.ollama.conftest import SimFactory
from tests.ollama.hub.conftest import RuntimeFactory
from tests.ollama.hub.support import MODEL, preload


class TestModelAware(StrategyContract):
    """Default inner strategy (least_loaded)."""

    def make_strategy(self, rng: random.Random) -> Strategy:
        return ModelAwareStrategy(rng=rng)


class TestModelAwareRoundRobin(StrategyContract):
    """With a round_robin inner strategy and no model asked for, the cycle property holds."""

    guarantees = frozenset({"cycle"})

    def make_strategy(self, rng: random.Random) -> Strategy:
        return ModelAwareStrategy(rng=rng, inner="round_robin")


@settings(max_examples=150, deadline=None)
@given(
    gst.candidate_pools(min_size=1, max_size=12),
    st.data(),
    st.integers(),
)
def test_hot_candidates_always_win(
    pool: list[FakeCandidate], data: st.DataObject, seed: int
) -> None:
    """Whatever the loads and latencies: if some candidate has the model loaded, one of those
    is chosen; otherwise an installed one; otherwise any."""
    hot = data.draw(st.sets(st.sampled_from(range(len(pool)))))
    installed = data.draw(st.sets(st.sampled_from(range(len(pool)))))
    for index, candidate in enumerate(pool):
        extra = set()
        if index in hot:
            extra.add(f"loaded:{MODEL}:latest")
        if index in installed:
            extra.add(f"model:{MODEL}:latest")
        candidate.labels = candidate.labels | extra
    strategy = ModelAwareStrategy(rng=random.Random(seed))
    request = Request(attributes={"model": MODEL})
    for _ in range(5):
        choice = pool.index(strategy.select(pool, request))
        if hot:
            assert choice in hot
        elif installed:
            assert choice in installed


def test_inner_strategy_breaks_ties_among_hot_candidates() -> None:
    """Among equally warm candidates the inner strategy decides (least_loaded here)."""
    pool = [
        FakeCandidate(id="a", in_flight=5, labels=frozenset({"loaded:m:latest"})),
        FakeCandidate(id="b", in_flight=1, labels=frozenset({"loaded:m:latest"})),
        FakeCandidate(id="c", in_flight=0),
    ]
    strategy = ModelAwareStrategy(rng=random.Random(1))
    assert strategy.select(pool, Request(slot="m")).id == "b"
    assert strategy.select(pool, Request()).id == "c"  # no model: least loaded overall


def test_unknown_inner_strategy_is_refused() -> None:
    """``inner`` must name a built-in strategy."""
    with pytest.raises(ValueError, match="one of") as info:
        ModelAwareStrategy(inner="fastest")
    assert getattr(info.value, "field", None) == "inner"


async def test_model_aware_configured_by_name(
    sim_factory: SimFactory, runtime_factory: RuntimeFactory, http: aiohttp.ClientSession
) -> None:
    """``strategy = { kind = "model_aware", inner = "round_robin" }`` loads the registered
    strategy; it spreads over the instances that have the model hot."""
    sims = await sim_factory(3, models=[MODEL])
    for sim in sims[:2]:
        await preload(http, sim)
    runtime = await runtime_factory(sims, strategy={"kind": "model_aware", "inner": "round_robin"})
    hub = runtime.hubs["llm"]
    assert isinstance(hub.strategy, ModelAwareStrategy)
    served = Counter()
    for _ in range(8):
        reply = await runtime.execute("llm/generate", {"model": MODEL, "prompt": "x"})
        served[reply["gleitzeit"]["instance"]] += 1
    assert served == {"s0": 4, "s1": 4}
