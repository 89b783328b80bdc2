#!/usr/bin/env python
"""Prefix-cache-aware routing: ``prefix_affinity`` against ``p2c``, ``model_aware`` and
``consistent_hash`` on four simulators that model Ollama's per-slot prompt cache.

Uniform workload: ``USERS`` clients at once, each running conversations one after another
and pausing ``THINK_S`` between turns (without a pause, a pool as busy as it has slots leaves
every strategy only the instance that just finished: routing would not matter);
a conversation is ``TURNS`` turns under one of eight shared system prompts (300-500 tokens),
opening with a 300-800-token message (a pasted document, a file, retrieved context), then
30-120-token follow-ups; each answer is ``ANSWER_TOKENS`` tokens and part of the next turn's
prompt, streamed. Every request
carries the conversation id as its ``key`` (what ``consistent_hash`` routes on; the others
ignore it) and, when the strategy reads prompts, the rendered prompt. The simulators charge
``--prefill-ms-per-token`` for every prompt token their slot's cache did not hold (default
0.42 ms: llama.cpp's llama-bench README, 7B Q4_0 on a CUDA GPU) and decode at
``--tokens-per-s`` (default 130, the same README's generation rate).

Hot-spot workload: three requests in four continue one dominant conversation (the same
~1,500-token prefix, then a new short question), the rest are conversations as above;
``prefix_affinity`` as configured by default, with one owner per block (so only the load guard
spreads the hot prefix), with one owner and no guard (``load_margin`` = infinity), and ``p2c``.
Here the hub admits up to 16 calls per instance (the simulators queue what exceeds their 4
slots, as Ollama does), so nothing but the guard stops a pile-up.

Strategies run one after another on the same simulators, whose models are unloaded and loaded
again in between (so every run starts with empty caches), in one process run.

    python benchmarks/prefix_routing.py [--quick] [--max-seconds S] [--json PATH]

Keys: ``prefix_vs_p2c_ttft_p50_ratio`` (target <= 0.5), ``prefix_vs_p2c_throughput_ratio``
(target >= 1), ``prefix_max_share_vs_fair`` (uniform workload, target <= 1.3),
``prefix_hotspot_max_share_vs_fair`` (full run), ``prefix_routing`` (every figure, per
strategy).

Replicas: ``prefix_affinity`` on the uniform workload through one hub, through two hubs with an
index each (two gateway replicas that do not share it) and through two hubs sharing their
picks through a real ``redis-server`` on a loopback port (``[state] backend = "redis"``), a
conversation's turns alternating between the two as a load balancer without session affinity
does; interleaved rounds (3 quick, 5 full), each on a fresh workload.
``prefix_two_replicas_shared_vs_one_ttft_p50_ratio`` (goal: about 1) and
``prefix_two_replicas_vs_one_ttft_p50_ratio`` (unshared) are the medians of the per-round
ratios with their 90 % intervals; ``prefix_{one_replica,two_replicas,two_replicas_shared}_
token_hit_rate`` the medians of the share of prompt tokens served from the simulators' caches.

The headline figures come from interleaved rounds of ``prefix_affinity`` and ``p2c`` only, each
round on a fresh uniform workload of its own (5 rounds of 12 conversations quick, 7 of 24
full): the median of the per-round ratios with its 90 % interval (``..._ci90``). ``--quick``
runs only those rounds (about a minute); the full run adds the table of all strategies and
the hot spot.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import random
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
from _stats import figures, ratio, rotated, spread, write_json  # benchmarks/_stats.py
from gleitzeit_ollama.hub import OllamaHub
from gleitzeit_ollama.prefix_affinity import prompt_attributes
from gleitzeit_ollama.sim import SimConfig, SimProcess
from ollama_overhead import runtime_for  # benchmarks/: the same hub table

from gleitzeit_core import Request

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.scaleout.redis_server import RedisServer

MODEL = "llama3.2"
TAG = "llama3.2:latest"
INSTANCES = 4
NUM_PARALLEL = 4
USERS = 12  # clients at once; with their think time about half of the pool's slots are busy
THINK_S = (0.2, 0.6)  # a client reads the answer and types the next turn
TURNS = 6
ANSWER_TOKENS = 60
DOCUMENT_WORDS = 1500
WORDS = [
    "routing",
    "cache",
    "prefix",
    "token",
    "model",
    "server",
    "request",
    "answer",
    "latency",
    "slot",
    "queue",
    "balance",
    "instance",
    "prompt",
    "system",
    "user",
    "reply",
    "stream",
    "context",
    "memory",
    "batch",
    "weight",
    "load",
    "health",
    "probe",
    "pool",
    "share",
    "turn",
    "question",
    "document",
    "chapter",
    "section",
    "table",
    "figure",
    "result",
    "value",
    "measure",
]


def text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)) + "."


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def start_sim(index: int, prefill_ms: float, tokens_per_s: float) -> SimProcess:
    config = SimConfig(
        models=[MODEL],
        latency_ms=15.0,
        prefill_ms_per_token=prefill_ms,
        tokens_per_s=tokens_per_s,
        load_ms=0.0,
        max_tokens=ANSWER_TOKENS,
        num_parallel=NUM_PARALLEL,
        max_queue=4096,
        keep_alive=-1.0,
        name=f"sim{index}",
    )
    return SimProcess(config, host="127.0.0.1", port=0).start()


async def post(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> Any:
    async with session.post(url, json=body) as response:
        response.raise_for_status()
        return await response.json()


async def fresh(session: aiohttp.ClientSession, urls: list[str]) -> None:
    """Unload and load the model on every simulator (empty prompt caches), reset stats."""
    for url in urls:
        await post(session, f"{url}/api/generate", {"model": MODEL, "keep_alive": 0})
        await post(session, f"{url}/api/generate", {"model": MODEL, "keep_alive": -1})
        await post(session, f"{url}/_sim/stats/reset", {})


def conversations(seed: int, count: int) -> list[tuple[str, list[str]]]:
    """(system prompt, questions) per conversation: eight shared system prompts, an opening
    message with context, short follow-ups."""
    rng = random.Random(seed)
    systems = [text(random.Random(f"system{i}"), 300 + 25 * i) for i in range(8)]
    jobs = []
    for _ in range(count):
        opening = text(rng, rng.randint(300, 800))
        follow_ups = [text(rng, rng.randint(30, 120)) for _ in range(TURNS - 1)]
        jobs.append((rng.choice(systems), [opening, *follow_ups]))
    return jobs


def hot_questions(seed: int, count: int) -> list[tuple[str, list[str]]]:
    """Three in four: one question about the one long document; else a conversation."""
    rng = random.Random(seed)
    document = "The thread so far. " + text(random.Random("document"), DOCUMENT_WORDS)
    others = conversations(seed + 1, count)
    return [
        (document, [text(rng, rng.randint(10, 30))]) if rng.random() < 0.75 else others[i]
        for i in range(count)
    ]


async def run(
    hubs: list[OllamaHub], jobs: list[tuple[str, list[str]]], users: int
) -> dict[str, Any]:
    """``users`` clients take conversations off ``jobs`` in order and play all their turns;
    with several hubs (gateway replicas behind a load balancer without stickiness), turn *t*
    of conversation *c* goes to hub ``(c + t) % len(hubs)``."""
    ttft: list[float] = []
    served: Counter[str] = Counter()
    evaluated = 0
    queue = list(enumerate(jobs))
    queue.reverse()

    async def turn(hub: OllamaHub, key: str, messages: list[dict[str, str]]) -> dict[str, str]:
        nonlocal evaluated
        body = {
            "model": MODEL,
            "messages": messages,
            "stream": True,
            "options": {"num_predict": ANSWER_TOKENS},
        }
        request = Request(
            key=key,
            slot=TAG,
            attributes={"model": TAG, **prompt_attributes(hub.strategy, body)},
            deadline=hub.clock.now() + 300.0,
        )
        started = time.perf_counter()
        stream = await hub.open_stream("/api/chat", body, request, model=TAG)
        parts = []
        async with stream:
            async for chunk in stream:
                if not parts:
                    ttft.append(time.perf_counter() - started)
                parts.append(chunk.get("message", {}).get("content", ""))
                if chunk.get("done"):
                    evaluated += int(chunk.get("prompt_eval_count", 0))
        served[stream.instance] += 1
        return {"role": "assistant", "content": "".join(parts)}

    async def user(number: int) -> None:
        pause = random.Random(number)
        while queue:
            index, (system, questions) = queue.pop()
            messages = [{"role": "system", "content": system}]
            for number_, question in enumerate(questions):
                hub = hubs[(index + number_) % len(hubs)]
                messages.append({"role": "user", "content": question})
                messages.append(await turn(hub, f"conversation-{index}", messages))
                await asyncio.sleep(pause.uniform(*THINK_S))

    started = time.perf_counter()
    await asyncio.gather(*(user(number) for number in range(users)))
    elapsed = time.perf_counter() - started
    total = len(ttft)
    return {
        "requests": total,
        "seconds": round(elapsed, 2),
        "throughput_rps": round(total / elapsed, 3),
        "ttft_p50_ms": round(percentile(ttft, 0.5) * 1000, 1),
        "ttft_p99_ms": round(percentile(ttft, 0.99) * 1000, 1),
        "share": {rid: round(n / total, 3) for rid, n in sorted(served.items())},
        "max_share_vs_fair": round(max(served.values()) / (total / INSTANCES), 3),
        "evaluated_tokens": evaluated,
    }


async def cache_figures(session: aiohttp.ClientSession, urls: list[str]) -> dict[str, Any]:
    requests = hits = cached = evaluated = 0
    for url in urls:
        async with session.get(f"{url}/_sim/stats") as response:
            stats = await response.json()
        model = stats["prompt_cache"].get(TAG, {})
        requests += model.get("requests", 0)
        hits += model.get("hits", 0)
        cached += model.get("cached_tokens", 0)
        evaluated += model.get("evaluated_tokens", 0)
    return {
        "request_hit_rate": round(hits / max(requests, 1), 3),
        "token_hit_rate": round(cached / max(cached + evaluated, 1), 3),
    }


async def measure(
    session: aiohttp.ClientSession,
    urls: list[str],
    strategy: dict[str, Any],
    jobs: list[tuple[str, list[str]]],
    hub_parallel: int = NUM_PARALLEL,
    replicas: int = 1,
    redis_url: str | None = None,
) -> dict[str, Any]:
    """One run; with ``redis_url``, the replicas share their state (the index included)
    through that Redis, in a namespace of their own."""
    await fresh(session, urls)
    namespace = f"prefix-bench-{uuid.uuid4().hex[:8]}"
    async with contextlib.AsyncExitStack() as stack:
        hubs = []
        for number in range(replicas):  # each replica has its own index, as processes do
            state = (
                None
                if redis_url is None
                else {
                    "backend": "redis",
                    "url": redis_url,
                    "namespace": namespace,
                    "replica_id": f"r{number}",
                }
            )
            runtime = await stack.enter_async_context(
                runtime_for(urls, strategy, hub_parallel, state)
            )
            hub = runtime.hubs["llm"]
            assert isinstance(hub, OllamaHub)
            hubs.append(hub)
        figures = await run(hubs, jobs, USERS)
        counters = hubs[0].status().counters
    figures.update(await cache_figures(session, urls))
    prefix = {k: v for k, v in counters.items() if k.startswith("prefix_")}
    if prefix:
        figures["strategy_counters"] = prefix
    return figures


UNIFORM = {
    "prefix_affinity": {"kind": "prefix_affinity"},
    "p2c": {"kind": "p2c"},
    "model_aware": {"kind": "model_aware"},
    "consistent_hash": {"kind": "consistent_hash"},
}
# In the hot spot the hub lets each instance queue up to 16 calls (Ollama queues without bound
# behind its 4 slots), so only the load guard keeps a hot prefix from piling onto one instance.
HOTSPOT_HUB_PARALLEL = 16
HOTSPOT = {
    "prefix_affinity": {"kind": "prefix_affinity"},
    "prefix_affinity_one_owner": {"kind": "prefix_affinity", "max_owners": 1},
    "prefix_affinity_one_owner_no_guard": {
        "kind": "prefix_affinity",
        "max_owners": 1,
        "load_margin": 1e9,
    },
    "p2c": {"kind": "p2c"},
}


async def rounds_of(
    session: aiohttp.ClientSession,
    urls: list[str],
    rounds: int,
    count: int,
    max_seconds: float | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """``prefix_affinity`` and ``p2c`` on a fresh uniform workload (its own seed) per round,
    in alternating order: the rounds the headline ratios are taken from. With
    ``max_seconds``, no round starts that would likely end after it (on a machine too busy for
    the planned rounds, fewer rounds and a wider interval beat no figures at all)."""
    names = ["prefix_affinity", "p2c"]
    out: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    started = time.monotonic()
    for r in range(rounds):
        spent = time.monotonic() - started
        if max_seconds is not None and r >= 2 and spent + spent / r > max_seconds:
            print(f"stopping after {r} rounds: the next would end after {max_seconds:g} s")
            break
        jobs = conversations(100 + r, count)
        for name in rotated(names, r):
            out[name].append(await measure(session, urls, UNIFORM[name], jobs))
        print(
            f"round {r + 1}/{rounds}: "
            + ", ".join(f"{n} TTFT p50 {out[n][-1]['ttft_p50_ms']} ms" for n in names),
            flush=True,
        )
    return out


REPLICA_SETUPS = ("one", "two", "two_shared")


async def replica_rounds(
    session: aiohttp.ClientSession, urls: list[str], rounds: int, count: int, redis_url: str
) -> dict[str, list[dict[str, Any]]]:
    """``prefix_affinity`` through one replica, two with an index each and two sharing theirs
    through Redis (turns alternating between the two), in rotated order on a fresh uniform
    workload per round."""
    out: dict[str, list[dict[str, Any]]] = {name: [] for name in REPLICA_SETUPS}
    strategy = UNIFORM["prefix_affinity"]
    for r in range(rounds):
        jobs = conversations(500 + r, count)
        for name in rotated(list(REPLICA_SETUPS), r):
            replicas = 1 if name == "one" else 2
            url = redis_url if name == "two_shared" else None
            out[name].append(
                await measure(session, urls, strategy, jobs, NUM_PARALLEL, replicas, url)
            )
        print(
            f"replicas round {r + 1}/{rounds}: "
            + ", ".join(
                f"{n} TTFT p50 {out[n][-1]['ttft_p50_ms']} ms hit {out[n][-1]['token_hit_rate']}"
                for n in REPLICA_SETUPS
            ),
            flush=True,
        )
    return out


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    count = 24 if args.quick else 96
    sims = [
        await asyncio.to_thread(start_sim, i, args.prefill_ms_per_token, args.tokens_per_s)
        for i in range(INSTANCES)
    ]
    urls = [sim.url for sim in sims]
    results: dict[str, Any] = {"uniform": {}, "hotspot": {}}
    redis = await asyncio.to_thread(RedisServer().start)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
            # quick: one conversation per user per round, and only the two the goals compare
            rounds, per_round = (5, USERS) if args.quick else (7, 2 * USERS)
            results["rounds"] = await rounds_of(session, urls, rounds, per_round, args.max_seconds)
            results["replica_rounds"] = await replica_rounds(
                session, urls, 3 if args.quick else 5, per_round, redis.url
            )
            if args.quick:
                results["uniform"] = {n: rows[-1] for n, rows in results["rounds"].items()}
                return results
            uniform = conversations(7, count)
            for name, strategy in UNIFORM.items():
                results["uniform"][name] = await measure(session, urls, strategy, uniform)
                print(f"uniform  {name:<36}{results['uniform'][name]}", flush=True)
            hot = hot_questions(11, count * 4)
            for name, strategy in HOTSPOT.items():
                results["hotspot"][name] = await measure(
                    session, urls, strategy, hot, HOTSPOT_HUB_PARALLEL
                )
                print(f"hotspot  {name:<36}{results['hotspot'][name]}", flush=True)
    finally:
        await asyncio.to_thread(redis.stop)
        for sim in sims:
            await asyncio.to_thread(sim.terminate)
    results["setup"] = {
        "instances": INSTANCES,
        "num_parallel": NUM_PARALLEL,
        "users": USERS,
        "think_s": THINK_S,
        "conversations": count,
        "turns": TURNS,
        "answer_tokens": ANSWER_TOKENS,
        "system_prompt_words": "300-475 (8 shared)",
        "opening_words": "300-800",
        "follow_up_words": "30-120",
        "document_words": DOCUMENT_WORDS,
        "prefill_ms_per_token": args.prefill_ms_per_token,
        "tokens_per_s": args.tokens_per_s,
    }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", dest="json_path")
    parser.add_argument(
        "--max-seconds", type=float, help="start no round that would end after this (rounds)"
    )
    parser.add_argument("--prefill-ms-per-token", type=float, default=0.42)
    # llama-bench README, same GPU and model: "tg 128" at 131.42 t/s
    parser.add_argument("--tokens-per-s", type=float, default=130.0)
    args = parser.parse_args()
    results = asyncio.run(main_async(args))
    uniform, hot = results["uniform"], results["hotspot"]
    by_round = results["rounds"]

    def per_round(key: str) -> tuple[list[float], list[float]]:
        return (
            [row[key] for row in by_round["prefix_affinity"]],
            [row[key] for row in by_round["p2c"]],
        )

    ttft_ratio = ratio(*per_round("ttft_p50_ms"))
    ttft_p99_ratio = ratio(*per_round("ttft_p99_ms"))
    throughput_ratio = ratio(*per_round("throughput_rps"))
    max_share = spread(per_round("max_share_vs_fair")[0])
    print()
    print(f"{'':<36}{'TTFT p50':>10}{'p99':>10}{'req/s':>8}{'hit':>7}{'max/fair':>10}")
    rows = [*(("uniform " + k, v) for k, v in uniform.items())]
    rows += [("hotspot " + k, v) for k, v in hot.items()]
    by_replicas = results["replica_rounds"]
    for name in REPLICA_SETUPS:
        rows.append((f"prefix_affinity, replicas {name}", by_replicas[name][-1]))
    for name, row in rows:
        print(
            f"{name:<36}{row['ttft_p50_ms']:>10.0f}{row['ttft_p99_ms']:>10.0f}"
            f"{row['throughput_rps']:>8.2f}{row['token_hit_rate']:>7.2f}"
            f"{row['max_share_vs_fair']:>10.2f}"
        )
    print(f"over {len(by_round['p2c'])} interleaved rounds (median, 90 % interval):")
    print(f"prefix_vs_p2c_ttft_p50_ratio = {ttft_ratio.text()} (target <= 0.5)")
    print(f"prefix_vs_p2c_throughput_ratio = {throughput_ratio.text()} (target >= 1)")
    print(f"prefix_max_share_vs_fair = {max_share.text()} (target <= 1.3)")

    def replica_figures(name: str, key: str) -> list[float]:
        return [row[key] for row in by_replicas[name]]

    one_ttft = replica_figures("one", "ttft_p50_ms")
    shared_ratio = ratio(replica_figures("two_shared", "ttft_p50_ms"), one_ttft)
    unshared_ratio = ratio(replica_figures("two", "ttft_p50_ms"), one_ttft)
    hit_rates = {name: spread(replica_figures(name, "token_hit_rate")) for name in REPLICA_SETUPS}
    print(f"over {len(one_ttft)} interleaved rounds of one / two / two sharing replicas:")
    print(f"prefix_two_replicas_shared_vs_one_ttft_p50_ratio = {shared_ratio.text()}")
    print(f"prefix_two_replicas_vs_one_ttft_p50_ratio = {unshared_ratio.text()} (unshared)")
    for name, summary in hit_rates.items():
        print(f"token hit rate, {name}: {summary.text()}")
    if args.json_path:
        command = "python benchmarks/prefix_routing.py" + (" --quick" if args.quick else "")
        out = {
            **figures("prefix_vs_p2c_ttft_p50_ratio", ttft_ratio, command, digits=3),
            **figures("prefix_vs_p2c_ttft_p99_ratio", ttft_p99_ratio, command, digits=3),
            **figures("prefix_vs_p2c_throughput_ratio", throughput_ratio, command, digits=3),
            **figures("prefix_max_share_vs_fair", max_share, command, digits=3),
            "prefix_routing": {"value": results, "command": command},
        }
        out.update(
            figures(
                "prefix_two_replicas_shared_vs_one_ttft_p50_ratio", shared_ratio, command, digits=3
            )
        )
        out.update(
            figures("prefix_two_replicas_vs_one_ttft_p50_ratio", unshared_ratio, command, digits=3)
        )
        for name, key in (
            ("one", "prefix_one_replica_token_hit_rate"),
            ("two", "prefix_two_replicas_token_hit_rate"),
            ("two_shared", "prefix_two_replicas_shared_token_hit_rate"),
        ):
            out.update(figures(key, hit_rates[name], command, digits=3))
        if hot:
            out["prefix_hotspot_max_share_vs_fair"] = {
                "value": hot["prefix_affinity"]["max_share_vs_fair"],
                "command": command,
            }
        write_json(args.json_path, out)


if __name__ == "__main__":
    main()
