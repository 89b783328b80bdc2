#!/usr/bin/env python
"""A hop through aiohttp's server and client: a minimal pass-through relay in plain aiohttp (a
benchmark baseline only, never shipped; not the floor of a Python hop: the gateway's own
upstream client costs less than aiohttp's, docs/performance.md).

Every request's body is read whole and sent on, with the same method, path, query and
``Content-Type``, to one upstream over one shared keep-alive ``ClientSession``; the answer's
status and ``Content-Type`` come back and its body is streamed back chunk by chunk as it
arrives. No routing, no checks, no JSON: what is left is aiohttp's server and client per
request, which is what ``benchmarks/gateway.py`` compares the gateway with
(``bare_relay_added_p50_ms``, ``gateway_vs_bare_relay_added_ratio``,
``bare_relay_throughput_ratio``).

    python benchmarks/bare_relay.py --upstream http://127.0.0.1:PORT [--uvloop]

It binds 127.0.0.1 on a free port and prints ``listening on http://127.0.0.1:PORT`` on
stdout once it serves; SIGTERM stops it. ``--uvloop`` runs it on uvloop's event loop, as the
gateway with ``[gateway] speedups`` does (``asyncio.Runner(loop_factory=...)``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aiohttp import ClientSession, ClientTimeout, TCPConnector, web

SESSION_KEY = web.AppKey("session", ClientSession)


def relay_app(upstream: str) -> web.Application:
    """An application that relays every request to ``upstream`` (``http://host:port``)."""
    base = upstream.rstrip("/")

    async def relay(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = {}
        if request.content_type:
            headers["Content-Type"] = request.content_type
        session = request.app[SESSION_KEY]
        async with session.request(
            request.method, base + request.path_qs, data=body, headers=headers
        ) as answer:
            response = web.StreamResponse(status=answer.status)
            response.content_type = answer.content_type
            await response.prepare(request)
            async for chunk in answer.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    async def session_context(app: web.Application) -> AsyncIterator[None]:
        # keep-alive without a connection cap: the gateway's pool is not capped either
        connector = TCPConnector(limit=0, keepalive_timeout=60)
        async with ClientSession(
            connector=connector, timeout=ClientTimeout(total=120), auto_decompress=False
        ) as session:
            app[SESSION_KEY] = session
            yield

    app = web.Application()
    app.cleanup_ctx.append(session_context)
    app.router.add_route("*", "/{tail:.*}", relay)
    return app


async def serve(upstream: str) -> None:
    runner = web.AppRunner(relay_app(upstream), access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    print(f"listening on http://127.0.0.1:{port}", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


class RelayProcess:
    """``bare_relay.py`` in a child process; ``url`` once started, ``stop()`` ends it."""

    def __init__(self, upstream: str, *, uvloop: bool) -> None:
        self.upstream = upstream
        self.uvloop = uvloop
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self, timeout: float = 30.0) -> RelayProcess:
        command = [sys.executable, str(Path(__file__)), "--upstream", self.upstream]
        if self.uvloop:
            command.append("--uvloop")
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        # the first line says where it listens (or the process ended: an empty line)
        line = self.proc.stdout.readline().strip()
        if not line.startswith("listening on "):
            self.stop()
            raise RuntimeError(f"bare relay did not start: {line!r}")
        self.url = line.removeprefix("listening on ")
        return self

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", required=True, help="http://127.0.0.1:PORT")
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop's event loop")
    args = parser.parse_args()
    if not args.upstream.startswith(("http://127.0.0.1:", "http://[::1]:", "http://localhost:")):
        parser.error("the relay only forwards to loopback (http://127.0.0.1:PORT)")
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if args.uvloop:
        import uvloop

        loop_factory = uvloop.new_event_loop
    with contextlib.suppress(KeyboardInterrupt), asyncio.Runner(loop_factory=loop_factory) as run:
        run.run(serve(args.upstream))


if __name__ == "__main__":
    main()
