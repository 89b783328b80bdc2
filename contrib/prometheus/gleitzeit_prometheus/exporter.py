"""Metrics read from the runtime's status at scrape time, plus latency histograms fed by the
hubs' lease observers. Each runtime has its own registry, so two gateways in one process
(tests do that) never collide."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from gleitzeit_core import BreakerState, FailureClass, Lease, to_json

__all__ = ["Exporter"]

# LLM calls take from milliseconds (embeddings) to minutes (long generations)
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_STATES = [state.value for state in BreakerState]


class StatusCollector(Collector):
    """Counters and gauges straight from ``runtime.status()``: no second set of books."""

    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime

    def collect(self) -> Iterator[Any]:
        status = to_json(self.runtime.status())
        labels = ["hub", "resource"]
        requests = CounterMetricFamily("gleitzeit_requests", "Calls finished", labels=labels)
        failures = CounterMetricFamily(
            "gleitzeit_failures", "Calls failed, by failure class", labels=[*labels, "class"]
        )
        in_flight = GaugeMetricFamily("gleitzeit_in_flight", "Calls in flight", labels=labels)
        healthy = GaugeMetricFamily(
            "gleitzeit_resource_healthy", "1 unless probes marked it unhealthy", labels=labels
        )
        ejected = GaugeMetricFamily(
            "gleitzeit_resource_ejected", "1 while ejected for failing calls", labels=labels
        )
        ejected_for = GaugeMetricFamily(
            "gleitzeit_resource_ejection_remaining_seconds",
            "Seconds until an ejected resource is tried again (0 when not ejected)",
            labels=labels,
        )
        draining = GaugeMetricFamily(
            "gleitzeit_resource_draining", "1 while drained: no new calls go to it", labels=labels
        )
        ejections = CounterMetricFamily(
            "gleitzeit_ejections", "Times the resource was ejected", labels=labels
        )
        breaker = GaugeMetricFamily(
            "gleitzeit_breaker_state",
            "1 for the breaker's current state",
            labels=[*labels, "state"],
        )
        opens = CounterMetricFamily(
            "gleitzeit_breaker_opens", "Times the breaker opened", labels=labels
        )
        failovers = CounterMetricFamily(
            "gleitzeit_failovers", "Calls moved to another resource", labels=["hub"]
        )
        panic = GaugeMetricFamily(
            "gleitzeit_hub_panic", "1 while routing to unhealthy resources", labels=["hub"]
        )
        no_resource = CounterMetricFamily(
            "gleitzeit_hub_no_resource",
            "Calls refused because no resource could take them",
            labels=["hub"],
        )
        waiting = GaugeMetricFamily(
            "gleitzeit_hub_waiting", "Calls waiting for a free resource", labels=["hub"]
        )
        for hub in status["hubs"]:
            failovers.add_metric([hub["name"]], hub["counters"].get("failovers", 0))
            panic.add_metric([hub["name"]], 1.0 if hub["panic"] else 0.0)
            no_resource.add_metric([hub["name"]], hub["counters"].get("no_resource", 0))
            waiting.add_metric([hub["name"]], hub["waiting"])
            for res in hub["resources"]:
                key = [hub["name"], res["id"]]
                metrics = res["metrics"]
                requests.add_metric(key, metrics["requests"])
                for failure in FailureClass:
                    failures.add_metric(
                        [*key, failure.value], metrics["failures"].get(failure.value, 0)
                    )
                in_flight.add_metric(key, res["in_flight"])
                healthy.add_metric(key, 0.0 if res["health"] == "unhealthy" else 1.0)
                ejected.add_metric(key, 1.0 if res["ejected"] else 0.0)
                ejected_for.add_metric(key, res["ejected_for_s"])
                draining.add_metric(key, 1.0 if res["draining"] else 0.0)
                ejections.add_metric(key, res["ejections"])
                opens.add_metric(key, res["breaker_opens"])
                for state in _STATES:
                    breaker.add_metric([*key, state], 1.0 if res["breaker"] == state else 0.0)
        yield from _path_families(status.get("paths"))
        yield from _caller_families(status.get("callers"))
        yield from _state_families(status.get("state"))
        yield from (
            requests,
            failures,
            in_flight,
            healthy,
            ejected,
            ejected_for,
            draining,
            ejections,
            breaker,
            opens,
            failovers,
            panic,
            no_resource,
            waiting,
        )


def _path_families(paths: Any) -> Iterator[Any]:
    """Per-path series of a dual-mode rollout (the ``paths`` status section the legacy shim
    adds): calls, errors and latency quantiles, labelled ``path="hub"|"legacy"``."""
    if not isinstance(paths, dict):
        return
    served = {k: v for k, v in paths.items() if k in ("hub", "legacy") and isinstance(v, dict)}
    if not served:
        return
    requests = CounterMetricFamily(
        "gleitzeit_path_requests", "Provider calls served, by dual-mode path", labels=["path"]
    )
    errors = CounterMetricFamily(
        "gleitzeit_path_errors", "Provider calls failed, by dual-mode path", labels=["path"]
    )
    # seconds and a "percentile" label: promtool refuses "_ms" and "quantile" on a gauge
    latency = GaugeMetricFamily(
        "gleitzeit_path_latency_seconds",
        "Latency percentile of recent successful calls, by dual-mode path",
        labels=["path", "percentile"],
    )
    for path, figures in served.items():
        requests.add_metric([path], figures.get("requests", 0))
        errors.add_metric([path], figures.get("errors", 0))
        for percentile, key in (("50", "p50_ms"), ("95", "p95_ms"), ("99", "p99_ms")):
            latency.add_metric([path, percentile], (figures.get(key) or 0.0) / 1000.0)
    yield from (requests, errors, latency)
    rollout = paths.get("rollout")
    if isinstance(rollout, dict):
        hub_on = GaugeMetricFamily(
            "gleitzeit_rollout_hub_enabled", "1 while use_hub_architecture is on"
        )
        hub_on.add_metric([], 1.0 if rollout.get("use_hub_architecture") else 0.0)
        percent = GaugeMetricFamily(
            "gleitzeit_rollout_percent", "Share of hub-enabled calls that take the hub path"
        )
        percent.add_metric([], float(rollout.get("rollout_percent") or 0.0))
        yield from (hub_on, percent)


# gateway key counters (the status's ``callers``: key name -> counters; never a token)
_CALLER_COUNTERS = (
    ("requests", "gleitzeit_key_requests", "Requests admitted, by gateway key"),
    ("denied", "gleitzeit_key_denied", "Requests refused (403) outside the key's scopes"),
    ("rate_limited", "gleitzeit_key_rate_limited", "Requests refused (429) over the rate limit"),
    (
        "concurrency_limited",
        "gleitzeit_key_concurrency_limited",
        "Requests refused (429) over the key's concurrency limit",
    ),
)


def _caller_families(callers: Any) -> Iterator[Any]:
    """Per-key series, when the gateway has keys and the status counts them."""
    if not isinstance(callers, dict) or not callers:
        return
    in_flight = GaugeMetricFamily(
        "gleitzeit_key_in_flight", "Requests in flight, by gateway key", labels=["key"]
    )
    families = [
        (field, CounterMetricFamily(name, help_text, labels=["key"]))
        for field, name, help_text in _CALLER_COUNTERS
    ]
    for name, counters in sorted(callers.items()):
        if not isinstance(counters, dict):
            continue
        for field, family in families:
            family.add_metric([str(name)], float(counters.get(field, 0)))
        in_flight.add_metric([str(name)], float(counters.get("in_flight", 0)))
    yield from (family for _, family in families)
    yield in_flight


# the state backend's own counters (``state.counters``) that are worth a series
_STATE_EVENTS = (
    "published",
    "applied",
    "reserve_refused",
    "bad_events",
    "facts_shared",
    "facts_applied",
    "facts_too_large",
)


def _state_families(state: Any) -> Iterator[Any]:
    """The state backend (``state`` in the status): whether it is connected, how long it has
    served from local state, how often it resynchronised, how many replicas it sees."""
    if not isinstance(state, dict):
        return
    backend = [str(state.get("backend", ""))]
    counters = state.get("counters") or {}
    live = state.get("replicas") or []
    shared = bool(state.get("shared"))
    values: tuple[tuple[type[Any], str, str, float], ...] = (
        (
            GaugeMetricFamily,
            "gleitzeit_state_connected",
            "1 while the state backend answers and this replica listens for the others' news "
            "(always 1 for the in-process backend)",
            1.0 if state.get("connected") else 0.0,
        ),
        (
            GaugeMetricFamily,
            "gleitzeit_state_shared",
            "1 when the state backend is shared by replicas",
            1.0 if shared else 0.0,
        ),
        (
            GaugeMetricFamily,
            "gleitzeit_state_fleet_limits",
            "1 while key limits and caps count across replicas, 0 while per process",
            1.0 if state.get("limits") == "fleet" else 0.0,
        ),
        (
            CounterMetricFamily,
            "gleitzeit_state_degraded_seconds",
            "Seconds served from local state because the shared store was unreachable",
            float(state.get("degraded_total_s") or 0.0),
        ),
        (
            CounterMetricFamily,
            "gleitzeit_state_degradations",
            "Times the shared store became unreachable",
            float(counters.get("degraded", 0)),
        ),
        (
            CounterMetricFamily,
            "gleitzeit_state_resyncs",
            "Times this replica resynchronised with the shared store after an outage",
            float(counters.get("resyncs", 0)),
        ),
        (
            GaugeMetricFamily,
            "gleitzeit_state_replicas",
            "Live gateway replicas sharing the store, this one included (1 when not shared)",
            float(len(live) if shared else 1),
        ),
        (
            GaugeMetricFamily,
            "gleitzeit_state_staleness_seconds",
            "The most the shared view of the load may lag behind",
            float(state.get("staleness_s") or 0.0),
        ),
    )
    for kind, name, help_text, value in values:
        family = kind(name, help_text, labels=["backend"])
        family.add_metric(backend, value)
        yield family
    events = CounterMetricFamily(
        "gleitzeit_state_events",
        "State backend events: news published and applied, places refused, bad messages",
        labels=["backend", "event"],
    )
    for event in _STATE_EVENTS:
        events.add_metric([*backend, event], float(counters.get(event, 0)))
    yield events


class Exporter:
    def __init__(self, runtime: Any) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(StatusCollector(runtime))
        self.latency = Histogram(
            "gleitzeit_request_duration_seconds",
            "Duration of finished calls",
            ["hub", "resource", "outcome"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        # each labelled child looked up once: ``labels()`` takes a lock and checks the values
        # on every call, and this runs for every finished call
        self._latency_of: dict[tuple[str, str, str], Histogram] = {}
        for hub in runtime.hubs.values():
            hub.observe(self._observe)

    def _observe(self, lease: Lease, failure: FailureClass | None, duration: float) -> None:
        outcome = "success" if failure is None else failure.value
        key = (lease.hub.name, lease.resource.id, outcome)
        child = self._latency_of.get(key)
        if child is None:
            child = self._latency_of[key] = self.latency.labels(*key)
        child.observe(duration)

    async def handle(self, request: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
