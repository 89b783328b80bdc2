"""A job's own process in the container: a pristine spare that runs exactly one job
(stdlib only, 3.8+).

Shipped with ``runner_hygiene`` and ``runner_main`` as one ``python3 -c`` script. A spare is
forked by the zygote (a process made before any job arrived, which never sees job data), so
nothing of an earlier job is in its memory. It waits, still as the runner's uid, for its one
message on a private pipe; then it drops to the job's uid (no capabilities, not even in the
bounding set) and runs the job's code. It has its own session (so the runner can kill its
whole process group), a fresh working directory holding the job's files, stdout/stderr on
capture pipes, stdin on /dev/null, a fresh globals dict with ``args`` in it, and hands the
``result`` variable back as JSON on a third pipe. It holds no other descriptor: the protocol
channel is never in reach.
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
import tempfile
import traceback
from typing import Any

with contextlib.suppress(ImportError):  # see runner_main: one script in the container
    from .runner_hygiene import libc, set_dumpable

__all__ = [
    "SETUP_FAILED",
    "capabilities",
    "child",
    "drop_privileges",
    "empty_bounding_set",
    "job_ids",
    "spare_main",
    "write_files",
]

SETUP_FAILED = 70  # exit status of a spare whose job could not even start


def job_ids(user: str) -> tuple[int, int]:
    """``uid[:gid]`` or ``name[:group]`` as numbers (names resolved in the container)."""
    name, _, group = user.partition(":")
    if name.isdigit():
        uid, gid = int(name), int(name)
    else:
        import pwd

        entry = pwd.getpwnam(name)
        uid, gid = entry.pw_uid, entry.pw_gid
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            import grp

            gid = grp.getgrnam(group).gr_gid
    return uid, gid


def empty_bounding_set(user: str) -> tuple[int, int]:
    """While still waiting (as root, before any job data): resolve ``user`` and empty the
    capability bounding set, so that the drop itself is quick once the job is here."""
    uid, gid = job_ids(user)
    if uid == os.getuid():
        raise PermissionError(f"the job user {user!r} must differ from the runner's uid")
    prctl = libc().prctl
    cap = 0
    while prctl(24, cap, 0, 0, 0) == 0:  # PR_CAPBSET_DROP until past the last capability
        cap += 1
    return uid, gid


def drop_privileges(uid: int, gid: int) -> None:
    """Become ``uid:gid`` for good: no supplementary groups, no capabilities in any set
    (the bounding set was emptied before); raise if any of it did not hold."""
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    caps = capabilities()
    if os.getresuid() != (uid, uid, uid) or any(int(v, 16) for v in caps.values()):
        raise PermissionError(f"could not drop privileges to {uid}:{gid}: {caps}")
    set_dumpable(1)  # changing uid cleared it; the job may read its own /proc/self


def capabilities() -> dict[str, str]:
    """This process's capability sets (``CapInh``, ``CapPrm``, ... as hex) from
    ``/proc/self/status``."""
    with open("/proc/self/status", "rb") as fh:
        text = fh.read().decode("ascii", "replace")
    return {
        key: value.strip()
        for key, _, value in (line.partition(":") for line in text.splitlines())
        if key.startswith("Cap")
    }


# A job as the host frames it (``Job.request``), for ``_rehearse``: no job's data.
_REHEARSAL_JOB = (
    b'{"code":"result = sum(range(10))","file":null,"args":null,"files":{},'
    b'"output_limit":65536,"result_limit":1048576}'
)


def _rehearse() -> None:
    """Walk a job's path once on fixed data while the spare waits for its job: after the
    fork every page the path writes is shared with the zygote and copied on first write,
    so this moves those copies (and tempfile's per-process random generator) off the
    job's clock. Nothing of it is seen by the job: a throwaway scope, no file written."""
    job = json.loads(_REHEARSAL_JOB)
    scope: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins, "args": None}
    exec(compile(job["code"], "<rehearsal>", "exec"), scope)
    json.dumps({"result": scope["result"]}, allow_nan=False)
    capabilities()
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        _text_stream(devnull).write("")
    finally:
        os.close(devnull)
    with contextlib.suppress(AttributeError, StopIteration):
        next(tempfile._get_candidate_names())  # type: ignore[attr-defined]


def spare_main(fds: list[int], cfg: dict[str, Any]) -> int:
    """A spare's whole life: wait for one message, then run it as the job's uid."""
    job_r, out_w, err_w, res_w = fds
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # not even the container's stderr stays in reach
        os.dup2(devnull, fd)
    keep = sorted(fds)
    low = 3
    for fd in keep:  # close everything else we might have inherited
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 16)
    ids = empty_bounding_set(str(cfg.get("user"))) if cfg.get("isolate") else None
    _rehearse()
    chunks = []
    while True:
        chunk = os.read(job_r, 1 << 20)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(job_r)
    if not chunks:
        return 0  # the runner went away before giving us anything
    job = json.loads(b"".join(chunks))
    del chunks
    try:
        if ids is not None:
            drop_privileges(*ids)
        jobdir = tempfile.mkdtemp(prefix="job-", dir=cfg.get("workdir", "/tmp"))
        write_files(jobdir, job.get("files") or {})
    except (ValueError, OSError, LookupError) as exc:
        _write_all(res_w, json.dumps({"setup_error": f"{type(exc).__name__}: {exc}"}).encode())
        return SETUP_FAILED
    return child(job, jobdir, out_w, err_w, res_w)


def _write_all(fd: int, data: bytes) -> None:
    with contextlib.suppress(OSError):  # the code may have closed our pipe
        while data:
            data = data[os.write(fd, data) :]


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
    """Execute the user's code (in a spare, as the job's uid); return its exit code."""
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(out_w, 1)
    os.dup2(err_w, 2)
    for fd in (devnull, out_w, err_w):
        if fd > 2 and fd != res_w:
            os.close(fd)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # what a normal Python process has
    sys.stdin = open(os.devnull)  # noqa: SIM115 - lives as long as the child
    # Unbuffered like ``python -u``: output printed before a timeout kill is not lost.
    sys.stdout = _text_stream(1)
    sys.stderr = _text_stream(2)
    os.chdir(jobdir)
    filename = job.get("file") or "<code>"
    sys.argv = [filename]
    # The job's directory, then "" (its working directory too), as ``python3 -c`` would
    # give it; the runner itself dropped "" (see ``runner.runner_source``).
    sys.path[:] = [jobdir, "", *(entry for entry in sys.path if entry != "")]
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
    else:
        payload = "{}"
    # stdout and stderr closed first, then the result with the status this process is about
    # to exit with (as waitpid will see it) last: the runner may answer once both streams
    # have ended and the report is in, instead of waiting for the exit itself (about 0.5-1 ms
    # of tearing down the address space) or for yet another wake-up to see the result pipe
    # end; its sweep after the answer reaps this process. Whatever the job wrote here
    # instead counts no more than an exit status it chose itself.
    for fd in (1, 2):
        with contextlib.suppress(OSError):  # the code may have closed them itself
            os.close(fd)
    code = int(exit_code)
    if -(1 << 31) <= code < 1 << 31:  # what os._exit takes
        status = f'"exit":{code & 0xFF}'
        payload = payload[:-1] + ("," if payload != "{}" else "") + status + "}"
    _write_all(res_w, payload.encode())
    with contextlib.suppress(OSError):
        os.close(res_w)
    return exit_code
