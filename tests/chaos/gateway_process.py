"""A `gleitzeit serve` child process for the chaos runs: started on a free loopback port from a
config text, its memory read from ``/proc/<pid>/status``, stopped with everything it holds."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import attrs


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def memory_mib(pid: int) -> tuple[float, float]:
    """(resident now, peak resident since start) of process ``pid`` in MiB, from
    ``VmRSS`` and ``VmHWM``; the peak is the kernel's high-water mark, so no sample is missed."""
    fields: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


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
            await asyncio.sleep(0.1)
    raise RuntimeError(f"the gateway at {url} did not become healthy")


@attrs.define
class GatewayProcess:
    process: asyncio.subprocess.Process
    url: str
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def memory_mib(self) -> tuple[float, float]:
        return memory_mib(self.pid)

    async def status(self) -> dict[str, Any]:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http,
            http.get(f"{self.url}/gleitzeit/status") as reply,
        ):
            data: dict[str, Any] = await reply.json()
            return data

    async def resource(self, rid: str, hub: str = "llm") -> dict[str, Any] | None:
        status = await self.status()
        found = next(h for h in status["hubs"] if h["name"] == hub)
        return next((r for r in found["resources"] if r["id"] == rid), None)

    async def stop(self) -> None:
        process = self.process
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()

    def log_tail(self, size: int = 4000) -> str:
        try:
            return self.log.read_text(encoding="utf-8", errors="replace")[-size:]
        except OSError:
            return ""


async def start_gateway(config: str, folder: Path, plugins: str) -> GatewayProcess:
    """``config`` is the TOML text without ``[gateway]``; the port is chosen here."""
    port = free_port()
    path = folder / "gateway.toml"
    text = f'[gateway]\nhost = "127.0.0.1"\nport = {port}\n' + config
    path.write_text(text, encoding="utf-8")
    log = folder / "gateway.log"
    process = await spawn_serve(path, log, plugins)
    gateway = GatewayProcess(process, f"http://127.0.0.1:{port}", log)
    try:
        await wait_healthy(gateway.url)
    except BaseException:
        await gateway.stop()
        raise
    return gateway


async def spawn_serve(config: Path, log: Path, plugins: str) -> asyncio.subprocess.Process:
    """``gleitzeit serve --config config`` as a child with only ``plugins`` loaded, no
    ``GLEITZEIT_*``/``OLLAMA_HOST(S)`` from this environment, and its stderr in ``log``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLEITZEIT_")}
    env["GLEITZEIT_LOAD_PLUGINS"] = plugins
    env["XDG_CONFIG_HOME"] = str(config.parent)
    env.pop("OLLAMA_HOST", None)
    env.pop("OLLAMA_HOSTS", None)
    with log.open("wb") as sink:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gleitzeit_core",
            "serve",
            "--config",
            str(config),
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=sink,
        )
