"""/metrics as Prometheus's own linter sees it: ``promtool check metrics`` finds nothing to
say, whatever the resources are called and whatever happened to them."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from .conftest import PROMTOOL, Served

CONTRIB = Path(__file__).resolve().parents[2] / "contrib" / "prometheus"
# ids a config may hold that the exposition format must escape
AWKWARD_IDS = ("plain", 'quote"d', "back\\slash", "new\nline", "ünï")


async def scrape_after_traffic(gateway: Served) -> str:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as http:
        for params in (
            {"text": "a"},
            {"text": "b", "fail": "timeout"},
            {"text": "c", "fail": "client_error"},
            {"text": "d", "fail": "server_error"},
        ):
            await http.post(
                gateway.url + "/gleitzeit/execute", json={"method": "echo/say", "params": params}
            )
        reply = await http.get(gateway.url + "/metrics")
        assert reply.status == 200
        return await reply.text()


def promtool_check(text: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PROMTOOL, "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_metrics_pass_promtool(metrics_gateway: Callable[..., Awaitable[Served]]) -> None:
    """After successes and failures of several classes on resources with awkward ids, promtool
    reports no problem (names, units, ``_total`` on counters, HELP on every family), and every
    family has HELP text of its own."""
    gateway = await metrics_gateway(*AWKWARD_IDS)
    text = await scrape_after_traffic(gateway)
    result = await asyncio.to_thread(promtool_check, text)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "", result
    assert result.stderr.strip() == "", result
    families = list(text_string_to_metric_families(text))
    assert families
    for family in families:
        assert family.documentation.strip(), family.name
    resources = {s.labels.get("resource") for f in families for s in f.samples}
    assert set(AWKWARD_IDS) <= resources


async def test_promtool_catches_what_it_is_meant_to_catch(
    metrics_gateway: Callable[..., Awaitable[Served]],
) -> None:
    """The check above can fail: the same exposition with a counter renamed without ``_total``
    is reported by promtool (so its silence means something)."""
    gateway = await metrics_gateway("a")
    text = await scrape_after_traffic(gateway)
    broken = re.sub(r"gleitzeit_requests(_total)?\b", "gleitzeit_requests_count_thing", text)
    broken = broken.replace("# TYPE gleitzeit_requests_count_thing gauge", "")
    result = await asyncio.to_thread(promtool_check, broken)
    assert "counter metrics should have" in result.stdout + result.stderr


async def test_state_series_follow_drain_and_breaker(
    metrics_gateway: Callable[..., Awaitable[Served]],
) -> None:
    """Draining a resource and forcing its breaker open show up as
    ``gleitzeit_resource_draining`` = 1 and ``gleitzeit_breaker_state{state="forced_open"}`` = 1."""
    gateway = await metrics_gateway("a", "b")
    hub = gateway.runtime.hubs["e"]
    await hub.drain("a")
    hub.get("b").breaker.force_open()
    text = await scrape_after_traffic(gateway)
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("gleitzeit_resource_draining", (("hub", "e"), ("resource", "a")))] == 1
    assert samples[("gleitzeit_resource_draining", (("hub", "e"), ("resource", "b")))] == 0
    forced = (("hub", "e"), ("resource", "b"), ("state", "forced_open"))
    assert samples[("gleitzeit_breaker_state", forced)] == 1
    assert samples[("gleitzeit_hub_no_resource_total", (("hub", "e"),))] >= 1


def grafana_exprs() -> list[str]:
    dashboard: dict[str, Any] = json.loads((CONTRIB / "grafana-dashboard.json").read_text())
    return [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]


def grafana_series() -> set[str]:
    """Every series name the Grafana dashboard names: its panels' queries and its variables'
    ``label_values(...)`` definitions."""
    dashboard: dict[str, Any] = json.loads((CONTRIB / "grafana-dashboard.json").read_text())
    texts = [*grafana_exprs()]
    texts += [v.get("definition", "") for v in dashboard["templating"]["list"]]
    return {name for text in texts for name in re.findall(r"\bgleitzeit_\w+", text)}


# exported only with the legacy shim's ``paths`` status section; checked against a gateway
# whose process carries both paths' traffic in test_prometheus_server.py
PATH_SERIES = re.compile(r"gleitzeit_(path|rollout)_\w+")


async def test_grafana_dashboard_uses_only_exported_series(
    metrics_gateway: Callable[..., Awaitable[Served]],
) -> None:
    """Every series a Grafana panel queries is one /metrics exports (a renamed metric breaks
    this test rather than a dashboard in production)."""
    gateway = await metrics_gateway("a")
    text = await scrape_after_traffic(gateway)
    exported = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    assert len(grafana_exprs()) >= 7
    used = {name for name in grafana_series() if not PATH_SERIES.fullmatch(name)}
    assert used <= exported, used - exported


def test_per_key_series_pass_promtool_and_never_carry_tokens() -> None:
    """The per-key families built from the status's ``callers`` section (key name -> counters,
    as the gateway's key ring reports them) pass promtool, label by key name only, and are
    absent when there are no keys."""
    from gleitzeit_prometheus.exporter import _caller_families
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.registry import Collector

    callers = {
        "ops": {"requests": 7, "in_flight": 1, "denied": 0, "rate_limited": 2},
        'we"ird': {"requests": 1, "in_flight": 0, "denied": 3, "concurrency_limited": 1},
    }

    class Callers(Collector):
        def collect(self) -> Any:
            return _caller_families(callers)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Callers())
    text = generate_latest(registry).decode()
    result = promtool_check(text)
    assert result.returncode == 0, result.stdout + result.stderr
    samples = {
        (s.name, s.labels["key"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("gleitzeit_key_requests_total", "ops")] == 7
    assert samples[("gleitzeit_key_rate_limited_total", "ops")] == 2
    assert samples[("gleitzeit_key_denied_total", 'we"ird')] == 3
    assert samples[("gleitzeit_key_in_flight", "ops")] == 1
    assert list(_caller_families({})) == []
    assert list(_caller_families(None)) == []


def test_per_path_series_pass_promtool() -> None:
    """The per-path families built from the hub-era ``paths`` status section (hub and legacy
    figures, the rollout) pass promtool: base units (seconds), no ``quantile`` label on a
    gauge, ``_total`` on the counters."""
    from gleitzeit_prometheus.exporter import _path_families
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.registry import Collector

    figures = {"requests": 9, "errors": 1, "p50_ms": 4.0, "p95_ms": 9.5, "p99_ms": 12.0}
    paths = {
        "hub": figures,
        "legacy": {**figures, "requests": 3},
        "rollout": {"use_hub_architecture": True, "rollout_percent": 25},
    }

    class Paths(Collector):
        def collect(self) -> Any:
            return _path_families(paths)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Paths())
    text = generate_latest(registry).decode()
    result = promtool_check(text)
    assert result.returncode == 0, result.stdout + result.stderr
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("gleitzeit_path_requests_total", (("path", "legacy"),))] == 3
    p95 = (("path", "hub"), ("percentile", "95"))
    assert samples[("gleitzeit_path_latency_seconds", p95)] == 0.0095
    assert samples[("gleitzeit_rollout_percent", ())] == 25


def test_state_backend_series_pass_promtool() -> None:
    """The state-backend families built from the status's ``state`` section (a Redis backend
    in the middle of an outage) pass promtool and carry what the status says: not connected,
    per-process limits, the seconds degraded, the outages, resyncs and replicas seen."""
    from gleitzeit_prometheus.exporter import _state_families
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.registry import Collector

    state = {
        "backend": "redis",
        "shared": True,
        "connected": False,
        "degraded": "redis unreachable: ConnectionError",
        "replicas": [{"id": "a"}, {"id": "b"}, {"id": "c"}],
        "staleness_s": 0.1,
        "limits": "per-process",
        "degraded_s": 2.5,
        "degraded_total_s": 4.25,
        "counters": {"degraded": 2, "resyncs": 1, "published": 5},
    }

    class State(Collector):
        def collect(self) -> Any:
            return _state_families(state)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(State())
    text = generate_latest(registry).decode()
    result = promtool_check(text)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "", result
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    redis = (("backend", "redis"),)
    assert samples[("gleitzeit_state_connected", redis)] == 0
    assert samples[("gleitzeit_state_fleet_limits", redis)] == 0
    assert samples[("gleitzeit_state_degraded_seconds_total", redis)] == 4.25
    assert samples[("gleitzeit_state_degradations_total", redis)] == 2
    assert samples[("gleitzeit_state_resyncs_total", redis)] == 1
    assert samples[("gleitzeit_state_replicas", redis)] == 3
    assert samples[("gleitzeit_state_events_total", (*redis, ("event", "published")))] == 5
    assert list(_state_families(None)) == []
