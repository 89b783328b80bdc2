"""A real Prometheus server (Debian's ``/usr/bin/prometheus``) scrapes the gateway with the
shipped scrape example and answers rate queries over its HTTP API."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from .conftest import PROMETHEUS, PROMTOOL, Served
from .test_promtool import CONTRIB, grafana_exprs

TOKEN = "scrape-key"
pytestmark = pytest.mark.timeout(180)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def scrape_config(target: str, key_file: Path) -> str:
    """The shipped example, pointed at ``target`` with ``key_file``, scraping every second."""
    text = (CONTRIB / "prometheus.yml").read_text()
    for old, new in (
        ('["127.0.0.1:11500"]', f'["{target}"]'),
        ("/etc/prometheus/gleitzeit.key", str(key_file)),
        ("scrape_interval: 5s", "scrape_interval: 1s"),
        ("scrape_timeout: 4s", "scrape_timeout: 1s"),
    ):
        assert old in text, f"the scrape example no longer has {old}"
        text = text.replace(old, new)
    return text


@contextlib.contextmanager
def prometheus(config: Path, storage: Path) -> Iterator[str]:
    """``prometheus`` on a free loopback port with its own storage; stopped and reaped after."""
    port = free_port()
    log = (storage.parent / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={storage}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=1h",
        ],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)
        log.close()


async def query(http: aiohttp.ClientSession, server: str, promql: str) -> list[dict[str, Any]]:
    async with http.get(server + "/api/v1/query", params={"query": promql}) as reply:
        data: dict[str, Any] = await reply.json()
    assert data["status"] == "success", data
    result: list[dict[str, Any]] = data["data"]["result"]
    return result


async def poll(
    http: aiohttp.ClientSession, server: str, promql: str, ok: Callable[[list[Any]], bool]
) -> list[dict[str, Any]]:
    """Ask until ``ok(result)``; generous, since a loaded machine may scrape late."""
    result: list[dict[str, Any]] = []
    for _ in range(300):
        with contextlib.suppress(aiohttp.ClientError, AssertionError):
            result = await query(http, server, promql)
            if ok(result):
                return result
        await asyncio.sleep(0.2)
    raise AssertionError(f"{promql} never satisfied the test; last result: {result}")


@contextlib.asynccontextmanager
async def scraping(target: str, tmp_path: Path) -> AsyncIterator[str]:
    """A real Prometheus scraping ``target`` with the shipped example (the key from a file;
    ``promtool check config`` has nothing to say about it), once it reports ``up`` = 1;
    yields its URL."""
    key_file = tmp_path / "gleitzeit.key"
    key_file.write_text(TOKEN)
    config = tmp_path / "prometheus.yml"
    config.write_text(scrape_config(target, key_file))
    checked = await asyncio.to_thread(
        subprocess.run,
        [PROMTOOL, "check", "config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    storage = tmp_path / "data"
    storage.mkdir()
    with prometheus(config, storage) as server:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            await poll(http, server, 'up{job="gleitzeit"}', lambda r: r and r[0]["value"][1] == "1")
        yield server


async def rates_by(
    http: aiohttp.ClientSession, server: str, metric: str, label: str, moving: int
) -> dict[str, float]:
    """``sum by (label) (rate(metric[5s]))`` from Prometheus once ``moving`` of its series
    are above 0: label value -> rate."""
    promql = f"sum by ({label}) (rate({metric}[5s]))"
    result = await poll(
        http, server, promql, lambda r: sum(float(s["value"][1]) > 0 for s in r) >= moving
    )
    return {s["metric"][label]: float(s["value"][1]) for s in result}


@contextlib.asynccontextmanager
async def traffic(url: str) -> AsyncIterator[list[int]]:
    """Echo calls through the gateway until the block ends; yields the count of answers."""
    done = asyncio.Event()
    count = [0]

    async def run() -> None:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as http:
            while not done.is_set():
                body = {"method": "echo/say", "params": {"text": "x", "delay": 0.01}}
                async with http.post(url + "/gleitzeit/execute", json=body, headers=headers) as r:
                    await r.read()
                    count[0] += r.status == 200

    task = asyncio.create_task(run())
    try:
        yield count
    finally:
        done.set()
        await asyncio.wait_for(task, 30)


async def test_prometheus_scrapes_the_gateway_and_answers_rates(
    metrics_gateway: Callable[..., Awaitable[Served]], tmp_path: Path
) -> None:
    """With the shipped scrape example (bearer key from a file), Prometheus scrapes the
    gateway (``up`` = 1), and its HTTP API gives a non-zero request rate for each resource
    under traffic and for none that got no calls; every Grafana panel's query is valid PromQL
    on that server (the per-path rates: the next test)."""
    gateway = await metrics_gateway("a", "b", "idle", token=TOKEN)
    await gateway.runtime.hubs["e"].drain("idle")
    async with (
        scraping(f"127.0.0.1:{gateway.port}", tmp_path) as server,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
        traffic(gateway.url) as answered,
    ):
        rates = await rates_by(http, server, "gleitzeit_requests_total", "resource", 2)
        assert rates["a"] > 0
        assert rates["b"] > 0
        assert rates.get("idle", 0.0) == 0.0
        assert answered[0] > 0
        for expr in grafana_exprs():
            promql = expr.replace("$__rate_interval", "30s").replace('"$hub"', '".*"')
            await query(http, server, promql)  # asserts status "success"


@contextlib.asynccontextmanager
async def gateway_in_app_process(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> AsyncIterator[tuple[Any, str]]:
    """What a dual-mode deployment runs: the application's own process holds a hub-era
    ``OllamaHub`` (over two simulators) and the shim objects its code calls, and serves a
    gateway (keys, ``/metrics``) on that hub's runtime for Prometheus to scrape. Per-path
    figures exist only in the process the shim objects run in (docs/migration.md), so a
    separate ``gleitzeit serve`` would never see the legacy path: this is where they are."""
    from aiohttp import web
    from gleitzeit.hub.ollama_hub import OllamaHub

    from gleitzeit_core._gateway import build_app
    from tests.legacy.conftest import PLUGINS, Sims

    monkeypatch.setenv("GLEITZEIT_LOAD_PLUGINS", PLUGINS + ",prometheus")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    for name in ("GLEITZEIT_CONFIG", "GLEITZEIT_DISABLED_PLUGINS", "OLLAMA_HOST"):
        monkeypatch.delenv(name, raising=False)
    sims = Sims()
    try:
        pair = await sims(2, num_parallel=4)
        monkeypatch.setenv("OLLAMA_HOSTS", ",".join(sim.url for sim in pair))
        hub = OllamaHub("app-hub")
        await hub.start()
        runner = web.AppRunner(build_app(hub.runtime, token=TOKEN), access_log=None)
        try:
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            yield hub, f"127.0.0.1:{runner.addresses[0][1]}"
        finally:
            await runner.cleanup()
            await hub.stop()
    finally:
        await sims.stop()


@contextlib.asynccontextmanager
async def calls_on_both_paths(hub: Any) -> AsyncIterator[dict[str, int]]:
    """Two providers of the application calling until the block ends: ``moved`` is listed in
    ``hub_architecture_providers`` (the plan's gradual enable), ``old`` is not; yields each
    one's count of answered calls."""
    from gleitzeit.config.features import FEATURES
    from gleitzeit.providers.ollama_pool_provider import OllamaPoolProvider

    from tests.legacy.conftest import MODEL

    FEATURES.reset()
    FEATURES["hub_architecture_providers"].append("moved")
    providers = [OllamaPoolProvider(name, hub=hub) for name in ("moved", "old")]
    answered = {"moved": 0, "old": 0}
    done = asyncio.Event()

    async def run(provider: Any) -> None:
        while not done.is_set():
            params = {"prompt": "per path", "model": MODEL}
            await asyncio.wait_for(provider.execute("llm/generate", params), 30)
            answered[provider.provider_id] += 1
            await asyncio.sleep(0.02)  # a steady trickle, not a load test

    tasks = [asyncio.create_task(run(p)) for p in providers]
    try:
        yield answered
    finally:
        done.set()
        try:
            await asyncio.wait_for(asyncio.gather(*tasks), 60)
        finally:
            for provider in providers:
                await provider.shutdown()
            FEATURES.reset()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
async def test_prometheus_gives_a_request_rate_per_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """In a dual-mode rollout (one provider on the hub path, one still on the legacy path),
    Prometheus scraping the gateway of the application's process with the shipped example
    answers ``rate(gleitzeit_path_requests_total[5s])`` > 0 for ``path="hub"`` and for
    ``path="legacy"`` over its HTTP API; and every series the Grafana dashboard names
    (the per-path panels included) is one that gateway exports and Prometheus holds."""
    from tests.prometheus.test_promtool import grafana_series

    async with (
        gateway_in_app_process(monkeypatch, tmp_path) as (hub, target),
        calls_on_both_paths(hub) as answered,
        scraping(target, tmp_path) as server,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
    ):
        rates = await rates_by(http, server, "gleitzeit_path_requests_total", "path", 2)
        assert rates["hub"] > 0, rates
        assert rates["legacy"] > 0, rates
        assert answered["moved"] > 0
        assert answered["old"] > 0
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with http.get(f"http://{target}/metrics", headers=headers) as reply:
            assert reply.status == 200
            exported = await reply.text()
        for name in grafana_series():
            assert re.search(rf"^{name}[{{ ]", exported, re.M), f"{name} is not exported"
            held = await query(http, server, f"count({name})")
            assert held, f"Prometheus holds no {name}"
        for expr in grafana_exprs():
            promql = expr.replace("$__rate_interval", "30s").replace('"$hub"', '".*"')
            await query(http, server, promql)  # asserts status "success"
