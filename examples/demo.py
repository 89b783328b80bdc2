"""Gleitzeit demo: any Ollama client uses a whole pool by changing one URL.

1. Starts three Ollama simulators (different speeds and models) as child processes.
2. Starts the Gleitzeit gateway (`gleitzeit serve`) in front of them.
3. Drives a mixed workload through the official `ollama` client (chat, streamed generate,
   embed) with a progress bar; a third of the way in it kills one simulator hard, and at two
   thirds it restarts it.
4. Ends with the gateway's status table (requests per instance, failovers, ejections) and the
   client-visible error count, then runs one `python/execute` through the gateway when a Docker
   engine is present (and says so plainly when it is not).

Everything it starts, it stops. Only loopback addresses are used.

    python examples/demo.py [--requests 240] [--concurrency 12]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import ollama
from gleitzeit_ollama.sim import SimConfig, SimProcess
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from gleitzeit_core import show_status

console = Console(width=None if sys.stdout.isatty() else 160)

SIMULATORS = {
    # name: (models, latency ms, tokens per second)
    "fast": (["llama3.2", "nomic-embed-text"], 10, 150),
    "medium": (["llama3.2", "qwen2.5"], 40, 80),
    "slow": (["llama3.2", "nomic-embed-text", "qwen2.5"], 120, 40),
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def docker_host() -> str | None:
    """A Docker engine this machine can reach, if any (checked over its unix socket only)."""
    candidates = [
        os.environ.get("DOCKER_HOST", ""),
        "unix:///tmp/ci-docker/docker.sock",
        "unix:///var/run/docker.sock",
    ]
    for url in candidates:
        if not url.startswith("unix://"):
            continue
        path = url.removeprefix("unix://")
        if not Path(path).exists():
            continue
        try:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(2)
                sock.connect(path)
                sock.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
                if b"OK" in sock.recv(1024):
                    return url
        except OSError:
            continue
    return None


def write_config(folder: Path, sims: dict[str, SimProcess], port: int, docker: str | None) -> Path:
    lines = [
        "[gateway]",
        'host = "127.0.0.1"',
        f"port = {port}",
        "",
        "[hubs.llm]",
        'kind = "ollama"',
        'strategy = "peak_ewma"',
        'discovery = ["static"]',
        'breaker = { kind = "consecutive", failures = 3, open_for = 2.0 }',
        "request_timeout = 30.0",
        "retries = 2",
        "[hubs.llm.health]",
        "interval = 0.5",
        "timeout = 0.5",
        "unhealthy_threshold = 2",
        "[hubs.llm.outlier]",
        "consecutive_failures = 2",
        "base_ejection = 2.0",
    ]
    for name, sim in sims.items():
        lines += [
            "[[hubs.llm.resources]]",
            f'id = "{name}"',
            f'url = "{sim.url}"',
            "num_parallel = 4",
        ]
    if docker:
        lines += [
            "",
            "[hubs.sandbox]",
            'kind = "docker"',
            f'engines = ["{docker}"]',
            "[hubs.sandbox.profiles.sandboxed]",
            'image = "localpython:3"',
        ]
    path = folder / "demo.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


async def wait_healthy(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
        while time.monotonic() < deadline:
            try:
                async with http.get(f"{url}/gleitzeit/health") as reply:
                    if reply.status == 200:
                        return
            except (aiohttp.ClientError, OSError, TimeoutError):
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"the gateway at {url} did not become healthy in {timeout:.0f} s")


async def one_request(client: ollama.AsyncClient, i: int) -> str:
    kind = ("chat", "generate", "embed")[i % 3]
    if kind == "chat":
        reply = await client.chat(
            model="llama3.2", messages=[{"role": "user", "content": f"question {i}"}]
        )
        assert reply.message.content
    elif kind == "generate":
        parts = [
            chunk.response
            async for chunk in await client.generate(
                model="llama3.2", prompt=f"tell me about {i}", stream=True
            )
        ]
        assert "".join(parts)
    else:
        reply = await client.embed(model="nomic-embed-text", input=[f"doc {i}", f"doc {i + 1}"])
        assert len(reply.embeddings) == 2
    return kind


async def workload(
    url: str, sims: dict[str, SimProcess], total: int, concurrency: int
) -> dict[str, Any]:
    client = ollama.AsyncClient(host=url, timeout=60)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(total):
        queue.put_nowait(i)
    done = Counter()
    errors: list[str] = []
    events: list[str] = []
    victim = sims["medium"]
    with Progress(
        TextColumn("[bold]requests"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        console=console,
    ) as progress:
        task = progress.add_task("", total=total)

        async def worker() -> None:
            while True:
                try:
                    i = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                try:
                    done[await one_request(client, i)] += 1
                except Exception as exc:  # counted and shown: the point is that there are none
                    errors.append(f"request {i}: {type(exc).__name__}: {exc}")
                finished = progress.tasks[0].completed + 1
                progress.update(task, advance=1, description=f"errors: {len(errors)}")
                if finished == total // 3 and victim.alive:
                    victim.kill()
                    events.append(f"after {finished} requests: killed simulator 'medium' (SIGKILL)")
                    progress.console.print(f"[yellow]{events[-1]}")
                elif finished == 2 * total // 3 and not victim.alive:
                    await asyncio.to_thread(victim.restart)
                    events.append(f"after {finished} requests: restarted simulator 'medium'")
                    progress.console.print(f"[green]{events[-1]}")

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {"done": dict(done), "errors": errors, "events": events}


async def readmitted(url: str, name: str, timeout: float = 15.0) -> Any:
    """The gateway's status once ``name`` is healthy and back in rotation (or at the timeout)."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while True:
            async with http.get(f"{url}/gleitzeit/status") as reply:
                status = await reply.json()
            llm = next(h for h in status["hubs"] if h["name"] == "llm")
            back = next(r for r in llm["resources"] if r["id"] == name)
            if (back["health"] == "healthy" and not back["ejected"]) or time.monotonic() > deadline:
                state = "still ejected" if back["ejected"] else "back in rotation"
                console.print(
                    f"simulator {name!r} is {state} "
                    f"(health {back['health']}, breaker {back['breaker']})"
                )
                return status
            await asyncio.sleep(0.3)


CODE = """import sys
result = {'sum': sum(args['xs']), 'python': sys.version.split()[0]}
"""


async def python_execute(url: str) -> None:
    request = {"method": "python/execute", "params": {"code": CODE, "args": {"xs": [1, 2, 3, 4]}}}
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http,
        http.post(f"{url}/gleitzeit/execute", json=request) as reply,
    ):
        body = await reply.json()
    result = body.get("result", body)
    console.print(
        f"python/execute through the gateway: HTTP {reply.status} -> "
        f"result={json.dumps(result.get('result'))} success={result.get('success')} "
        f"duration={result.get('duration_ms')} ms"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description="Gleitzeit demo")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=12)
    args = parser.parse_args()

    sims: dict[str, SimProcess] = {}
    gateway: asyncio.subprocess.Process | None = None
    with tempfile.TemporaryDirectory(prefix="gleitzeit-demo-") as folder:
        try:
            for name, (models, latency, speed) in SIMULATORS.items():
                config = SimConfig(
                    models=models,
                    latency_ms=latency,
                    tokens_per_s=speed,
                    load_ms=200,
                    num_parallel=4,
                    name=name,
                    max_tokens=12,
                )
                sims[name] = await SimProcess(config).astart()
                console.print(
                    f"simulator [bold]{name}[/] at {sims[name].url}: "
                    f"{', '.join(models)}, {latency} ms, {speed} tokens/s"
                )
            docker = docker_host()
            port = free_port()
            config_path = write_config(Path(folder), sims, port, docker)
            env = {**os.environ, "GLEITZEIT_CONFIG": str(config_path)}
            env.pop("GLEITZEIT_GATEWAY_TOKEN", None)
            gateway = await asyncio.create_subprocess_exec(
                *[sys.executable, "-m", "gleitzeit_core", "serve", "--config", str(config_path)],
                env=env,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            url = f"http://127.0.0.1:{port}"
            await wait_healthy(url)
            console.print(f"gateway at [bold]{url}[/] (an Ollama client only needs this URL)\n")

            started = time.monotonic()
            outcome = await workload(url, sims, args.requests, args.concurrency)
            elapsed = time.monotonic() - started

            status = await readmitted(url, "medium")
            show_status(status, console)
            llm = next(h for h in status["hubs"] if h["name"] == "llm")
            per_instance = {r["id"]: r["metrics"]["requests"] for r in llm["resources"]}
            console.print(
                f"\n{args.requests} requests in {elapsed:.1f} s ({dict(outcome['done'])}); "
                f"requests per instance {per_instance}; failovers {llm['counters']['failovers']}; "
                f"[bold]client-visible errors: {len(outcome['errors'])}[/]"
            )
            for line in outcome["errors"][:5]:
                console.print(f"  [red]{line}")
            if docker:
                await python_execute(url)
            else:
                console.print(
                    "No Docker engine is reachable here, so the python/execute step is "
                    "skipped (start Docker, or point DOCKER_HOST at an engine; `gleitzeit "
                    "doctor` says what it finds)."
                )
        finally:
            if gateway is not None and gateway.returncode is None:
                gateway.terminate()
                try:
                    await asyncio.wait_for(gateway.wait(), 10)
                except TimeoutError:
                    gateway.kill()
                    await gateway.wait()
            for sim in sims.values():
                await sim.aterminate()
    if outcome_failed := locals().get("outcome", {}).get("errors"):
        sys.exit(f"{len(outcome_failed)} requests failed")


if __name__ == "__main__":
    asyncio.run(main())
