"""The forked child of the in-container runner: run one job's code (stdlib only, 3.8+).

Shipped with ``runner_hygiene`` and ``runner_main`` as one ``python3 -c`` script. The child
gets its own session (so the runner can kill its whole process group), a fresh working
directory holding the job's files, stdout/stderr on capture pipes, stdin on /dev/null, a
fresh globals dict with ``args`` in it, and hands the ``result`` variable back as JSON on a
third pipe. Nothing it does can reach the runner's protocol channel: those descriptors are
closed before any user code runs.
"""

from __future__ import annotations

import base64
import builtins
import contextlib
import io
import json
import os
import signal
import sys
import traceback
from typing import Any

with contextlib.suppress(ImportError):  # see runner_main: one script in the container
    from .runner_hygiene import set_dumpable

__all__ = ["child", "write_files"]


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
    if "ctypes" in sys.modules:  # the runner made itself non-dumpable; undo for user code
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
            try:
                text = repr(scope["result"])[:limit]
            except Exception as repr_exc:  # a __repr__ may raise too
                text = f"<unrepresentable {type(scope['result']).__name__}: {repr_exc!r}>"
            note = (
                f"result is not JSON-serialisable ({type(exc).__name__}: {exc}); returned its repr"
            )
            payload = json.dumps({"result": text, "note": note})
        if len(payload) > limit:
            payload = json.dumps(
                {"note": f"result too large ({len(payload)} > {limit} bytes); dropped"}
            )
        data = payload.encode()
        with contextlib.suppress(OSError):  # the code may have closed our pipe
            while data:
                data = data[os.write(res_w, data) :]
    return exit_code
