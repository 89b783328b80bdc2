"""``PrefixAffinityStrategy`` (registered as ``prefix_affinity``): the core's StrategyContract,
its affinity, load-guard, memory and eviction properties over FakeCandidates, a stateful test
of its index, and, inside a hub over simulators, multi-turn chats that land where their prompt
is cached."""

from __future__ import annotations

import random
import sys
import tracemalloc
from collections import Counter
from typing import Any

import aiohttp
import pytest
from gleitzeit_ollama.prefix_affinity import (
    ENTRY_BYTES,
    MAX_PROMPT_CHARS,
    MAX_SHARED_KEYS,
    PrefixAffinityStrategy,
    PrefixIndex,
    block_keys,
    prompt_attributes,
    render_prompt,
    shared_keys,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from gleitzeit_core import (
    Caller,
    ConfigError,
    Request,
    ResourceHub,
    ResourceSpec,
    Strategy,
    acting_as,
)
from gleitzeit_core._runtime import Runtime
from gleitzeit_core.testing import FakeCandidate, StrategyContract
from gleitzeit_core.testing import strategies as gst
from tests.ollama.conftest import SimFactory
from tests.ollama.hub.conftest import RuntimeFactory
from tests.ollama.hub.support import MODEL, config, preload, sim_stats

BLOCK = 32  # small blocks keep the generated prompts short


class TestPrefixAffinity(StrategyContract):
    """Defaults (p2c fallback)."""

    def make_strategy(self, rng: random.Random) -> Strategy:
        return PrefixAffinityStrategy(rng=rng)


class TestPrefixAffinityLeastLoaded(StrategyContract):
    """least_loaded fallback, small blocks, a tiny index."""

    def make_strategy(self, rng: random.Random) -> Strategy:
        return PrefixAffinityStrategy(
            rng=rng, fallback="least_loaded", block_chars=16, max_blocks=3
        )


prompts = st.text(alphabet="abcdefgh ", min_size=BLOCK, max_size=8 * BLOCK)


def request_for(prompt: str) -> Request:
    return Request(slot=MODEL, attributes={"model": MODEL, "prompt": prompt})


@settings(max_examples=150, deadline=None)
@given(
    gst.candidate_pools(min_size=2, max_size=10),
    st.lists(prompts, min_size=1, max_size=8),
    st.integers(min_value=0, max_value=64),
    st.integers(),
)
def test_same_prefix_same_instance_while_load_is_balanced(
    pool: list[FakeCandidate], conversation: list[str], load: int, seed: int
) -> None:
    """While every candidate carries the same load, each turn of a conversation (a prompt
    that extends the previous turn's) goes to the instance that served the first turn (any
    match counts here: ``min_match_ratio`` 0)."""
    for candidate in pool:
        candidate.in_flight, candidate.weight, candidate.healthy = load, 1.0, True
    strategy = PrefixAffinityStrategy(
        rng=random.Random(seed), block_chars=BLOCK, min_match_ratio=0.0
    )
    prompt = conversation[0]
    first = strategy.select(pool, request_for(prompt))
    for turn in conversation[1:]:
        prompt += turn
        assert strategy.select(pool, request_for(prompt)) is first


@settings(max_examples=200, deadline=None)
@given(
    gst.candidate_pools(min_size=2, max_size=10),
    prompts,
    st.floats(min_value=0.0, max_value=8.0),
    st.integers(),
    st.data(),
)
def test_load_guard_is_respected(
    pool: list[FakeCandidate], prompt: str, margin: float, seed: int, data: st.DataObject
) -> None:
    """The instance holding the prefix is chosen if its load (in flight per weight) exceeds
    the least loaded candidate's by at most ``load_margin``; otherwise the fallback
    (``least_loaded``: fewest in flight) chooses."""
    for candidate in pool:
        candidate.healthy = True
    strategy = PrefixAffinityStrategy(
        rng=random.Random(seed), block_chars=BLOCK, load_margin=margin, fallback="least_loaded"
    )  # the same prompt again: the match covers all of it
    holder = data.draw(st.sampled_from(pool))
    strategy.select([holder], request_for(prompt))  # the holder served it before
    choice = strategy.select(pool, request_for(prompt))
    lightest = min(c.in_flight / c.weight for c in pool)
    if holder.in_flight / holder.weight - lightest > margin:
        assert choice.in_flight == min(c.in_flight for c in pool)  # least_loaded decided
        assert strategy.counters["guarded"] == 1
    else:
        assert choice is holder
        assert strategy.counters["affine"] == 1


def test_an_unhealthy_holder_is_not_preferred() -> None:
    """In panic mode (unhealthy candidates offered), the holder of the prefix that is
    unhealthy loses its preference; a healthy holder keeps it."""
    pool = [FakeCandidate(id=f"r{i}") for i in range(4)]
    strategy = PrefixAffinityStrategy(rng=random.Random(1), block_chars=BLOCK)
    prompt = "x" * (4 * BLOCK)
    strategy.select([pool[2]], request_for(prompt))
    assert strategy.select(pool, request_for(prompt)) is pool[2]
    pool[2].healthy = False
    cold = strategy.counters["cold"]
    strategy.select(pool, request_for(prompt))
    assert strategy.counters["cold"] == cold + 1  # no usable holder: the fallback chose


@settings(max_examples=100, deadline=None)
@given(
    st.integers(min_value=1, max_value=64),
    st.integers(min_value=1, max_value=8),
    st.lists(
        st.tuples(st.lists(st.integers(0, 2**64 - 1), max_size=20), st.integers(0, 9)),
        max_size=60,
    ),
)
def test_index_memory_never_above_its_bound(
    max_blocks: int, max_owners: int, records: list[tuple[list[int], int]]
) -> None:
    """Whatever is recorded, the index holds at most ``max_blocks`` keys, each with at most
    ``max_owners`` owners, and its memory stays under ``max_bytes()``."""
    index = PrefixIndex(max_blocks, max_owners)
    for keys, owner in records:
        index.record(keys, f"instance-{owner}")
        assert len(index) <= max_blocks
        assert index.approx_bytes() <= index.max_bytes()
        assert all(len(index.owners(key)) <= max_owners for key in index.in_lru_order())


def test_index_memory_measured_stays_under_the_bound() -> None:
    """Measured with tracemalloc while ten times its capacity is recorded by eight instances,
    the index never grows past ``max_blocks x ENTRY_BYTES`` (plus a little for the table)."""
    max_blocks = 5_000
    index = PrefixIndex(max_blocks, 8)
    owners = [f"instance-{i}" for i in range(8)]
    rng = random.Random(3)
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for round_ in range(10 * max_blocks // 10):
            keys = [rng.getrandbits(64) for _ in range(10)]
            index.record(keys, owners[round_ % 8])
            for owner in owners[:3]:
                index.record(keys[:2], owner)
            if round_ % 500 == 0:
                now, _ = tracemalloc.get_traced_memory()
                assert now - before <= max_blocks * ENTRY_BYTES + 64 * 1024
        now, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(index) == max_blocks
    assert now - before <= max_blocks * ENTRY_BYTES + 64 * 1024


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 30), min_size=1, max_size=80), st.integers(1, 10))
def test_eviction_order_is_least_recently_used(touches: list[int], max_blocks: int) -> None:
    """The keys kept are exactly the ``max_blocks`` most recently recorded ones, in order of
    use; recording a key again refreshes it."""
    index = PrefixIndex(max_blocks, 2)
    for key in touches:
        index.record([key], "a")
    kept: list[int] = []
    evicted = 0
    for key in touches:
        if key in kept:
            kept.remove(key)
        kept.append(key)
        if len(kept) > max_blocks:
            kept.pop(0)
            evicted += 1
    assert index.in_lru_order() == kept
    assert index.evictions == evicted


class IndexMachine(RuleBasedStateMachine):
    """The index against a plain model: an ordered list of (key, owners) with LRU eviction."""

    def __init__(self) -> None:
        super().__init__()
        self.max_blocks, self.max_owners = 6, 3
        self.index = PrefixIndex(self.max_blocks, self.max_owners)
        self.model: dict[int, list[str]] = {}  # insertion order = recency

    keys = st.lists(st.integers(0, 12), min_size=1, max_size=5)
    owners = st.sampled_from(["a", "b", "c", "d"])

    @rule(keys=keys, owner=owners)
    def record(self, keys: list[int], owner: str) -> None:
        self.index.record(keys, owner)
        for key in keys:  # a new key first makes room: never more than max_blocks
            if key not in self.model and len(self.model) >= self.max_blocks:
                del self.model[next(iter(self.model))]
            current = self.model.pop(key, [])
            self.model[key] = [owner, *(o for o in current if o != owner)][: self.max_owners]

    @rule(keys=keys, owner=owners)
    def forget(self, keys: list[int], owner: str) -> None:
        self.index.forget(keys, owner)
        for key in keys:
            if key in self.model and owner in self.model[key]:
                rest = [o for o in self.model[key] if o != owner]
                if rest:
                    self.model[key] = rest
                else:
                    del self.model[key]

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data())
    def longest_match(self, data: st.DataObject) -> None:
        chain = data.draw(st.lists(st.integers(0, 12), min_size=1, max_size=6))
        expected: dict[str, int] = {}
        for length in range(len(chain), 0, -1):
            for owner in self.model.get(chain[length - 1], []):
                expected.setdefault(owner, length)
        assert self.index.matches(chain) == expected

    @invariant()
    def same_contents_in_same_order(self) -> None:
        assert self.index.in_lru_order() == list(self.model)
        for key, owners in self.model.items():
            assert list(self.index.owners(key)) == owners
        assert len(self.index) <= self.max_blocks


TestIndexMachine = IndexMachine.TestCase


def test_block_keys_chain_the_prefix() -> None:
    """Keys are chained: two prompts share exactly the keys of their common full blocks, a
    different model shares none, and a partial trailing block adds no key."""
    base = "s" * 64 + "u" * 64
    longer = base + "v" * 40
    assert block_keys(base, 32) == block_keys(longer, 32)[:4]
    assert len(block_keys(longer, 32)) == 5
    changed = "t" + base[1:]
    assert not set(block_keys(changed, 32)) & set(block_keys(base, 32))
    assert not set(block_keys(base, 32, "other")) & set(block_keys(base, 32, MODEL))


def test_render_prompt_extends_with_the_conversation() -> None:
    """A chat whose messages extend an earlier one's renders to a text that extends the
    earlier text; a generate body renders its system prompt before the prompt."""
    turn1 = {"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "q1"}]}
    turn2 = {
        "messages": [
            *turn1["messages"],
            {"role": "assistant", "content": "a1"},
            {"role": "user", "content": "q2"},
        ]
    }
    first, second = render_prompt(turn1), render_prompt(turn2)
    assert first is not None
    assert second is not None
    assert second.startswith(first)
    assert render_prompt({"prompt": "p", "system": "S"}) == "system\nS\x1ep"
    assert render_prompt({"model": "x"}) is None
    assert prompt_attributes(object(), turn1) == {}  # other strategies pay nothing
    assert prompt_attributes(PrefixAffinityStrategy(), turn1) == {"prompt": first}


def test_learns_from_answers() -> None:
    """An answer whose prompt_eval_count shows the predicted cache was not there counts as a
    misprediction and lowers that instance's weight; a confirmed hit raises it again."""
    pool = [FakeCandidate(id="a"), FakeCandidate(id="b")]
    strategy = PrefixAffinityStrategy(rng=random.Random(2), block_chars=BLOCK)
    prompt = "word " * 80  # 400 characters, 80 tokens
    cold = request_for(prompt)
    chosen = strategy.select(pool, cold)
    strategy.observe_answer(cold, chosen.id, {"prompt_eval_count": 80})  # expected: full
    warm = request_for(prompt + "more words here " * 3)
    assert strategy.select(pool, warm) is chosen
    strategy.observe_answer(warm, chosen.id, {"prompt_eval_count": 90})  # all of it: a miss
    assert strategy.counters["mispredicted"] == 1
    assert strategy.resource_details(chosen.id)["cache_reliability"] < 1.0
    again = request_for(prompt + "more words here " * 6)
    assert strategy.select(pool, again) is chosen
    strategy.observe_answer(again, chosen.id, {"prompt_eval_count": 9})
    assert strategy.counters["hits"] == 1
    assert strategy.resource_details(chosen.id)["cache_reliability"] > 0.8


def test_options_are_checked() -> None:
    """A wrong option is refused with the field named."""
    with pytest.raises(ValueError, match="least_loaded") as wrong:
        PrefixAffinityStrategy(fallback="fastest")
    assert getattr(wrong.value, "field", None) == "fallback"
    with pytest.raises(ValueError, match="at most 8") as many:
        PrefixAffinityStrategy(max_owners=9)
    assert getattr(many.value, "field", None) == "max_owners"


# -- inside a hub, over simulators --------------------------------------------------------------
SYSTEM = "You are a careful assistant who answers in full sentences about routing. " * 12


async def _chat(runtime: Any, messages: list[dict[str, str]]) -> dict[str, Any]:
    answer: dict[str, Any] = await runtime.execute(
        "llm/chat", {"model": MODEL, "messages": messages, "stream": False}
    )
    return answer


async def test_conversations_stay_on_their_cache(
    sim_factory: SimFactory, runtime_factory: RuntimeFactory, http: aiohttp.ClientSession
) -> None:
    """Through the llm/v1 provider with ``prefix_affinity``: every later turn of a conversation
    is served by the instance of its first turn and evaluates only the new tokens there; the
    status shows the index and its bound."""
    sims = await sim_factory(3, models=[MODEL], num_parallel=4, prefill_ms_per_token=0.1)
    for sim in sims:
        await preload(http, sim)
    runtime = await runtime_factory(
        sims,
        strategy={"kind": "prefix_affinity", "block_chars": 64},
        resource_options={"num_parallel": 4},
    )
    served: dict[int, set[str]] = {}
    for conversation in range(6):
        messages = [{"role": "system", "content": f"{conversation} {SYSTEM}"}]
        for turn in range(4):
            question = f"question {turn} of conversation {conversation}, please answer"
            messages.append({"role": "user", "content": question})
            answer = await _chat(runtime, messages)
            served.setdefault(conversation, set()).add(answer["gleitzeit"]["instance"])
            if turn > 0:  # only the last answer and the new question were not cached
                assert answer["prompt_eval_count"] <= 8 + 12
            messages.append(answer["message"])
    assert all(len(instances) == 1 for instances in served.values()), served
    hits = 0
    for sim in sims:
        cache = (await sim_stats(http, sim))["prompt_cache"]
        hits += cache.get(f"{MODEL}:latest", {}).get("hits", 0)
    assert hits == 6 * 3
    counters = runtime.status().hubs[0].counters
    assert counters["prefix_affine"] == 6 * 3
    assert 0 < counters["prefix_index_blocks"] <= counters["prefix_index_max_blocks"]
    assert counters["prefix_index_bytes"] <= counters["prefix_index_max_bytes"]
    assert counters["prefix_hits"] == 6 * 3


async def test_a_wrong_option_names_its_path(sim_factory: SimFactory) -> None:
    """``strategy = {kind = "prefix_affinity", load_margin = -1}`` is a config error naming
    the key."""
    (sim,) = await sim_factory(1, models=[MODEL])
    with pytest.raises(ConfigError, match=r"hubs\.llm\.strategy\.load_margin"):
        Runtime.from_config(config([sim], strategy={"kind": "prefix_affinity", "load_margin": -1}))


@settings(max_examples=30, deadline=None)
@given(st.integers(), st.integers(min_value=0, max_value=3))
def test_new_conversations_spread_evenly(seed: int, busy: int) -> None:
    """Conversations that share only a system prompt, each followed by more turns, end up
    spread evenly: over 40 conversations of 5 turns on 4 instances (each holding ``busy``
    calls at every pick) no instance serves more than 1.3 times its share."""
    pool = [FakeCandidate(id=f"r{i}", in_flight=busy) for i in range(4)]
    strategy = PrefixAffinityStrategy(rng=random.Random(seed), block_chars=BLOCK)
    systems = [f"system prompt number {n} " * 6 for n in range(3)]
    counts: Counter[str] = Counter()
    rng = random.Random(seed)
    for conversation in range(40):
        prompt = rng.choice(systems)
        for turn in range(5):
            prompt += f"turn {turn} of {conversation}: " + "words " * rng.randint(5, 40)
            counts[strategy.select(pool, request_for(prompt)).id] += 1
    assert max(counts.values()) <= 1.3 * 40 * 5 / 4, counts


def _walked_bytes(index: PrefixIndex) -> int:
    """The index's memory by walking every entry (what the running count must agree with),
    each key at the size of the largest (a 64-bit int)."""
    total = sys.getsizeof(index._entries)
    for key in index.in_lru_order():
        total += sys.getsizeof(2**64 - 1) + sys.getsizeof(index.owners(key))
    return total


@settings(max_examples=100, deadline=None)
@given(
    st.integers(min_value=1, max_value=32),
    st.integers(min_value=1, max_value=8),
    st.lists(
        st.tuples(
            st.booleans(),
            # few distinct keys, small and large, so records, re-owning and forgets meet
            st.lists(
                st.one_of(st.integers(0, 30), st.integers(2**64 - 30, 2**64 - 1)), max_size=12
            ),
            st.integers(0, 9),
        ),
        max_size=60,
    ),
)
def test_index_bytes_from_running_counts_match_a_walk(
    max_blocks: int, max_owners: int, operations: list[tuple[bool, list[int], int]]
) -> None:
    """The status's ``prefix_index_bytes`` comes from running counts, not a walk over every
    entry (which stalled the event loop ~0.1 s per status call at 100,000 blocks); whatever is
    recorded, re-owned, evicted or forgotten, it equals what a walk measures (each key counted
    at a 64-bit int's size, an upper bound) and stays under ``max_bytes()``."""
    index = PrefixIndex(max_blocks, max_owners)
    for forget, keys, owner in operations:
        if forget:
            index.forget(keys, f"instance-{owner}")
        else:
            index.record(keys, f"instance-{owner}")
        assert index.approx_bytes() == _walked_bytes(index)
        assert index.approx_bytes() <= index.max_bytes()


def test_a_chat_of_countless_messages_is_rendered_only_as_far_as_it_is_keyed() -> None:
    """A client's body of 200,000 tiny messages with images (an 8 MiB body) is rendered only
    up to ``MAX_PROMPT_CHARS`` (plus the message that crosses it), not in full: rendering the
    rest cost the event loop over a second per request and changed no key, so the blocks and
    with them the routing are those of the full rendering."""
    messages = [{"role": "user", "content": f"m{i}", "images": [f"i{i}"]} for i in range(200_000)]
    rendered = render_prompt({"messages": messages})
    assert rendered is not None
    assert MAX_PROMPT_CHARS <= len(rendered) < MAX_PROMPT_CHARS + 100
    full = "".join(
        render_prompt({"messages": messages[i : i + 1000]}) or ""
        for i in range(0, len(messages), 1000)
    )
    assert len(full) > 4 * MAX_PROMPT_CHARS
    assert block_keys(rendered, 256, "m") == block_keys(full, 256, "m")


def _hub_with(strategy: PrefixAffinityStrategy, *ids: str) -> ResourceHub:
    hub = ResourceHub("llm", strategy=strategy, rng=random.Random(1))  # type: ignore[arg-type]
    for rid in ids:
        hub.add(ResourceSpec(id=rid, endpoint=f"http://{rid}"))
    return hub


@settings(max_examples=60, deadline=None)
@given(
    placements=st.lists(
        st.tuples(
            st.sampled_from(["s0", "s1", "s2"]),
            st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=40),
        ),
        max_size=60,
    ),
    max_blocks=st.integers(1, 50),
    max_owners=st.integers(1, 3),
)
def test_peers_placements_obey_the_index_bounds(
    placements: list[tuple[str, list[int]]], max_blocks: int, max_owners: int
) -> None:
    """However many placements peers share, the index keeps at most ``max_blocks`` keys with
    at most ``max_owners`` owners each, within its memory bound, and holds the hub's own
    instance strings, never the peer's copies."""
    strategy = PrefixAffinityStrategy(max_blocks=max_blocks, max_owners=max_owners)
    hub = _hub_with(strategy, "s0", "s1", "s2")
    for owner, keys in placements:
        strategy.apply_shared([owner[:1] + owner[1:], keys], "peer")
    index = strategy.index
    assert len(index) <= max_blocks
    assert index.approx_bytes() <= index.max_bytes()
    mine = {r.id for r in hub.members()}
    for key in index.in_lru_order():
        owners = index.owners(key)
        assert 1 <= len(owners) <= max_owners
        assert all(any(o is m for m in mine) for o in owners)
    if placements:  # the last placement's keys are the newest: they are all there
        owner, keys = placements[-1]
        assert all(index.owners(k)[0] == owner for k in keys[-max_blocks:])


def test_a_peer_placement_is_matched_like_an_own_pick() -> None:
    """A prompt a peer placed on s1 goes to s1 here, as if this replica had placed it."""
    strategy = PrefixAffinityStrategy(block_chars=BLOCK)
    _hub_with(strategy, "s0", "s1", "s2")
    prompt = "the shared conversation so far " * 20
    strategy.apply_shared(["s1", block_keys(prompt, BLOCK, MODEL)], "peer")
    candidates = [FakeCandidate(id=i) for i in ("s0", "s1", "s2")]
    chosen = strategy.select(candidates, request_for(prompt + " and a new question"))
    assert chosen.id == "s1"
    assert strategy.counters["affine"] == 1


@pytest.mark.parametrize("across", [False, True])
def test_prompts_match_within_a_gateway_key_unless_shared_across_keys(across: bool) -> None:
    """A prompt placed for one gateway key matches a longer one of the same key, and matches
    another key's only with ``share_across_keys``; a key of the wrong type is a config error."""
    strategy = PrefixAffinityStrategy(block_chars=BLOCK, share_across_keys=across)
    candidates = [FakeCandidate(id=i) for i in ("s0", "s1", "s2")]
    prompt = "a tenant's document, long enough for several blocks " * 10
    with acting_as(Caller(name="bob")):
        placed = strategy.select(candidates, request_for(prompt)).id
        assert strategy.select(candidates, request_for(prompt + " more")).id == placed
    assert strategy.counters["affine"] == 1
    with acting_as(Caller(name="alice")):
        strategy.select(candidates, request_for(prompt + " guess"))
    assert strategy.counters["affine"] == (2 if across else 1)
    with pytest.raises((TypeError, ValueError), match="true or false"):
        PrefixAffinityStrategy(share_across_keys="yes")  # type: ignore[arg-type]


@settings(max_examples=80, deadline=None)
@given(count=st.integers(1, 5000))
def test_shared_keys_are_few_spread_and_end_with_the_last(count: int) -> None:
    """What a pick shares is at most MAX_SHARED_KEYS of the prompt's keys, in order, the last
    among them (a next turn matches the whole prompt), with no gap longer than
    count / MAX_SHARED_KEYS + 1 blocks (a fork is matched that close to where it forks)."""
    keys = list(range(10**6, 10**6 + count))
    shared = shared_keys(keys)
    assert len(shared) == min(count, MAX_SHARED_KEYS)
    assert shared[-1] == keys[-1]
    positions = [key - 10**6 for key in shared]
    assert positions == sorted(set(positions))
    gaps = [b - a for a, b in zip([-1, *positions], positions, strict=False)]
    assert max(gaps) <= count / MAX_SHARED_KEYS + 1
