"""``PythonDockerProvider``: the old ``python/v1`` provider with execution modes.

Modes ``sandboxed``, ``minimal`` and ``datascience`` run through a ``DockerExecutor`` (so the
python/v1 provider of the Docker plugin, in its hardened profiles); ``local`` runs in a child
process with a timeout - and only when switched on (``enable_local=True`` or
``GLEITZEIT_PYTHON_ALLOW_LOCAL=1``), since it is code execution on the host.

Results have the old shape ``{success, stdout, stderr, exit_code, result?, error?,
execution_mode}``; ``python/info``, ``python/validate`` and ``health_check`` too.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, overload

from typing_extensions import deprecated

from gleitzeit_core import InvalidParams, PermissionDenied, Runtime, UnknownMethod, current_caller

from .adapter import HubProviderAdapter
from .backend import HUB, LEGACY, Timer, failure_of, request_timeout
from .deprecation import warn_once
from .docker_executor import DockerExecutor, args_prelude, old_result, with_prelude
from .docker_hub import DockerConfig, DockerHub, allowed_images, check_image
from .local_exec import run_local
from .translate import OLD_MODES, mode_name

__all__ = ["PythonDockerProvider"]

log = logging.getLogger("gleitzeit.legacy")

_DESCRIPTIONS = {
    "local": "Direct execution on host (trusted code only), in a child process with a timeout",
    "sandboxed": "Isolated Docker container execution",
    "datascience": "Data science environment with ML libraries",
    "minimal": "Minimal Python environment",
}


def _local_allowed_by_env() -> bool:
    return os.environ.get("GLEITZEIT_PYTHON_ALLOW_LOCAL", "").lower() in ("1", "true", "yes")


class PythonDockerProvider(HubProviderAdapter):
    """The old ``PythonDockerProvider(provider_id, docker_config, pool_config, default_mode,
    allowed_local_modules)`` (protocol ``python/v1``).

    ``docker_config`` may say ``image`` (every Docker mode's image), ``images`` (per mode),
    ``base_url`` and ``hub_id`` (see ``DockerExecutor``). New keyword-only arguments: ``hub``
    (the plan's Phase 3: a ``DockerHub`` to share; without one the provider makes and owns
    ``DockerHub(hub_id=f"{provider_id}-hub")``), ``enable_local``, ``features``, ``runtime``
    and ``rollout_key``. A request's ``image`` must be a mode's image or on the operator's
    allow-list (``GLEITZEIT_DOCKER_ALLOWED_IMAGES``).
    """

    @overload
    def __init__(
        self,
        provider_id: str,
        *,
        hub: DockerHub | None = None,
        enable_local: bool | None = None,
        features: Mapping[str, Any] | None = None,
        runtime: Runtime | None = None,
        rollout_key: str | None = None,
    ) -> None: ...

    @overload
    @deprecated(  # PEP 702: the pre-hub shape (a literal: checkers read no expressions)
        "PythonDockerProvider is deprecated. Use PythonDockerProvider(provider_id, "
        "hub=DockerHub(...)) instead (docs/migration.md).",
        category=None,
    )
    def __init__(
        self,
        provider_id: str,
        docker_config: Mapping[str, Any] | None,
        pool_config: Mapping[str, Any] | None = None,
        default_mode: str = "sandboxed",
        allowed_local_modules: Sequence[str] | None = None,
        *,
        hub: DockerHub | None = None,
        enable_local: bool | None = None,
        features: Mapping[str, Any] | None = None,
        runtime: Runtime | None = None,
        rollout_key: str | None = None,
    ) -> None: ...

    def __init__(
        self,
        provider_id: str,
        docker_config: Mapping[str, Any] | None = None,
        pool_config: Mapping[str, Any] | None = None,
        default_mode: str = "sandboxed",
        allowed_local_modules: Sequence[str] | None = None,
        *,
        hub: DockerHub | None = None,
        enable_local: bool | None = None,
        features: Mapping[str, Any] | None = None,
        runtime: Runtime | None = None,
        rollout_key: str | None = None,
    ) -> None:
        pre_hub = docker_config is not None or pool_config is not None
        if hub is None and (pre_hub or default_mode != "sandboxed" or allowed_local_modules):
            warn_once("PythonDockerProvider")  # the pre-hub shape; hub= (or nothing) is current
        super().__init__(
            provider_id,
            "python/v1",
            name="Python Docker Provider",
            description="Python execution with Docker sandboxing",
        )
        self.default_mode = mode_name(default_mode)
        self.allowed_local_modules = list(allowed_local_modules or [])
        self.docker_config = dict(docker_config or {})
        self.pool_config = dict(pool_config or {})
        self.rollout_key = rollout_key
        self._features = features
        self._shared_runtime = runtime
        local = _local_allowed_by_env() if enable_local is None else enable_local
        images = dict(self.docker_config.get("images") or {})
        # the Docker modes' image: the config's, else the shared hub's, else the operator's
        default_image = (
            self.docker_config.get("image")
            or (hub.default_image if hub is not None else None)
            or os.environ.get("GLEITZEIT_DOCKER_IMAGE")
        )
        self.execution_modes: dict[str, dict[str, Any]] = {
            "local": {
                "enabled": bool(local),
                "trusted": True,
                "description": _DESCRIPTIONS["local"],
            }
        }
        for mode, preset in OLD_MODES.items():
            self.execution_modes[mode] = {
                "enabled": True,
                "image": images.get(mode) or default_image or preset["image"],
                "memory_limit": preset["memory"],
                "cpu_limit": preset["cpus"],
                "network": "none",
                "timeout": preset["timeout"],
                "description": _DESCRIPTIONS[mode],
            }
        self.owns_hub = hub is None
        self.hub = hub or DockerHub(
            hub_id=str(self.docker_config.get("hub_id") or f"{provider_id}-hub"),
            default_image=default_image,
            docker_config=self.docker_config,
            pool_config=self.pool_config,
            features=features,
            runtime=runtime,
        )
        self.docker_executor: DockerExecutor | None = None
        self._initialized = False
        self._init_lock = asyncio.Lock()

    @property
    def runtime(self) -> Runtime:
        return self._executor().runtime

    def _executor(self) -> DockerExecutor:
        """The executor, while its hub runs (a shared hub its owner stopped is not restarted
        behind the owner's back)."""
        if self.docker_executor is None:
            raise RuntimeError(f"provider {self.provider_id!r}: Docker is not initialized")
        self.hub.require_running(f"provider {self.provider_id!r}")
        return self.docker_executor

    def get_supported_methods(self) -> list[str]:
        return ["python/execute", "python/validate", "python/info"]

    async def initialize(self) -> None:
        """Start a Docker executor; without a usable engine the Docker modes are disabled
        (as before) and ``local`` - if switched on - keeps working."""
        async with self._init_lock:
            if self._initialized:
                return
            self._initialized = True
            docker_modes = [m for m in OLD_MODES if self.execution_modes[m]["enabled"]]
            if not docker_modes:
                return
            try:
                executor = self.hub.executor
                executor.rollout_key = self.rollout_key
                if self.owns_hub:
                    executor.shim.names = (self.provider_id,)
                await self.hub.start()
            except (ImportError, ConnectionError, OSError, ValueError) as exc:
                log.warning("gleitzeit legacy: Docker unavailable, Docker modes disabled: %s", exc)
                for mode in docker_modes:
                    self.execution_modes[mode]["enabled"] = False
                return
            self.docker_executor = executor

    async def shutdown(self) -> None:
        """Stop the hub this provider made (with its containers); a hub passed in keeps
        running for its other users."""
        self.docker_executor = None
        if self.owns_hub:
            await self.hub.stop()
        self._initialized = False

    def _prepare_python_command(self, code: str) -> list[str]:
        """The plan's Phase 3.2 helper: the command that runs ``code`` (an argv list, so no
        shell ever re-splits the code)."""
        return ["python", "-c", code]

    async def _execute_docker(self, code: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """The plan's Phase 3.2 path: a container of the configuration ``params`` describe
        from the hub, then ``code`` in it (``{success, exit_code, stdout, stderr, ...}``)."""
        config = DockerConfig(
            image=params.get("image", self.hub.default_image),
            memory_limit=params.get("memory_limit", "512m"),
            security_level=params.get("security_level", "sandboxed"),
            timeout=float(params.get("timeout", 60.0)),
        )
        instance = await self.hub.get_or_create_instance(config)
        result: dict[str, Any] = await self.hub.execute_in_container(
            instance_id=instance.id, command=self._prepare_python_command(code)
        )
        return result

    async def health_check(self) -> dict[str, Any]:
        docker_status = "not_initialized"
        pool: dict[str, Any] = {}
        if self.docker_executor is not None:
            try:
                pool = await self.docker_executor.get_pool_status()
                docker_status = "healthy"
            except Exception as exc:
                docker_status = f"unhealthy: {exc}"
        return {
            "status": "healthy",
            "details": {
                "default_mode": self.default_mode,
                "docker_status": docker_status,
                "container_pool": pool,
                "enabled_modes": [m for m, c in self.execution_modes.items() if c["enabled"]],
            },
        }

    async def execute(self, method: str, params: Mapping[str, Any] | None = None) -> Any:
        return await self.execute_path(None, method, params)

    async def execute_path(
        self, path: str | None, method: str, params: Mapping[str, Any] | None = None
    ) -> Any:
        """``execute`` on a given path (``"hub"``, ``"legacy"``, or ``None``: the flags')."""
        if path not in (None, HUB, LEGACY):
            raise ValueError(f"path must be 'hub' or 'legacy', got {path!r}")
        params = dict(params or {})
        if method == "python/execute":
            await self.initialize()
            return await self._execute_python(params, path)
        if method == "python/validate":
            return await self._validate(params)
        if method == "python/info":
            await self.initialize()
            return self._info()
        if method == "python/batch":
            tasks = params.get("tasks")
            if not isinstance(tasks, list):
                raise InvalidParams(method, ["params.tasks: expected a list of tasks"])
            limit = int(params.get("max_concurrent", 5))
            results = await self.batch_execute(tasks, limit)
            ok = sum(1 for r in results if r.get("success"))
            return {
                "success": ok == len(results),
                "results": results,
                "summary": {"total": len(results), "successful": ok, "failed": len(results) - ok},
            }
        raise UnknownMethod(method, [*self.get_supported_methods(), "python/batch"])

    async def _code(self, method: str, params: Mapping[str, Any]) -> str:
        code = params.get("code")
        file_path = params.get("file")
        if not code and not file_path:
            raise InvalidParams(method, ["Either 'code' or 'file' parameter is required"])
        if not code:
            if current_caller() is not None:  # as encode_images: host files for in-process code
                raise InvalidParams(
                    method,
                    [
                        "params.file: a request made for a client never reads a host file; "
                        "send the source as params.code"
                    ],
                )
            try:
                code = await asyncio.to_thread(Path(str(file_path)).read_text, encoding="utf-8")
            except OSError as exc:
                raise InvalidParams(method, [f"Failed to read file: {exc}"]) from None
        if not isinstance(code, str):
            raise InvalidParams(method, [f"params.code: expected a string, got {code!r}"])
        return code

    async def _execute_python(self, params: Mapping[str, Any], path: str | None) -> dict[str, Any]:
        method = "python/execute"
        code = await self._code(method, params)
        args = params.get("args") or {}
        if not isinstance(args, Mapping):
            raise InvalidParams(method, ["params.args: expected a table of names to values"])
        try:
            mode = mode_name(params.get("execution_mode") or self.default_mode)
        except ValueError as exc:
            raise InvalidParams(method, [str(exc)]) from None
        config = self.execution_modes[mode]
        if not config.get("enabled"):
            raise InvalidParams(method, [f"Execution mode '{mode}' is not enabled"])
        timeout = request_timeout(method, params, float(config.get("timeout") or 60))
        if mode == "local":
            caller = current_caller()
            if caller is not None:  # host execution is for the operator's own code
                raise PermissionDenied(
                    caller.name,
                    "profiles",
                    "execution mode 'local' runs code on the host; a client's request must use "
                    "a Docker mode (sandboxed, minimal, datascience)",
                )
            return await self._local(code, args, timeout, path)
        executor = self._executor()
        image = params.get("image") or config["image"]
        if image != config["image"]:  # a request's own image: only from the allow-list
            own = {c["image"] for c in self.execution_modes.values() if "image" in c}
            check_image(str(image), own, allowed_images(self.hub.allowed), method)
        network = params.get("network") or config["network"]
        if network != config["network"] and not self.hub.allow_network:
            # a request may not open the network the operator kept closed
            raise InvalidParams(
                method,
                [
                    f"params.network: {network!r} needs DockerHub(allow_network=True) from the "
                    f"operator; this provider's sandboxes have network {config['network']!r}"
                ],
            )
        result = await executor.execute_new(
            with_prelude(args_prelude(args), code),
            image=image,
            timeout=timeout,
            memory_limit=params.get("memory_limit") or config["memory_limit"],
            cpu_limit=params.get("cpu_limit") or config["cpu_limit"],
            network_mode=network,
            volumes=params.get("volumes"),
            environment=params.get("environment"),
            files=params.get("files"),
            path=path,
            rollout_key=self._key(params),
            profile=mode,
        )
        return {**old_result(result), "execution_mode": mode}

    def _key(self, params: Mapping[str, Any]) -> str | None:
        for name in ("rollout_key", "session_id", "user_id"):
            if params.get(name) is not None:
                return str(params[name])
        return self.rollout_key

    async def _local(
        self, code: str, args: Mapping[str, Any], timeout: float, path: str | None
    ) -> dict[str, Any]:
        timer = Timer()
        try:
            result = await run_local(
                code, args, timeout, allowed_modules=self.allowed_local_modules or None
            )
        except BaseException as exc:
            self._record(path, timer.elapsed(), failure_of(exc))
            raise
        self._record(path, timer.elapsed(), None)
        return result

    def _record(self, path: str | None, duration: float, failure: Any) -> None:
        # local mode is the same on both paths; it is counted as legacy (the old behaviour)
        if self.docker_executor is not None:
            self.docker_executor.shim.record(path or LEGACY, duration, failure)

    async def _validate(self, params: Mapping[str, Any]) -> dict[str, Any]:
        method = "python/validate"
        if not params.get("code") and not params.get("file"):
            raise InvalidParams(method, ["Either 'code' or 'file' parameter is required"])
        try:
            code = await self._code(method, params)
        except InvalidParams as exc:
            return {"valid": False, "error": "; ".join(exc.problems)}
        # The Docker plugin's python/validate compiles in a bounded worker process, never on
        # the event loop (2 MiB of code blocked a gateway 2.2 s): one owner for that check.
        answer = await self.runtime.execute("python/validate", {"code": code})
        if answer.get("valid"):
            return {"valid": True, "message": "Code syntax is valid"}
        return {
            "valid": False,
            "error": answer.get("error"),
            "line": answer.get("line"),
            "offset": answer.get("column"),
        }

    def _info(self) -> dict[str, Any]:
        return {
            "provider": self.provider_id,
            "default_mode": self.default_mode,
            "execution_modes": {
                mode: {"enabled": bool(c.get("enabled")), "description": c.get("description", "")}
                for mode, c in self.execution_modes.items()
            },
            "docker_available": self.docker_executor is not None,
        }

    async def batch_execute(
        self, tasks: Sequence[Mapping[str, Any]], max_concurrent: int = 5
    ) -> list[dict[str, Any]]:
        """``python/execute`` for each task, at most ``max_concurrent`` at once, in order; a
        failing task becomes ``{success: false, error}``."""
        gate = asyncio.Semaphore(max(1, max_concurrent))

        async def one(task: Mapping[str, Any]) -> dict[str, Any]:
            async with gate:
                try:
                    result: dict[str, Any] = await self.execute("python/execute", task)
                    return result
                except Exception as exc:
                    return {"success": False, "error": str(exc), "stdout": "", "stderr": ""}

        return list(await asyncio.gather(*(one(t) for t in tasks)))

    def path_metrics(self) -> dict[str, Any]:
        """Calls per path (hub/legacy) with error rate and latency."""
        if self.docker_executor is None:
            return {}
        return self.docker_executor.shim.primary.path_status()
