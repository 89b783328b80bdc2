"""The gateway for tests: ``GatewayProcess``, ``gleitzeit serve`` as a child process (for
tests and benchmarks that need it as users run it: its own process, its own event loop,
stopped by SIGTERM), and ``InProcessGateways``, gateways in the test's own event loop over a
runtime with exactly the plugins a test names (a plugin's routes against real sockets)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
from aiohttp import web

from .._gateway import build_app, start_gateway
from .._plugins import PluginManager
from .._runtime import Runtime

__all__ = ["GatewayProcess", "InProcessGateways", "ServedGateway"]

LOOPBACK = "127.0.0.1"


@attrs.define
class ServedGateway:
    """One gateway of :class:`InProcessGateways`: its URL and port on 127.0.0.1, the started
    runtime behind it, its runner and application."""

    url: str
    port: int
    runtime: Runtime
    runner: web.AppRunner

    @property
    def app(self) -> web.Application:
        return self.runner.app

    @property
    def origin(self) -> str:
        """The ``Origin`` a page of this gateway sends."""
        return self.url


class InProcessGateways:
    """Gateways served in the running event loop on 127.0.0.1 port 0; ``close()`` stops every
    one (its runner, then its runtime), newest first, as leaving ``async with`` does. As a
    pytest fixture::

        @pytest.fixture
        async def gateways():
            async with InProcessGateways() as served:
                yield served

        async def test_my_route(gateways):
            gateway = await gateways.start(config, plugins=[(my_plugin, "mine")])
    """

    def __init__(self) -> None:
        self._started: list[tuple[web.AppRunner, Runtime]] = []

    async def start(
        self,
        config: dict[str, Any],
        *,
        plugins: Sequence[tuple[object, str]] = (),
        manager: PluginManager | None = None,
        token: str | None = None,
        max_body_bytes: int | None = None,
        middlewares: Sequence[Any] = (),
        limits: bool = False,
    ) -> ServedGateway:
        """A started runtime over ``config`` with the core's built-ins and ``plugins``
        (``(module or object, name)`` pairs; nothing installed is loaded), or ``manager``'s,
        and its gateway. ``middlewares`` run inside the gateway's; ``limits`` serves it as
        ``gleitzeit serve`` does (the guarded site: ``[gateway] max_connections``,
        ``header_timeout``)."""
        if manager is None:
            manager = PluginManager(autoload=False).load()
            for plugin, name in plugins:
                manager.add(plugin, name)
        runtime = Runtime.from_config(config, plugins=manager)
        await runtime.start()
        try:
            if limits:
                runner = await start_gateway(runtime, LOOPBACK, 0, token=token)
            else:
                runner = await _serve(
                    build_app(runtime, token=token, max_body_bytes=max_body_bytes), middlewares
                )
        except BaseException:
            await runtime.stop()
            raise
        self._started.append((runner, runtime))
        port = int(runner.addresses[0][1])
        return ServedGateway(f"http://{LOOPBACK}:{port}", port, runtime, runner)

    async def close(self) -> None:
        while self._started:
            runner, runtime = self._started.pop()
            await runner.cleanup()
            await runtime.stop()

    async def __aenter__(self) -> InProcessGateways:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


async def _serve(app: web.Application, middlewares: Sequence[Any]) -> web.AppRunner:
    app.middlewares.extend(middlewares)
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, LOOPBACK, 0).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


class GatewayProcess:
    """``python -m gleitzeit_core serve --port 0`` on 127.0.0.1 over the TOML ``config``, with
    only the named ``plugins`` loaded; ``url`` once ``start()`` returned. The log (stdout and
    stderr) is ``workdir/gateway.log``."""

    def __init__(self, config: str, workdir: Path, plugins: str = "ollama") -> None:
        self.config = workdir / "gleitzeit.toml"
        self.config.write_text(config, encoding="utf-8")
        self.log = workdir / "gateway.log"
        self.plugins = plugins
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self, timeout: float = 30.0) -> GatewayProcess:
        env = dict(os.environ, GLEITZEIT_LOAD_PLUGINS=self.plugins, PYTHONUNBUFFERED="1")
        # nothing from the machine's environment may point the gateway elsewhere
        for name in ("GLEITZEIT_CONFIG", "GLEITZEIT_GATEWAY_TOKEN", "OLLAMA_HOST", "OLLAMA_HOSTS"):
            env.pop(name, None)
        command = [sys.executable, "-m", "gleitzeit_core", "serve"]
        command += ["--config", str(self.config), "--host", "127.0.0.1", "--port", "0"]
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.log.read_text(errors="replace").splitlines():
                if "listening on" in line:
                    self.url = line.rsplit(" ", 1)[-1].strip()
                    return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the gateway did not start:\n{self.log.read_text(errors='replace')}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s; always reaps the child."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
