"""The simulator's prompt cache, as Ollama's runner keeps it: one cache per parallel slot, the
free slot with the longest common prefix taken (least recently used among ties), only the
uncached rest evaluated and reported, prefill time growing with it, emptied by a reload."""

from __future__ import annotations

import random
from typing import Any

import aiohttp
from click.testing import CliRunner
from gleitzeit_ollama.sim import OllamaSimulator, SimConfig
from gleitzeit_ollama.sim.cli import config_to_args, main
from gleitzeit_ollama.sim.slots import ModelSlots, common_prefix
from gleitzeit_ollama.sim.text import count_tokens
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.ollama.conftest import SimFactory

MODEL = "llama3.2"
SYSTEM = "You answer questions about load balancing in one short sentence. " * 4


async def chat(
    http: aiohttp.ClientSession, sim: OllamaSimulator, messages: list[dict[str, str]]
) -> dict[str, Any]:
    body = {"model": MODEL, "messages": messages, "stream": False}
    async with http.post(f"{sim.url}/api/chat", json=body) as response:
        assert response.status == 200, await response.text()
        answer: dict[str, Any] = await response.json()
        return answer


async def stats(http: aiohttp.ClientSession, sim: OllamaSimulator) -> dict[str, Any]:
    async with http.get(f"{sim.url}/_sim/stats") as response:
        data: dict[str, Any] = await response.json()
        return data


async def test_next_turn_evaluates_only_what_is_new(
    sim_factory: SimFactory, http: aiohttp.ClientSession
) -> None:
    """The second turn of a chat evaluates only the new user message (the system prompt, the
    first question and the first answer are cached); asking the same again evaluates one."""
    (sim,) = await sim_factory(1, models=[MODEL])
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "why p2c?"}]
    first = await chat(http, sim, messages)
    assert first["prompt_eval_count"] == count_tokens(SYSTEM) + count_tokens("why p2c?")
    question = "and why not round robin?"
    messages += [first["message"], {"role": "user", "content": question}]
    second = await chat(http, sim, messages)
    assert second["prompt_eval_count"] == count_tokens(question)
    again = await chat(http, sim, messages)
    assert again["prompt_eval_count"] == 1
    cache = (await stats(http, sim))["prompt_cache"][f"{MODEL}:latest"]
    assert cache["requests"] == 3
    assert cache["hits"] == 2
    assert cache["evaluated_tokens"] == sum(a["prompt_eval_count"] for a in (first, second, again))


async def test_prefill_time_grows_with_uncached_tokens(
    sim_factory: SimFactory, http: aiohttp.ClientSession
) -> None:
    """At 2 ms per token, a cold 200-token prompt spends at least 400 ms in prompt
    evaluation; the next turn on the same slot reports only its few new tokens' worth."""
    (sim,) = await sim_factory(1, models=[MODEL], prefill_ms_per_token=2.0, latency_ms=0.0)
    long_prompt = " ".join(f"w{i}" for i in range(200))
    messages = [{"role": "user", "content": long_prompt}]
    cold = await chat(http, sim, messages)
    assert cold["prompt_eval_count"] == 200
    assert cold["prompt_eval_duration"] >= 400_000_000
    messages += [cold["message"], {"role": "user", "content": "short"}]
    warm = await chat(http, sim, messages)
    assert warm["prompt_eval_count"] == 1


async def test_each_slot_keeps_its_own_conversation(
    sim_factory: SimFactory, http: aiohttp.ClientSession
) -> None:
    """With two slots, two conversations taking turns each find their own cache; with one
    slot, they evict each other and every turn is evaluated in full."""
    for parallel, expect_hits in ((2, True), (1, False)):
        (sim,) = await sim_factory(1, models=[MODEL], num_parallel=parallel)
        talks = [
            [{"role": "user", "content": f"{name} conversation starts with a question"}]
            for name in ("alpha", "beta")
        ]
        for turn in range(3):
            for talk in talks:
                answer = await chat(http, sim, talk)
                new = count_tokens(talk[-1]["content"])
                if turn > 0:
                    assert (answer["prompt_eval_count"] == new) is expect_hits
                talk += [answer["message"], {"role": "user", "content": f"turn {turn} more"}]
        slots = (await stats(http, sim))["prompt_cache"][f"{MODEL}:latest"]["slots"]
        assert len(slots) == parallel
        if expect_hits:
            assert [slot["hits"] for slot in slots] == [2, 2]


async def test_least_recently_used_slot_is_reused_on_a_tie(
    sim_factory: SimFactory, http: aiohttp.ClientSession
) -> None:
    """Two slots hold prompts X (older) and Y; a prompt sharing nothing with either takes X's
    slot, so Y is still cached afterwards and X is not."""
    (sim,) = await sim_factory(1, models=[MODEL], num_parallel=2)

    async def ask(text: str) -> int:
        answer = await chat(http, sim, [{"role": "user", "content": text}])
        return int(answer["prompt_eval_count"])

    await ask("x x x x x x")
    await ask("y y y y y y")
    await ask("z z z z z z")
    assert await ask("y y y y y y") == 1
    assert await ask("x x x x x x") == 6


async def test_reload_empties_the_caches(
    sim_factory: SimFactory, http: aiohttp.ClientSession
) -> None:
    """After the model is unloaded (keep_alive 0) and loaded again, the same prompt is
    evaluated in full; stats reset zeroes the counts."""
    (sim,) = await sim_factory(1, models=[MODEL])
    messages = [{"role": "user", "content": "a b c d e f g h"}]
    assert (await chat(http, sim, messages))["prompt_eval_count"] == 8
    async with http.post(
        f"{sim.url}/api/generate", json={"model": MODEL, "keep_alive": 0}
    ) as response:
        assert (await response.json())["done_reason"] == "unload"
    assert (await chat(http, sim, messages))["prompt_eval_count"] == 8
    async with http.post(f"{sim.url}/_sim/stats/reset") as response:
        cache = (await response.json())["prompt_cache"][f"{MODEL}:latest"]
    assert cache["requests"] == cache["hits"] == cache["evaluated_tokens"] == 0


token_lists = st.lists(st.sampled_from("abc"), max_size=8)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 4), st.lists(token_lists, min_size=1, max_size=30), st.integers())
def test_slot_choice_is_longest_prefix_then_lru(
    limit: int, prompts: list[list[str]], seed: int
) -> None:
    """Whatever the prompts and which slots are busy: the slot taken shares the longest
    prefix among the free ones, the least recently used of those; the reuse reported leaves at
    least one token to evaluate."""
    slots = ModelSlots(limit, 0)
    rng = random.Random(seed)
    held = []
    for prompt in prompts:
        if held and (len(held) == limit or rng.random() < 0.5):
            use = held.pop(rng.randrange(len(held)))
            slots.give_back(use, [*use.prompt, "out"])
        free = [c for c in slots.caches if not c.in_use]
        best = max(common_prefix(c.tokens, prompt) for c in free)
        expected = min(
            (c for c in free if common_prefix(c.tokens, prompt) == best),
            key=lambda c: c.last_used,
        )
        use = slots.take_cache(prompt, 0)
        assert use.slot is expected
        assert use.cached == min(best, max(len(prompt) - 1, 0))
        assert 1 <= use.evaluated <= max(len(prompt), 1)
        held.append(use)


def test_prefill_flag_round_trips_and_is_checked() -> None:
    """``--prefill-ms-per-token`` reaches the config, survives the trip to a child process's
    arguments, and a negative value is refused naming the option."""
    args = config_to_args(SimConfig(prefill_ms_per_token=1.5))
    assert args[args.index("--prefill-ms-per-token") + 1] == "1.5"
    assert SimConfig().prefill_ms_per_token == 0.42
    result = CliRunner().invoke(main, ["--prefill-ms-per-token", "-1"])
    assert result.exit_code == 2
    assert "prefill_ms_per_token must be >= 0" in result.output
