"""In-container job runner (stdlib only, Python >= 3.8). Started as ``python3 -u -c <this> CFG``.

Protocol: one JSON object per line. The host writes requests to the runner's stdin; the
runner answers on its (original) stdout. The runner moves the protocol channel to private
file descriptors first, so nothing that prints can corrupt it. In resident mode with
``direct`` in CFG (the path of the host's socket, in a directory the host mounted for this
container alone) the runner connects there before its hello, before any job, and says so;
it then answers each request on the channel it came on (the host sends everything over the
socket once it has checked and taken it up). The end of stdin (the tether) stops the runner;
the end of the socket only drops it.

  runner -> host  {"op": "hello", "python", "platform", "pid", "proto", "isolated", "direct"}
                                                                    (resident mode)
  host -> runner  {"op": "ping", "id"}        -> {"op": "pong", "id", "busy", "clean"}
  host -> runner  {"op": "run", "id", "bytes", "output_limit", "result_limit"} followed by
                  exactly ``bytes`` bytes: the job (JSON: code | file, args, files, ...)
                                                       -> {"op": "done", "id", ...}
  runner -> host  {"op": "cleaned", "id", "clean"}    (resident mode, after each "done")
  host -> runner  {"op": "kill", "id"}   (while a run is going: SIGKILL it, answer "done")
  host -> runner  {"op": "exit"}         (or EOF on stdin: stop)

Isolation (``isolate`` in CFG; asked for, it holds or the runner refuses to serve): the
runner, the container's init and every helper run as the container's root with only SETUID,
SETGID, SETPCAP and KILL; every job runs as ``user`` with no capabilities at all. So a job can open,
signal or ptrace none of the processes that hold the protocol channel (``/proc/<pid>/fd``,
``/mem``, ``kill``, ``ptrace`` all need the same uid or a capability).

Pristine processes: before any job arrives the runner forks a *zygote*, which never sees job
data. The zygote makes *spares* on request (it forks a middle process that forks the spare and
exits, so the spare becomes the runner's child through ``PR_SET_CHILD_SUBREAPER``); one spare
is kept ready, so the fork is off a request's path. A run goes to a spare over its own pipe;
the spare drops to the job's uid and runs it (``runner_child``). After a run the runner kills
every process of the job's uid and then, with that uid as its effective uid, wipes the
writable places and SysV IPC, so nothing leaks into the next run.

``CFG`` (JSON): ``once`` (serve one run, then exit: the exec and fresh paths), ``reap`` (the
sweep and the wipe; only honoured inside a container), ``wipe`` (directories whose contents
are removed), ``user`` (the jobs' ``uid[:gid]``), ``isolate``, ``workdir`` and ``direct``.
"""

from __future__ import annotations

import array
import collections
import contextlib
import gc
import json
import os
import platform
import select
import signal
import socket
import sys
import time
import traceback
from typing import Any

# On the host this is a package module; in the container both sources form one script.
with contextlib.suppress(ImportError):
    from .runner_child import SETUP_FAILED, job_ids, spare_main
    from .runner_hygiene import (
        REAPED,
        drop_sysv_ipc,
        libc,
        oom_count,
        set_dumpable,
        set_subreaper,
        sweep,
        wait_child,
        wipe,
    )

__all__ = ["PROTO", "Channel", "Spares", "main", "run_job"]

PROTO = 2
_WAKE: list[int] = []  # read end of the SIGCHLD wakeup pipe (set up in main)
_EXITING: list[int] = []  # a job's process that reported its exit status, not yet reaped
_SPARES_READY = 1  # made while the previous run is cleaned up: off the next run's path


class Channel:
    """Line-delimited JSON over two raw file descriptors."""

    def __init__(self, rfd: int, wfd: int) -> None:
        self.rfd, self.wfd, self.buf, self.eof = rfd, wfd, b"", False

    def send(self, msg: dict[str, Any]) -> None:
        data = json.dumps(msg, separators=(",", ":")).encode() + b"\n"
        try:
            while data:
                data = data[os.write(self.wfd, data) :]
        except (BrokenPipeError, ConnectionResetError):  # the host is gone: nothing to serve
            os._exit(0)

    def pending(self) -> bool:
        return b"\n" in self.buf

    def fill(self) -> None:
        """One read; call only when the fd is readable (or blocking is fine)."""
        try:
            chunk = os.read(self.rfd, 1 << 16)
        except ConnectionResetError:  # a socket whose host end went away
            chunk = b""
        self.buf += chunk
        self.eof = self.eof or not chunk

    def take(self) -> dict[str, Any] | None:
        """Next complete message if one is buffered (garbage lines are skipped)."""
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if isinstance(msg, dict):
                return msg
        return None

    def read(self) -> dict[str, Any] | None:
        """Block until the next message; None on EOF."""
        while True:
            msg = self.take()
            if msg is not None or self.eof:
                return msg
            self.fill()

    def forward(self, size: int, fd: int) -> bool:
        """Copy the next ``size`` raw bytes to ``fd`` (a spare's pipe), then close it. The
        bytes are consumed even when the spare is gone, so the framing stays intact."""
        ok = True
        while size > 0:
            if not self.buf:
                self.fill()
                if self.eof and not self.buf:
                    break
            part, self.buf = self.buf[:size], self.buf[size:]
            size -= len(part)
            while ok and part:
                try:
                    part = part[os.write(fd, part) :]
                except OSError:
                    ok = False
        os.close(fd)
        return ok and size == 0


class Spare:
    """A pristine process waiting for its one message: its pid and our ends of its pipes."""

    def __init__(self, job_w: int, out_r: int, err_r: int, res_r: int) -> None:
        self.pid = 0
        self.job_w, self.out_r, self.err_r, self.res_r = job_w, out_r, err_r, res_r

    def close_outputs(self) -> None:
        for fd in (self.out_r, self.err_r, self.res_r):
            with contextlib.suppress(OSError):
                os.close(fd)


def _zygote(sock: socket.socket, cfg: dict[str, Any]) -> None:
    """The zygote's loop: for each request (four descriptors), make one spare and answer its
    pid. It never reads job data, so every spare starts from memory no job has touched."""
    while True:
        fds = array.array("i")
        try:
            msg, ancdata, _, _ = sock.recvmsg(1, socket.CMSG_LEN(4 * fds.itemsize))
        except OSError:
            os._exit(0)
        if not msg:
            os._exit(0)
        for level, kind, data in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
        pid_r, pid_w = os.pipe()
        try:
            middle = os.fork()
        except OSError:  # e.g. the pids limit, while a job's processes still exist
            middle = -1
        if middle == 0:
            status = 0
            try:
                os.close(pid_r)
                pid = os.fork()
                if pid == 0:
                    sock.close()
                    os.close(pid_w)
                    try:
                        status = spare_main(list(fds), cfg)
                    except BaseException:  # a spare must always _exit
                        traceback.print_exc()
                        status = SETUP_FAILED
                    finally:
                        os._exit(status)
                os.write(pid_w, str(pid).encode())
            finally:
                os._exit(status)  # also when the fork failed: the zygote reads no pid
        os.close(pid_w)
        for fd in fds:
            os.close(fd)
        answer = os.read(pid_r, 64) if middle > 0 else b""
        os.close(pid_r)
        if middle > 0:
            os.waitpid(middle, 0)  # the spare is the runner's child (subreaper) from here on
        sock.sendall((answer or b"0") + b"\n")


class Spares:
    """Pristine job processes made by the zygote, ``_SPARES_READY`` of them kept ahead. A
    one-shot runner (``direct``) has read nothing but its config: it forks its one spare
    itself, before reading the job."""

    def __init__(self, cfg: dict[str, Any], close_in_zygote: list[int], direct: bool) -> None:
        self.buf = b""
        self.ordered: collections.deque[Spare] = collections.deque()  # asked for, no pid yet
        self.ready: collections.deque[Spare] = collections.deque()
        self.zygote = 0
        if direct:
            spare, theirs = self._pipes()
            spare.pid = os.fork()
            if spare.pid == 0:
                status = SETUP_FAILED
                try:
                    for fd in (*close_in_zygote, spare.job_w, spare.out_r, spare.err_r):
                        os.close(fd)
                    os.close(spare.res_r)
                    signal.set_wakeup_fd(-1)
                    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                    status = spare_main(theirs, cfg)
                finally:
                    os._exit(status)
            for fd in theirs:
                os.close(fd)
            self.ready.append(spare)
            return
        self.sock, theirs_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        pid = os.fork()
        if pid == 0:
            try:
                self.sock.close()
                for fd in close_in_zygote:  # the protocol channel stays with the runner
                    os.close(fd)
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                _zygote(theirs_sock, cfg)
            finally:
                os._exit(0)
        theirs_sock.close()
        self.zygote = pid
        self.refill()

    @staticmethod
    def _pipes() -> tuple[Spare, list[int]]:
        (job_r, job_w), (out_r, out_w), (err_r, err_w), (res_r, res_w) = (
            os.pipe() for _ in range(4)
        )
        return Spare(job_w, out_r, err_r, res_r), [job_r, out_w, err_w, res_w]

    def refill(self) -> None:
        """Order spares up to ``_SPARES_READY`` (called after a reply is sent, so the forks
        compete with no job and are done before the next run arrives)."""
        while self.zygote and len(self.ready) + len(self.ordered) < _SPARES_READY:
            self.order()

    def order(self) -> None:
        spare, theirs = self._pipes()
        try:
            self.sock.sendmsg(
                [b"F"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", theirs))]
            )
        finally:
            for fd in theirs:
                os.close(fd)
        self.ordered.append(spare)

    def _receive(self) -> bool:
        """The zygote's answer to the oldest order: that spare is ready (or failed)."""
        while b"\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                return False
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        spare = self.ordered.popleft()
        spare.pid = int(line or b"0")
        if spare.pid > 0:
            self.ready.append(spare)
        else:
            os.close(spare.job_w)
            spare.close_outputs()
        return True

    def wait_ready(self) -> None:
        """Block until every ordered spare exists (before the first run)."""
        while self.ordered and self._receive():
            pass

    def take(self) -> Spare | None:
        """The next ready spare (waiting for the zygote if need be, and ordering again once
        if its last fork failed: the sweep has freed the pids since); None if there is
        none to be had."""
        for _ in range(2):
            if not self.ready and not self.ordered:
                self.refill()
            while not self.ready and self.ordered:
                if not self._receive():
                    return None
            if self.ready:
                return self.ready.popleft()
        return None


def run_job(
    header: dict[str, Any], chan: Channel, cfg: dict[str, Any], spares: Spares
) -> dict[str, Any]:
    """Hand the job to a spare, collect capped output until it is gone, build the reply."""
    started = time.monotonic()
    limit = int(header.get("output_limit", 1 << 16))
    reply: dict[str, Any] = {"op": "done", "id": header.get("id"), "killed": False, "error": None}
    oom_before = oom_count()
    spare = spares.take()
    if spare is None:
        chan.forward(int(header.get("bytes", 0)), os.open(os.devnull, os.O_WRONLY))
        reply.update(exit_code=None, error="the runner could not start a process for the job")
        return reply
    pid = spare.pid
    chan.forward(int(header.get("bytes", 0)), spare.job_w)
    readers = {spare.out_r: 0, spare.err_r: 1, spare.res_r: 2}
    kept, totals, status, exited_at = [b"", b"", b""], [0, 0, 0], None, 0.0
    reap = bool(cfg.get("reap"))
    reported: int | None = None  # the exit status the job's process reported before it ended
    while readers or status is None:
        # Both streams ended and the report is in (the spare's last write): answer without
        # waiting for the result pipe's end or the exit; cleanup reaps the process.
        if (
            reap
            and set(readers) <= {spare.res_r}
            and (reported := _reported_exit(kept[2])) is not None
        ):
            for fd in readers:
                os.close(fd)
            readers.clear()
            _EXITING.append(pid)
            break
        watch = list(readers) + _WAKE + ([chan.rfd] if not chan.eof else [])
        ready = [chan.rfd] if chan.pending() else select.select(watch, [], [], 0.05)[0]
        for fd in ready:
            if fd in _WAKE:  # SIGCHLD arrived: drain, then waitpid below
                os.read(fd, 4096)
                continue
            if fd == chan.rfd:
                if not chan.pending():
                    chan.fill()
                msg = chan.take()
                if chan.eof or (msg is not None and msg.get("op") == "kill"):
                    reply["killed"] = True
                    _kill(pid, reap)
                elif msg is not None and msg.get("op") == "ping":
                    chan.send({"op": "pong", "id": msg.get("id"), "busy": True})
                continue
            chunk = os.read(fd, 1 << 16)
            index = readers[fd]
            if not chunk:
                os.close(fd)
                del readers[fd]
                continue
            totals[index] += len(chunk)
            cap = limit if index < 2 else int(header.get("result_limit", 1 << 20)) + 4096
            if len(kept[index]) < cap:
                kept[index] += chunk[: cap - len(kept[index])]
        if status is None:
            status = wait_child(pid)
            if status is not None:
                exited_at = time.monotonic()
                if readers:  # pipes still held open by leftover processes: end them
                    _kill(pid, reap)
        elif readers and time.monotonic() - exited_at > 0.5:
            for fd in readers:  # a setsid'd leftover keeps them open (no sweep here)
                os.close(fd)
            readers.clear()
    if status is None:
        reply["exit_code"] = reported
    elif os.WIFSIGNALED(status):  # shell convention: 128 + signal number
        reply["signal"] = os.WTERMSIG(status)
        reply["exit_code"] = 128 + reply["signal"]
    else:
        reply["exit_code"] = os.WEXITSTATUS(status)
    reply["oom"] = oom_before >= 0 and oom_count() > oom_before
    reply["stdout"], reply["stderr"] = (k.decode("utf-8", "replace") for k in kept[:2])
    reply["stdout_truncated"], reply["stderr_truncated"] = totals[0] > limit, totals[1] > limit
    try:
        res = json.loads(kept[2]) if kept[2] else {}
    except ValueError:
        res = {"note": "result could not be decoded"}
    if not isinstance(res, dict):
        res = {"note": "result could not be decoded"}
    if res.get("setup_error") and reply["exit_code"] == SETUP_FAILED:
        reply.update(exit_code=None, error=f"could not start the job: {res['setup_error']}")
    reply["has_result"] = "result" in res
    reply["result"], reply["result_note"] = res.get("result"), res.get("note")
    reply["runner_ms"] = round((time.monotonic() - started) * 1000, 3)
    return reply


def _reported_exit(data: bytes) -> int | None:
    """The exit status at the end of a spare's result (``"exit":N}``), if there is one."""
    tail = data[-16:]
    start = tail.rfind(b'"exit":')
    if start < 0 or not tail.endswith(b"}"):
        return None
    digits = tail[start + 7 : -1]
    return int(digits) if digits.isdigit() and len(digits) <= 3 else None


def cleanup(cfg: dict[str, Any]) -> bool:
    """After a run: no process of the job's uid, empty writable dirs, no SysV IPC. True if
    all held. The wipe runs with the job's uid as our effective uid (the files and IPC
    objects are the job's); no job process exists by then, and our saved uid stays root."""
    if not cfg.get("reap"):
        return True  # fresh path (the container is deleted) or not in a container
    while _EXITING:
        _await_exit(_EXITING.pop())
    if not sweep():
        return False
    ids = cfg.get("job_ids")
    if ids:
        os.setegid(ids[1])
        os.seteuid(ids[0])
    try:
        return wipe(list(cfg.get("wipe", []))) and drop_sysv_ipc()
    finally:
        if ids:
            os.seteuid(0)  # back to root: the effective capabilities return with it
            os.setegid(0)


def _await_exit(pid: int) -> None:
    """End a job's process that reported its exit status and wait until it is gone, so that
    the sweep usually finds it a zombie at once. The wait is bounded: a tracer of the job's
    own holds its exit back from us until the sweep has killed that tracer (the sweep then
    reaps it)."""
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)  # if the report was the job's own, it ends here
    deadline = time.monotonic() + 1.0
    while pid not in REAPED:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            break
        left = deadline - time.monotonic()
        if done or left <= 0:
            break
        if select.select(_WAKE, [], [], min(left, 0.05))[0]:  # SIGCHLD
            os.read(_WAKE[0], 4096)
    REAPED.pop(pid, None)


def _kill(pid: int, reap: bool) -> None:
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGKILL)
    if reap:
        sweep(keep=pid)  # the job's status (SIGKILL) is what its reply reports


def _warm_up() -> None:
    """Pay one-time costs (first compile() ~1-9 ms, json, traceback, ctypes) once, before the
    zygote is forked, so every spare inherits them warm instead of paying them per run."""
    scope: dict[str, Any] = {}
    try:
        exec(compile("result = [x for x in range(3)]\n1 / 0", "<warm-up>", "exec"), scope)
    except ZeroDivisionError as exc:
        traceback.format_exception(type(exc), exc, exc.__traceback__)
    json.loads(json.dumps({"result": scope.get("result")}, allow_nan=False))
    with contextlib.suppress(ImportError, OSError):
        import tempfile  # noqa: F401

        libc()  # opened once here: every spare drops its capabilities through it


def _isolation(cfg: dict[str, Any]) -> str | None:
    """Why the jobs cannot be isolated from the runner here (None: they can)."""
    if not cfg.get("isolate"):
        return None  # the host's protocol tests run the runner bare; containers always ask
    if os.getuid() != 0:
        return "the runner must start as the container's root to drop each job to its own uid"
    try:
        import ctypes  # noqa: F401 - every spare needs it to empty its capability sets
    except ImportError:
        return "the image's Python has no ctypes, which dropping a job's capabilities needs"
    if not cfg.get("once") and not set_subreaper():
        return "prctl(PR_SET_CHILD_SUBREAPER) failed"
    try:
        cfg["job_ids"] = list(job_ids(str(cfg.get("user"))))
    except (KeyError, ValueError) as exc:
        return f"unknown job user {cfg.get('user')!r}: {exc}"
    if cfg["job_ids"][0] == 0:
        return "jobs may not run as root"
    return None


def _connect_direct(cfg: dict[str, Any]) -> Channel | None:
    """Connect to the host's socket (``direct`` in CFG: a path in the directory the host
    mounted for this container), before any job has run; None where there is none."""
    path = cfg.get("direct")
    if not path:
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(2.0)
        sock.connect(str(path))
        sock.settimeout(None)
    except OSError as exc:
        sock.close()
        sys.stderr.write(f"gleitzeit runner: no direct channel at {path}: {exc}\n")
        return None
    fd = sock.detach()
    return Channel(fd, fd)


def _next_request(chans: list[Channel]) -> tuple[Channel, dict[str, Any] | None]:
    """The next request on any channel, with the channel to answer on; None once the first
    (the attached stdin, the tether) has ended. A direct channel that ends is dropped: the
    host either never took it up or has retired this container."""
    while True:
        for each in chans:
            msg = each.take()
            if msg is not None:
                return each, msg
        readable = select.select([each.rfd for each in chans], [], [])[0]
        for each in list(chans):
            if each.rfd not in readable:
                continue
            each.fill()
            if each.eof and not each.pending():
                if each is chans[0]:
                    return each, None
                chans.remove(each)
                os.close(each.rfd)


def main(argv: list[str]) -> int:
    cfg = json.loads(argv[1]) if len(argv) > 1 else {}
    # The process sweep and wipe are only safe inside a sandbox container.
    cfg["reap"] = bool(cfg.get("reap")) and os.path.exists("/.dockerenv")
    chan = Channel(os.dup(0), os.dup(1))
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)  # stray prints must never reach the protocol channel
    os.close(devnull)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # a spare gone early is an error, not death
    set_dumpable(0)
    problem = _isolation(cfg)
    if problem is not None:
        sys.stderr.write(f"gleitzeit runner: {problem}\n")
        if cfg.get("once"):
            header = chan.read()
            if header is not None:
                chan.forward(int(header.get("bytes", 0)), os.open(os.devnull, os.O_WRONLY))
                error = f"sandbox isolation unavailable: {problem}"
                chan.send({"op": "done", "id": header.get("id"), "error": error, "clean": False})
        return 3
    if not cfg.get("isolate"):
        set_subreaper()  # best effort on a host: spares become our children
    _warm_up()
    # The objects made so far live as long as the runner: kept out of the cyclic collector,
    # a collection in a spare does not write to (and so copy) every page it shares
    gc.freeze()
    spares = Spares(cfg, close_in_zygote=[chan.rfd, chan.wfd], direct=bool(cfg.get("once")))
    # SIGCHLD wakes select() through this pipe, so a finished child is noticed at once.
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    _WAKE.append(wake_r)
    if cfg.get("once"):
        # Clean *before* answering: the host may exec the next helper right after.
        header = chan.read()
        if header is not None and header.get("op") == "run":
            reply = run_job(header, chan, cfg, spares)
            reply["clean"] = cleanup(cfg)
            chan.send(reply)
        return 0
    spares.wait_ready()
    direct = _connect_direct(cfg)  # after the zygote was forked: no spare ever holds it
    chan.send(
        {
            "op": "hello",
            "proto": PROTO,
            "pid": os.getpid(),
            "isolated": bool(cfg.get("isolate")),
            "direct": direct is not None,
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "platform": platform.platform(),
        }
    )
    chans = [chan] if direct is None else [chan, direct]
    clean = True
    while True:
        chan, msg = _next_request(chans)
        if msg is None or msg.get("op") == "exit":
            return 0
        if msg.get("op") == "ping":
            chan.send({"op": "pong", "id": msg.get("id"), "busy": False, "clean": clean})
        elif msg.get("op") == "run" and not clean:
            chan.forward(int(msg.get("bytes", 0)), os.open(os.devnull, os.O_WRONLY))
            error = "runner could not clean up after the previous run; discard this container"
            chan.send({"op": "done", "id": msg.get("id"), "error": error, "clean": False})
            chan.send({"op": "cleaned", "id": msg.get("id"), "clean": False})
        elif msg.get("op") == "run":
            # Answer first, clean up afterwards: cleaning is off the caller's critical path,
            # and the next request is only read once it is done. "cleaned" tells the host
            # whether the container may serve again; a failed cleanup also blocks later runs.
            chan.send({**run_job(msg, chan, cfg, spares), "clean": True})
            spares.refill()  # the zygote forks while we clean up
            clean = cleanup(cfg)
            chan.send({"op": "cleaned", "id": msg.get("id"), "clean": clean})


if __name__ == "__main__":
    sys.exit(main(sys.argv))
