"""Run a simulator in a child process, for tests and demos that need to kill it hard."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import re
import selectors
import signal
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Sequence
from types import TracebackType
from typing import IO

from gleitzeit_ollama.sim.cli import config_to_args
from gleitzeit_ollama.sim.config import SimConfig

_READY = re.compile(rb"listening on (http://\S+:(\d+))")
_LIVE: weakref.WeakSet[SimProcess] = weakref.WeakSet()


def _reap(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Wait for ``proc`` to exit, escalating to SIGKILL; never leaves a zombie."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)


@atexit.register
def _kill_leftovers() -> None:
    # Last line of defence; children also exit on their own when we die (--parent-pid).
    for sim in list(_LIVE):
        sim.kill()


class SimProcess:
    """``python -m gleitzeit_ollama.sim`` as a child process.

    ``start()`` waits (with a timeout) for the ready line; ``restart()`` comes back
    on the same port. Sync and async context manager; always reaps the child.
    """

    def __init__(
        self,
        config: SimConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        extra_args: Sequence[str] = (),
        start_timeout: float = 20.0,
        stop_timeout: float = 5.0,
    ) -> None:
        self.config = config or SimConfig()
        self.host = host
        self._requested_port = port
        self._port: int | None = None
        self._url: str | None = None
        self.extra_args = list(extra_args)
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._returncode: int | None = None

    # -- properties ------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("SimProcess was never started")
        return self._port

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("SimProcess was never started")
        return self._url

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def args(self, port: int) -> list[str]:
        base = [sys.executable, "-m", "gleitzeit_ollama.sim"]
        where = ["--host", self.host, "--port", str(port), "--parent-pid", str(os.getpid())]
        return base + where + config_to_args(self.config) + self.extra_args

    # -- lifecycle ---------------------------------------------------------------
    def start(self) -> SimProcess:
        """Spawn the child and block until it is listening (or raise after the timeout)."""
        if self.alive:
            raise RuntimeError("SimProcess already running")
        self._cleanup_handles()
        port = self._port if self._port is not None else self._requested_port
        # Outlives this call (read on failure, closed on reap), hence no `with`.
        self._log = tempfile.TemporaryFile()  # noqa: SIM115
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self._proc = subprocess.Popen(
            self.args(port), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=self._log, env=env,
        )  # fmt: skip
        _LIVE.add(self)
        try:
            url, bound = self._wait_ready(self._proc)
        except BaseException:
            self.kill()
            raise
        self._url, self._port = url, bound
        return self

    def _wait_ready(self, proc: subprocess.Popen[bytes]) -> tuple[str, int]:
        assert proc.stdout is not None
        deadline = time.monotonic() + self.start_timeout
        buffer = b""
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            while b"\n" not in buffer:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"simulator not ready in {self.start_timeout}s{self._tail()}"
                    )
                if not sel.select(remaining):
                    continue
                chunk = os.read(proc.stdout.fileno(), 4096)
                if not chunk:
                    proc.wait(timeout=self.stop_timeout)
                    raise RuntimeError(
                        f"simulator exited with {proc.returncode} before ready{self._tail()}"
                    )
                buffer += chunk
        match = _READY.search(buffer)
        if match is None:
            raise RuntimeError(f"unexpected simulator output {buffer!r}{self._tail()}")
        return match.group(1).decode(), int(match.group(2))

    def _tail(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        text = self._log.read()[-2000:].decode(errors="replace").strip()
        return f"; stderr:\n{text}" if text else ""

    def kill(self) -> None:
        """SIGKILL, like a crash: no goodbye to open connections."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
        if proc is not None:
            _reap(proc, self.stop_timeout)
        self._cleanup_handles()

    def terminate(self) -> None:
        """SIGTERM and wait for a clean exit (SIGKILL after ``stop_timeout``)."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        if proc is not None:
            _reap(proc, self.stop_timeout)
        self._cleanup_handles()

    close = terminate

    def restart(self) -> SimProcess:
        """Stop (gracefully if still running) and start again on the same port."""
        self.terminate()
        return self.start()

    def _cleanup_handles(self) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            self._returncode = self._proc.returncode
            if self._proc.stdout is not None:
                self._proc.stdout.close()
            self._proc = None
            _LIVE.discard(self)
        if self._proc is None and self._log is not None:
            self._log.close()
            self._log = None

    @property
    def returncode(self) -> int | None:
        """Exit status of the last child once it has exited (negative = signal)."""
        if self._proc is not None:
            return self._proc.returncode
        return self._returncode

    # -- context managers ----------------------------------------------------------
    def __enter__(self) -> SimProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.terminate()

    async def astart(self) -> SimProcess:
        """``start()`` without blocking the event loop."""
        return await asyncio.to_thread(self.start)

    async def arestart(self) -> SimProcess:
        return await asyncio.to_thread(self.restart)

    async def aterminate(self) -> None:
        await asyncio.to_thread(self.terminate)

    async def akill(self) -> None:
        await asyncio.to_thread(self.kill)

    async def __aenter__(self) -> SimProcess:
        return await self.astart()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aterminate()

    def __del__(self) -> None:
        # Never leak a child even if the owner forgot to stop it.
        with contextlib.suppress(Exception):
            if self.alive:
                self.kill()
