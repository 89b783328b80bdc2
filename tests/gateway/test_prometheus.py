"""The Prometheus plugin: /metrics on a real gateway, labelled by hub and resource."""

from __future__ import annotations

import aiohttp
import gleitzeit_prometheus.plugin
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from gleitzeit_core._gateway import build_app
from gleitzeit_core._plugins import PluginManager
from gleitzeit_core._runtime import Runtime
from gleitzeit_core.testing import echo


async def test_metrics_expose_requests_failures_latency_and_breakers() -> None:
    """After some calls, /metrics has per-resource request and failure counts, a latency
    histogram, in-flight, health and breaker-state series."""
    manager = PluginManager(autoload=False)
    manager.load()
    manager.add(echo, "echo")
    manager.add(gleitzeit_prometheus.plugin, "prometheus")
    config = {"hubs": {"e": {"kind": "echo", "retries": 0, "resources": [{"url": "echo://a"}]}}}
    async with Runtime.from_config(config, plugins=manager) as runtime:
        runner = web.AppRunner(build_app(runtime))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        try:
            async with aiohttp.ClientSession() as http:
                for params in [{"text": "a"}, {"text": "b"}, {"text": "c", "fail": "timeout"}]:
                    await http.post(
                        f"{url}/gleitzeit/execute", json={"method": "echo/say", "params": params}
                    )
                reply = await http.get(f"{url}/metrics")
                assert reply.status == 200
                text = await reply.text()
        finally:
            await runner.cleanup()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    key = (("hub", "e"), ("resource", "a"))
    assert samples[("gleitzeit_requests_total", key)] == 3
    timeouts = (("class", "timeout"), ("hub", "e"), ("resource", "a"))
    assert samples[("gleitzeit_failures_total", timeouts)] == 1
    assert samples[("gleitzeit_in_flight", key)] == 0
    assert samples[("gleitzeit_resource_healthy", key)] == 1
    closed = (("hub", "e"), ("resource", "a"), ("state", "closed"))
    assert samples[("gleitzeit_breaker_state", closed)] == 1
    success = (("hub", "e"), ("outcome", "success"), ("resource", "a"))
    assert samples[("gleitzeit_request_duration_seconds_count", success)] == 2
    assert any(name == "gleitzeit_request_duration_seconds_bucket" for name, _ in samples)
