"""A hostile Ollama instance beside a healthy one behind a real gateway process.

Each test switches the hostile simulator into one ``/_sim/faults`` ``hostile`` mode (after the
gateway saw it healthy, as a compromised instance or a wrong port would be), sends rounds of
concurrent requests through the gateway and checks what a user would notice:

* every request is served (by the healthy instance, failing over from the hostile one before
  the first byte reached the client);
* the hostile instance is ejected, its breaker is open or its probes mark it unhealthy, and
  its status names the limit its answers broke;
* the gateway's peak resident memory (``VmHWM`` of the child process: the kernel's high-water
  mark, not a sample, so the check cannot miss a spike nor depend on timing) stays under
  ``PEAK_MIB``.

The bound: an idle gateway is ~45 MiB. While it reads, one request holds at most
``max_answer_bytes`` (8 MiB here) or ``max_line_bytes`` (2 MiB) plus what aiohttp buffers
(~128 KiB per connection); a hostile answer is refused before it is decoded (``max_json_depth``,
``max_json_values``: 500 000 here), so ``CLIENTS`` concurrent requests add at most ~50 MiB.
``PEAK_MIB`` = 120 leaves room for the interpreter's own variance (measured peaks: 43-70 MiB);
before the bounds, the same scenarios grew the gateway by gigabytes within seconds.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from gleitzeit_ollama.sim import OllamaSimulator, SimConfig

from .gateway_process import GatewayProcess, start_gateway

PEAK_MIB = 120.0
CLIENTS = 6
ROUNDS = 3
MAX_ANSWER = 8 * 1024 * 1024
MAX_LINE = 2 * 1024 * 1024
MAX_VALUES = 500_000
STALL = 1.0


def _config(healthy: str, hostile: str) -> str:
    return f"""
[hubs.llm]
kind = "ollama"
strategy = "round_robin"
discovery = ["static"]
request_timeout = 20.0
retries = 2
stall_timeout = {STALL}
tags_interval = 0.5
max_answer_bytes = {MAX_ANSWER}
max_line_bytes = {MAX_LINE}
max_json_values = {MAX_VALUES}
breaker = {{ kind = "consecutive", failures = 3, open_for = 60.0 }}
[hubs.llm.health]
interval = 0.2
timeout = 3.0
unhealthy_threshold = 2
[hubs.llm.outlier]
consecutive_failures = 3
base_ejection = 60.0
[[hubs.llm.resources]]
id = "healthy"
url = "{healthy}"
num_parallel = 8
[[hubs.llm.resources]]
id = "hostile"
url = "{hostile}"
num_parallel = 8
"""


class Scene:
    def __init__(self, gateway: GatewayProcess, healthy: OllamaSimulator, hostile: OllamaSimulator):
        self.gateway = gateway
        self.healthy = healthy
        self.hostile = hostile


@pytest.fixture
async def scene() -> AsyncIterator[Scene]:
    """A healthy and a (for now well-behaved) hostile simulator behind a gateway process."""
    config = SimConfig(
        models=["llama3.2"],
        latency_ms=5,
        tokens_per_s=2000,
        load_ms=0,
        num_parallel=8,
        max_tokens=6,
    )
    healthy = OllamaSimulator(config)
    hostile = OllamaSimulator(config)
    await healthy.start()
    await hostile.start()
    gateway: GatewayProcess | None = None
    try:
        with tempfile.TemporaryDirectory(prefix="gleitzeit-hostile-") as folder:
            gateway = await start_gateway(
                _config(healthy.url, hostile.url), Path(folder), "ollama,breaker-consecutive"
            )
            try:
                yield Scene(gateway, healthy, hostile)
            finally:
                await gateway.stop()
    finally:
        await hostile.stop()
        await healthy.stop()


async def _chat(http: aiohttp.ClientSession, url: str, i: int) -> str:
    body = {
        "model": "llama3.2",
        "messages": [{"role": "user", "content": f"q{i}"}],
        "stream": False,
    }
    async with http.post(f"{url}/api/chat", json=body) as reply:
        answer = await reply.json()
        assert reply.status == 200, answer
    assert answer["message"]["content"], answer
    return str(answer["gleitzeit"]["instance"])


async def _generate(http: aiohttp.ClientSession, url: str, i: int) -> str:
    body = {"model": "llama3.2", "prompt": f"p{i}"}
    async with http.post(f"{url}/api/generate", json=body) as reply:
        text = await reply.text()
        assert reply.status == 200, text
        instance = reply.headers["X-Gleitzeit-Instance"]
    assert '"done":true' in text, text[:500]
    assert '"error"' not in text, text[:500]
    return instance


async def _tags(http: aiohttp.ClientSession, url: str, i: int) -> str:
    async with http.get(f"{url}/api/tags") as reply:
        answer = await reply.json()
        assert reply.status == 200, answer
    names = [m["name"] for m in answer["models"]]
    assert "llama3.2:latest" in names, answer
    assert len(names) < 10, "the hostile instance's listing must not reach the client"
    return "merged"


async def _both_hot(scene: Scene) -> None:
    """Load the model on both instances and wait until the gateway knows, so round robin
    alternates (model-aware routing prefers an instance with the model loaded)."""
    async with aiohttp.ClientSession() as http:
        for sim in (scene.healthy, scene.hostile):
            async with http.post(f"{sim.url}/api/generate", json={"model": "llama3.2"}) as reply:
                assert reply.status == 200
    for _ in range(100):
        hostile = await scene.gateway.resource("hostile")
        if hostile is not None and hostile["details"]["loaded"]:
            return
        await asyncio.sleep(0.05)


async def _load(scene: Scene, kinds: list[Any]) -> list[str]:
    """ROUNDS rounds of CLIENTS concurrent requests, cycling through ``kinds``."""
    served: list[str] = []
    url = scene.gateway.url
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        for r in range(ROUNDS):
            calls = [
                kinds[(r + i) % len(kinds)](http, url, r * CLIENTS + i) for i in range(CLIENTS)
            ]
            served += await asyncio.gather(*calls)
    return served


async def _shunned(scene: Scene, limits: tuple[str, ...]) -> dict[str, Any]:
    """The hostile instance's status once it is out of rotation (ejected, breaker open or
    unhealthy), waiting a little for the probes."""
    resource: dict[str, Any] | None = None
    for _ in range(100):
        resource = await scene.gateway.resource("hostile")
        assert resource is not None
        out = resource["ejected"] or resource["breaker"] == "open"
        if (out or resource["health"] == "unhealthy") and (
            not limits or (resource["details"]["limit_hit"] or {}).get("limit") in limits
        ):
            return resource
        await asyncio.sleep(0.1)
    raise AssertionError(f"the hostile instance stayed in rotation: {resource}")


async def _check(
    scene: Scene,
    mode: str,
    kinds: list[Any],
    limits: tuple[str, ...],
    *,
    serves_inference: bool = False,
    **extra: Any,
) -> None:
    await _both_hot(scene)
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{scene.hostile.url}/_sim/faults", json={"hostile": mode, **extra}) as reply,
    ):
        assert reply.status == 200, await reply.text()
    served = await _load(scene, kinds)
    assert len(served) == ROUNDS * CLIENTS
    if not serves_inference:  # its answers are all bad: the healthy one served everything
        assert "hostile" not in served, served
    rss, peak = scene.gateway.memory_mib()
    assert peak < PEAK_MIB, f"gateway peak RSS {peak:.0f} MiB (now {rss:.0f} MiB)"
    resource = await _shunned(scene, limits)
    health = await scene.gateway.resource("healthy")
    assert health is not None
    assert health["health"] == "healthy"
    assert not health["ejected"]
    assert resource["id"] == "hostile"


@pytest.mark.slow
async def test_endless_bodies_hit_max_answer_bytes(scene: Scene) -> None:
    """Non-streamed answers and /api/tags that never end: each read stops at its cap, the
    merged listing names the instance unreachable, every chat is served by the healthy one."""
    await _check(
        scene,
        "endless_body",
        [_chat, _tags],
        ("max_answer_bytes", "max_probe_bytes"),
        paths=["/api/chat", "/api/tags"],
    )


@pytest.mark.slow
async def test_endless_lines_hit_max_line_bytes(scene: Scene) -> None:
    """A streamed answer whose first line never ends: cut at max_line_bytes, failed over before
    the first byte reached the client."""
    await _check(scene, "endless_line", [_generate], ("max_line_bytes",))


@pytest.mark.slow
async def test_huge_tags_fail_the_probe(scene: Scene) -> None:
    """A valid but huge /api/tags (about 10 MiB): probes and the merged listing stop at
    max_probe_bytes, the instance is marked unhealthy, requests keep being served."""
    await _check(
        scene, "huge_tags", [_chat, _generate, _tags], ("max_probe_bytes",), serves_inference=True
    )


@pytest.mark.slow
async def test_garbage_bytes_are_a_failure_of_the_instance(scene: Scene) -> None:
    """Random bytes under a JSON content type, streamed and not: failover, then ejection."""
    await _check(scene, "garbage", [_chat, _generate], ())


@pytest.mark.slow
async def test_slow_drip_hits_the_stall_timeout(scene: Scene) -> None:
    """A byte every 20 ms that never completes a line (or a body): it never stalls, but the
    line must end within stall_timeout of its first byte, so the instance costs one second
    per try, not the whole deadline."""
    await _check(scene, "slow_drip", [_chat, _generate], (), drip_ms=20)


@pytest.mark.slow
async def test_wrong_content_type_is_refused(scene: Scene) -> None:
    """A proxy's HTML error page with status 200 is not an answer: failover, then ejection."""
    await _check(scene, "wrong_content_type", [_chat, _generate], ())


@pytest.mark.slow
async def test_invalid_json_is_refused(scene: Scene) -> None:
    """A truncated JSON answer: failover, then ejection."""
    await _check(scene, "invalid_json", [_chat, _generate], ())


@pytest.mark.slow
async def test_deep_json_hits_max_json_depth(scene: Scene) -> None:
    """JSON nested 100 000 levels: refused before decoding (max_json_depth), never a
    RecursionError in the gateway."""
    await _check(scene, "deep_json", [_chat, _generate], ("max_json_depth",))


@pytest.mark.slow
async def test_many_tiny_values_hit_max_json_values(scene: Scene) -> None:
    """A valid answer under max_answer_bytes that would decode to over 100 MiB of objects
    (two million empty objects): refused before decoding (max_json_values)."""
    await _check(scene, "many_values", [_chat], ("max_json_values",))


@pytest.mark.slow
async def test_an_endless_stream_to_a_client_that_does_not_read_holds_a_bounded_buffer(
    scene: Scene,
) -> None:
    """Valid chunks forever, sent as fast as the socket takes them, to clients that read one
    line and then stop: the gateway reads upstream only as fast as the client reads
    (backpressure), so its memory stays bounded however long the client dawdles; when the
    clients leave, the upstream requests end too."""
    await _both_hot(scene)
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{scene.hostile.url}/_sim/faults",
            json={"hostile": "endless_body", "paths": ["/api/generate"]},
        ) as reply,
    ):
        assert reply.status == 200
    url = scene.gateway.url
    body = {"model": "llama3.2", "prompt": "go on"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        replies = [await http.post(f"{url}/api/generate", json=body) for _ in range(4)]
        try:
            endless = [r for r in replies if r.headers["X-Gleitzeit-Instance"] == "hostile"]
            assert endless  # round robin sends every other stream there
            for reply in endless:
                assert json.loads(await reply.content.readline())["done"] is False
            await asyncio.sleep(3.0)  # not reading; the instance would send ~1 GB meanwhile
            rss, peak = scene.gateway.memory_mib()
            assert peak < PEAK_MIB, f"gateway peak RSS {peak:.0f} MiB (now {rss:.0f} MiB)"
            # still flowing (each line as the instance wrote it)
            assert json.loads(await endless[0].content.readline())["done"] is False
        finally:
            for reply in replies:
                reply.close()
    for _ in range(100):
        if not scene.hostile.state.active:
            break
        await asyncio.sleep(0.05)
    assert not scene.hostile.state.active, "the upstream streams outlived their clients"


@pytest.mark.slow
async def test_a_line_too_long_after_the_first_chunk_ends_the_stream_with_a_clear_error(
    scene: Scene,
) -> None:
    """Three good chunks, then a line that never ends: the client already has part of the
    answer, so the gateway cannot fail over silently; it tries to resume on the healthy
    instance (whose answer differs, so it may not splice) and ends the stream with an
    ``{"error"}`` line naming the limit. The hostile instance's breaker counts it."""
    await _both_hot(scene)
    cut = 0
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{scene.hostile.url}/_sim/faults",
            json={"hostile": "endless_line", "hostile_after": 3, "paths": ["/api/generate"]},
        ) as reply:
            assert reply.status == 200
        body = {"model": "llama3.2", "prompt": "p"}
        for _ in range(4):  # round robin: two of them start on the hostile instance
            async with http.post(f"{scene.gateway.url}/api/generate", json=body) as reply:
                assert reply.status == 200
                text = await reply.text()
                instance = reply.headers["X-Gleitzeit-Instance"]
            if instance == "hostile":
                lines = text.splitlines()
                assert [json.loads(line) for line in lines[:3]] == [
                    {"model": "llama3.2", "response": f"w{i} ", "done": False} for i in range(3)
                ]
                assert "max_line_bytes" in lines[-1]
                assert lines[-1].startswith('{"error":')
                cut += 1
            else:
                assert '"done":true' in text
    assert cut >= 1  # round robin sent at least one stream there
    resource = await scene.gateway.resource("hostile")
    assert resource is not None
    assert resource["metrics"]["failures"].get("protocol", 0) >= 1
    assert resource["details"]["limit_hit"]["limit"] == "max_line_bytes"
    rss, peak = scene.gateway.memory_mib()
    assert peak < PEAK_MIB, f"gateway peak RSS {peak:.0f} MiB (now {rss:.0f} MiB)"
