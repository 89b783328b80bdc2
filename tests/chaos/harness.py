"""Chaos under steady load through the gateway, shared by the CI test and the long run.

Three Ollama simulators (child processes) behind a `gleitzeit serve` child process; workers
using the official `ollama` client keep a steady mix of chat and streamed generate going while
the script breaks things on a timeline (fractions of the run):

* 0.15: simulator A is killed hard (SIGKILL); 0.45: it is restarted on the same port;
* 0.30: simulator B hangs without answering, probes included; 0.55: it recovers;
* 0.60: simulator C answers every request with 503 "server busy"; 0.75: it recovers;
* 0.85: simulator B is drained and removed through ``POST /gleitzeit/drain``.

With ``hostile=True`` (the default) a fourth simulator H answers probes normally but every
request with a hostile answer (``/_sim/faults`` ``hostile``), switching modes through the run:
endless lines, garbage, endless non-streamed bodies and tags, a slow drip, invalid JSON, JSON
nested too deep, huge tags, an HTML page.

Measured: every request's outcome and duration, when A was seen ejected (or unhealthy) after
the kill and when it was back in rotation after the restart, whether the drain failed any
request, the gateway's resident memory after start and its peak (``VmHWM``), and whether H was
ever out of rotation. Only loopback addresses are used.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import ollama
from gleitzeit_ollama.sim import SimConfig, SimProcess

from .gateway_process import GatewayProcess, start_gateway

PROBE_INTERVAL = 0.25
DEADLINE = 10.0  # the client's deadline per request
# (fraction of the run, what H answers with); chat is the only non-streamed request
HOSTILE_TIMELINE: list[tuple[float, dict[str, Any]]] = [
    (0.02, {"hostile": "endless_line"}),
    (0.14, {"hostile": "garbage"}),
    (0.26, {"hostile": "endless_body", "paths": ["/api/chat", "/api/tags"]}),
    (0.38, {"hostile": "slow_drip", "paths": None}),
    (0.50, {"hostile": "invalid_json"}),
    (0.62, {"hostile": "deep_json"}),
    (0.74, {"hostile": "wrong_content_type"}),
    (0.86, {"hostile": "huge_tags"}),
]


@attrs.define
class ChaosReport:
    seconds: float
    requests: int = 0
    errors: int = 0
    unanswered: int = 0  # no answer (nor an error) within the client's deadline
    error_samples: list[str] = attrs.field(factory=list)
    max_latency_s: float = 0.0
    ejected_after_s: float | None = None
    readmitted_after_s: float | None = None
    drain_ok: bool | None = None
    failovers: int = 0
    stream_resumes: int = 0
    hostile: bool = False
    hostile_shunned: bool | None = None  # H was ejected, unhealthy or its breaker open
    hostile_limits: list[str] = attrs.field(factory=list)  # the limits H's answers hit
    rss_start_mib: float = 0.0
    rss_peak_mib: float = 0.0
    events: list[str] = attrs.field(factory=list)

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def as_json(self) -> dict[str, Any]:
        data = attrs.asdict(self)
        data["error_rate"] = self.error_rate
        return data


def _config(sims: dict[str, SimProcess]) -> str:
    lines = [
        "[hubs.llm]",
        'kind = "ollama"',
        'strategy = "p2c"',
        'discovery = ["static"]',
        f"request_timeout = {DEADLINE - 1}",
        "attempt_timeout = 1.5",
        f"retries = {len(sims) - 1}",
        "stall_timeout = 1.5",
        'breaker = { kind = "consecutive", failures = 5, open_for = 1.0 }',
        "[hubs.llm.health]",
        f"interval = {PROBE_INTERVAL}",
        "timeout = 0.5",
        "unhealthy_threshold = 2",
        "[hubs.llm.outlier]",
        "consecutive_failures = 3",
        "base_ejection = 1.0",
        "max_ejection = 5.0",
    ]
    for name, sim in sims.items():
        lines += [
            "[[hubs.llm.resources]]",
            f'id = "{name}"',
            f'url = "{sim.url}"',
            "num_parallel = 8",
        ]
    return "\n".join(lines) + "\n"


async def _faults(sim: SimProcess, body: dict[str, Any] | None) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        if body is None:
            async with http.delete(f"{sim.url}/_sim/faults") as reply:
                reply.raise_for_status()
        else:
            async with http.post(f"{sim.url}/_sim/faults", json=body) as reply:
                reply.raise_for_status()


async def _worker(url: str, stop: asyncio.Event, report: ChaosReport, index: int) -> None:
    client = ollama.AsyncClient(host=url, timeout=DEADLINE + 5)
    i = 0
    while not stop.is_set():
        i += 1
        started = time.monotonic()
        try:
            async with asyncio.timeout(DEADLINE):
                if (index + i) % 2:
                    reply = await client.chat(
                        model="llama3.2", messages=[{"role": "user", "content": f"q {index} {i}"}]
                    )
                    assert reply.message.content
                else:
                    stream = await client.generate(
                        model="llama3.2", prompt=f"p {index} {i}", stream=True
                    )
                    text = "".join([chunk.response async for chunk in stream])
                    assert text
        except TimeoutError:
            report.unanswered += 1
            report.errors += 1
            report.error_samples.append(f"worker {index}: no answer within {DEADLINE} s")
        except Exception as exc:  # counted: the assertion is that there (nearly) are none
            report.errors += 1
            if len(report.error_samples) < 20:
                report.error_samples.append(f"worker {index}: {type(exc).__name__}: {exc}")
        report.requests += 1
        report.max_latency_s = max(report.max_latency_s, time.monotonic() - started)


def _out(resource: dict[str, Any] | None) -> bool:
    """Out of rotation: ejected, unhealthy or its breaker open."""
    return resource is not None and (
        resource["ejected"] or resource["health"] == "unhealthy" or resource["breaker"] == "open"
    )


async def _watch_ejection(
    gateway: GatewayProcess, rid: str, since: float, report: ChaosReport
) -> None:
    while True:
        resource = await gateway.resource(rid)
        if resource is not None and (resource["ejected"] or resource["health"] == "unhealthy"):
            report.ejected_after_s = round(time.monotonic() - since, 3)
            return
        await asyncio.sleep(0.05)


async def _watch_readmission(
    gateway: GatewayProcess, rid: str, since: float, report: ChaosReport
) -> None:
    while True:
        resource = await gateway.resource(rid)
        healthy = resource is not None and resource["health"] == "healthy"
        if healthy and not resource["ejected"] and resource["breaker"] == "closed":  # type: ignore[index]
            report.readmitted_after_s = round(time.monotonic() - since, 3)
            return
        await asyncio.sleep(0.05)


async def _watch_hostile(gateway: GatewayProcess, report: ChaosReport) -> None:
    while True:
        resource = await gateway.resource("H")
        if _out(resource):
            report.hostile_shunned = True
        hit = resource["details"].get("limit_hit") if resource is not None else None
        if hit and hit["limit"] not in report.hostile_limits:
            report.hostile_limits.append(hit["limit"])
        await asyncio.sleep(0.1)


async def run_chaos(
    seconds: float = 20.0, workers: int = 8, hostile: bool = True, outages: bool = True
) -> ChaosReport:
    """Run the scenario (``outages``: the kill/hang/busy/drain timeline; ``hostile``: the
    hostile H); everything started is stopped before returning."""
    report = ChaosReport(seconds=seconds, hostile=hostile)
    sims: dict[str, SimProcess] = {}
    gateway: GatewayProcess | None = None
    watchers: list[asyncio.Task[None]] = []
    endless: list[asyncio.Task[None]] = []  # watchers that run until cancelled
    with tempfile.TemporaryDirectory(prefix="gleitzeit-chaos-") as folder:
        try:
            for name in ("A", "B", "C", "H") if hostile else ("A", "B", "C"):
                config = SimConfig(
                    models=["llama3.2"],
                    latency_ms=10,
                    tokens_per_s=300,
                    load_ms=20,
                    num_parallel=8,
                    max_tokens=8,
                    name=name,
                )
                sims[name] = await SimProcess(config).astart()
            if hostile:  # H has the model loaded, so model-aware routing does send it requests
                async with (
                    aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
                    http.post(
                        f"{sims['H'].url}/api/generate",
                        json={"model": "llama3.2", "keep_alive": "1h"},
                    ) as reply,
                ):
                    reply.raise_for_status()
            gateway = await start_gateway(_config(sims), Path(folder), "ollama,breaker-consecutive")
            url = gateway.url
            report.rss_start_mib = round(gateway.memory_mib()[0], 1)
            if hostile:
                report.hostile_shunned = False
                endless.append(asyncio.create_task(_watch_hostile(gateway, report)))

            stop = asyncio.Event()
            load = [asyncio.create_task(_worker(url, stop, report, i)) for i in range(workers)]
            start = time.monotonic()

            async def at(fraction: float) -> None:
                await asyncio.sleep(max(0.0, start + fraction * seconds - time.monotonic()))

            async def note(text: str) -> None:
                report.events.append(f"{time.monotonic() - start:6.2f} s  {text}")

            async def hostile_modes() -> None:
                for fraction, fault in HOSTILE_TIMELINE:
                    await at(fraction)
                    await _faults(sims["H"], fault)
                    await note(f"H answers {fault['hostile']}")

            if hostile:
                watchers.append(asyncio.create_task(hostile_modes()))
            if outages:
                await at(0.15)
                await sims["A"].akill()
                killed = time.monotonic()
                watchers.append(asyncio.create_task(_watch_ejection(gateway, "A", killed, report)))
                await note("killed A")
                await at(0.30)
                await _faults(sims["B"], {"hang": True, "hang_probes": True})
                await note("B hangs")
                await at(0.45)
                await sims["A"].arestart()
                restarted = time.monotonic()
                watchers.append(
                    asyncio.create_task(_watch_readmission(gateway, "A", restarted, report))
                )
                await note("restarted A")
                await at(0.55)
                await _faults(sims["B"], None)
                await note("B answers again")
                await at(0.60)
                await _faults(sims["C"], {"busy": True})
                await note("C returns 503 busy")
                await at(0.75)
                await _faults(sims["C"], None)
                await note("C answers again")
                await at(0.85)
                async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
                    before = report.errors
                    async with http.post(
                        f"{url}/gleitzeit/drain", json={"hub": "llm", "resource": "B"}
                    ) as reply:
                        drained = reply.status == 200
                    report.drain_ok = drained and report.errors == before
                await note("drained and removed B")
            await at(1.0)
            stop.set()
            await asyncio.gather(*load)
            await asyncio.wait(watchers, timeout=5)
            status = await gateway.status()
            hub = next(h for h in status["hubs"] if h["name"] == "llm")
            report.failovers = hub["counters"].get("failovers", 0)
            report.stream_resumes = hub["counters"].get("stream_resumes", 0)
            report.rss_peak_mib = round(gateway.memory_mib()[1], 1)
        finally:
            for task in watchers + endless:
                task.cancel()
            if gateway is not None:
                await gateway.stop()
            for sim in sims.values():
                await sim.aterminate()
    return report
