"""Helpers for the zero-downtime tests: `gleitzeit serve` child processes started from a
config file the test rewrites, signalled like systemd would, and clients that keep calling
the gateway's Ollama API and write down every failure."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import attrs

from tests.chaos.gateway_process import free_port, spawn_serve

__all__ = ["Load", "Served", "config_text", "free_port", "sim_requests"]

CHAT = {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]}


def config_text(
    port: int,
    urls: dict[str, str],
    *,
    grace: float = 30.0,
    reuse_port: bool = False,
    gateway_extra: str = "",
    hub_extra: str = "",
    num_parallel: int = 64,
) -> str:
    """A gateway on ``127.0.0.1:port`` with one Ollama hub over ``urls`` (id -> url)."""
    lines = [
        "[gateway]",
        'host = "127.0.0.1"',
        f"port = {port}",
        f"shutdown_grace = {grace}",
        f"reuse_port = {'true' if reuse_port else 'false'}",
        gateway_extra,
        "[hubs.llm]",
        'kind = "ollama"',
        'discovery = ["static"]',
        "retries = 2",
        hub_extra,
        "[hubs.llm.health]",
        "interval = 0.5",
        "timeout = 5.0",
    ]
    for rid, url in urls.items():
        lines += ["[[hubs.llm.resources]]", f'id = "{rid}"', f'url = "{url}"']
        lines.append(f"num_parallel = {num_parallel}")
    return "\n".join(lines) + "\n"


@attrs.define
class Served:
    """One ``gleitzeit serve --config path`` child; its stderr goes to ``log``."""

    process: asyncio.subprocess.Process
    log: Path
    url: str

    @classmethod
    async def start(cls, config: Path, log: Path, url: str) -> Served:
        process = await spawn_serve(config, log, "ollama")
        served = cls(process, log, url)
        try:
            await served.wait_for_log("listening on", 180.0)  # a loaded machine starts slowly
        except BaseException:
            await served.kill()
            raise
        return served

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    async def wait_for_log(self, needle: str, timeout: float, count: int = 1) -> None:
        """Until ``needle`` appears ``count`` times in the log (the port may be shared: asking
        it over HTTP could reach another replica)."""
        deadline = time.monotonic() + timeout
        while self.text().count(needle) < count:
            if self.process.returncode is not None:
                raise RuntimeError(f"gateway exited ({self.process.returncode}):\n{self.text()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"no {needle!r} in the gateway's log:\n{self.text()}")
            await asyncio.sleep(0.05)

    def signal(self, sig: signal.Signals) -> None:
        if self.process.returncode is None:  # an exited process has no signal to take
            self.process.send_signal(sig)

    async def exit_code(self, timeout: float = 60.0) -> int:
        async with asyncio.timeout(timeout):
            return await self.process.wait()

    async def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


async def sim_requests(url: str, path: str = "/api/chat") -> int:
    """How many ``path`` requests the simulator at ``url`` has received."""
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
        http.get(f"{url}/_sim/stats") as reply,
    ):
        stats: dict[str, Any] = await reply.json()
    return int(stats["requests"].get(path, 0))


class Load:
    """``clients`` tasks, each with its own session, calling ``/api/chat`` in a loop (every
    other one streamed) until :meth:`stop`; every failure is kept with why. Three clients
    in four keep their connection alive; the fourth opens a new one per request, as a
    client without a pool does (so connections are always arriving)."""

    def __init__(self, url: str, clients: int, *, headers: dict[str, str] | None = None) -> None:
        self.url, self.headers = url, headers or {}
        self.ok = {"plain": 0, "stream": 0}
        self.failures: list[str] = []
        self._stop = asyncio.Event()
        self._tasks = [
            asyncio.create_task(self._client(i % 2 == 1, keep_alive=i % 4 < 3))
            for i in range(clients)
        ]

    @property
    def done(self) -> int:
        return self.ok["plain"] + self.ok["stream"]

    async def until(self, more: int, timeout: float = 120.0) -> None:
        """Wait until ``more`` further requests have succeeded."""
        target = self.done + more
        async with asyncio.timeout(timeout):
            while self.done < target:
                if self.failures:
                    return
                await asyncio.sleep(0.02)

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def _client(self, stream: bool, *, keep_alive: bool) -> None:
        timeout = aiohttp.ClientTimeout(total=60)
        connector = aiohttp.TCPConnector(force_close=not keep_alive)
        async with aiohttp.ClientSession(
            timeout=timeout, headers=self.headers, connector=connector
        ) as http:
            while not self._stop.is_set():
                try:
                    problem = await (self._streamed(http) if stream else self._plain(http))
                except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                    problem = f"{type(exc).__name__}: {exc}"
                if problem is None:
                    self.ok["stream" if stream else "plain"] += 1
                else:
                    self.failures.append(("stream " if stream else "plain ") + problem)

    async def _plain(self, http: aiohttp.ClientSession) -> str | None:
        async with http.post(f"{self.url}/api/chat", json={**CHAT, "stream": False}) as reply:
            body = await reply.text()
        if reply.status != 200:
            return f"{reply.status}: {body[:300]}"
        data = json.loads(body)
        return None if data.get("done") is True else f"not done: {body[:300]}"

    async def _streamed(self, http: aiohttp.ClientSession) -> str | None:
        async with http.post(f"{self.url}/api/chat", json={**CHAT, "stream": True}) as reply:
            if reply.status != 200:
                return f"{reply.status}: {(await reply.text())[:300]}"
            lines = [json.loads(line) async for line in reply.content if line.strip()]
        if not lines or lines[-1].get("done") is not True or any("error" in x for x in lines):
            return f"stream not whole: {lines[-3:]}"
        return None
