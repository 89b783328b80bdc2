"""Parsing and validation of profile fields: sizes ("256m", "1g"), CPU counts, env, mounts.

Sizes use binary units like Docker does (``256m`` == 256 * 2**20 bytes).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from .errors import ProfileError

__all__ = [
    "Mount",
    "format_size",
    "parse_cpus",
    "parse_size",
    "positive",
    "to_env",
    "to_fsize",
    "to_memory",
    "to_mounts",
    "to_output_limit",
    "to_result_limit",
    "to_shm_size",
    "to_timeout",
    "to_tmp_size",
]

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)


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


_ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Mount targets that would hide or expose kernel/engine interfaces inside the sandbox.
_FORBIDDEN_TARGETS = ("/", "/proc", "/sys", "/dev", "/tmp")


def positive(kind: type[int] | type[float], minimum: float = 0) -> Any:
    def check(inst: Any, attr: attrs.Attribute[Any], value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ProfileError(f"{attr.name}: expected a number, got {value!r}")
        if kind is int and not isinstance(value, int):
            raise ProfileError(f"{attr.name}: expected an integer, got {value!r}")
        if value <= minimum:
            raise ProfileError(f"{attr.name}: must be greater than {minimum}, got {value!r}")

    return check


# attrs converters and validators for Profile fields (named functions: mypy's attrs
# plugin only understands those).
def to_memory(value: int | str) -> int:
    return parse_size(value, "memory")


def to_output_limit(value: int | str) -> int:
    return parse_size(value, "output_limit")


def to_result_limit(value: int | str) -> int:
    return parse_size(value, "result_limit")


def to_tmp_size(value: int | str) -> int:
    return parse_size(value, "tmp_size")


def to_shm_size(value: int | str) -> int:
    return parse_size(value, "shm_size")


def to_fsize(value: int | str) -> int:
    return parse_size(value, "fsize")


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
        if any(
            target == t or (t != "/" and target.startswith(t + "/")) for t in _FORBIDDEN_TARGETS
        ):
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


def to_env(value: Mapping[str, str] | Sequence[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    items = value.items() if isinstance(value, Mapping) else value
    out = tuple(sorted((str(k), str(v)) for k, v in items))
    for key, _ in out:
        if not _ENV_KEY_RE.match(key):
            raise ProfileError(f"env: invalid variable name {key!r}")
    return out


def to_mounts(value: Sequence[Mount | str | Mapping[str, Any]]) -> tuple[Mount, ...]:
    return tuple(m if isinstance(m, Mount) else Mount.parse(m) for m in value)


def to_timeout(value: float | int | str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ProfileError(f"timeout: expected seconds, got {value!r}") from None
