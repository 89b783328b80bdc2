"""``DockerExecutor``, ``ContainerPool`` and ``SecurityLevel`` over a Docker hub.

Every execution runs through the ``python/v1`` provider (``runtime.execute("python/execute")``)
in the Docker plugin's hardened sandboxes: read-only root, a private tmpfs ``/tmp`` (the host's
``/tmp`` is never mounted), all capabilities dropped, a non-root user, no network unless asked
for, a pids limit, and a timeout enforced from the host.

The old executor took the image, limits and network per call. A profile fixes the image and
network, so the shim keeps one runtime per (image, network) - created on first use
- whose profiles carry generous ceilings; each call then tightens the profile to exactly the
memory, CPUs and timeout it asked for (the pool keys containers by their full config, so two
calls with different limits never share a container - the old pool keyed them by image only).

Dual mode: the hub path runs on a hub with the configured failover; the legacy path on a hub
that makes one attempt on one engine (the old executor's single Docker client). Both count in
the per-path figures (``paths`` in the status, ``path_metrics()`` of the primary backend).
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import logging
import os
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import aiodocker
import aiohttp
import attrs
from typing_extensions import deprecated

from gleitzeit_core import FailureClass, InvalidParams, Runtime

from .backend import HUB, LEGACY, Backend, Timer, failure_of
from .deprecation import warn_once
from .translate import Report, docker_pool_table

__all__ = [
    "ContainerConfig",
    "ContainerPool",
    "DockerExecutor",
    "DockerShim",
    "SecurityLevel",
    "old_result",
]

log = logging.getLogger("gleitzeit.legacy")

DEFAULT_IMAGE = "python:3.11-slim"
_HUB = "sandbox"
_NETWORKS = ("none", "bridge")
# ceilings of the shim's profiles; every call tightens them to what it asked for
_MEMORY_CEILING = "16g"
_TIMEOUT_CEILING = 3600.0
_OUTPUT_CEILING = "4m"


class SecurityLevel(enum.StrEnum):
    """The old security levels. SANDBOXED, TRUSTED and RESTRICTED all run in the hardened
    ``sandboxed`` profile (TRUSTED/RESTRICTED had no preset and fell back to hardened
    defaults); SPECIALIZED runs in ``datascience``."""

    TRUSTED = "trusted"
    RESTRICTED = "restricted"
    SANDBOXED = "sandboxed"
    SPECIALIZED = "specialized"

    @property
    def profile(self) -> str:
        return "datascience" if self is SecurityLevel.SPECIALIZED else "sandboxed"


@attrs.define
class ContainerConfig:
    """The old per-container settings; ``DockerExecutor.execute`` takes the same values as
    arguments. Hardening fields are kept for reading only: the sandbox always applies its own
    (read-only root, no capabilities, non-root user)."""

    image: str = DEFAULT_IMAGE
    memory_limit: str = "512m"
    cpu_limit: float = 1.0
    network_mode: str = "none"
    read_only_root: bool = True
    volumes: dict[str, Any] = attrs.field(factory=dict)
    environment: dict[str, str] = attrs.field(factory=dict)
    security_opt: list[str] = attrs.field(factory=list)
    cap_drop: list[str] = attrs.field(factory=lambda: ["ALL"])
    user: str = "nobody"
    working_dir: str = "/workspace"
    auto_remove: bool = False
    detach: bool = True


def old_result(new: Mapping[str, Any]) -> dict[str, Any]:
    """The old result shape ``{success, stdout, stderr, exit_code, result?, error?}``."""
    out: dict[str, Any] = {
        "success": bool(new.get("success")),
        "stdout": new.get("stdout", ""),
        "stderr": new.get("stderr", ""),
        "exit_code": new.get("exit_code"),
    }
    if new.get("result") is not None:
        out["result"] = new["result"]
    if new.get("error") is not None:
        out["error"] = new["error"]
    elif not out["success"]:
        out["error"] = f"exit code {out['exit_code']}"
    return out


def args_prelude(args: Mapping[str, Any] | None) -> str:
    """``key = repr(value)`` lines, as the old providers put arguments in front of the code."""
    if not args:
        return ""
    lines = []
    for key, value in args.items():
        if not str(key).isidentifier():
            raise InvalidParams("python/execute", [f"params.args: {key!r} is not a name"])
        lines.append(f"{key} = {value!r}")
    return "\n".join(lines) + "\n\n"


def _future_end(code: str) -> int:
    """Where the code's leading docstring and ``from __future__`` imports end (0 if it has
    none): lines put in front of the code go there, since those must come first. A scan of
    the first lines only - never a parse of the whole code on the event loop."""
    lines = code.splitlines(keepends=True)
    offset = end = 0
    index = 0
    seen_docstring = False
    while index < len(lines):
        stripped = lines[index].strip()
        if not stripped or stripped.startswith("#"):
            offset += len(lines[index])
            index += 1
            continue
        if not seen_docstring and stripped[:3] in ('"""', "'''") and end == 0:
            seen_docstring = True
            quote = stripped[:3]
            closed = stripped.count(quote) >= 2
            while True:
                offset += len(lines[index])
                index += 1
                if closed or index >= len(lines):
                    break
                closed = quote in lines[index]
            continue
        if stripped.startswith("from __future__ import"):
            depth = stripped.count("(") - stripped.count(")")
            offset += len(lines[index])
            index += 1
            while (depth > 0 or lines[index - 1].rstrip().endswith("\\")) and index < len(lines):
                depth += lines[index].count("(") - lines[index].count(")")
                offset += len(lines[index])
                index += 1
            end = offset
            continue
        break
    return end


def with_prelude(prelude: str, code: str) -> str:
    """``code`` with ``prelude`` lines in front - after its ``from __future__`` imports."""
    if not prelude:
        return code
    end = _future_end(code) if "__future__" in code else 0
    head = code[:end]
    if head and not head.endswith("\n"):
        head += "\n"
    return head + prelude + code[end:]


def env_prelude(env: Mapping[str, Any]) -> str:
    """A line that sets ``env`` in the sandboxed process (and its children) before the code,
    binding no name of its own."""
    if not env:
        return ""
    values = {str(k): str(v) for k, v in env.items()}
    return f"__import__('os').environ.update({values!r})\n"


def _hub_id(prefix: str, key: tuple[Any, ...]) -> str:
    digest = hashlib.blake2b(repr(key).encode(), digest_size=4).hexdigest()
    return f"{prefix}-{digest}"


class DockerShim:
    """The runtimes behind one old executor and the dual-mode bookkeeping."""

    def __init__(
        self,
        config: Mapping[str, Any] | None,
        pool_config: Mapping[str, Any] | None,
        *,
        features: Mapping[str, Any] | None = None,
        runtime: Runtime | None = None,
        hub: str = _HUB,
    ) -> None:
        self.config = dict(config or {})
        self.pool = docker_pool_table(pool_config, "pool_config", Report())
        self.pool.setdefault("acquire_timeout", 30.0)  # the old pool waited 30 s when full
        self.features = features
        self.default_image = str(self.config.get("image") or DEFAULT_IMAGE)
        engine = self.config.get("base_url") or self.config.get("docker_host")
        self.engines = [str(engine)] if engine else []
        self.hub_prefix = str(self.config.get("hub_id") or f"legacy@{socket.gethostname()}")
        self.names: tuple[str, ...] = ("DockerExecutor",)  # for FEATURES' provider list
        self.cpu_ceiling = float(os.cpu_count() or 1)
        self._backends: dict[tuple[Any, ...], Backend] = {}
        self._lock = asyncio.Lock()
        key = (HUB, self.default_image, "none", ())
        if runtime is not None:
            self.primary = Backend({}, hub=hub, protocol="python/v1", runtime=runtime)
            self.shared = True
        else:
            self.primary = self._make(key)
            self.shared = False
        self._backends[key] = self.primary

    def _table(self, path: str, image: str, network: str) -> dict[str, Any]:
        profile: dict[str, Any] = {
            "image": image,
            "memory": _MEMORY_CEILING,
            "cpus": self.cpu_ceiling,
            "timeout": _TIMEOUT_CEILING,
            "output_limit": _OUTPUT_CEILING,
            "network": network,
        }
        table: dict[str, Any] = {
            "kind": "docker",
            "hub_id": _hub_id(self.hub_prefix, (path, image, network, ())),
            "pool": dict(self.pool),
            "allow_trusted": network != "none",
            "profiles": {
                "sandboxed": dict(profile),
                "minimal": {**profile, "pids_limit": 32},
                "datascience": {**profile, "pids_limit": 256, "tmp_size": "512m"},
            },
            "default_profile": "sandboxed",
        }
        if network != "none":
            # gateway clients never get a networked profile by default; this table's profiles
            # are all networked, so none is a client default (in-process code may use them)
            table["client_profiles"] = []
        if self.engines:
            table["engines"] = list(self.engines)
        if path == LEGACY:
            table["retries"] = 0  # one attempt on one engine, like the old single client
        return table

    def _make(self, key: tuple[Any, ...]) -> Backend:
        path, image, network, _ = key
        config = {
            "hubs": {_HUB: self._table(path, image, network)},
            "providers": {"python/v1": {"hub": _HUB}},
        }
        return Backend(
            config,
            hub=_HUB,
            protocol="python/v1",
            features=self.features,
            require_kinds=("docker",),
        )

    async def backend(self, path: str, image: str | None, network: str) -> Backend:
        if network not in _NETWORKS:
            raise InvalidParams(
                "python/execute",
                [f"params.network: expected one of {', '.join(_NETWORKS)}, got {network!r}"],
            )
        # not keyed by environment: a runtime (and pool) per distinct environment would let
        # requests multiply the containers past max_containers; env goes in with the code
        key = (path, image or self.default_image, network, ())
        if self.shared:
            key = (HUB, self.default_image, "none", ())
        backend = self._backends.get(key)
        if backend is None:
            async with self._lock:
                backend = self._backends.get(key)
                if backend is None:
                    backend = self._backends[key] = self._make(key)
        await backend.start()
        return backend

    def path_for(self, key: str | None) -> str:
        return self.primary.path_for(key, self.names)

    def record(self, path: str, duration: float, failure: FailureClass | None) -> None:
        self.primary.record(path, duration, failure)

    async def start(self) -> None:
        await self.primary.start()

    async def stop(self) -> None:
        backends = list(self._backends.values())
        self._backends.clear()
        await asyncio.gather(*(b.stop() for b in backends), return_exceptions=True)

    async def ping(self) -> None:
        """Probe every engine of the primary hub once; ``ConnectionError`` if none answers."""
        await self.start()
        hub = self.primary.hub
        monitor = hub.monitor
        if monitor is None or not hub.resources:
            return
        results = await asyncio.gather(*(monitor.check(r) for r in hub.resources))
        if not any(r.ok for r in results):
            details = "; ".join(
                f"{r.id}: {x.detail}" for r, x in zip(hub.resources, results, strict=True)
            )
            raise ConnectionError(f"no Docker engine answers ({details})")

    def engine_url(self) -> str:
        hub = self.primary.hub
        if hub.resources:
            return hub.resources[0].endpoint
        return (
            self.engines[0]
            if self.engines
            else os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        )

    def pool_counts(self) -> dict[str, Any]:
        """Containers per image over every runtime: ``{total, busy, idle}``."""
        by_image: dict[str, dict[str, int]] = {}
        for (_, image, _, _), backend in list(self._backends.items()):
            for resource in backend.hub.resources:
                details = backend.hub.describe(resource)
                for counts in (details.get("containers") or {}).values():
                    into = by_image.setdefault(image, {"total": 0, "busy": 0, "idle": 0})
                    busy = int(counts.get("busy", 0))
                    idle = int(counts.get("idle", 0)) + int(counts.get("starting", 0))
                    into["busy"] += busy
                    into["idle"] += idle
                    into["total"] += busy + idle
        return by_image

    async def execute(
        self,
        params: Mapping[str, Any],
        *,
        image: str | None,
        network: str,
        env: Mapping[str, str] | None,
        path: str | None,
        key: str | None,
    ) -> dict[str, Any]:
        """``python/execute`` on the chosen path; the new result dict."""
        chosen = path or self.path_for(key)
        timer = Timer()
        try:
            backend = await self.backend(chosen, image, network)
            cpus = params.get("cpus")
            call = dict(params)
            if env:
                call["code"] = with_prelude(env_prelude(env), str(call.get("code") or ""))
            if isinstance(cpus, int | float) and cpus > self.cpu_ceiling:
                call["cpus"] = self.cpu_ceiling  # more than the machine has: all of it
            result = await backend.runtime.execute("python/execute", call)
        except BaseException as exc:
            self.record(chosen, timer.elapsed(), failure_of(exc))
            raise
        failure = None
        error = str(result.get("error") or "")
        if not result.get("success") and error.startswith("engine unavailable"):
            failure = FailureClass.CONNECTION  # the sandbox, not the code, failed
        self.record(chosen, timer.elapsed(), failure)
        return dict(result)


# PEP 702, so type checkers flag it (a literal: checkers read no expressions)
@deprecated(
    "ContainerPool is deprecated. Use DockerHub instead (docs/migration.md).",
    category=None,
)
class ContainerPool:
    """The old ``ContainerPool(max_containers, idle_timeout, reuse_containers)``.

    The Docker hub owns the containers now: a container is checked out for exactly one
    execution and returned by the hub, keyed by its full configuration. This object carries
    the old settings (as the hub's ``pool`` table) and shows the containers; checking one out
    by hand (``get_container``) is no longer possible - run code with
    ``DockerExecutor.execute`` or ``python/execute`` instead.
    """

    def __init__(
        self, max_containers: int = 10, idle_timeout: float = 300, reuse_containers: bool = True
    ) -> None:
        warn_once("ContainerPool")
        self.max_containers = max_containers
        self.idle_timeout = idle_timeout
        self.reuse_containers = reuse_containers
        self._shim: DockerShim | None = None

    def pool_config(self) -> dict[str, Any]:
        return {
            "max_containers": self.max_containers,
            "idle_timeout": self.idle_timeout,
            "reuse_containers": self.reuse_containers,
        }

    def bind(self, shim: DockerShim) -> None:
        self._shim = shim

    @property
    def containers(self) -> dict[str, list[dict[str, Any]]]:
        """Image -> one entry per container (``is_busy``), as far as the hub reports them."""
        if self._shim is None:
            return {}
        out: dict[str, list[dict[str, Any]]] = {}
        for image, counts in self._shim.pool_counts().items():
            entries = [{"image": image, "is_busy": True} for _ in range(counts["busy"])]
            entries += [{"image": image, "is_busy": False} for _ in range(counts["idle"])]
            out[image] = entries
        return out

    async def get_container(self, config: Any = None, docker_client: Any = None) -> Any:
        raise NotImplementedError(
            "ContainerPool.get_container: containers are checked out per execution by the "
            "Docker hub now; run code with DockerExecutor.execute(...) or "
            'runtime.execute("python/execute", ...) (docs/migration.md)'
        )

    async def release_container(self, container: Any) -> None:
        raise NotImplementedError(
            "ContainerPool.release_container: the Docker hub returns each container itself "
            "when its execution ends"
        )

    async def cleanup_idle(self, docker_client: Any = None) -> int:
        """Idle containers are removed by the hub after ``idle_timeout`` (its ``idle_ttl``);
        nothing to do by hand. Returns 0."""
        return 0

    async def shutdown(self, docker_client: Any = None) -> None:
        """Remove every container of the executor this pool belongs to."""
        if self._shim is not None:
            await self._shim.stop()


# PEP 702, so type checkers flag it (a literal: checkers read no expressions)
@deprecated(
    "DockerExecutor is deprecated. Use DockerHub instead (docs/migration.md).",
    category=None,
)
class DockerExecutor:
    """The old ``DockerExecutor(config, pool_config)``.

    ``config`` (unused by the old code) may now say ``image`` (the default image),
    ``base_url`` (the engine; default ``DOCKER_HOST``) and ``hub_id`` (the label prefix of
    this executor's containers). New keyword-only arguments: ``features`` (dual mode),
    ``runtime`` (run on an existing runtime's docker hub instead) and ``rollout_key``.
    """

    def __init__(
        self,
        config: Mapping[str, Any] | None = None,
        pool_config: Mapping[str, Any] | None = None,
        *,
        features: Mapping[str, Any] | None = None,
        runtime: Runtime | None = None,
        rollout_key: str | None = None,
        _warn: bool = True,
    ) -> None:
        if _warn:
            warn_once("DockerExecutor")
        self.config = dict(config or {})
        self.pool_config = dict(pool_config or {})
        self.rollout_key = rollout_key
        self.shim = DockerShim(self.config, self.pool_config, features=features, runtime=runtime)
        self.pool = ContainerPool.__new__(ContainerPool)  # no second warning for the view
        self.pool.max_containers = int(self.pool_config.get("max_containers", 10))
        self.pool.idle_timeout = float(self.pool_config.get("idle_timeout", 300))
        self.pool.reuse_containers = bool(self.pool_config.get("reuse_containers", True))
        self.pool.bind(self.shim)
        self._initialized = False

    @property
    def runtime(self) -> Runtime:
        """The primary runtime (its status holds both paths' metrics)."""
        return self.shim.primary.runtime

    async def initialize(self) -> None:
        """Start the hub and check that an engine answers (``ConnectionError`` if none)."""
        try:
            await self.shim.ping()
        except BaseException:
            await self.shim.stop()
            raise
        self._initialized = True

    async def _ready(self) -> None:
        if not self._initialized:
            await self.shim.start()
            self._initialized = True

    async def execute(
        self,
        code: str,
        image: str | None = None,
        timeout: float = 60,
        memory_limit: str | int = "512m",
        cpu_limit: float = 1.0,
        network_mode: str = "none",
        volumes: Mapping[str, Any] | None = None,
        environment: Mapping[str, str] | None = None,
        security_level: SecurityLevel | str = SecurityLevel.SANDBOXED,
        files: Mapping[str, str] | None = None,
        *,
        path: str | None = None,
        rollout_key: str | None = None,
    ) -> dict[str, Any]:
        """Run ``code``; ``{success, stdout, stderr, exit_code, result?, error?}``."""
        new = await self.execute_new(
            code,
            image=image,
            timeout=timeout,
            memory_limit=memory_limit,
            cpu_limit=cpu_limit,
            network_mode=network_mode,
            volumes=volumes,
            environment=environment,
            security_level=security_level,
            files=files,
            path=path,
            rollout_key=rollout_key,
        )
        return old_result(new)

    async def execute_new(
        self,
        code: str,
        *,
        image: str | None = None,
        timeout: float = 60,
        memory_limit: str | int | None = "512m",
        cpu_limit: float | None = 1.0,
        network_mode: str = "none",
        volumes: Mapping[str, Any] | None = None,
        environment: Mapping[str, str] | None = None,
        security_level: SecurityLevel | str = SecurityLevel.SANDBOXED,
        files: Mapping[str, str] | None = None,
        path: str | None = None,
        rollout_key: str | None = None,
        profile: str | None = None,
    ) -> dict[str, Any]:
        """Like ``execute`` but returns the new result dict (``duration_ms``, ...)."""
        await self._ready()
        if volumes:
            log.warning(
                "gleitzeit legacy: volumes %s ignored - sandboxes mount no host paths per call "
                "(configure a profile's mounts instead); the old presets ignored them too",
                sorted(volumes),
            )
        level = SecurityLevel(getattr(security_level, "value", security_level))
        params: dict[str, Any] = {
            "code": code,
            "timeout": float(timeout),
            "profile": profile or level.profile,
            "files": dict(files or {}),
        }
        if memory_limit is not None:
            params["memory"] = memory_limit
        if cpu_limit is not None:
            params["cpus"] = float(cpu_limit)
        return await self.shim.execute(
            params,
            image=image,
            network=network_mode or "none",
            env=environment,
            path=path,
            key=rollout_key or self.rollout_key,
        )

    async def execute_file(
        self,
        file_path: str | os.PathLike[str],
        args: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Run a file from the host, with ``args`` as variables in front of it."""
        code = await asyncio.to_thread(Path(file_path).read_text, encoding="utf-8")
        return await self.execute(with_prelude(args_prelude(args), code), **kwargs)

    async def batch_execute(
        self, tasks: Sequence[Mapping[str, Any]], max_concurrent: int = 5
    ) -> list[dict[str, Any]]:
        """Each task is ``execute`` keyword arguments; a failing task becomes an error dict."""
        gate = asyncio.Semaphore(max(1, max_concurrent))

        async def one(task: Mapping[str, Any]) -> dict[str, Any]:
            async with gate:
                try:
                    return await self.execute(**dict(task))
                except Exception as exc:
                    return {"success": False, "error": str(exc), "stdout": "", "stderr": ""}

        return list(await asyncio.gather(*(one(t) for t in tasks)))

    def path_metrics(self) -> dict[str, Any]:
        """This executor's calls per path (hub/legacy): requests, errors, error rate, p50/95/99."""
        return self.shim.primary.path_status()

    async def get_pool_status(self) -> dict[str, Any]:
        """``{total_containers, busy_containers, idle_containers, by_image}``."""
        by_image = self.shim.pool_counts()
        return {
            "total_containers": sum(c["total"] for c in by_image.values()),
            "busy_containers": sum(c["busy"] for c in by_image.values()),
            "idle_containers": sum(c["idle"] for c in by_image.values()),
            "by_image": by_image,
        }

    async def pull_image(self, image: str) -> bool:
        """Pull ``image`` on the engine (``True`` if it is there afterwards)."""
        try:
            async with _engine(self.shim.engine_url()) as docker:
                await docker.images.pull(image)
                await docker.images.inspect(image)
        except (aiodocker.DockerError, aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.warning("gleitzeit legacy: pulling %s failed: %s", image, exc)
            return False
        return True

    async def list_images(self) -> list[str]:
        """Every image tag on the engine."""
        async with _engine(self.shim.engine_url()) as docker:
            images = await docker.images.list()
        return sorted(tag for item in images for tag in (item.get("RepoTags") or []))

    async def shutdown(self) -> None:
        """Remove every container this executor created and stop its runtimes."""
        await self.shim.stop()
        self._initialized = False

    async def cleanup(self) -> None:
        """The first draft's name for ``shutdown``."""
        await self.shutdown()


def _engine(url: str) -> aiodocker.Docker:
    """An aiodocker client of the engine at ``url`` (unix:// or tcp://); ``async with`` it.
    A pull may take minutes; connecting may not."""
    return aiodocker.Docker(url=url, timeout=aiohttp.ClientTimeout(total=600, sock_connect=5))
