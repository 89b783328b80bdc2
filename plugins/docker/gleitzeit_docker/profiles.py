"""Sandbox profiles: one hardened container recipe each, plus the built-in security levels.

A ``Profile`` is immutable. Its container-level fields (image, limits, user, network, mounts,
env...) build the raw Engine API create config; ``pool_key()`` hashes exactly that config, so
two profiles only share warm containers when their containers would be identical.
Per-execution fields (``timeout``, ``output_limit``, ``result_limit``) are not part of it.

Requests may only *tighten* a profile (``Profile.restrict``): asking for more raises
``LimitError`` rather than clamping silently, so a caller never believes it got limits it
does not have. A request's container limits (memory, cpus, pids) are also rounded down to the
profile's value halved k times (``Profile.tiered``): each distinct value would otherwise be a
container config, and so a warm pool, of its own, without bound.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from .errors import LimitError, ProfileError
from .profile_fields import (
    Mount,
    format_size,
    parse_cpus,
    parse_size,
    positive,
    to_env,
    to_fsize,
    to_memory,
    to_mounts,
    to_output_limit,
    to_result_limit,
    to_shm_size,
    to_timeout,
    to_tmp_size,
)

__all__ = [
    "BUILTIN_PROFILES",
    "DEFAULT_DATASCIENCE_IMAGE",
    "DEFAULT_IMAGE",
    "RUNNER_CAPS",
    "RUNNER_USER",
    "Mount",
    "Profile",
    "ProfileSet",
    "limit_tiers",
    "load_profiles",
]

DEFAULT_IMAGE = "python:3.11-slim"
# The container's own user is its root, holding only what the runner needs to drop each job
# to the profile's ``user`` (never root) and to kill what a job leaves behind; jobs cannot
# touch processes of another uid, so the runner and its protocol channel are out of reach.
RUNNER_USER = "0:0"
RUNNER_CAPS = ("SETUID", "SETGID", "SETPCAP", "KILL")
_MIN_MEMORY = 16 << 20
DEFAULT_DATASCIENCE_IMAGE = "gleitzeit/datascience:latest"


@attrs.frozen(kw_only=True)
class Profile:
    """One hardened container recipe plus per-execution limits."""

    name: str
    image: str = DEFAULT_IMAGE
    memory: int = attrs.field(default=256 << 20, converter=to_memory)
    cpus: float = attrs.field(default=1.0, converter=parse_cpus)
    pids_limit: int = attrs.field(default=64, validator=positive(int, 7))
    timeout: float = attrs.field(default=60.0, converter=to_timeout, validator=positive(float))
    output_limit: int = attrs.field(default=64 << 10, converter=to_output_limit)
    result_limit: int = attrs.field(default=1 << 20, converter=to_result_limit)
    tmp_size: int = attrs.field(default=64 << 20, converter=to_tmp_size)
    shm_size: int = attrs.field(default=16 << 20, converter=to_shm_size)
    fsize: int = attrs.field(default=64 << 20, converter=to_fsize)
    nofile: int = attrs.field(default=256, validator=positive(int, 15))
    user: str = "65534:65534"
    network: str = "none"
    # Set only by ``load_profiles`` when the config says ``allow_trusted = True``.
    network_approved: bool = False
    mounts: tuple[Mount, ...] = attrs.field(default=(), converter=to_mounts)
    env: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=to_env)
    python: str = "python3"
    init: bool = True

    def __attrs_post_init__(self) -> None:
        if self.memory < 16 << 20:
            raise ProfileError(f"profile {self.name!r}: memory must be at least 16m")
        if self.user in ("", "0", "root") or self.user.startswith(("0:", "root:")):
            raise ProfileError(f"profile {self.name!r}: refusing to run sandboxes as root")

    @property
    def networked(self) -> bool:
        return self.network != "none"

    def limits(self) -> dict[str, Any]:
        """Human-readable limits, for ``info()`` and error messages."""
        return {
            "memory": format_size(self.memory),
            "cpus": self.cpus,
            "pids": self.pids_limit,
            "timeout_s": self.timeout,
            "output_limit": format_size(self.output_limit),
            "tmp_size": format_size(self.tmp_size),
            "network": self.network,
            "user": self.user,
        }

    def restrict(
        self,
        *,
        memory: int | str | None = None,
        cpus: float | str | None = None,
        pids_limit: int | None = None,
        timeout: float | None = None,
        output_limit: int | str | None = None,
    ) -> Profile:
        """Return a tighter copy; raise ``LimitError`` if anything asks for more."""
        changes: dict[str, Any] = {}
        wanted: dict[str, float | None] = {
            "memory": None if memory is None else parse_size(memory, "memory"),
            "cpus": None if cpus is None else parse_cpus(cpus),
            "pids_limit": pids_limit,
            "timeout": None if timeout is None else float(timeout),
            "output_limit": None if output_limit is None else parse_size(output_limit),
        }
        for field, value in wanted.items():
            if value is None:
                continue
            allowed = getattr(self, field)
            if value > allowed:
                sized = field in ("memory", "output_limit")
                want, have = (format_size(int(v)) if sized else f"{v:g}" for v in (value, allowed))
                raise LimitError(
                    f"request asks for {field} {want} but profile {self.name!r} allows "
                    f"at most {have}; requests may only tighten a profile's limits"
                )
            changes[field] = value
        return attrs.evolve(self, **changes) if changes else self

    def tiered(self, **limits: Any) -> Profile:
        """``restrict`` (same keywords) with the container limits rounded down to a tier of
        the profile's: its value halved ``k`` times (never below the smallest allowed value),
        so a request gets at most what it asked and at least half of it."""
        memory, cpus, pids_limit = (limits.get(k) for k in ("memory", "cpus", "pids_limit"))
        if memory is not None:
            wanted = parse_size(memory, "memory")
            if wanted <= self.memory:
                memory = int(_snap(wanted, self.memory, _MIN_MEMORY))
        if cpus is not None:
            wanted_cpus = parse_cpus(cpus)
            if wanted_cpus <= self.cpus:
                cpus = _snap(wanted_cpus, self.cpus, 0.01)
        if pids_limit is not None and pids_limit <= self.pids_limit:
            pids_limit = int(_snap(pids_limit, self.pids_limit, 8))
        return self.restrict(**{**limits, "memory": memory, "cpus": cpus, "pids_limit": pids_limit})

    def _raw_config(self, labels: Mapping[str, str], cmd: Sequence[str] | None) -> dict[str, Any]:
        host: dict[str, Any] = {
            "NetworkMode": self.network,
            "ReadonlyRootfs": True,
            # /tmp is the only writable place; noexec so dropped binaries cannot run.
            "Tmpfs": {"/tmp": f"rw,noexec,nosuid,nodev,size={self.tmp_size},mode=1777"},
            "ShmSize": self.shm_size,
            "CapDrop": ["ALL"],
            "CapAdd": list(RUNNER_CAPS),  # the runner's; every job drops them all
            "SecurityOpt": ["no-new-privileges"],
            "Privileged": False,
            "PidsLimit": self.pids_limit,
            "Memory": self.memory,
            "MemorySwap": self.memory,  # equal to Memory: no swap on top of the limit
            "NanoCpus": round(self.cpus * 1e9),
            "Init": self.init,
            "IpcMode": "private",
            "Ulimits": [
                {"Name": "nofile", "Soft": self.nofile, "Hard": self.nofile},
                {"Name": "fsize", "Soft": self.fsize, "Hard": self.fsize},
                {"Name": "core", "Soft": 0, "Hard": 0},
            ],
            "LogConfig": {"Type": "none", "Config": {}},
            "RestartPolicy": {"Name": "no"},
            "AutoRemove": False,  # the pool decides when a container goes
            "Binds": [
                f"{m.source}:{m.target}:{'ro' if m.read_only else 'rw'}" for m in self.mounts
            ],
        }
        env = [f"{k}={v}" for k, v in self.env]
        base_env = ["HOME=/tmp", "LANG=C.UTF-8", "PYTHONDONTWRITEBYTECODE=1"]
        return {
            "Image": self.image,
            "Cmd": list(cmd) if cmd is not None else None,
            "User": RUNNER_USER,  # jobs run as ``self.user``: see runner_main
            "WorkingDir": "/tmp",
            "Env": base_env + env,
            "Labels": dict(labels),
            "NetworkDisabled": not self.networked,
            "Tty": False,
            # Every container's main process reads the stdin its owner keeps attached: the
            # owner goes -> EOF -> the container exits (so a stopped one is an orphan).
            "OpenStdin": True,
            "StdinOnce": True,
            "AttachStdin": True,
            "AttachStdout": True,
            "AttachStderr": True,
            "HostConfig": host,
        }

    def container_config(
        self, labels: Mapping[str, str], cmd: Sequence[str] | None = None
    ) -> dict[str, Any]:
        """The raw Engine API ``POST /containers/create`` body for this profile."""
        if self.networked and not self.network_approved:
            raise ProfileError(
                f"profile {self.name!r} enables network ({self.network!r}); that needs "
                "allow_trusted = True in the docker configuration"
            )
        return self._raw_config(labels, cmd)

    def pool_key(self) -> str:
        """Stable hash of the full effective container config and the jobs' user (labels and
        command excluded)."""
        return self._pool_key

    @functools.cached_property
    def _pool_key(self) -> str:
        # Once per profile (immutable): the pool and the hub ask for it on every run.
        raw = {**self._raw_config({}, None), "JobUser": self.user}
        blob = json.dumps(raw, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def limit_tiers(allowed: float, floor: float) -> list[float]:
    """``allowed`` halved again and again while it stays >= ``floor`` (integers stay whole)."""
    tiers = [allowed]
    while True:
        nxt = tiers[-1] // 2 if isinstance(allowed, int) else tiers[-1] / 2
        if nxt < floor:
            return tiers
        tiers.append(nxt)


def _snap(value: float, allowed: float, floor: float) -> float:
    """The largest tier of ``allowed`` not above ``value``, else the smallest tier."""
    tiers = limit_tiers(allowed, floor)
    return next((t for t in tiers if t <= value), tiers[-1])


# The old security levels, as plain data so that configuration can override any field.
BUILTIN_PROFILES: Mapping[str, Mapping[str, Any]] = {
    "sandboxed": {"memory": "256m", "cpus": 1.0, "pids_limit": 64, "timeout": 60},
    "minimal": {"memory": "128m", "cpus": 0.5, "pids_limit": 32, "timeout": 30},
    "datascience": {
        "image": DEFAULT_DATASCIENCE_IMAGE,
        "memory": "2g",
        "cpus": 2.0,
        "pids_limit": 256,
        "timeout": 120,
        "tmp_size": "512m",
        "shm_size": "256m",
        "fsize": "512m",
        "nofile": 1024,
    },
    "trusted": {"network": "bridge", "memory": "512m", "pids_limit": 128, "timeout": 60},
}
_CONFIG_KEYS = {"allow_trusted", "default_image", "datascience_image", "profiles"}
_PROFILE_FIELDS = {a.name for a in attrs.fields(Profile)} - {"name", "network_approved"}


@attrs.frozen
class ProfileSet:
    """The profiles a deployment offers, after configuration overrides."""

    profiles: Mapping[str, Profile]
    allow_trusted: bool = False

    def get(self, name: str) -> Profile:
        profile = self.profiles.get(name)
        if profile is None:
            known = ", ".join(sorted(self.profiles))
            raise ProfileError(f"unknown docker profile {name!r}; known profiles: {known}")
        if profile.networked and not self.allow_trusted:
            raise ProfileError(
                f"profile {name!r} allows network access and is disabled; set "
                "allow_trusted = True in the docker configuration to enable it"
            )
        return profile


def load_profiles(config: Mapping[str, Any] | None = None) -> ProfileSet:
    """Build the profile set from the built-ins plus ``config`` overrides.

    ``config`` keys: ``allow_trusted`` (bool), ``default_image``, ``datascience_image`` and
    ``profiles`` (name -> field overrides; a new name may say ``base = "<builtin>"``).
    """
    config = dict(config or {})
    unknown = set(config) - _CONFIG_KEYS
    if unknown:
        raise ProfileError(f"unknown docker config keys: {sorted(unknown)}")
    allow_trusted = config.get("allow_trusted", False)
    if not isinstance(allow_trusted, bool):
        raise ProfileError(f"allow_trusted must be true or false, got {allow_trusted!r}")
    images = {
        "default": config.get("default_image", DEFAULT_IMAGE),
        "datascience": config.get("datascience_image", DEFAULT_DATASCIENCE_IMAGE),
    }
    overrides: dict[str, Mapping[str, Any]] = dict(config.get("profiles", {}))
    profiles: dict[str, Profile] = {}
    for name in [*BUILTIN_PROFILES, *(n for n in overrides if n not in BUILTIN_PROFILES)]:
        override = dict(overrides.get(name, {}))
        base_name = override.pop("base", name)
        if base_name not in BUILTIN_PROFILES:
            raise ProfileError(f"profile {name!r}: unknown base {base_name!r}")
        bad = set(override) - _PROFILE_FIELDS
        if bad:
            raise ProfileError(f"profile {name!r}: unknown fields {sorted(bad)}")
        fields: dict[str, Any] = {"image": images["default"]}
        if base_name == "datascience":
            fields["image"] = images["datascience"]
        fields.update({k: v for k, v in BUILTIN_PROFILES[base_name].items() if k != "image"})
        fields.update(override)
        profiles[name] = Profile(name=name, network_approved=allow_trusted, **fields)
    return ProfileSet(profiles=profiles, allow_trusted=allow_trusted)
