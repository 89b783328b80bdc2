"""Host side of the in-container runner protocol (see ``runner_main`` for the wire format).

The runner is the container's own command (``python3 -u -c <source> <cfg>``). The host
attaches to the container's stdin/stdout *before* starting it (so the ``hello`` line cannot
be missed), with ``OpenStdin`` + ``StdinOnce``: if the host goes away, the runner reads EOF
and the container exits by itself. Without a TTY, the engine multiplexes stdout/stderr into
8-byte-header frames; aiodocker splits those into ``Message(stream, data)`` chunks, and
``_Frames`` reassembles stream 1 into JSON lines (stream 2 is kept as a short diagnostic
tail). ``put_archive`` cannot be used for files: the engine refuses it on a read-only root
filesystem even for a path on a tmpfs mount, so files travel inside the ``run`` message.

The same one-shot program serves the warm ``docker exec`` path (``exec`` with stdin) and
the fresh-container path, so all three paths produce identical results. For an engine on
this host a resident runner's protocol moves to a unix socket after the hello
(``use_direct``; see ``direct``): requests are then written to it and replies read from it,
past the engine, and the attach stream stays open as the tether and for stderr. Either
stream ending or breaking ends the connection.

The host trusts no frame it did not ask for: every reply must answer the one request that is
waiting for it (``op`` and ``id``); anything else (an unsolicited ``done``, a reply to an id
never sent or already answered, a line that is not a JSON object) is a protocol violation
that ends the connection, so its container is discarded. A stale or forged frame is never
kept and matched to a later request.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import socket
import time
from pathlib import Path
from typing import Any

import attrs
from aiodocker.stream import Message, Stream

from .engine import Engine
from .errors import DockerLayerError, RunnerError
from .profiles import RUNNER_USER, Profile

__all__ = [
    "PROTO",
    "WIPE_DIRS",
    "RunOutcome",
    "RunnerConnection",
    "keepalive_command",
    "runner_command",
    "runner_source",
    "tether",
]

PROTO = 2
WIPE_DIRS = ("/tmp", "/dev/shm", "/dev/mqueue")

_FUTURE = "from __future__ import annotations"
# ``python3 -c`` puts "" (the working directory, /tmp: writable by jobs) first on sys.path;
# the runner, as the container's root, must never import from there. Jobs get it back
# (``runner_child.child``), after their own directory, as they had it.
_NO_CWD_IMPORTS = "import sys as _sys\nif _sys.path[:1] == ['']:\n    del _sys.path[0]"


@functools.cache
def runner_source() -> str:
    """``runner_hygiene`` + ``runner_child`` + ``runner_main`` as one ``python3 -c`` script."""
    here = Path(__file__).parent
    lines = [_FUTURE, _NO_CWD_IMPORTS]
    for name in ("runner_hygiene.py", "runner_child.py", "runner_main.py"):
        text = (here / name).read_text(encoding="utf-8")
        lines += [line for line in text.splitlines() if line.strip() != _FUTURE]
    return "\n".join(lines) + "\n"


def runner_command(
    profile: Profile, *, once: bool, reap: bool = True, direct: str | None = None
) -> list[str]:
    """Container (or exec) command that starts the runner; ``direct``: the path of the
    host's socket inside the container (``direct.DirectListener``), if it offers one."""
    cfg: dict[str, Any] = {
        "once": once,
        "reap": reap,
        "wipe": list(WIPE_DIRS) if reap else [],
        "workdir": "/tmp",
        "user": profile.user,
        "isolate": True,
    }
    if direct is not None:
        cfg["direct"] = direct
    return [profile.python, "-u", "-c", runner_source(), json.dumps(cfg)]


def keepalive_command(profile: Profile) -> list[str]:
    """Main process of a container used only through ``docker exec``: it lives as long as
    its owner keeps the container's stdin attached (``tether``), so it dies with its owner."""
    return [profile.python, "-c", "import sys\nsys.stdin.buffer.read()"]


async def tether(engine: Engine, container_id: str) -> Stream:
    """Attach to a container's stdin only, before it starts, and keep the stream open: when
    this process goes, the stream closes, stdin ends and the container stops by itself."""
    stream = engine.container(container_id).attach(stdin=True, stdout=False, stderr=False)
    await engine.call("attach", stream.__aenter__)
    return stream


class ProtocolViolation(RunnerError):
    """The runner's side of the stream sent something no request asked for."""


# The longest line the host reads from a container's stdout: the runner's largest frame is a
# result plus captured output, each capped by the profile (1 MiB and 64 KiB by default), JSON-
# escaped. A line past this (an engine or runner gone wrong) ends the connection instead of
# growing the gateway.
MAX_FRAME_BYTES = 256 << 20


class _Frames:
    """Reassemble demultiplexed stdout chunks into JSON messages; keep a stderr tail."""

    def __init__(self, max_line: int = MAX_FRAME_BYTES) -> None:
        self.max_line = max_line
        self.buf = bytearray()
        self.scanned = 0
        self.stderr_tail = bytearray()

    def feed(self, message: Message) -> list[dict[str, Any]]:
        if message.stream == 2:
            self.stderr_tail += message.data
            del self.stderr_tail[:-4096]
            return []
        return self.lines(message.data)

    def lines(self, data: bytes) -> list[dict[str, Any]]:
        """The complete JSON lines ``data`` ends (the rest is kept for the next call)."""
        self.buf += data
        out = []
        while (end := self.buf.find(b"\n", self.scanned)) >= 0:
            line = bytes(self.buf[:end])
            del self.buf[: end + 1]
            self.scanned = 0
            try:
                obj = json.loads(line)
            except ValueError:
                obj = None
            if not isinstance(obj, dict):
                raise ProtocolViolation(f"a line that is not a JSON object: {line[:80]!r}")
            out.append(obj)
        self.scanned = len(self.buf)
        if self.scanned > self.max_line:
            raise ProtocolViolation(f"a line longer than {self.max_line} bytes")
        return out


@attrs.frozen
class RunOutcome:
    """What happened to one ``run`` request on the host side."""

    reply: dict[str, Any] | None  # the runner's "done" message, if any
    timed_out: bool = False  # the host's deadline passed and it sent "kill"
    responsive: bool = True  # False: the runner did not answer (container must go)
    detail: str = ""  # why there is no reply


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class _DirectProtocol(asyncio.Protocol):
    """Bytes from the runner's direct socket (see ``direct``) into its connection."""

    def __init__(self, conn: RunnerConnection) -> None:
        self.conn = conn

    def data_received(self, data: bytes) -> None:
        self.conn._direct_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        why = f": {exc}" if exc is not None else ""
        self.conn._end(f"the direct channel closed{why}")


class RunnerConnection:
    """One open protocol stream (container attach or exec) with a background reader that
    hands each frame to the one request waiting for it."""

    def __init__(
        self, engine: Engine, container_id: str, stream: Stream, *, hello: bool = False
    ) -> None:
        self.engine = engine
        self.container_id = container_id
        self.hello: dict[str, Any] = {}
        self._stream = stream
        self._frames = _Frames()
        self._direct: asyncio.Transport | None = None  # the runner's socket, once taken up
        self._direct_frames = _Frames()
        self._waiting: dict[tuple[str, int | None], asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._reader: asyncio.Task[None] | None = None
        self._eof = False
        self._failure = ""
        self._last_run: int | None = None  # id of the last run sent
        self._cleaned: tuple[int | None, bool] = (None, True)  # last "cleaned" (id, clean)
        self._cleaned_event = asyncio.Event()
        self.last_activity = time.monotonic()
        # Registered before the container starts, so the line cannot be missed; kept here
        # too because the reader hands the hello over (and forgets the waiter) as soon as
        # it arrives, which may be before ``start`` has returned to the caller.
        self._hello: asyncio.Future[dict[str, Any]] | None = (
            self._waiter("hello", None) if hello else None
        )

    @classmethod
    async def attach(cls, engine: Engine, container_id: str) -> RunnerConnection:
        """Hijack the container's stdio (call before ``start`` to see the hello line)."""
        stream = engine.container(container_id).attach(stdin=True, stdout=True, stderr=True)
        conn = cls(engine, container_id, stream, hello=True)
        await conn._open("attach")
        return conn

    @classmethod
    async def exec(cls, engine: Engine, container_id: str, profile: Profile) -> RunnerConnection:
        """Start a one-shot runner with ``docker exec`` (stdin attached)."""
        cmd = runner_command(profile, once=True)
        handle = await engine.call(
            "exec create",
            lambda: engine.container(container_id).exec(
                cmd, stdin=True, user=RUNNER_USER, workdir="/tmp"
            ),
        )
        conn = cls(engine, container_id, handle.start(detach=False))
        await conn._open("exec start")
        return conn

    async def _open(self, what: str) -> None:
        await self.engine.call(what, self._stream.__aenter__)
        self._reader = asyncio.create_task(self._read_loop(), name=f"runner-{self.short_id}")

    @property
    def short_id(self) -> str:
        return self.container_id[:12]

    @property
    def alive(self) -> bool:
        return not self._eof

    @property
    def direct(self) -> bool:
        """Does the protocol run over the direct socket (not the engine's attach relay)?"""
        return self._direct is not None

    async def use_direct(self, sock: socket.socket) -> None:
        """From now on, talk to the runner over ``sock`` (its connection to our listener,
        checked by ``DirectListener.accept``); the attach stream stays open as the tether
        and for the runner's stderr. Losing ``sock`` ends this connection for good."""
        if self._eof:
            sock.close()
            raise RunnerError(self._gone())
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_unix_connection(lambda: _DirectProtocol(self), sock=sock)
        self._direct = transport

    def _direct_received(self, data: bytes) -> None:
        try:
            for obj in self._direct_frames.lines(data):
                self._deliver(obj)
        except ProtocolViolation as exc:  # hang up: the runner sees EOF and drops it
            self._end(f"{type(exc).__name__}: {exc}")

    def _end(self, failure: str) -> None:
        """The connection is over (either stream ended or broke): fail every waiter."""
        if self._eof:
            return
        self._eof = True
        self._failure = failure
        for waiter in self._waiting.values():
            if not waiter.done():
                waiter.set_exception(RunnerError(self._gone()))
        self._waiting.clear()
        self._cleaned_event.set()
        if self._direct is not None:
            self._direct.close()

    @property
    def stderr_tail(self) -> str:
        return self._frames.stderr_tail.decode("utf-8", "replace")

    def _deliver(self, obj: dict[str, Any]) -> None:
        """Give ``obj`` to the request waiting for exactly it, or raise ProtocolViolation."""
        op, ident = obj.get("op"), obj.get("id")
        if op == "cleaned":  # state after a run, not a reply: only for the last run, once
            if ident is None or ident != self._last_run or self._cleaned[0] == ident:
                raise ProtocolViolation(f"unsolicited 'cleaned' frame for id {ident!r}")
            self._cleaned = (ident, obj.get("clean") is True)
            self._cleaned_event.set()
            return
        key = (op, ident) if isinstance(op, str) and (ident is None or type(ident) is int) else None
        waiter = self._waiting.pop(key, None) if key is not None else None
        if waiter is None or waiter.done():
            raise ProtocolViolation(f"unsolicited {op!r} frame for id {ident!r}")
        waiter.set_result(obj)

    async def _read_loop(self) -> None:
        failure = ""
        try:
            while (message := await self._stream.read_out()) is not None:
                for obj in self._frames.feed(message):
                    self._deliver(obj)
        except Exception as exc:  # any stream failure or violation ends the connection
            failure = f"{type(exc).__name__}: {exc}"
        finally:
            self._end(failure)
        if failure.startswith(ProtocolViolation.__name__):
            # The runner's side cannot be trusted any more: hang up, so it sees EOF.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._stream.close(), 2.0)

    async def _send(self, data: bytes) -> None:
        if self._eof:
            raise RunnerError(self._gone())
        if self._direct is not None:
            self._direct.write(data)  # buffered by the transport; a loss ends the connection
            return
        try:
            await self.engine.call("runner write", lambda: self._stream.write_in(data))
        except (DockerLayerError, RuntimeError) as exc:
            raise RunnerError(f"cannot write to the runner in {self.short_id}: {exc}") from exc

    async def send(self, message: dict[str, Any], payload: bytes = b"") -> None:
        await self._send(json.dumps(message, separators=(",", ":")).encode() + b"\n" + payload)

    def _gone(self) -> str:
        why = f" ({self._failure})" if self._failure else ""
        tail = self.stderr_tail.strip()
        return f"runner in container {self.short_id} exited{why}" + (
            f"; its stderr: {tail[-500:]}" if tail else ""
        )

    def _waiter(self, op: str, ident: int | None) -> asyncio.Future[dict[str, Any]]:
        if self._eof:
            raise RunnerError(self._gone())
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        waiter.add_done_callback(_retrieve)  # a failure nobody waits for any more is fine
        self._waiting[(op, ident)] = waiter
        return waiter

    async def _reply(
        self, waiter: asyncio.Future[dict[str, Any]], timeout: float
    ) -> dict[str, Any]:
        """The reply ``waiter`` stands for; TimeoutError (it keeps waiting) or RunnerError."""
        return await asyncio.wait_for(asyncio.shield(waiter), timeout)

    async def wait_hello(self, timeout: float) -> dict[str, Any]:
        waiter = self._hello
        if waiter is None:
            raise RunnerError(f"no hello is expected from the runner in {self.short_id}")
        try:
            self.hello = await self._reply(waiter, timeout)
        except TimeoutError:
            tail = self.stderr_tail.strip()[-500:]
            raise RunnerError(
                f"runner in container {self.short_id} did not start within {timeout:g} s"
                + (f"; its stderr: {tail}" if tail else "")
            ) from None
        if self.hello.get("proto") != PROTO:
            raise RunnerError(f"runner speaks protocol {self.hello.get('proto')}, want {PROTO}")
        return self.hello

    async def ready(self, timeout: float = 2.0) -> bool:
        """True once the runner confirmed a clean state after the last run (no round trip
        when the "cleaned" message has already arrived, as it usually has)."""
        try:
            async with asyncio.timeout(timeout):
                while self.alive and self._cleaned[0] != self._last_run:
                    self._cleaned_event.clear()
                    await self._cleaned_event.wait()
        except TimeoutError:
            return False
        return self.alive and self._cleaned[1]

    async def ping(self, timeout: float = 2.0) -> bool:
        ident = next(self._ids)
        try:
            waiter = self._waiter("pong", ident)
            await self.send({"op": "ping", "id": ident})
            pong = await self._reply(waiter, timeout)
        except (TimeoutError, RunnerError):
            self._waiting.pop(("pong", ident), None)
            return False
        self.last_activity = time.monotonic()
        return pong.get("clean") is not False  # False: cleanup after the last run failed

    async def run(self, request: dict[str, Any], timeout: float, kill_grace: float) -> RunOutcome:
        """Send a run; at ``timeout`` ask the runner to kill it; give up after ``kill_grace``.
        The job travels as raw bytes after the header, so the runner forwards it to the
        job's own process without parsing it."""
        ident = next(self._ids)
        self._last_run = ident
        self.last_activity = time.monotonic()
        payload = json.dumps(request, separators=(",", ":")).encode()
        header = {
            "op": "run",
            "id": ident,
            "bytes": len(payload),
            "output_limit": request.get("output_limit"),
            "result_limit": request.get("result_limit"),
        }
        try:
            waiter = self._waiter("done", ident)
            await self.send(header, payload)
            return RunOutcome(await self._reply(waiter, timeout))
        except RunnerError as exc:
            return RunOutcome(None, responsive=False, detail=str(exc))
        except TimeoutError:
            pass
        try:
            await self.send({"op": "kill", "id": ident})
            reply = await self._reply(waiter, kill_grace)
        except (TimeoutError, RunnerError) as exc:
            detail = f"runner in {self.short_id} did not answer a kill within {kill_grace:g} s"
            return RunOutcome(None, timed_out=True, responsive=False, detail=f"{detail} ({exc})")
        # A run that finished on its own just before the kill arrived still counts as done.
        return RunOutcome(reply, timed_out=bool(reply.get("killed")))

    async def close(self) -> None:
        if self._direct is not None:
            self._direct.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._stream.close(), 2.0)
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
