"""Chaos under steady load through the gateway, shared by the CI test and the long run.

Three Ollama simulators (child processes) behind a `gleitzeit serve` child process; workers
using the official `ollama` client keep a steady mix of chat and streamed generate going while
the script breaks things on a timeline (fractions of the run):

* 0.15: simulator A is killed hard (SIGKILL); 0.45: it is restarted on the same port;
* 0.30: simulator B hangs without answering, probes included; 0.55: it recovers;
* 0.60: simulator C answers every request with 503 "server busy"; 0.75: it recovers;
* 0.85: simulator B is drained and removed through ``POST /gleitzeit/drain``.

Measured: every request's outcome and duration, when A was seen ejected (or unhealthy) after
the kill and when it was back in rotation after the restart, and whether the drain failed any
request. Only loopback addresses are used.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import ollama
from gleitzeit_ollama.sim import SimConfig, SimProcess

PROBE_INTERVAL = 0.25
DEADLINE = 10.0  # the client's deadline per request


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
    events: list[str] = attrs.field(factory=list)

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def as_json(self) -> dict[str, Any]:
        data = attrs.asdict(self)
        data["error_rate"] = self.error_rate
        return data


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _config(sims: dict[str, SimProcess], port: int) -> str:
    lines = [
        "[gateway]",
        'host = "127.0.0.1"',
        f"port = {port}",
        "[hubs.llm]",
        'kind = "ollama"',
        'strategy = "p2c"',
        'discovery = ["static"]',
        f"request_timeout = {DEADLINE - 1}",
        "attempt_timeout = 1.5",
        "retries = 2",
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


async def _wait_healthy(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
        while time.monotonic() < deadline:
            try:
                async with http.get(f"{url}/gleitzeit/health") as reply:
                    if reply.status == 200:
                        return
            except (aiohttp.ClientError, OSError, TimeoutError):
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"the gateway at {url} did not become healthy")


async def _resource(http: aiohttp.ClientSession, url: str, rid: str) -> dict[str, Any] | None:
    async with http.get(f"{url}/gleitzeit/status") as reply:
        status = await reply.json()
    hub = next(h for h in status["hubs"] if h["name"] == "llm")
    return next((r for r in hub["resources"] if r["id"] == rid), None)


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


async def _watch_ejection(url: str, rid: str, since: float, report: ChaosReport) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
        while True:
            resource = await _resource(http, url, rid)
            if resource is not None and (resource["ejected"] or resource["health"] == "unhealthy"):
                report.ejected_after_s = round(time.monotonic() - since, 3)
                return
            await asyncio.sleep(0.05)


async def _watch_readmission(url: str, rid: str, since: float, report: ChaosReport) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
        while True:
            resource = await _resource(http, url, rid)
            healthy = resource is not None and resource["health"] == "healthy"
            if healthy and not resource["ejected"] and resource["breaker"] == "closed":  # type: ignore[index]
                report.readmitted_after_s = round(time.monotonic() - since, 3)
                return
            await asyncio.sleep(0.05)


async def run_chaos(seconds: float = 20.0, workers: int = 8) -> ChaosReport:
    """Run the whole scenario; everything started is stopped before returning."""
    report = ChaosReport(seconds=seconds)
    sims: dict[str, SimProcess] = {}
    gateway: asyncio.subprocess.Process | None = None
    watchers: list[asyncio.Task[None]] = []
    with tempfile.TemporaryDirectory(prefix="gleitzeit-chaos-") as folder:
        try:
            for name in ("A", "B", "C"):
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
            port = _free_port()
            path = Path(folder) / "chaos.toml"
            path.write_text(_config(sims, port), encoding="utf-8")
            env = {k: v for k, v in os.environ.items() if not k.startswith("GLEITZEIT_")}
            env["GLEITZEIT_LOAD_PLUGINS"] = "ollama,breaker-consecutive"
            env["XDG_CONFIG_HOME"] = folder
            log = (Path(folder) / "gateway.log").open("wb")
            gateway = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "gleitzeit_core",
                "serve",
                "--config",
                str(path),
                env=env,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=log,
            )
            url = f"http://127.0.0.1:{port}"
            await _wait_healthy(url)

            stop = asyncio.Event()
            load = [asyncio.create_task(_worker(url, stop, report, i)) for i in range(workers)]
            start = time.monotonic()

            async def at(fraction: float) -> None:
                await asyncio.sleep(max(0.0, start + fraction * seconds - time.monotonic()))

            async def note(text: str) -> None:
                report.events.append(f"{time.monotonic() - start:6.2f} s  {text}")

            await at(0.15)
            await sims["A"].akill()
            killed = time.monotonic()
            watchers.append(asyncio.create_task(_watch_ejection(url, "A", killed, report)))
            await note("killed A")
            await at(0.30)
            await _faults(sims["B"], {"hang": True, "hang_probes": True})
            await note("B hangs")
            await at(0.45)
            await sims["A"].arestart()
            restarted = time.monotonic()
            watchers.append(asyncio.create_task(_watch_readmission(url, "A", restarted, report)))
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
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"{url}/gleitzeit/status") as reply,
            ):
                status = await reply.json()
            hub = next(h for h in status["hubs"] if h["name"] == "llm")
            report.failovers = hub["counters"].get("failovers", 0)
            report.stream_resumes = hub["counters"].get("stream_resumes", 0)
        finally:
            for task in watchers:
                task.cancel()
            if gateway is not None and gateway.returncode is None:
                gateway.terminate()
                try:
                    await asyncio.wait_for(gateway.wait(), 10)
                except TimeoutError:
                    gateway.kill()
                    await gateway.wait()
            for sim in sims.values():
                await sim.aterminate()
    return report
