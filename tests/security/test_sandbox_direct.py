# ruff: noqa: F811 - the engine and profile fixtures are the isolation tests' own
"""The resident runner's direct socket (``gleitzeit_docker.direct``), attacked for real.

A job must not reach the directory the host mounts for its container, nor the socket in it,
nor make the host talk to anything but the runner; the host takes exactly one connection,
from the container's runner, before any job; the directory is private, read-only inside,
and gone with its container, its pool, or (after a crash) at the next start. An engine that
is not on this host (here: the same engine behind a TCP relay on loopback) keeps the attach
stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import stat
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from gleitzeit_docker.direct import SOCKET_NAME, DirectListener, base_dir
from gleitzeit_docker.engine import Engine
from gleitzeit_docker.execution import Job
from gleitzeit_docker.pool import PoolConfig, WarmPool
from gleitzeit_docker.profiles import Profile

from ..docker_engine import CALL_TIMEOUT, GENEROUS, require_engine
from .test_sandbox_isolation import HUB_ID, engine, sandboxed  # noqa: F401 - fixtures

pytestmark = [pytest.mark.docker, pytest.mark.asyncio(loop_scope="module")]


@pytest.fixture(autouse=True)
def _needs_engine() -> None:
    require_engine()


@pytest.fixture(autouse=True)
def runner_base(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test's runner directories live under its own tmp_path (seen by ``base_dir``)."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    return tmp_path / f"gleitzeit-runners-{os.geteuid()}"


@contextlib.asynccontextmanager
async def one_pool(engine: Engine, **config: object) -> AsyncIterator[WarmPool]:
    pool = WarmPool(
        engine,
        hub_id=HUB_ID,
        config=PoolConfig(max_size=1, acquire_timeout=60, fallback=False, **{**GENEROUS, **config}),  # type: ignore[arg-type]
    )
    try:
        yield pool
    finally:
        await pool.close()


def exists(path: str | os.PathLike[str]) -> bool:
    return os.path.exists(path)


def own_start_time() -> str:
    """This process's start time (field 22 of /proc/self/stat), as the host names its
    directories."""
    with open("/proc/self/stat", "rb") as fh:
        return fh.read().rsplit(b")", 1)[1].split()[19].decode()


def connect_to(path: Path) -> socket.socket:
    """A unix socket connected to ``path`` (through its directory's descriptor: tmp_path
    is longer than a socket address may be)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        sock.connect(f"/proc/self/fd/{dir_fd}/{path.name}")
    except BaseException:
        sock.close()
        raise
    finally:
        os.close(dir_fd)
    return sock


# Job code: every way into the host's directory and its socket a job could try.
ATTACK = r"""
import os, socket
base = "/run/gleitzeit"
def attempt(action):
    try:
        return ["done", action()]
    except OSError as exc:
        return [type(exc).__name__, exc.errno]
def connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        s.connect(path)
        s.sendall(b'{"op":"done","id":2,"result":"FORGED","clean":true}\n')
        return "connected"
    finally:
        s.close()
result = {
    "list": attempt(lambda: os.listdir(base)),
    "connect": attempt(lambda: connect(base + "/host.sock")),
    "create": attempt(lambda: open(base + "/planted", "w").close()),
    "symlink": attempt(lambda: os.symlink("/var/run/docker.sock", base + "/host.sock")),
    "chmod": attempt(lambda: os.chmod(base, 0o777)),
    "mounts": sorted(
        (fields[4], fields[5].split(",")[0])
        for fields in (line.split() for line in open("/proc/self/mountinfo"))
        if fields[4].startswith("/run")
    ),
}
"""


async def test_a_job_can_neither_reach_nor_replace_the_runners_socket(
    engine: Engine, sandboxed: Profile
) -> None:
    """The job cannot list, connect to, plant into, symlink over or chmod the mounted
    directory (0700, the container root's, read-only); the only host mount under /run is
    that directory, read-only. On the host the socket is already gone (nobody can connect
    after the runner did), and the same container keeps serving over its direct socket."""
    async with one_pool(engine) as pool:
        attack = await pool.execute(sandboxed, Job(code=ATTACK))
        assert attack.success, attack.stderr
        out = attack.result
        for action in ("list", "connect", "create", "symlink", "chmod"):
            assert out[action][0] in ("PermissionError", "OSError"), (action, out[action])
        assert out["mounts"] == [["/run/gleitzeit", "ro"]]
        async with pool.checkout(sandboxed) as pc:
            assert pc.conn is not None
            assert pc.conn.direct
            assert pc.direct is not None
            directory = pc.direct.directory
            assert stat.S_IMODE(directory.stat().st_mode) == 0o700
            assert os.listdir(directory) == []  # nothing planted, no socket left
            with pytest.raises(FileNotFoundError):
                connect_to(directory / SOCKET_NAME)
            container = pc.container_id
        after = await pool.execute(sandboxed, Job(code="result = 6 * 7"))
        assert (after.success, after.result, after.container_id) == (True, 42, container)


async def test_the_host_takes_its_socket_only_from_the_containers_runner(
    engine: Engine, sandboxed: Profile, tmp_path: Path
) -> None:
    """A connection from anyone but the container's runner (here: this test process, which
    got to the socket first) is refused by the peer check, and the listener is closed and
    unlinked either way: there is no second chance to connect."""
    async with one_pool(engine) as pool, pool.checkout(sandboxed) as pc:
        listener = DirectListener.open(tmp_path)
        assert listener is not None
        path = listener.directory / SOCKET_NAME
        with connect_to(path), pytest.raises(OSError, match="is not the runner of container"):
            await listener.accept(engine, pc.container_id, timeout=30)
        assert not exists(path)
        with pytest.raises(FileNotFoundError):
            connect_to(path)
        listener.remove()
        assert not exists(listener.directory)


async def test_a_squatted_base_directory_is_not_used(
    engine: Engine, sandboxed: Profile, runner_base: Path
) -> None:
    """Someone made the base directory first, open to all (as anyone can on a shared /tmp,
    to plant a socket or a symlink in it): the host will not use it, nothing is created in
    it, and the pool runs its jobs over the attach stream instead."""
    os.mkdir(runner_base)
    os.chmod(runner_base, 0o777)
    assert base_dir() is None
    async with one_pool(engine) as pool:
        res = await pool.execute(sandboxed, Job(code="result = 6 * 7"))
        assert (res.success, res.result) == (True, 42)
        async with pool.checkout(sandboxed) as pc:
            assert pc.conn is not None
            assert not pc.conn.direct
            assert pc.direct is None
    assert os.listdir(runner_base) == []


async def test_directories_go_with_their_containers_and_after_a_crash(
    engine: Engine, sandboxed: Profile, runner_base: Path
) -> None:
    """A crashed process's directory (its pid gone, or reused by another process) is swept
    when a pool starts while a live one stays; a container's directory is removed when the
    container is retired (here: its socket lost, which is never reconnected) and when the
    pool closes."""
    os.mkdir(runner_base, 0o700)
    gone = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await gone.wait()
    live = f"{os.getpid()}-{own_start_time()}-cccc"  # a live process's (this one's)
    for name in (f"{gone.pid}-1-aaaa", f"{os.getpid()}-1-bbbb", live):  # gone; pid reused
        os.mkdir(runner_base / name, 0o700)

    async with one_pool(engine) as pool:
        assert os.listdir(runner_base) == [live]  # swept as the pool started
        os.rmdir(runner_base / live)
        first = await pool.execute(sandboxed, Job(code="result = 1"))
        async with pool.checkout(sandboxed) as pc:
            assert pc.direct is not None
            assert pc.conn is not None
            assert pc.conn.direct
            lost = pc.direct.directory
            pc.conn._direct.abort()  # type: ignore[union-attr]  # the socket breaks
            for _ in range(200):  # the transport reports the loss on the next loop turns
                if not pc.conn.alive:
                    break
                await asyncio.sleep(0.01)
            assert not pc.conn.alive
        second = await pool.execute(sandboxed, Job(code="result = 2"))
        assert (second.success, second.result) == (True, 2)
        assert second.container_id != first.container_id  # retired, not reconnected
        for _ in range(600):  # its removal runs in the background
            if not exists(lost):
                break
            await asyncio.sleep(0.05)
        assert not exists(lost)
        assert len(os.listdir(runner_base)) == 1  # the new container's
    assert os.listdir(runner_base) == []


async def _relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(OSError):
        writer.write_eof()


async def test_an_engine_elsewhere_keeps_the_attach_stream(
    engine: Engine, sandboxed: Profile, runner_base: Path
) -> None:
    """The same engine reached over TCP (a byte relay on 127.0.0.1, as a remote engine
    would be) gets no directory and no socket: jobs run over the attach stream, timeouts
    included."""
    unix_path = engine.url[len("unix://") :]

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_unix_connection(unix_path)
        try:
            await asyncio.gather(_relay(reader, up_writer), _relay(up_reader, writer))
        finally:
            up_writer.close()
            writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    remote = Engine(f"tcp://127.0.0.1:{port}", call_timeout=CALL_TIMEOUT)
    try:
        async with one_pool(remote) as pool:
            res = await pool.execute(sandboxed, Job(code="result = 6 * 7"))
            assert (res.success, res.result) == (True, 42), res.error
            slow = await pool.execute(sandboxed, Job(code="while True: pass", timeout=1))
            assert (slow.error, slow.exit_code) == ("timeout after 1 s", 137)
            async with pool.checkout(sandboxed) as pc:
                assert pc.conn is not None
                assert not pc.conn.direct
                assert pc.direct is None
        assert not exists(runner_base)
    finally:
        await remote.remove_all(HUB_ID)
        await remote.close()
        server.close()
        await server.wait_closed()


# A compromised runner on the direct socket: hello over stdout, then every run answered with
# forged replies for later ids before its own.
LYING_DIRECT_RUNNER = """
import json, os, socket, sys
path = json.loads(sys.argv[-1])["direct"]
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.connect(path)
os.write(1, json.dumps({"op": "hello", "proto": %d, "isolated": True, "direct": True}).encode()
         + b"\\n")
channel = sock.makefile("rwb", buffering=0)
while True:
    line = channel.readline()
    if not line:
        break
    msg = json.loads(line)
    if msg.get("op") != "run":
        continue
    channel.read(msg["bytes"])
    n = msg["id"]
    for forged in (n + 1, n + 2):
        channel.write(json.dumps({"op": "done", "id": forged, "result": "FORGED",
                                  "has_result": True, "exit_code": 0, "clean": True}).encode()
                      + b"\\n")
    channel.write(json.dumps({"op": "done", "id": n, "result": "real", "has_result": True,
                              "exit_code": 0, "clean": True}).encode() + b"\\n")
sys.stdin.read()
"""


async def test_forged_frames_on_the_direct_socket_end_the_connection(
    engine: Engine, sandboxed: Profile, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even a runner that lies over the direct socket (here: replaced by a script that
    answers each run with `done` frames for ids it was not asked about) plants nothing: the
    first unsolicited frame ends the connection, the run fails as unanswered, no result is
    ever "FORGED", and the container is not used again."""
    import gleitzeit_docker.containers as containers
    from gleitzeit_docker.runner import PROTO

    def lying(profile: Profile, *, once: bool, direct: str | None = None) -> list[str]:
        return [
            profile.python,
            "-u",
            "-c",
            LYING_DIRECT_RUNNER % PROTO,
            json.dumps({"direct": direct}),
        ]

    monkeypatch.setattr(containers, "runner_command", lying)
    async with one_pool(engine, health_timeout=5.0) as pool:
        async with pool.checkout(sandboxed) as pc:
            assert pc.conn is not None
            assert pc.conn.direct  # the lie goes over the socket, not the attach stream
        first = await pool.execute(sandboxed, Job(code="result = 1"))
        second = await pool.execute(sandboxed, Job(code="result = 1"))
        assert [r.result for r in (first, second)] == [None, None]
        assert not first.success
        assert "ProtocolViolation" in (first.error or "")
        assert second.container_id != first.container_id
