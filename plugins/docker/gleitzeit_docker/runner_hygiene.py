"""In-container hygiene for the runner (stdlib only, Python >= 3.8).

Shipped into the container together with ``runner_main`` (the host concatenates the two
sources into one ``python3 -c`` script). Between two runs in a reused container it kills
every leftover process, wipes the writable directories and drops System V IPC objects, so
that nothing one run leaves behind is visible to the next. These functions are only ever
called inside a sandbox container: ``runner_main`` refuses to enable them elsewhere.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from typing import Any

__all__ = [
    "REAPED",
    "drop_sysv_ipc",
    "libc",
    "oom_count",
    "reap_children",
    "set_dumpable",
    "set_subreaper",
    "sweep",
    "wait_child",
    "wipe",
]

_OOM_FILES = ("/sys/fs/cgroup/memory/memory.oom_control", "/sys/fs/cgroup/memory.events")
REAPED: dict[int, int] = {}  # exit statuses of our children reaped during a sweep
_LIBC: list[Any] = []  # the C library through ctypes, opened once (see libc)


def libc() -> Any:
    """The C library through ctypes, opened once in the runner: its spares inherit the
    handle, so a job's start does no dlopen and no symbol lookup (about 0.1 ms each time
    on the job's clock). ImportError or OSError where ctypes is unavailable."""
    if not _LIBC:
        import ctypes

        _LIBC.append(ctypes.CDLL(None, use_errno=True))
    return _LIBC[0]


def oom_count() -> int:
    """The memory cgroup's OOM-kill counter (cgroup v1 or v2); -1 if unreadable."""
    for path in _OOM_FILES:
        try:
            with open(path) as fh:
                for line in fh:
                    if line.startswith("oom_kill "):
                        return int(line.split()[1])
        except OSError:
            continue
    return -1


def _state_and_uids(pid: int) -> tuple[str, set[int]]:
    """A process's state letter and its real/effective/saved/fs uids (from ``status``, which
    stays readable when the process made itself non-dumpable)."""
    state, uids = "", set()
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("State:"):
                state = line.split()[1]
            elif line.startswith("Uid:"):
                uids = {int(v) for v in line.split()[1:]}
                break
    return state, uids


def _threads_left(pid: int) -> bool:
    """Whether a zombie process still has threads running: its main thread may end alone
    (the bare ``exit`` syscall, not ``exit_group``) and /proc then shows the process as a
    zombie while the rest of it runs on. SIGKILL to the pid ends them all."""
    try:
        return len(os.listdir(f"/proc/{pid}/task")) > 1
    except OSError:
        return False  # gone meanwhile


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def reap_children() -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        REAPED[pid] = status


def wait_child(pid: int) -> int | None:
    """Non-blocking wait for ``pid``; its status once it has ended, else None."""
    if pid in REAPED:
        return REAPED.pop(pid)
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return REAPED.pop(pid, 0)
    return status if done else None


def sweep(keep: int = 0) -> bool:
    """SIGKILL every live process that runs as anyone but us (the jobs' uid: daemons, fork
    bombs, whatever a job left); True once none is left. The runner's own processes (init,
    runner, zygote, spares) share its uid and are spared; a job cannot join that uid. The
    exit status of ``keep`` (a job's process killed at its timeout), if this reaps it, stays
    in ``REAPED`` for ``wait_child``."""
    mine = os.getuid()
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        victims = []
        for pid in _pids():
            try:
                state, uids = _state_and_uids(pid)
            except (OSError, ValueError, IndexError):
                continue
            if uids != {mine} and (state not in ("Z", "X") or _threads_left(pid)):
                victims.append(pid)
        if not victims:
            reap_children()  # they were re-parented to us (the subreaper): no zombies left
            kept = REAPED.pop(keep, None)
            REAPED.clear()  # nobody waits for the others
            if kept is not None:
                REAPED[keep] = kept
            return True
        for pid in victims:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        reap_children()
        time.sleep(0.002)
    return False


def _unlock(path: str) -> None:
    """Make a directory tree removable again (a run may have chmod'ed parts of it to 0)."""
    with contextlib.suppress(OSError):
        os.chmod(path, 0o700)
    with contextlib.suppress(OSError), os.scandir(path) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                _unlock(entry.path)


def wipe(dirs: list[str]) -> bool:
    """Remove everything inside ``dirs`` (not the directories themselves)."""
    ok = True
    for top in dirs:
        try:
            entries = os.listdir(top)
        except OSError:
            continue
        for name in entries:
            path = os.path.join(top, name)
            try:
                if os.path.isdir(path) and not os.path.islink(path):
                    _unlock(path)
                    shutil.rmtree(path)
                else:
                    os.unlink(path)
            except OSError:
                ok = False
    return ok


def drop_sysv_ipc() -> bool:
    """Remove System V shm segments, semaphores and queues a run may have left."""
    found = []
    for kind in ("shm", "sem", "msg"):
        try:
            with open(f"/proc/sysvipc/{kind}") as fh:
                found += [(kind, int(line.split()[1])) for line in list(fh)[1:] if line.strip()]
        except (OSError, ValueError, IndexError):
            pass
    if not found:
        return True
    try:
        lib = libc()
    except (ImportError, OSError):
        return False
    ok = True
    for kind, ident in found:  # IPC_RMID == 0
        rc = (
            lib.semctl(ident, 0, 0) if kind == "sem" else getattr(lib, kind + "ctl")(ident, 0, None)
        )
        ok = ok and rc == 0
    return ok


def set_dumpable(flag: int) -> None:
    """Non-dumpable: same-uid code can neither ptrace us nor open /proc/<runner>/fd."""
    with contextlib.suppress(ImportError, OSError, AttributeError):
        libc().prctl(4, flag, 0, 0, 0)  # PR_SET_DUMPABLE


def set_subreaper() -> bool:
    """Adopt orphaned descendants (a spare's parent exits right after forking it, so the
    spare becomes our child and we can wait for it). False where prctl is unavailable."""
    try:
        return int(libc().prctl(36, 1, 0, 0, 0)) == 0  # PR_SET_CHILD_SUBREAPER
    except (ImportError, OSError, AttributeError):
        return False
