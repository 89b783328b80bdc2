"""Facts a hub shares with its namesakes on the other replicas (``ResourceHub.share``) through a
real Redis: the Ollama plugin's ``prefix_affinity`` placements and which instance has which
model loaded; a Redis outage costs nothing and sharing resumes; garbage is counted, not used."""

from __future__ import annotations

import asyncio
import json
import tempfile
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio
from gleitzeit_ollama.hub import LOADED_TOPIC, MAX_PEER_INSTALLED
from gleitzeit_ollama.models import installed_models, loaded_models
from gleitzeit_ollama.prefix_affinity import MAX_SHARED_KEYS, SHARED_TOPIC
from gleitzeit_redis.backend import MAX_FACT_BYTES, MAX_MESSAGE_BYTES

from gleitzeit_core import Caller, Request, Runtime, acting_as
from tests.chaos.gateway_process import GatewayProcess, start_gateway
from tests.ollama.conftest import SimFactory
from tests.scaleout.conftest import Replicas
from tests.scaleout.redis_server import RedisServer
from tests.scaleout.test_gateway_replicas import fleet_config
from tests.scaleout.test_shared_state import eventually, subscribers, warm

TAG = "llama3.2:latest"
# one long turn each (far over a 256-character block): the follow-ups extend it
OPENING = " ".join(f"paragraph {i} of a pasted document about caches." for i in range(60))
PREFIX = {"kind": "prefix_affinity"}
# four places per instance, as Ollama's own default: with one, the place a replica keeps as a
# spare for a moment after its call (see docs/scale-out.md) would turn the other one away
PARALLEL = {"default_num_parallel": 4}


def hub(runtime: Runtime) -> Any:
    return runtime.hubs["llm"]


def peer_placements(runtime: Runtime) -> int:
    return int(hub(runtime).strategy.counters["peer_placements"])


async def chat(runtime: Runtime, messages: list[dict[str, str]]) -> str:
    """One turn; the answer joins the conversation; returns the instance that served it."""
    answer = await runtime.execute("llm/chat", {"model": "llama3.2", "messages": messages})
    messages.append({"role": "assistant", "content": answer["message"]["content"]})
    instance: str = answer["gleitzeit"]["instance"]
    return instance


async def assert_serves(runtime: Runtime) -> None:
    """A chat through ``runtime`` is answered."""
    answer = await runtime.execute(
        "llm/chat", {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]}
    )
    assert answer["done"] is True


def picks(runtime: Runtime) -> int:
    return sum(hub(runtime).strategy._picks.values())


async def alternate(runtimes: list[Runtime], conversation: int, turns: int) -> list[str]:
    """Play one conversation whose turn *t* goes to replica ``t % 2``; before each turn, wait
    until that replica has applied every pick the other made since this began (the test is
    about what is shared, not about how fast)."""
    base_peer = [peer_placements(rt) for rt in runtimes]
    base_picks = [picks(rt) for rt in runtimes]
    messages = [{"role": "user", "content": f"conversation {conversation}: {OPENING}"}]
    served = []
    for turn in range(turns):
        me, other = turn % 2, 1 - turn % 2
        runtime = runtimes[me]
        expected = base_peer[me] + picks(runtimes[other]) - base_picks[other]
        await eventually(
            lambda rt=runtime, n=expected: peer_placements(rt) >= n,  # type: ignore[misc]
            "the other replica's picks arrived",
        )
        served.append(await chat(runtime, messages))
        messages.append({"role": "user", "content": f"follow-up {turn} of {conversation}"})
    return served


async def test_alternating_turns_keep_hitting_the_instance_holding_the_prefix(
    sim_factory: SimFactory, replicas: Replicas
) -> None:
    """A conversation whose turns alternate between two replicas (a load balancer without
    session affinity) is served by one instance throughout, because each replica records the
    other's picks in its index; that instance's prompt cache then holds every follow-up's
    prefix (the simulators count a cache hit for each)."""
    sims = await sim_factory(3)
    await warm(sims)
    for sim in sims:
        sim.reset_stats()
    a, b = await replicas(2, [s.url for s in sims], strategy=PREFIX, **PARALLEL)
    turns = 4
    for conversation in range(4):
        served = await alternate([a, b], conversation, turns)
        assert len(set(served)) == 1, f"conversation {conversation} moved: {served}"
    hits = sum(s.stats()["prompt_cache"][TAG]["hits"] for s in sims)
    assert hits >= 4 * (turns - 1)
    assert a.state.status().counters.get("bad_events", 0) == 0
    assert b.state.status().counters.get("bad_events", 0) == 0


async def test_a_model_loaded_through_one_replica_is_loaded_on_the_other_before_its_probe(
    sim_factory: SimFactory, replicas: Replicas
) -> None:
    """With no probes after the start (the longest probe interval there is), replica B learns
    that an instance has the model loaded, and then that it unloaded it, from replica A's
    answers: no /api/ps reaches any instance meanwhile."""
    sims = await sim_factory(2)
    a, b = await replicas(
        2, [s.url for s in sims], strategy="round_robin", health={"enabled": False}
    )
    assert all(TAG not in loaded_models(r) for r in hub(b).members())
    ps_before = sum(s.stats()["requests"].get("/api/ps", 0) for s in sims)
    body = {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]}
    answer = await a.execute("llm/chat", {**body, "keep_alive": "1h"})
    instance = answer["gleitzeit"]["instance"]
    on_b = hub(b).get(instance)
    await eventually(lambda: TAG in loaded_models(on_b), "B knows the model is loaded")
    assert hub(b).tier(on_b, _request()) == 0  # B now prefers it, as A does
    for _ in range(2):  # round robin: once on each instance
        await a.execute("llm/generate", {"model": "llama3.2", "keep_alive": 0, "prompt": ""})
    assert all(TAG not in loaded_models(r) for r in hub(a).members())
    await eventually(
        lambda: all(TAG not in loaded_models(r) for r in hub(b).members()),
        "B knows the model was unloaded",
    )
    assert sum(s.stats()["requests"].get("/api/ps", 0) for s in sims) == ps_before


def _request() -> Request:
    return Request(slot=TAG, attributes={"model": TAG})


async def test_redis_killed_costs_nothing_and_sharing_resumes(
    sim_factory: SimFactory, replicas: Replicas
) -> None:
    """While Redis is down both replicas serve on their own indexes without a client error;
    once it is back, a conversation alternating between them stays on one instance again."""
    sims = await sim_factory(3)
    await warm(sims)
    a, b = await replicas(2, [s.url for s in sims], strategy=PREFIX, **PARALLEL)
    replicas.redis.kill()
    await eventually(lambda: all(rt.state.status().degraded for rt in (a, b)), "degraded")
    for turn in range(6):  # a conversation while nothing is shared: no error
        messages = [{"role": "user", "content": f"offline {turn}: {OPENING}"}]
        await chat((a, b)[turn % 2], messages)
    replicas.redis.restart()
    await eventually(lambda: all(rt.state.status().connected for rt in (a, b)), "connected")
    served = await alternate([a, b], 99, 4)
    assert len(set(served)) == 1, f"the conversation moved after the restart: {served}"


async def test_garbage_facts_are_counted_and_ignored(
    sim_factory: SimFactory, replicas: Replicas
) -> None:
    """Facts on the channel that are not what a peer sends (wrong shape, an unknown
    instance, keys out of range, an expiry that is not a time, too many at once) are each
    counted under bad_events and change neither the index nor the loaded models; a good
    fact in the same message is still applied, and the replica keeps serving."""
    sims = await sim_factory(2)
    (a,) = await replicas(1, [s.url for s in sims], strategy=PREFIX, **PARALLEL)
    backend: Any = a.state
    strategy = hub(a).strategy
    channel = f"{replicas.namespace}:events"
    garbage: list[Any] = [
        "not a fact",
        ["llm", SHARED_TOPIC],
        [7, SHARED_TOPIC, ["s0", [1]]],
        ["llm", None, ["s0", [1]]],
        ["llm", SHARED_TOPIC, "garbage"],
        ["llm", SHARED_TOPIC, ["nowhere", [1, 2]]],
        ["llm", SHARED_TOPIC, ["s0", [-1]]],
        ["llm", SHARED_TOPIC, ["s0", [2**64]]],
        ["llm", SHARED_TOPIC, ["s0", [True]]],
        ["llm", SHARED_TOPIC, ["s0", []]],
        ["llm", SHARED_TOPIC, ["s0", list(range(70_000))]],
        ["llm", LOADED_TOPIC, ["s0", {TAG: "tomorrow"}]],
        ["llm", LOADED_TOPIC, ["s0", {"x" * 600: 1.0}]],
        ["llm", LOADED_TOPIC, ["s0", [TAG]]],
        ["llm", LOADED_TOPIC, ["s9", {TAG: None}]],
    ]
    good = ["llm", SHARED_TOPIC, ["s1", [12345]]]
    message = {"replica": "evil", "kind": "facts", "facts": [*garbage, good]}
    client = redis.asyncio.Redis.from_url(replicas.redis.url)
    try:
        await client.publish(channel, json.dumps(message))
        too_many = {"replica": "evil", "kind": "facts", "facts": [good] * 1000}
        await client.publish(channel, json.dumps(too_many))
        await client.publish(channel, '{"replica": "evil", "kind": "facts", "facts": 7}')
        await client.publish(channel, '{"replica": "evil", "kind": "facts", "facts": ' * 5000)
        await eventually(
            lambda: backend.counters["bad_events"] >= len(garbage) + 3, "every bad fact counted"
        )
    finally:
        await client.aclose()
    assert backend.counters["bad_events"] == len(garbage) + 3
    assert backend.counters["facts_applied"] == 1
    assert strategy.index.owners(12345) == ("s1",)
    assert len(strategy.index) == 1
    assert all(not loaded_models(r) for r in hub(a).members())
    await assert_serves(a)


async def test_two_gateway_processes_keep_an_alternating_conversation_on_one_instance(
    sim_factory: SimFactory, redis_server: RedisServer
) -> None:
    """Two ``gleitzeit serve`` processes sharing a Redis, a client alternating between them
    for each streamed turn (no session affinity): every turn is served by the instance that
    served the first (the X-Gleitzeit-Instance header), whose prompt cache then holds each
    follow-up's prefix."""
    sims = await sim_factory(3)
    await warm(sims)
    namespace = f"gw-{uuid.uuid4().hex[:8]}"
    urls = [s.url for s in sims]
    gateways: list[GatewayProcess] = []
    headers = {"Authorization": "Bearer ops-token"}
    with tempfile.TemporaryDirectory(prefix="gleitzeit-shared-") as folder:
        try:
            for i in range(2):
                home = Path(folder) / f"r{i}"
                home.mkdir()
                config = fleet_config(
                    redis_server.url, namespace, urls, f"r{i}", "prefix_affinity", 4
                )
                gateways.append(await start_gateway(config, home, "ollama,redis"))
            timeout = aiohttp.ClientTimeout(total=60)
            async with aiohttp.ClientSession(timeout=timeout, headers=headers) as http:

                async def counters(replica: int) -> dict[str, int]:
                    url = f"{gateways[replica].url}/gleitzeit/status"
                    async with http.get(url) as reply:
                        assert reply.status == 200, await reply.text()
                        status = await reply.json()
                    (llm,) = [h for h in status["hubs"] if h["name"] == "llm"]
                    found: dict[str, int] = llm["counters"]
                    return found

                def picked(found: dict[str, int]) -> int:
                    return sum(found[f"prefix_{k}"] for k in ("affine", "cold", "guarded"))

                for sim in sims:
                    sim.reset_stats()
                messages = [{"role": "user", "content": f"gateway: {OPENING}"}]
                served = []
                for turn in range(4):
                    me, other = turn % 2, 1 - turn % 2
                    want = picked(await counters(other))
                    for _ in range(500):  # the other's picks have arrived here
                        if (await counters(me))["prefix_peer_placements"] >= want:
                            break
                        await asyncio.sleep(0.02)
                    else:
                        raise AssertionError("the other replica's picks never arrived")
                    body = {"model": "llama3.2", "messages": messages, "stream": True}
                    url = f"{gateways[me].url}/api/chat"
                    async with http.post(url, json=body) as reply:
                        assert reply.status == 200, await reply.text()
                        served.append(reply.headers["X-Gleitzeit-Instance"])
                        lines = (await reply.read()).splitlines()
                    chunks = [json.loads(line) for line in lines if line]
                    text = "".join(c["message"]["content"] for c in chunks)
                    messages.append({"role": "assistant", "content": text})
                    messages.append({"role": "user", "content": f"gateway follow-up {turn}"})
        finally:
            for gateway in gateways:
                await gateway.stop()
    assert len(set(served)) == 1, f"the conversation moved: {served}"
    hits = sum(s.stats()["prompt_cache"].get(TAG, {}).get("hits", 0) for s in sims)
    assert hits >= 3


async def test_a_clients_giant_prompts_share_small_facts_and_still_place_its_turns(
    sim_factory: SimFactory, replicas: Replicas
) -> None:
    """A client's 1 MiB prompts with 16-character blocks (65,536 block keys each, 1.3 MB of
    JSON per pick when every key was shared) make facts of at most MAX_SHARED_KEYS keys and
    messages within MAX_MESSAGE_BYTES: neither replica degrades, the peer's index grows by at
    most MAX_SHARED_KEYS per pick, and the peer still sends the giant conversation's next turn
    to the instance that holds it."""
    sims = await sim_factory(2)
    await warm(sims)
    strategy = {"kind": "prefix_affinity", "block_chars": 16}
    a, b = await replicas(2, [s.url for s in sims], strategy=strategy, **PARALLEL)
    client = redis.asyncio.Redis.from_url(replicas.redis.url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(f"{replicas.namespace}:events")
    await subscribers(replicas, 3)
    sizes: list[int] = []
    try:
        giant = [
            f"document {i}: " + "".join(chr(97 + (j * 7919 + i) % 26) for j in range(1 << 20))
            for i in range(6)
        ]
        answers = await asyncio.gather(
            *(
                a.execute("llm/generate", {"model": "llama3.2", "prompt": p, "stream": False})
                for p in giant
            )
        )
        await eventually(lambda: peer_placements(b) >= len(giant), "B applied A's picks")
        for _ in range(20):  # a None is also what an ignored subscribe confirmation gives
            message = await pubsub.get_message(timeout=0.1)
            if message is not None:
                sizes.append(len(message["data"]))
    finally:
        await pubsub.aclose()
        await client.aclose()
    assert sizes
    assert max(sizes) <= MAX_MESSAGE_BYTES + 1024
    assert len(hub(b).strategy.index) <= len(giant) * MAX_SHARED_KEYS
    for runtime in (a, b):
        assert runtime.state.status().connected
        assert runtime.state.status().counters.get("degraded", 0) == 0
    # the conversation of the first prompt goes on through B: it finds the instance of A's pick
    follow = await b.execute(
        "llm/generate",
        {"model": "llama3.2", "prompt": giant[0] + " and a question", "stream": False},
    )
    assert follow["gleitzeit"]["instance"] == answers[0]["gleitzeit"]["instance"]
    assert hub(b).strategy.counters["affine"] >= 1


async def test_oversized_facts_are_neither_sent_nor_read(
    sim_factory: SimFactory, replicas: Replicas
) -> None:
    """A fact over MAX_FACT_BYTES (a hostile upstream's list of long model names, say) is not
    published but counted under facts_too_large; a message on the channel longer than a peer
    ever sends is counted under bad_events and not parsed, so the good fact inside it is not
    applied (nor is the replica's loop held up decoding megabytes)."""
    sims = await sim_factory(2)
    (a,) = await replicas(1, [s.url for s in sims], strategy=PREFIX, **PARALLEL)
    backend: Any = a.state
    client = redis.asyncio.Redis.from_url(replicas.redis.url)
    channel = f"{replicas.namespace}:events"
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(channel)
    await subscribers(replicas, 2)
    try:
        hub(a).share("big", "x" * (MAX_FACT_BYTES + 1))
        hub(a).share("small", "ok")
        received = []
        for _ in range(50):
            message = await pubsub.get_message(timeout=0.2)
            if message is not None:
                received.append(message["data"])
            elif received:
                break
        assert any(b'"small"' in data for data in received)
        assert not any(b'"big"' in data for data in received)
        assert backend.counters["facts_too_large"] == 1
        assert backend.counters["facts_shared"] == 1
        good = ["llm", SHARED_TOPIC, ["s1", [12345]]]
        padding = ["elsewhere", "x", "y" * 2 * MAX_MESSAGE_BYTES]
        huge = {"replica": "evil", "kind": "facts", "facts": [padding, good]}
        await client.publish(channel, json.dumps(huge))
        await eventually(lambda: backend.counters["bad_events"] >= 1, "the message refused")
    finally:
        await pubsub.aclose()
        await client.aclose()
    assert backend.counters.get("facts_applied", 0) == 0
    assert 12345 not in hub(a).strategy.index


async def test_forged_loaded_models_cannot_grow_an_instances_model_set_without_bound(
    sim_factory: SimFactory, replicas: Replicas
) -> None:
    """Well-formed loaded-models facts naming ever new models (each of the 256 a fact may
    carry) leave an instance's installed set within MAX_PEER_INSTALLED names, however many
    arrive before the next /api/tags; the replica keeps serving and the last fact's loaded
    models are what it believes loaded."""
    sims = await sim_factory(1)
    (a,) = await replicas(1, [s.url for s in sims], strategy=PREFIX, **PARALLEL)
    backend: Any = a.state
    client = redis.asyncio.Redis.from_url(replicas.redis.url)
    channel = f"{replicas.namespace}:events"
    messages = 60
    try:
        for m in range(messages):
            facts = [
                [
                    "llm",
                    LOADED_TOPIC,
                    ["s0", {f"forged-{m}-{f}-{n}:latest": None for n in range(256)}],
                ]
                for f in range(4)
            ]
            await client.publish(
                channel, json.dumps({"replica": "evil", "kind": "facts", "facts": facts})
            )
        await eventually(
            lambda: backend.counters["facts_applied"] >= 4 * messages, "every fact applied", 30.0
        )
    finally:
        await client.aclose()
    instance = hub(a).get("s0")
    installed = installed_models(instance)
    assert installed is not None
    assert len(installed) <= MAX_PEER_INSTALLED
    assert len(loaded_models(instance)) == 256
    await assert_serves(a)


async def test_one_tenants_prompt_never_routes_by_another_tenants_cached_prefix(
    sim_factory: SimFactory, replicas: Replicas
) -> None:
    """Bob's conversation, placed through replica A, continues on its instance through
    replica B; Alice (another gateway key) sending Bob's prompt through B is not routed by
    Bob's placement (no affine pick, and the least recently picked instance, not Bob's, takes
    it), so she cannot learn from the cache hit whether Bob sent that document."""
    sims = await sim_factory(3)
    await warm(sims)
    a, b = await replicas(2, [s.url for s in sims], strategy=PREFIX, **PARALLEL)
    bob, alice = Caller(name="bob"), Caller(name="alice")
    document = [{"role": "user", "content": f"bob's contract: {OPENING}"}]
    with acting_as(bob):
        bobs = await chat(a, list(document))
    await eventually(lambda: peer_placements(b) >= 1, "B has A's pick")
    strategy = hub(b).strategy
    affine = strategy.counters["affine"]
    with acting_as(alice):
        guess = await b.execute(
            "llm/chat",
            {"model": "llama3.2", "messages": [*document, {"role": "user", "content": "?"}]},
        )
    assert strategy.counters["affine"] == affine
    assert guess["gleitzeit"]["instance"] != bobs
    with acting_as(bob):
        follow = await chat(b, [*document, {"role": "user", "content": "and?"}])
    assert follow == bobs
    assert strategy.counters["affine"] == affine + 1
