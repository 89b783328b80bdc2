"""Sandbox profiles: one hardened container recipe each, plus the built-in security levels.

A ``Profile`` is immutable. Its container-level fields (image, limits, user, network, mounts,
env...) build the raw Engine API create config; ``pool_key()`` hashes exactly that config, so
two profiles only share warm containers when their containers would be identical.
Per-execution fields (``timeout``, ``output_limit``, ``result_limit``) are not part of it.

Requests may only *tighten* a profile (``Profile.restrict``): asking for more raises
``LimitError`` rather than clamping silently, so a caller never believes it got limits it
does not have.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from .errors import LimitError, ProfileError

__all__ = [
    "BUILTIN_PROFILES",
    "DEFAULT_DATASCIENCE_IMAGE",
    "DEFAULT_IMAGE",
    "Mount",
    "Profile",
    "ProfileSet",
    "format_size",
    "load_profiles",
    "parse_cpus",
    "parse_size",
]

DEFAULT_IMAGE = "python:3.11-slim"
DEFAULT_DATASCIENCE_IMAGE = "gleitzeit/datascience:latest"
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)
_ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Mount targets that would hide or expose kernel/engine interfaces inside the sandbox.
_FORBIDDEN_TARGETS = ("/", "/proc", "/sys", "/dev", "/tmp")


def parse_size(value: int | str, what: str = "size") -> int:
    """Parse ``"256m"``, ``"1g"``, ``"512k"``, ``"1.5g"`` or an int (bytes) into bytes."""
    if isinstance(value, bool):
        raise ProfileError(f"{what}: expected a size such as '256m', got {value!r}")
    if isinstance(value, int):
        if value <= 0:
            raise ProfileError(f"{what}: must be positive, got {value}")
        return value
    match = _SIZE_RE.match(str(value))
    if match is None:
        raise ProfileError(
            f"{what}: cannot parse {value!r} as a size; use bytes or a number with a "
            "k/m/g suffix, e.g. '256m' or '1g'"
        )
    size = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    if size <= 0:
        raise ProfileError(f"{what}: must be positive, got {value!r}")
    return size


def format_size(size: int) -> str:
    """Render bytes the way Docker users write them: 268435456 -> '256m'."""
    for unit in ("t", "g", "m", "k"):
        if size >= _UNITS[unit] and size % _UNITS[unit] == 0:
            return f"{size // _UNITS[unit]}{unit}"
    return f"{size}b"


def parse_cpus(value: float | int | str, what: str = "cpus") -> float:
    """Parse a CPU count such as ``1``, ``0.5`` or ``"1.5"`` (Docker's ``--cpus``)."""
    if isinstance(value, bool):
        raise ProfileError(f"{what}: expected a number of CPUs such as 0.5, got {value!r}")
    try:
        cpus = float(value)
    except (TypeError, ValueError):
        raise ProfileError(
            f"{what}: cannot parse {value!r} as a CPU count; use a number such as 0.5 or 2"
        ) from None
    if not 0.01 <= cpus <= 1024:
        raise ProfileError(f"{what}: must be between 0.01 and 1024, got {value!r}")
    return cpus


def _positive(kind: type[int] | type[float], minimum: float = 0) -> Any:
    def check(inst: Any, attr: attrs.Attribute[Any], value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ProfileError(f"{attr.name}: expected a number, got {value!r}")
        if kind is int and not isinstance(value, int):
            raise ProfileError(f"{attr.name}: expected an integer, got {value!r}")
        if value <= minimum:
            raise ProfileError(f"{attr.name}: must be greater than {minimum}, got {value!r}")

    return check


@attrs.frozen(kw_only=True)
class Mount:
    """A host path made visible in the container; read-only unless ``read_only=False``."""

    source: str
    target: str
    read_only: bool = True

    def __attrs_post_init__(self) -> None:
        if not (self.source.startswith("/") and self.target.startswith("/")):
            raise ProfileError(f"mount {self.source}:{self.target}: paths must be absolute")
        target = self.target.rstrip("/") or "/"
        if any(target == t or (t != "/" and target.startswith(t + "/")) for t in _FORBIDDEN_TARGETS):
            raise ProfileError(f"mount target {self.target!r} is reserved inside the sandbox")
        if self.source.rstrip("/") in ("", "/") or self.source.endswith("docker.sock"):
            raise ProfileError(f"mount source {self.source!r} would expose the host; refused")

    @classmethod
    def parse(cls, spec: str | Mapping[str, Any]) -> Mount:
        """``"/data:/data"``, ``"/data:/data:rw"`` or ``{"source", "target", "read_only"}``."""
        if isinstance(spec, Mapping):
            return cls(**dict(spec))
        parts = spec.split(":")
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
            raise ProfileError(f"mount {spec!r}: expected 'SOURCE:TARGET[:ro|rw]'")
        return cls(source=parts[0], target=parts[1], read_only=parts[2:] != ["rw"])


def _env(value: Mapping[str, str] | Sequence[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    items = value.items() if isinstance(value, Mapping) else value
    out = tuple(sorted((str(k), str(v)) for k, v in items))
    for key, _ in out:
        if not _ENV_KEY_RE.match(key):
            raise ProfileError(f"env: invalid variable name {key!r}")
    return out


def _mounts(value: Sequence[Mount | str | Mapping[str, Any]]) -> tuple[Mount, ...]:
    return tuple(m if isinstance(m, Mount) else Mount.parse(m) for m in value)


@attrs.frozen(kw_only=True)
class Profile:
    """One hardened container recipe plus per-execution limits."""

    name: str
    image: str = DEFAULT_IMAGE
    memory: int = attrs.field(default=256 << 20, converter=lambda v: parse_size(v, "memory"))
    cpus: float = attrs.field(default=1.0, converter=parse_cpus)
    pids_limit: int = attrs.field(default=64, validator=_positive(int, 7))
    timeout: float = attrs.field(default=60.0, converter=float, validator=_positive(float))
    output_limit: int = attrs.field(
        default=64 << 10, converter=lambda v: parse_size(v, "output_limit")
    )
    result_limit: int = attrs.field(
        default=1 << 20, converter=lambda v: parse_size(v, "result_limit")
    )
    tmp_size: int = attrs.field(default=64 << 20, converter=lambda v: parse_size(v, "tmp_size"))
    shm_size: int = attrs.field(default=16 << 20, converter=lambda v: parse_size(v, "shm_size"))
    fsize: int = attrs.field(default=64 << 20, converter=lambda v: parse_size(v, "fsize"))
    nofile: int = attrs.field(default=256, validator=_positive(int, 15))
    user: str = "65534:65534"
    network: str = "none"
    # Set only by ``load_profiles`` when the config says ``allow_trusted = True``.
    network_approved: bool = False
    mounts: tuple[Mount, ...] = attrs.field(default=(), converter=_mounts)
    env: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=_env)
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
        wanted = {
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
                show = format_size if field in ("memory", "output_limit") else str
                raise LimitError(
                    f"request asks for {field} {show(value)} but profile {self.name!r} allows "
                    f"at most {show(allowed)}; requests may only tighten a profile's limits"
                )
            changes[field] = value
        return attrs.evolve(self, **changes) if changes else self

    def _raw_config(
        self, labels: Mapping[str, str], cmd: Sequence[str] | None, stdin: bool
    ) -> dict[str, Any]:
        host: dict[str, Any] = {
            "NetworkMode": self.network,
            "ReadonlyRootfs": True,
            # /tmp is the only writable place; noexec so dropped binaries cannot run.
            "Tmpfs": {"/tmp": f"rw,noexec,nosuid,nodev,size={self.tmp_size},mode=1777"},
            "ShmSize": self.shm_size,
            "CapDrop": ["ALL"],
            "SecurityOpt": ["no-new-privileges"],
            "Privileged": False,
            "PidsLimit": self.pids_limit,
            "Memory": self.memory,
            "MemorySwap": self.memory,  # equal to Memory: no swap on top of the limit
            "NanoCpus": int(round(self.cpus * 1e9)),
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
            "Binds": [f"{m.source}:{m.target}:{'ro' if m.read_only else 'rw'}" for m in self.mounts],
        }
        env = [f"{k}={v}" for k, v in self.env]
        base_env = ["HOME=/tmp", "LANG=C.UTF-8", "PYTHONDONTWRITEBYTECODE=1"]
        return {
            "Image": self.image,
            "Cmd": list(cmd) if cmd is not None else None,
            "User": self.user,
            "WorkingDir": "/tmp",
            "Env": base_env + env,
            "Labels": dict(labels),
            "NetworkDisabled": not self.networked,
            "Tty": False,
            "OpenStdin": stdin,
            "StdinOnce": stdin,  # host disconnects -> runner sees EOF -> container exits
            "AttachStdin": stdin,
            "AttachStdout": stdin,
            "AttachStderr": stdin,
            "HostConfig": host,
        }

    def container_config(
        self, labels: Mapping[str, str], cmd: Sequence[str] | None = None, *, stdin: bool = True
    ) -> dict[str, Any]:
        """The raw Engine API ``POST /containers/create`` body for this profile."""
        if self.networked and not self.network_approved:
            raise ProfileError(
                f"profile {self.name!r} enables network ({self.network!r}); that needs "
                "allow_trusted = True in the docker configuration"
            )
        return self._raw_config(labels, cmd, stdin)

    def pool_key(self) -> str:
        """Stable hash of the full effective container config (labels and command excluded)."""
        raw = self._raw_config({}, None, True)
        blob = json.dumps(raw, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


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
