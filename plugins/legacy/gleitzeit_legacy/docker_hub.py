"""The hub-era ``DockerHub`` and ``DockerConfig`` (``gleitzeit.hub.docker_hub``).

An adapter over the Docker plugin's hardened, pooled sandboxes (through a ``DockerExecutor``,
so the dual mode and the per-path figures apply):

* ``get_or_create_instance(config)`` returns the instance for a ``DockerConfig`` - one per
  distinct configuration, checked once by running a no-op in it. An instance is a sandbox
  configuration, not one long-lived container: each ``execute_in_container`` runs in a pooled
  container of that configuration checked out for that call alone (state does not carry over
  from one call to the next; concurrent calls never share a container);
* ``execute_in_container(instance_id, command, ...)`` always has a timeout (the call's, else the
  config's ``timeout``, 60 s by default), enforced from the host - upstream had none;
* ``security_level`` picks the profile (``sandboxed``, ``restricted`` and ``trusted`` run in
  ``sandboxed``, ``specialized`` in ``datascience``; profile names are accepted as they are);
* an ``image`` other than the hub's own (``default_image``, else ``$GLEITZEIT_DOCKER_IMAGE``,
  else ``python:3.11-slim``) must be on the operator's allow-list: ``allowed_images=`` or
  ``$GLEITZEIT_DOCKER_ALLOWED_IMAGES`` (comma-separated). Networked (``bridge``) containers
  need ``allow_network=True``; ``privileged``, host ``volumes``, ``ports`` and another
  ``user`` are refused - the sandbox's hardening is not optional.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shlex
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import attrs

from gleitzeit_core import FailureClass, InvalidParams, ResourceMetrics, Runtime

from .docker_executor import DockerExecutor, SecurityLevel, env_prelude
from .hub_base import (
    ResourceHubBase,
    ResourceInstance,
    ResourceStatus,
    ResourceType,
)
from .hub_base import (
    ResourceMetrics as HubMetrics,
)

__all__ = ["DockerConfig", "DockerHub", "allowed_images", "check_image", "profile_for"]

DEFAULT_IMAGE = "python:3.11-slim"
_PROFILES = ("sandboxed", "minimal", "datascience")
_MAX_TIMEOUT = 3600.0


def allowed_images(extra: Iterable[str] | None = None) -> set[str]:
    """The operator's allow-list: ``extra`` plus ``$GLEITZEIT_DOCKER_ALLOWED_IMAGES``."""
    listed = os.environ.get("GLEITZEIT_DOCKER_ALLOWED_IMAGES", "")
    return {i.strip() for i in listed.split(",") if i.strip()} | set(extra or ())


def check_image(image: str, own: Iterable[str], allowed: Iterable[str], where: str) -> None:
    """Refuse an image that is neither one of ``own`` (the profile's) nor allow-listed."""
    if image in set(own) or image in set(allowed):
        return
    raise InvalidParams(
        where,
        [
            f"image {image!r} is not this hub's image and not on the operator's allow-list; "
            "add it to allowed_images= or GLEITZEIT_DOCKER_ALLOWED_IMAGES (comma-separated)"
        ],
    )


def profile_for(security_level: Any) -> str:
    """The sandbox profile of an upstream ``security_level`` (or a profile name)."""
    value = str(getattr(security_level, "value", security_level)).strip().lower()
    if value in _PROFILES:
        return value
    try:
        return SecurityLevel(value).profile
    except ValueError:
        known = ", ".join([*(s.value for s in SecurityLevel), *_PROFILES])
        raise InvalidParams(
            "docker", [f"security_level: expected one of {known}, got {security_level!r}"]
        ) from None


@attrs.define
class DockerConfig:
    """One container configuration, as upstream described it; ``timeout`` is new (seconds,
    the default for ``execute_in_container``)."""

    image: str = DEFAULT_IMAGE
    name: str | None = None
    command: str | list[str] | None = None
    environment: dict[str, str] = attrs.field(factory=dict)
    volumes: dict[str, Any] = attrs.field(factory=dict)
    ports: dict[str, Any] = attrs.field(factory=dict)
    memory_limit: str = "512m"
    cpu_limit: float = 1.0
    network_mode: str = "none"  # upstream: "bridge"; here no network unless the operator allows
    labels: dict[str, str] = attrs.field(factory=dict)
    restart_policy: dict[str, Any] = attrs.field(factory=dict)
    auto_remove: bool = False
    detach: bool = True
    privileged: bool = False
    user: str | None = None
    working_dir: str | None = None
    container_id: str | None = None
    security_level: str = "sandboxed"
    timeout: float = 60.0


@attrs.define
class _Slot:
    """What one instance runs with, and its numbers."""

    image: str
    profile: str
    memory: str
    cpus: float
    network: str
    environment: dict[str, str]
    working_dir: str | None
    timeout: float
    metrics: ResourceMetrics = attrs.field(factory=lambda: ResourceMetrics(window=256))
    failed: bool = False


def _python_of(argv: Sequence[str]) -> str | None:
    """The code of ``python -c CODE`` (any python/python3 path), else None."""
    if len(argv) >= 3 and os.path.basename(argv[0]).startswith("python") and argv[1] == "-c":
        return argv[2]
    return None


def command_code(command: str | Sequence[str], workdir: str | None, env: Mapping[str, str]) -> str:
    """Python code that runs ``command`` in the sandbox: ``python -c CODE`` runs CODE itself,
    anything else runs as a child process (argv; a string is split like a shell would, with no
    shell) whose output and exit code become the call's."""
    argv = shlex.split(command) if isinstance(command, str) else [str(a) for a in command]
    if not argv:
        raise InvalidParams("docker", ["command: expected a command, got nothing"])
    prelude = ["import os", env_prelude(env).rstrip("\n")]
    if workdir:
        prelude.append(f"os.chdir({workdir!r})")
    code = _python_of(argv)
    if code is not None:
        return "\n".join(prelude) + "\n" + code
    return "\n".join(
        [
            *prelude,
            "import subprocess, sys",
            f"_done = subprocess.run({argv!r}, capture_output=True)",
            "sys.stdout.write(_done.stdout.decode('utf-8', 'replace'))",
            "sys.stderr.write(_done.stderr.decode('utf-8', 'replace'))",
            "sys.stdout.flush(); sys.stderr.flush()",
            "os._exit(_done.returncode)",
        ]
    )


class DockerHub(ResourceHubBase):
    """``DockerHub(hub_id="docker-hub", health_check_interval=30, max_health_failures=3,
    enable_auto_recovery=True, enable_metrics=True, enable_container_reuse=True,
    max_containers_per_image=10)``.

    New keyword-only arguments: ``default_image``, ``allowed_images``, ``allow_network``,
    ``docker_config`` (``base_url`` of the engine, ...), ``pool_config``, ``features`` and
    ``runtime`` (see ``DockerExecutor``).
    """

    def __init__(
        self,
        hub_id: str = "docker-hub",
        health_check_interval: float = 30,
        max_health_failures: int = 3,
        enable_auto_recovery: bool = True,
        enable_metrics: bool = True,
        enable_container_reuse: bool = True,
        max_containers_per_image: int = 10,
        *,
        default_image: str | None = None,
        allowed_images: Iterable[str] | None = None,
        allow_network: bool = False,
        docker_config: Mapping[str, Any] | None = None,
        pool_config: Mapping[str, Any] | None = None,
        features: Mapping[str, Any] | None = None,
        runtime: Runtime | None = None,
    ) -> None:
        super().__init__(
            hub_id,
            ResourceType.DOCKER,
            health_check_interval,
            max_health_failures,
            enable_auto_recovery,
            enable_metrics,
        )
        config = dict(docker_config or {})
        self.default_image = str(
            default_image
            or config.get("image")
            or os.environ.get("GLEITZEIT_DOCKER_IMAGE")
            or DEFAULT_IMAGE
        )
        config["image"] = self.default_image
        config.setdefault("hub_id", hub_id)
        self.docker_config = config
        self.pool_config = {
            "max_containers": max_containers_per_image,
            "reuse_containers": enable_container_reuse,
            **dict(pool_config or {}),
        }
        self.allowed = set(allowed_images or ())
        self.allow_network = allow_network
        self.enable_container_reuse = enable_container_reuse
        self.max_containers_per_image = max_containers_per_image
        self._features = features
        self._runtime = runtime
        self._executor: DockerExecutor | None = None
        self._slots: dict[str, _Slot] = {}
        self._views: dict[str, ResourceInstance] = {}
        self._lock = asyncio.Lock()

    # -- the adapted executor -------------------------------------------------------------------
    @property
    def executor(self) -> DockerExecutor:
        """The executor (its hub runtimes) behind this hub, made on first use."""
        if self._executor is None:
            self._executor = DockerExecutor(
                config=self.docker_config,
                pool_config=self.pool_config,
                features=self._features,
                runtime=self._runtime,
                _warn=False,
            )
            self._executor.shim.names = (self.hub_id,)
        return self._executor

    @property
    def runtime(self) -> Runtime:
        return self.executor.runtime

    def own_images(self) -> set[str]:
        return {self.default_image}

    async def _start(self) -> None:
        await self.executor.initialize()

    async def _stop(self) -> None:
        if self._executor is not None:
            await self._executor.shutdown()

    # -- instances ------------------------------------------------------------------------------
    def _instances(self) -> list[ResourceInstance]:
        return list(self._views.values())

    def instance_status(self, instance: ResourceInstance) -> ResourceStatus:
        slot = self._slots.get(instance.id)
        if slot is None:
            return ResourceStatus.STOPPED
        if not self.running:
            return ResourceStatus.UNKNOWN
        if slot.failed:
            return ResourceStatus.ERROR
        engine = self.executor.shim.primary.hub.resources
        if engine and all(r.health.value == "unhealthy" for r in engine):
            return ResourceStatus.UNHEALTHY
        return ResourceStatus.HEALTHY

    def instance_metrics(self, instance: ResourceInstance) -> HubMetrics:
        slot = self._slots.get(instance.id)
        if slot is None:
            return HubMetrics()
        custom = {"image": slot.image, "profile": slot.profile, "container_status": "pooled"}
        return HubMetrics(slot.metrics.snapshot(time.monotonic()), custom)

    def _slot_for(self, config: DockerConfig) -> _Slot:
        where = "DockerConfig"
        check_image(config.image, self.own_images(), allowed_images(self.allowed), where)
        problems = []
        if config.privileged:
            problems.append("privileged: sandboxes never run privileged")
        if config.volumes:
            problems.append("volumes: no host paths are mounted per container")
        if config.ports:
            problems.append("ports: sandboxes publish no ports")
        if config.user not in (None, "", "nobody", "65534", "65534:65534"):
            problems.append(f"user: sandboxes run as 65534 (nobody), not {config.user!r}")
        network = config.network_mode or "none"
        if network not in ("none", "bridge"):
            problems.append(f"network_mode: expected none or bridge, got {network!r}")
        elif network == "bridge" and not self.allow_network:
            problems.append(
                "network_mode 'bridge' needs DockerHub(allow_network=True) from the operator"
            )
        timeout = float(config.timeout)
        if not 0 < timeout <= _MAX_TIMEOUT:
            problems.append(f"timeout: expected seconds in (0, {_MAX_TIMEOUT:g}], got {timeout}")
        if problems:
            raise InvalidParams(where, problems)
        return _Slot(
            image=config.image,
            profile=profile_for(config.security_level),
            memory=str(config.memory_limit),
            cpus=float(config.cpu_limit),
            network=network,
            environment={str(k): str(v) for k, v in config.environment.items()},
            working_dir=config.working_dir,
            timeout=timeout,
        )

    async def get_or_create_instance(self, config: DockerConfig) -> ResourceInstance:
        """The instance for ``config``: an existing one with the same configuration, else a
        new one (checked by running a no-op in it; ``RuntimeError`` if that fails)."""
        slot = self._slot_for(config)
        key = (
            (slot.image, slot.profile, slot.memory, slot.cpus, slot.network),
            (tuple(sorted(slot.environment.items())), slot.working_dir, slot.timeout),
        )
        instance_id = "docker-" + hashlib.blake2b(repr(key).encode(), digest_size=6).hexdigest()
        async with self._lock:
            if instance_id in self._views:
                return self._views[instance_id]
            await self.start()
            self._slots[instance_id] = slot
            try:
                check = await self._run(instance_id, "pass", slot.timeout)
            except InvalidParams:
                del self._slots[instance_id]
                raise
            except Exception as exc:  # the engine's own account (a missing image, say)
                check = {"success": False, "error": str(exc)}
            if not check.get("success"):
                del self._slots[instance_id]
                raise RuntimeError(
                    f"cannot run a container of {slot.image!r} (profile {slot.profile}): "
                    f"{check.get('error') or check.get('stderr')}"
                )
            view = ResourceInstance(
                self,
                instance_id,
                name=config.name or instance_id,
                endpoint=f"docker://{instance_id}",
                metadata={"image": slot.image, "profile": slot.profile},
                tags={"docker", slot.network, slot.image.split(":")[0].rsplit("/", 1)[-1]},
                capabilities={"python"} if "python" in slot.image else set(),
                config=config,
            )
            self._views[instance_id] = view
            self.stats["total_registered"] += 1
            self.last_checks[instance_id] = datetime.now(UTC)
        self.events.emit("instance_registered", {"instance_id": instance_id, "image": slot.image})
        return view

    async def start_instance(self, config: DockerConfig) -> ResourceInstance:
        return await self.get_or_create_instance(config)

    async def stop_instance(self, instance_id: str) -> bool:
        """Forget the instance (its pooled containers are reaped by the pool)."""
        if self._views.pop(instance_id, None) is None:
            return False
        self._slots.pop(instance_id, None)
        self.events.emit("instance_unregistered", {"instance_id": instance_id})
        return True

    async def restart_instance(self, instance_id: str) -> bool:
        """Run a no-op in the instance's configuration; ``True`` if it worked."""
        slot = self._slots.get(instance_id)
        if slot is None:
            return False
        check = await self._run(instance_id, "pass", slot.timeout)
        slot.failed = not check.get("success")
        return not slot.failed

    async def unregister_instance(self, instance_id: str) -> bool:
        return await self.stop_instance(instance_id)

    async def check_health(self, instance: ResourceInstance) -> bool:
        return await self.restart_instance(instance.id)

    # -- execution ------------------------------------------------------------------------------
    def require_running(self, who: str) -> None:
        """``RuntimeError`` once the hub is stopped: running anything then would quietly start
        runtimes and containers again that no one stops."""
        if not self.running:
            raise RuntimeError(
                f"{who}: DockerHub {self.hub_id!r} is stopped; start it again (await "
                "hub.start()) before running containers"
            )

    async def _run(self, instance_id: str, code: str, timeout: float) -> dict[str, Any]:
        self.require_running(f"instance {instance_id!r}")
        slot = self._slots[instance_id]
        started = time.monotonic()
        result = await self.executor.execute_new(
            code,
            image=slot.image,
            timeout=timeout,
            memory_limit=slot.memory,
            cpu_limit=slot.cpus,
            network_mode=slot.network,
            profile=slot.profile,
        )
        now = time.monotonic()
        # the code failing is a normal result; only the sandbox failing counts against it
        broken = str(result.get("error") or "").startswith(("engine unavailable", "engine error"))
        failure = FailureClass.CONNECTION if broken else None
        slot.metrics.record(now - started, failure, now)
        return result

    async def execute_in_container(
        self,
        instance_id: str,
        command: str | Sequence[str],
        workdir: str | None = None,
        environment: Mapping[str, str] | None = None,
        user: str | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Run ``command`` in a container of the instance; ``{success, exit_code, stdout,
        stderr}`` plus ``error`` and ``duration_ms``. The timeout always holds: ``timeout``,
        else the config's (at most 3600 s)."""
        slot = self._slots.get(instance_id)
        if slot is None:
            known = ", ".join(sorted(self._slots)) or "none"
            raise KeyError(f"hub {self.hub_id!r} has no instance {instance_id!r}; it has: {known}")
        if user not in (None, "", "nobody", "65534", "65534:65534"):
            raise InvalidParams(
                "execute_in_container", [f"user: sandboxes run as 65534, not {user!r}"]
            )
        limit = slot.timeout if timeout is None else float(timeout)
        if not 0 < limit <= _MAX_TIMEOUT:
            raise InvalidParams(
                "execute_in_container",
                [f"timeout: expected seconds in (0, {_MAX_TIMEOUT:g}], got {timeout!r}"],
            )
        env = {**slot.environment, **{str(k): str(v) for k, v in (environment or {}).items()}}
        code = command_code(command, workdir or slot.working_dir, env)
        result = await self._run(instance_id, code, limit)
        return {
            "success": bool(result.get("success")),
            "exit_code": result.get("exit_code"),
            "stdout": result.get("stdout", ""),
            "stderr": result.get("stderr", ""),
            "error": result.get("error"),
            "duration_ms": result.get("duration_ms"),
        }
