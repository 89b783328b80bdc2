"""In-container job runner (stdlib only, Python >= 3.8). Started as ``python3 -u -c <this> CFG``.

Protocol: one JSON object per line. The host writes requests to the runner's stdin; the
runner answers on its (original) stdout. The runner moves the protocol channel to private
file descriptors first, so nothing that prints can corrupt it.

  runner -> host  {"op": "hello", "python", "platform", "pid", "proto"}   (resident mode)
  host -> runner  {"op": "ping", "id"}                 -> {"op": "pong", "id"}
  host -> runner  {"op": "run", "id", "code" | "file", "args", "files", "output_limit",
                   "result_limit"}                     -> {"op": "done", "id", ...}
  host -> runner  {"op": "kill", "id"}   (while a run is going: SIGKILL it, answer "done")
  host -> runner  {"op": "exit"}         (or EOF on stdin: stop)

Each run executes in a forked child (``os.fork``): fresh globals, its own cwd in a new
directory under /tmp, stdout/stderr captured through pipes and capped. After each run the
runner kills every other process in the container and wipes the writable places, so
nothing leaks from one run into the next. ``CFG`` (JSON): ``once`` (serve one run, then
exit: used by the exec and fresh paths), ``reap`` (enable the process sweep and the wipe;
only honoured inside a container) and ``wipe`` (directories whose contents are removed).
"""

from __future__ import annotations

import base64
import builtins
import contextlib
import io
import json
import os
import platform
import select
import shutil
import signal
import sys
import tempfile
import time
import traceback
from typing import Any

# On the host this is a package module; in the container both sources form one script.
with contextlib.suppress(ImportError):
    from .runner_hygiene import (
        drop_sysv_ipc,
        oom_count,
        set_dumpable,
        spared_pids,
        sweep,
        wait_child,
        wipe,
    )

__all__ = ["PROTO", "Channel", "main", "run_job"]

PROTO = 1
_WAKE: list[int] = []  # read end of the SIGCHLD wakeup pipe (set up in main)


class Channel:
    """Line-delimited JSON over two raw file descriptors."""

    def __init__(self, rfd: int, wfd: int) -> None:
        self.rfd, self.wfd, self.buf, self.eof = rfd, wfd, b"", False

    def send(self, msg: dict[str, Any]) -> None:
        data = json.dumps(msg, separators=(",", ":")).encode() + b"\n"
        while data:
            data = data[os.write(self.wfd, data) :]

    def pending(self) -> bool:
        return b"\n" in self.buf

    def fill(self) -> None:
        """One read; call only when the fd is readable (or blocking is fine)."""
        chunk = os.read(self.rfd, 1 << 16)
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


def write_files(jobdir: str, files: dict[str, str]) -> None:
    for name, b64 in files.items():
        path = os.path.normpath(os.path.join(jobdir, name))
        if not path.startswith(jobdir + os.sep):
            raise ValueError(f"file name escapes the job directory: {name!r}")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(base64.b64decode(b64))


def _text_stream(fd: int) -> io.TextIOWrapper:
    raw = io.FileIO(fd, "w", closefd=False)
    return io.TextIOWrapper(raw, "utf-8", "backslashreplace", write_through=True)


def child(job: dict[str, Any], jobdir: str, out_w: int, err_w: int, res_w: int) -> int:
    """Runs in the forked child: execute the user's code, return its exit code."""
    os.setsid()
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    set_dumpable(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(out_w, 1)
    os.dup2(err_w, 2)
    os.closerange(3, res_w)
    os.closerange(res_w + 1, 1 << 16)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # what a normal Python process has
    sys.stdin = open(os.devnull)  # noqa: SIM115 - lives as long as the child
    # Unbuffered like ``python -u``: output printed before a timeout kill is not lost.
    sys.stdout = _text_stream(1)
    sys.stderr = _text_stream(2)
    os.chdir(jobdir)
    filename = job.get("file") or "<code>"
    sys.argv = [filename]
    sys.path.insert(0, jobdir)
    scope: dict[str, Any] = {
        "__name__": "__main__",
        "__builtins__": builtins,
        "args": job.get("args"),
    }
    exit_code = 0
    try:
        if job.get("file"):
            with open(filename, encoding="utf-8") as fh:
                source = fh.read()
            scope["__file__"] = os.path.join(jobdir, filename)
        else:
            source = job.get("code") or ""
        exec(compile(source, filename, "exec"), scope)  # this is the sandbox
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            exit_code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
            exit_code = 1
    except BaseException as exc:  # report whatever the user code raised
        tb = exc.__traceback__.tb_next if exc.__traceback__ is not None else None
        traceback.print_exception(type(exc), exc, tb)
        exit_code = 1
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    if "result" in scope:
        limit = int(job.get("result_limit", 1 << 20))
        try:
            payload = json.dumps({"result": scope["result"]}, allow_nan=False)
        except (TypeError, ValueError, RecursionError) as exc:
            text = repr(scope["result"])[:limit]
            note = (
                f"result is not JSON-serialisable ({type(exc).__name__}: {exc}); returned its repr"
            )
            payload = json.dumps({"result": text, "note": note})
        if len(payload) > limit:
            payload = json.dumps(
                {"note": f"result too large ({len(payload)} > {limit} bytes); dropped"}
            )
        data = payload.encode()
        while data:
            data = data[os.write(res_w, data) :]
    return exit_code


def run_job(job: dict[str, Any], chan: Channel, cfg: dict[str, Any]) -> dict[str, Any]:
    """Fork, collect capped output until the child is gone, clean up, build the reply."""
    started = time.monotonic()
    limit = int(job.get("output_limit", 1 << 16))
    jobdir = tempfile.mkdtemp(prefix="job-", dir=cfg.get("workdir", "/tmp"))
    reply: dict[str, Any] = {"op": "done", "id": job.get("id"), "killed": False, "error": None}
    oom_before = oom_count()
    try:
        write_files(jobdir, job.get("files") or {})
    except (ValueError, OSError) as exc:
        reply.update(exit_code=None, error=f"could not write files: {exc}", clean=True)
        return reply
    pipes = [os.pipe() for _ in range(3)]
    pid = os.fork()
    if pid == 0:
        code = 70
        try:
            for r, _ in pipes:
                os.close(r)
            code = child(job, jobdir, pipes[0][1], pipes[1][1], pipes[2][1])
        finally:
            os._exit(code)
    for _, w in pipes:
        os.close(w)
    readers = {pipes[0][0]: 0, pipes[1][0]: 1, pipes[2][0]: 2}
    kept, totals, status, exited_at = [b"", b"", b""], [0, 0, 0], None, 0.0
    spare = spared_pids(bool(cfg.get("once")))
    reap = bool(cfg.get("reap"))
    while readers or status is None:
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
                    _kill(pid, spare, reap)
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
            cap = limit if index < 2 else int(job.get("result_limit", 1 << 20)) + 4096
            if len(kept[index]) < cap:
                kept[index] += chunk[: cap - len(kept[index])]
        if status is None:
            status = wait_child(pid)
            if status is not None:
                exited_at = time.monotonic()
                if readers:  # pipes still held open by leftover processes: end them
                    _kill(pid, spare, reap)
        elif readers and time.monotonic() - exited_at > 0.5:
            for fd in readers:  # a setsid'd leftover keeps them open (no sweep here)
                os.close(fd)
            readers.clear()
    if os.WIFSIGNALED(status):  # shell convention: 128 + signal number
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
    reply["has_result"] = "result" in res
    reply["result"], reply["result_note"] = res.get("result"), res.get("note")
    clean = True
    if reap:
        clean = sweep(spare) and wipe(list(cfg.get("wipe", []))) and drop_sysv_ipc()
    else:
        shutil.rmtree(jobdir, ignore_errors=True)
    reply["clean"] = clean
    reply["runner_ms"] = round((time.monotonic() - started) * 1000, 3)
    return reply


def _kill(pid: int, spare: set[int], reap: bool) -> None:
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGKILL)
    if reap:
        sweep(spare)


def main(argv: list[str]) -> int:
    cfg = json.loads(argv[1]) if len(argv) > 1 else {}
    # The process sweep and wipe are only safe inside a sandbox container.
    cfg["reap"] = bool(cfg.get("reap")) and os.path.exists("/.dockerenv")
    chan = Channel(os.dup(0), os.dup(1))
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)  # stray prints must never reach the protocol channel
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    # SIGCHLD wakes select() through this pipe, so a finished child is noticed at once.
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    _WAKE.append(wake_r)
    if cfg["reap"]:
        set_dumpable(0)
    if cfg.get("once"):
        job = chan.read()
        if job is not None and job.get("op") == "run":
            chan.send(run_job(job, chan, cfg))
        return 0
    chan.send(
        {
            "op": "hello",
            "proto": PROTO,
            "pid": os.getpid(),
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "platform": platform.platform(),
        }
    )
    while True:
        msg = chan.read()
        if msg is None or msg.get("op") == "exit":
            return 0
        if msg.get("op") == "ping":
            chan.send({"op": "pong", "id": msg.get("id"), "busy": False})
        elif msg.get("op") == "run":
            chan.send(run_job(msg, chan, cfg))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
