"""The ``python/v1`` provider: Python code in hardened, pooled Docker sandboxes.

================  =====================================================================
method            does
================  =====================================================================
python/execute    run ``code`` (or ``file`` among ``files``) with ``args``; the result
python/validate   compile without running (on the host: nothing is executed)
python/info       the sandbox's Python and platform, the profile's limits, the engines
python/batch      many executions, ``max_concurrent`` at once, results in order
================  =====================================================================

The result of an execution is ``{success, stdout, stderr, exit_code, result, error,
duration_ms, truncated, container_id, engine, path}`` (plus ``note`` when ``result`` had to
be shown as a string). ``error`` says plainly what happened: ``timeout after 5 s``,
``memory limit exceeded (256m)``, ``exit code 1: ValueError: ...`` or, when no engine could
run it, ``engine unavailable: ...``. A request asking for more than its profile allows, an
unknown profile or a malformed job is refused with ``InvalidParams`` before anything runs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

from gleitzeit_core import (
    Caller,
    FailureClass,
    InvalidParams,
    Method,
    PermissionDenied,
    ProtocolProvider,
    Request,
    current_caller,
)
from gleitzeit_docker.errors import JobError, ProfileError
from gleitzeit_docker.execution import ExecutionResult, Job, info
from gleitzeit_docker.hub import SLOT, DockerHub, EngineFailure
from gleitzeit_docker.params import (
    BatchParams,
    ExecuteParams,
    InfoParams,
    ValidateParams,
    file_contents,
)
from gleitzeit_docker.profiles import Profile
from gleitzeit_docker.validation import Validator

__all__ = ["PythonProvider"]

_EXECUTE = "python/execute"
# restrict() keyword for each request field that tightens a profile
_LIMITS = (
    ("memory", "memory"),
    ("cpus", "cpus"),
    ("pids", "pids_limit"),
    ("timeout", "timeout"),
    ("output_limit", "output_limit"),
)
_SLACK = 5.0  # seconds on top of a job's own budget before the hub gives up on it


def result_dict(result: ExecutionResult, engine: str | None) -> dict[str, Any]:
    out = result.as_dict()
    if out.get("note") is None:
        out.pop("note", None)
    out["engine"] = engine
    return out


def failure_dict(exc: EngineFailure, path: str) -> dict[str, Any]:
    """The result of a job that no engine could run (the engines' fault, not the code's)."""
    return result_dict(ExecutionResult(success=False, error=exc.detail, path=path), exc.resource)


class PythonProvider(ProtocolProvider):
    protocol = "python/v1"

    def __init__(
        self, hub: DockerHub, runtime: Any = None, options: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(hub, runtime, options)
        if not isinstance(hub, DockerHub):
            raise TypeError(f"python/v1 runs on a docker hub, not on {type(hub).__name__}")
        self.hub: DockerHub = hub
        limits = hub.settings.validate
        self.validator = Validator(
            max_size=limits.max_size,
            timeout=limits.timeout,
            memory=limits.memory,
            concurrency=limits.concurrency,
        )
        self._methods = {
            m.name: m
            for m in (
                Method(_EXECUTE, self.execute_one, ExecuteParams),
                Method("python/validate", self.validate_code, ValidateParams),
                Method("python/info", self.info, InfoParams),
                Method("python/batch", self.batch, BatchParams),
            )
        }

    def methods(self) -> Mapping[str, Method]:
        return self._methods

    # -- preparing a job ------------------------------------------------------------------------
    def profile(self, name: str | None, method: str, where: str = "params") -> Profile:
        """The named (or default) profile, if it exists, is enabled and the caller may use it."""
        name = name or self.hub.settings.default_profile
        try:
            profile: Profile = self.hub.profiles.get(name)
        except ProfileError as exc:
            raise InvalidParams(method, [f"{where}.profile: {exc}"]) from None
        caller = current_caller()
        if caller is not None and not self.may_use(caller, profile):
            raise PermissionDenied(
                caller.name,
                "profiles",
                f"sandbox profile {name!r} is not allowed for this key (it may use: "
                f"{', '.join(sorted(self.allowed_for(caller))) or 'none'})",
            )
        return profile

    def allowed_for(self, caller: Caller | None) -> set[str]:
        """The enabled profiles ``caller`` may use (None: the operator, all of them)."""
        return {
            name
            for name, profile in self.hub.profiles.profiles.items()
            if (not profile.networked or self.hub.profiles.allow_trusted)
            and (caller is None or self.may_use(caller, profile))
        }

    def may_use(self, caller: Caller, profile: Profile) -> bool:
        """A key's own list if it has one (a networked profile must be named in it), else
        the hub's client profiles and its default, never a networked one."""
        if caller.profiles is not None:
            return profile.name in caller.profiles
        if profile.networked:
            return False
        settings = self.hub.settings
        return profile.name in settings.client_profiles or profile.name == settings.default_profile

    def prepare(
        self, params: ExecuteParams, method: str = _EXECUTE, where: str = "params"
    ) -> tuple[Profile, Job]:
        """The effective (tightened) profile and the job, or ``InvalidParams``."""
        profile = self.profile(params.profile, method, where)
        problems: list[str] = []
        for field, keyword in _LIMITS:
            value = getattr(params, field)
            if value is None:
                continue
            try:
                profile = profile.tiered(**{keyword: value})
            except ProfileError as exc:  # LimitError included: asking for more than allowed
                problems.append(f"{where}.{field}: {exc}")
        try:
            job = Job(
                code=params.code,
                file=params.file,
                args=params.args,
                files=file_contents(params.files),
            )
            job.request(profile)  # checks the files fit the sandbox
        except JobError as exc:
            problems.append(f"{where}: {exc}")
            job = None
        if problems or job is None:
            raise InvalidParams(method, problems)
        return profile, job

    def request(self, budget: float) -> Request:
        """A request whose deadline leaves room for queueing, a container start and the
        job's own timeout (so a slow job is never cut short as if the engine had hung)."""
        hub = self.hub
        pool = hub.settings.pool
        allowance = budget + pool.start_timeout + pool.kill_grace + _SLACK
        return Request(slot=SLOT, deadline=hub.clock.now() + max(hub.request_timeout, allowance))

    async def run(self, profile: Profile, job: Job) -> dict[str, Any]:
        try:
            engine, result = await self.hub.run(profile, job, self.request(profile.timeout))
        except EngineFailure as exc:
            if not exc.failure.resource_fault:
                raise  # missing image, full pool, stopping hub: an error, not a result
            return failure_dict(exc, self.hub.settings.pool.mode)
        return result_dict(result, engine)

    # -- methods --------------------------------------------------------------------------------
    async def execute_one(self, params: ExecuteParams) -> dict[str, Any]:
        profile, job = self.prepare(params)
        return await self.run(profile, job)

    async def validate_code(self, params: ValidateParams) -> dict[str, Any]:
        method = "python/validate"
        if (params.code is None) == (params.file is None):
            raise InvalidParams(method, ["params: give exactly one of `code` or `file`"])
        if params.code is not None:
            self._check_size(params.code, method, "params.code")
            return await self.validator.validate(params.code)
        files = file_contents(params.files)
        source = files.get(str(params.file))
        if source is None:
            raise InvalidParams(method, [f"params.file: {params.file!r} is not among `files`"])
        if isinstance(source, bytes):
            try:
                source = source.decode("utf-8")
            except UnicodeDecodeError:
                error = "the file is not UTF-8 text"
                return {"valid": False, "error": error, "line": None, "column": None}
        self._check_size(source, method, f"params.files[{params.file!r}]")
        return await self.validator.validate(source)

    def _check_size(self, source: str, method: str, where: str) -> None:
        problem = self.validator.too_big(source)
        if problem is not None:
            raise InvalidParams(method, [f"{where}: {problem}"])

    async def info(self, params: InfoParams) -> dict[str, Any]:
        hub = self.hub
        profile = self.profile(params.profile, "python/info")
        try:
            engine, out = await hub.info(profile, self.request(0.0))
            out = {**out, "engine": engine}
        except EngineFailure as exc:
            if not exc.failure.resource_fault and exc.failure is not FailureClass.MISROUTED:
                raise
            out = {**info(profile), "engine": None, "error": exc.detail}
        names = self.allowed_for(current_caller())
        allowed = {n: p for n, p in hub.profiles.profiles.items() if n in names}
        out.update(
            hub=hub.name,
            hub_id=hub.hub_id,
            default_profile=hub.settings.default_profile,
            profiles={n: {"image": p.image, **p.limits()} for n, p in sorted(allowed.items())},
            engines=[
                {"id": r.id, "endpoint": r.endpoint, "health": r.health.value}
                for r in hub.resources
            ],
            mode=hub.settings.pool.mode,
        )
        return out

    async def batch(self, params: BatchParams) -> dict[str, Any]:
        """Every task runs (at most ``max_concurrent`` at once); one that fails, even before
        it starts (a limit it may not have), becomes a failed result, never a failed batch."""
        for index, task in enumerate(params.tasks):  # a key's scope is not a task's failure
            with contextlib.suppress(InvalidParams):
                self.profile(task.profile, "python/batch", f"params.tasks[{index}]")
        # one request may not hold more containers at once than its key may hold requests
        caller = current_caller()
        width = params.max_concurrent
        if caller is not None and caller.max_concurrent is not None:
            width = min(width, caller.max_concurrent)
        gate = asyncio.Semaphore(width)

        async def one(index: int, task: ExecuteParams) -> dict[str, Any]:
            async with gate:
                try:
                    profile, job = self.prepare(task, "python/batch", f"params.tasks[{index}]")
                    return await self.run(profile, job)
                except Exception as exc:  # this task's problem only: it becomes its result
                    return result_dict(ExecutionResult(success=False, error=str(exc)), None)

        results = await asyncio.gather(*(one(i, t) for i, t in enumerate(params.tasks)))
        ok = sum(1 for r in results if r["success"])
        return {
            "success": ok == len(results),
            "results": list(results),
            "summary": {"total": len(results), "successful": ok, "failed": len(results) - ok},
        }
