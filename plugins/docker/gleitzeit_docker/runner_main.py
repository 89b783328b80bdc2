"""In-container job runner (stdlib only, Python >= 3.8). Started as ``python3 -u -c <this> CFG``.

Protocol: one JSON object per line. The host writes requests to the runner's stdin; the
runner answers on its (original) stdout. The runner moves the protocol channel to private
file descriptors first, so nothing that prints can corrupt it.

  runner -> host  {"op": "hello", "python", "platform", "pid", "proto"}   (resident mode)
  host -> runner  {"op": "ping", "id"}        -> {"op": "pong", "id", "busy", "clean"}
  host -> runner  {"op": "run", "id", "code" | "file", "args", "files", "output_limit",
                   "result_limit"}                     -> {"op": "done", "id", ...}
  runner -> host  {"op": "cleaned", "id", "clean"}    (resident mode, after each "done")
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

import contextlib
import json
import os
import platform
import select
import signal
import sys
import tempfile
import time
import traceback
from typing import Any

# On the host this is a package module; in the container both sources form one script.
with contextlib.suppress(ImportError):
    from .runner_child import child, write_files
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
        reply.update(exit_code=None, error=f"could not write files: {exc}")
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
    reply["runner_ms"] = round((time.monotonic() - started) * 1000, 3)
    return reply


def cleanup(cfg: dict[str, Any]) -> bool:
    """After a run: no other process, empty writable dirs, no SysV IPC. True if all held."""
    if not cfg.get("reap"):
        return True  # fresh path (the container is deleted) or not in a container
    spare = spared_pids(bool(cfg.get("once")))
    return sweep(spare) and wipe(list(cfg.get("wipe", []))) and drop_sysv_ipc()


def _kill(pid: int, spare: set[int], reap: bool) -> None:
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGKILL)
    if reap:
        sweep(spare)


def _warm_up() -> None:
    """Pay one-time costs (first compile() ~1-9 ms, json, traceback) once in the parent, so
    every forked child inherits them warm instead of paying them per run."""
    scope: dict[str, Any] = {}
    try:
        exec(compile("result = [x for x in range(3)]\n1 / 0", "<warm-up>", "exec"), scope)
    except ZeroDivisionError as exc:
        traceback.format_exception(type(exc), exc, exc.__traceback__)
    json.loads(json.dumps({"result": scope.get("result")}, allow_nan=False))


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
        # Clean *before* answering: the host may exec the next helper right after.
        job = chan.read()
        if job is not None and job.get("op") == "run":
            reply = run_job(job, chan, cfg)
            reply["clean"] = cleanup(cfg)
            chan.send(reply)
        return 0
    _warm_up()
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
    clean = True
    while True:
        msg = chan.read()
        if msg is None or msg.get("op") == "exit":
            return 0
        if msg.get("op") == "ping":
            chan.send({"op": "pong", "id": msg.get("id"), "busy": False, "clean": clean})
        elif msg.get("op") == "run" and not clean:
            error = "runner could not clean up after the previous run; discard this container"
            chan.send({"op": "done", "id": msg.get("id"), "error": error, "clean": False})
            chan.send({"op": "cleaned", "id": msg.get("id"), "clean": False})
        elif msg.get("op") == "run":
            # Answer first, clean up afterwards: cleaning is off the caller's critical path,
            # and the next request is only read once it is done. "cleaned" tells the host
            # whether the container may serve again; a failed cleanup also blocks later runs.
            chan.send({**run_job(msg, chan, cfg), "clean": True})
            clean = cleanup(cfg)
            chan.send({"op": "cleaned", "id": msg.get("id"), "clean": clean})


if __name__ == "__main__":
    sys.exit(main(sys.argv))
