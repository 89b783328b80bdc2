"""Run one job in a sandbox and describe plainly what happened.

Three paths share one in-container program and one result shape:

- ``execute_on_runner``: a warm container whose resident runner forks per job (fastest);
- ``execute_on_exec``: a warm container, one ``docker exec`` of the one-shot runner per job;
- ``execute_fresh``: create + attach + start + run + delete a container per job.

Timeouts are enforced from the host: at the deadline the host tells the runner to SIGKILL
the job, and a runner that does not confirm within ``kill_grace`` gets its container
discarded. Problems *with the job* (timeout, memory limit, non-zero exit, runner crash,
engine gone mid-run) come back as a result with ``success=False`` and a plain ``error``;
problems *before* it (``LimitError``, ``JobError``, ``ImageMissing``) are raised.
"""

from __future__ import annotations

import base64
import contextlib
import json
import posixpath
import time
from collections.abc import Mapping
from typing import Any

import attrs

from .engine import Engine
from .errors import EngineAPIError, EngineTimeout, EngineUnavailable, JobError
from .profile_fields import format_size
from .profiles import Profile
from .runner import RunnerConnection, RunOutcome, runner_command

__all__ = [
    "ExecutionResult",
    "Job",
    "execute_fresh",
    "execute_on_exec",
    "execute_on_runner",
    "info",
]

_STARTUP_ALLOWANCE = 0.5  # exec/fresh: the interpreter starts inside the host's budget
_SIGNALS = {9: "SIGKILL", 15: "SIGTERM", 11: "SIGSEGV", 6: "SIGABRT", 25: "SIGXFSZ"}


def _check_files(files: Mapping[str, str | bytes]) -> None:
    for name, content in files.items():
        norm = posixpath.normpath(name) if isinstance(name, str) else ""
        if not norm or norm.startswith(("/", "..")) or norm == "." or "\0" in norm:
            raise JobError(f"file name {name!r} must be a relative path inside the job directory")
        if not isinstance(content, (str, bytes)):
            raise JobError(f"file {name!r}: content must be str or bytes")


@attrs.frozen(kw_only=True)
class Job:
    """One piece of code to run: ``code`` or ``file`` (a name among ``files``)."""

    code: str | None = None
    file: str | None = None
    args: Any = None  # JSON value; visible to the code as the global ``args``
    files: Mapping[str, str | bytes] = attrs.field(factory=dict)
    timeout: float | None = None  # may only tighten the profile's timeout
    output_limit: int | None = None  # bytes per stream; may only tighten the profile's

    def __attrs_post_init__(self) -> None:
        if (self.code is None) == (self.file is None):
            raise JobError("a job needs exactly one of `code` or `file`")
        if self.file is not None and self.file not in self.files:
            raise JobError(f"file {self.file!r} is not among the job's files")
        _check_files(self.files)
        try:
            json.dumps(self.args, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise JobError(f"args must be JSON-serialisable: {exc}") from None

    def effective_profile(self, profile: Profile) -> Profile:
        return profile.restrict(timeout=self.timeout, output_limit=self.output_limit)

    def request(self, profile: Profile) -> dict[str, Any]:
        """The body of the runner's ``run`` message."""
        files = {
            name: base64.b64encode(data.encode() if isinstance(data, str) else data).decode()
            for name, data in self.files.items()
        }
        size = sum(len(v) * 3 // 4 for v in files.values())
        if size > profile.tmp_size // 2:
            raise JobError(
                f"files total {format_size(size)}, more than half of the sandbox's "
                f"{format_size(profile.tmp_size)} /tmp"
            )
        return {
            "code": self.code,
            "file": self.file,
            "args": self.args,
            "files": files,
            "output_limit": profile.output_limit,
            "result_limit": profile.result_limit,
        }


@attrs.frozen(kw_only=True)
class ExecutionResult:
    """Outcome of one job. ``as_dict()`` gives the public result dict."""

    success: bool
    stdout: str = ""
    stderr: str = ""
    exit_code: int | None = None
    result: Any = None
    error: str | None = None
    duration_ms: float = 0.0
    truncated: bool = False
    container_id: str | None = None
    path: str = ""  # "runner", "exec" or "fresh"
    note: str | None = None  # e.g. why ``result`` is a repr string
    reusable: bool = False  # may the container serve another job?
    # Set when the *engine* failed, not the job: "unavailable", "timeout" or "error". A hub
    # counts that against the engine and may run the job elsewhere (not in ``as_dict``).
    engine_failure: str | None = None

    def as_dict(self) -> dict[str, Any]:
        keys = ("success", "stdout", "stderr", "exit_code", "result", "error")
        out = {k: getattr(self, k) for k in keys}
        out.update(
            duration_ms=self.duration_ms,
            truncated=self.truncated,
            container_id=self.container_id,
            path=self.path,
            note=self.note,
        )
        return out


def _exit_error(reply: Mapping[str, Any]) -> str:
    code = reply.get("exit_code")
    signum = reply.get("signal")
    text = f"exit code {code}"
    if signum:
        text += f" (killed by signal {signum}, {_SIGNALS.get(signum, 'signal')})"
    last = next((ln for ln in reversed(str(reply.get("stderr", "")).splitlines()) if ln), "")
    if code == 1 and ("Error" in last or "Exception" in last):
        text += f": {last.strip()[:200]}"
    return text


def build_result(
    outcome: RunOutcome,
    profile: Profile,
    *,
    started: float,
    container_id: str | None,
    path: str,
    oom_killed: bool = False,
) -> ExecutionResult:
    """Turn the runner's reply (or its absence) into an ``ExecutionResult``."""
    reply = outcome.reply or {}
    memory_error = f"memory limit exceeded ({format_size(profile.memory)})"
    if outcome.timed_out:
        error: str | None = f"timeout after {profile.timeout:g} s"
    elif outcome.reply is None:
        error = memory_error if oom_killed else (outcome.detail or "the runner gave no result")
    elif reply.get("error"):
        error = str(reply["error"])
    elif reply.get("oom"):
        error = memory_error
    elif reply.get("exit_code") != 0:
        error = _exit_error(reply)
    else:
        error = None
    return ExecutionResult(
        success=error is None,
        stdout=str(reply.get("stdout") or ""),
        stderr=str(reply.get("stderr") or ""),
        exit_code=reply.get("exit_code"),
        result=reply.get("result") if reply.get("has_result") else None,
        error=error,
        duration_ms=round((time.perf_counter() - started) * 1000, 3),
        truncated=bool(reply.get("stdout_truncated") or reply.get("stderr_truncated")),
        container_id=container_id,
        path=path,
        note=reply.get("result_note"),
        reusable=bool(outcome.responsive and not outcome.timed_out and reply.get("clean")),
    )


def _engine_failure(exc: Exception, started: float, cid: str | None, path: str) -> ExecutionResult:
    error = str(exc) if isinstance(exc, EngineUnavailable) else f"engine error: {exc}"
    duration = round((time.perf_counter() - started) * 1000, 3)
    kind = (
        "unavailable" if isinstance(exc, EngineUnavailable)
        else "timeout" if isinstance(exc, EngineTimeout)
        else "error"
    )  # fmt: skip
    return ExecutionResult(
        success=False,
        error=error,
        duration_ms=duration,
        container_id=cid,
        path=path,
        engine_failure=kind,
    )


async def _oom_killed(engine: Engine, container_id: str) -> bool:
    """Did the engine record an OOM kill (runner itself killed)? ``EngineUnavailable`` if
    the engine is gone: then the engine, not the job, is why the runner vanished."""
    # Let the container finish exiting first: OOMKilled is recorded on exit.
    with contextlib.suppress(EngineUnavailable, EngineTimeout, EngineAPIError):
        await engine.call(
            "container wait", lambda: engine.container(container_id).wait(), timeout=2.0
        )
    try:
        state = (await engine.inspect(container_id)).get("State", {})
    except (EngineTimeout, EngineAPIError):
        return False
    return bool(state.get("OOMKilled"))


async def execute_on_runner(
    conn: RunnerConnection, profile: Profile, job: Job, *, kill_grace: float = 2.0
) -> ExecutionResult:
    """Run ``job`` on a warm container's resident runner (exclusive use assumed)."""
    profile = job.effective_profile(profile)
    request = job.request(profile)
    started = time.perf_counter()
    cid = conn.container_id
    try:
        outcome = await conn.run(request, profile.timeout, kill_grace)
        oom = outcome.reply is None and not conn.alive and await _oom_killed(conn.engine, cid)
    except (EngineUnavailable, EngineTimeout, EngineAPIError) as exc:
        return _engine_failure(exc, started, cid, "runner")
    return build_result(
        outcome, profile, started=started, container_id=cid, path="runner", oom_killed=oom
    )


async def execute_on_exec(
    engine: Engine, container_id: str, profile: Profile, job: Job, *, kill_grace: float = 1.0
) -> ExecutionResult:
    """Run ``job`` with ``docker exec`` of the one-shot runner in a running container."""
    profile = job.effective_profile(profile)
    request = job.request(profile)
    started = time.perf_counter()
    conn: RunnerConnection | None = None
    try:
        conn = await RunnerConnection.exec(engine, container_id, profile)
        outcome = await conn.run(request, profile.timeout + _STARTUP_ALLOWANCE, kill_grace)
    except (EngineUnavailable, EngineTimeout, EngineAPIError) as exc:
        return _engine_failure(exc, started, container_id, "exec")
    finally:
        if conn is not None:
            await conn.close()
    return build_result(outcome, profile, started=started, container_id=container_id, path="exec")


async def execute_fresh(
    engine: Engine,
    profile: Profile,
    job: Job,
    *,
    hub_id: str = "gleitzeit",
    labels: Mapping[str, str] | None = None,
) -> ExecutionResult:
    """Create a container for this job alone, run it, delete the container."""
    profile = job.effective_profile(profile)
    request = job.request(profile)
    started = time.perf_counter()
    all_labels = engine.labels(hub_id, pool_key=profile.pool_key(), mode="fresh")
    all_labels.update(labels or {})
    config = profile.container_config(all_labels, runner_command(profile, once=True, reap=False))
    cid: str | None = None
    conn: RunnerConnection | None = None
    try:
        cid = await engine.create(config)
        conn = await RunnerConnection.attach(engine, cid)
        await engine.start(cid)
        outcome = await conn.run(request, profile.timeout + _STARTUP_ALLOWANCE, kill_grace=0.5)
        oom = outcome.reply is None and await _oom_killed(engine, cid)
        result = build_result(
            outcome, profile, started=started, container_id=cid, path="fresh", oom_killed=oom
        )
    except (EngineUnavailable, EngineTimeout, EngineAPIError) as exc:
        result = _engine_failure(exc, started, cid, "fresh")
    finally:
        if conn is not None:
            await conn.close()
        if cid is not None:  # if this fails, remove_all/remove_orphans find it by label
            with contextlib.suppress(EngineUnavailable, EngineTimeout, EngineAPIError):
                await engine.delete(cid)
    return attrs.evolve(result, reusable=False)


def info(profile: Profile, hello: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Python version and platform (from a runner's hello), profile and limits."""
    hello = hello or {}
    return {
        "python_version": hello.get("python"),
        "implementation": hello.get("implementation"),
        "platform": hello.get("platform"),
        "profile": profile.name,
        "image": profile.image,
        "pool_key": profile.pool_key(),
        "limits": profile.limits(),
    }
