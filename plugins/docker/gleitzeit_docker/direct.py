"""The direct channel: the resident runner's protocol over a unix socket, past the engine.

Over ``attach`` every message crosses dockerd and the containerd shim (a hijacked HTTP
connection, then the container's stdio pipes): 1-2 ms per round trip on a loaded engine. For
an engine on this host the runner can instead talk to the host over a unix socket:

* Before the container is created, the host makes a directory of its own for it,
  ``<base>/<pid>-<start time>-<random>`` (mode 0700, owned by the host's uid, inside a base
  directory that is 0700 and owned by that uid too), listens there on ``host.sock`` and has
  the engine bind-mount that one directory, read-only, at ``/run/gleitzeit``.
* The runner, as the container's root and before it has read any job, connects and says
  ``"direct": true`` in its hello (over the attach stream, as before). The host then accepts
  exactly one connection, checks the peer (``SO_PEERCRED``: the process must be the
  container's init or its child, by the pid the engine reports), closes the listener and
  unlinks the socket. No job has run by then, so no job can have connected instead, and after
  it there is nothing left to connect to. The host never connects to a path, so nothing a job
  does to the directory can make the host talk to anything else; and the directory is
  read-only in the container and not even searchable by the jobs' uid.
* Losing the socket later ends the connection for good (the container is retired, as when
  the attach stream breaks); the host never reconnects. The attach stays open as the
  tether (the container still stops when its owner goes) and carries the runner's stderr.
* The directory is removed with its container, when the pool closes, and, for a crashed
  process's, by ``sweep_leftovers`` when any runner-mode pool of the same uid starts.

Anything that does not hold (a remote engine, a root the engine cannot see, a container whose
root cannot reach the directory, a peer that is not the runner) leaves the attach path in use.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import socket
import stat
import struct
import tempfile
from pathlib import Path

from .engine import Engine

__all__ = [
    "CONTAINER_DIR",
    "SOCKET_NAME",
    "DirectListener",
    "base_dir",
    "peer_pid",
    "sweep_leftovers",
    "sweep_stale",
]

log = logging.getLogger(__name__)
CONTAINER_DIR = "/run/gleitzeit"  # where the runner finds the host's socket
SOCKET_NAME = "host.sock"


def _start_time(pid: int) -> str | None:
    """A process's start time in clock ticks (field 22 of /proc/PID/stat): with the pid, it
    names one process even after the pid is reused."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    return data[data.rfind(b")") + 2 :].split()[19].decode()


def _parent(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    return int(data[data.rfind(b")") + 2 :].split()[1])


def base_dir(root: str | os.PathLike[str] | None = None, *, create: bool = True) -> Path | None:
    """``<root>/gleitzeit-runners-<uid>`` (root: ``$XDG_RUNTIME_DIR`` or the temp dir), made
    0700 if missing (and ``create``); None (no direct channel) if it is missing or exists as
    anything but a real directory of ours that nobody else may enter: on a shared /tmp
    someone could have made it first."""
    parent = Path(root or os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir())
    path = parent / f"gleitzeit-runners-{os.geteuid()}"
    if create:
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=0o700)
    try:
        info = path.lstat()
    except OSError:
        return None
    mine = stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid()
    if not mine or info.st_mode & 0o077:
        log.warning("not using %s for runner sockets: not a private directory of ours", path)
        return None
    return path


def sweep_leftovers() -> list[Path]:
    """``sweep_stale`` on this uid's base directory, if there is one (a pool's start)."""
    base = base_dir(create=False)
    return sweep_stale(base) if base is not None else []


def sweep_stale(base: Path) -> list[Path]:
    """Remove the directories of processes that are gone (a crash leaves them behind)."""
    removed = []
    for entry in base.iterdir():
        pid, _, rest = entry.name.partition("-")
        started, _, _ = rest.partition("-")
        if not pid.isdigit() or _start_time(int(pid)) == started:
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed


def peer_pid(sock: socket.socket) -> int:
    """The pid (in our pid namespace; 0 if the peer is in one we cannot see) of the process
    that connected ``sock``, as the kernel recorded it at ``connect``."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", creds)[0])


class DirectListener:
    """One container's directory and listening socket (see the module docstring)."""

    def __init__(self, directory: Path, listener: socket.socket) -> None:
        self.directory = directory
        self._listener: socket.socket | None = listener

    @classmethod
    def open(cls, root: str | os.PathLike[str] | None = None) -> DirectListener | None:
        """A new directory with a listening socket, or None where there can be none."""
        base = base_dir(root)
        if base is None:
            return None
        me = os.getpid()
        directory = base / f"{me}-{_start_time(me)}-{secrets.token_hex(6)}"
        directory.mkdir(mode=0o700)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        dir_fd = -1
        try:
            # Bound through the directory's descriptor: a socket path holds at most 107
            # bytes, and $XDG_RUNTIME_DIR or a temp dir may be long.
            dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
            listener.bind(f"/proc/self/fd/{dir_fd}/{SOCKET_NAME}")
            listener.listen(1)
            listener.setblocking(False)
        except OSError:
            listener.close()
            shutil.rmtree(directory, ignore_errors=True)
            raise
        finally:
            if dir_fd >= 0:
                os.close(dir_fd)
        return cls(directory, listener)

    @property
    def bind(self) -> str:
        """The ``HostConfig.Binds`` entry: this directory alone, read-only."""
        return f"{self.directory}:{CONTAINER_DIR}:ro"

    @property
    def container_path(self) -> str:
        return f"{CONTAINER_DIR}/{SOCKET_NAME}"

    async def accept(self, engine: Engine, container_id: str, timeout: float) -> socket.socket:
        """The one connection the runner made (already queued when it said hello), checked
        to come from the container's init or its child; the listener is closed either way.
        ``OSError`` (or ``TimeoutError``) when there is none or it is someone else's."""
        listener = self._listener
        if listener is None:
            raise OSError("the runner's socket was already taken")
        try:
            loop = asyncio.get_running_loop()
            async with asyncio.timeout(timeout):
                conn, _ = await loop.sock_accept(listener)
        finally:
            self.close_listener()
        try:
            pid = peer_pid(conn)
            state = (await engine.inspect(container_id)).get("State", {})
            init = int(state.get("Pid") or 0)
            if pid <= 0 or init <= 0 or (pid != init and _parent(pid) != init):
                raise OSError(
                    f"the socket's peer (pid {pid}) is not the runner of container "
                    f"{container_id[:12]} (init pid {init})"
                )
        except BaseException:
            conn.close()
            raise
        return conn

    def close_listener(self) -> None:
        """Stop listening and unlink the path: nobody can connect from here on."""
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with contextlib.suppress(OSError):
            (self.directory / SOCKET_NAME).unlink()

    def remove(self) -> None:
        """Close the listener and delete the directory (with its container)."""
        self.close_listener()
        shutil.rmtree(self.directory, ignore_errors=True)
