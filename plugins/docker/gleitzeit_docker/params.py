"""Parameters of the ``python/v1`` methods: strict attrs classes the core structures into.

Every problem is reported naming its field (``params.timeout: expected a number of seconds
> 0, got -1``). Limits a request gives (``memory``, ``cpus``, ``pids``, ``timeout``,
``output_limit``) may only tighten the profile's; the provider checks that against the
profile and reports a loosening the same way.
"""

# No ``from __future__ import annotations``: the core resolves these field types with
# ``typing.get_type_hints`` for every request, and real annotations are cheaper to resolve.
import base64
import binascii
from collections.abc import Mapping
from typing import Any

import attrs

from gleitzeit_core import InvalidValue, at_least, in_range, positive, satisfies, seconds

__all__ = [
    "MAX_BATCH_CONCURRENCY",
    "MAX_BATCH_TASKS",
    "BatchParams",
    "ExecuteParams",
    "InfoParams",
    "ValidateParams",
    "file_contents",
]

MAX_BATCH_TASKS = 1000
MAX_BATCH_CONCURRENCY = 64


def _is_size(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return (isinstance(value, int) and value > 0) or (isinstance(value, str) and bool(value))


def _is_file(value: Any) -> bool:
    if isinstance(value, str):
        return True
    if isinstance(value, Mapping) and set(value) == {"base64"}:
        try:
            base64.b64decode(value["base64"], validate=True)
        except (binascii.Error, TypeError, ValueError):
            return False
        return True
    return False


_size = satisfies('a size such as "128m" or a number of bytes', _is_size)


def _is_files(value: Any) -> bool:
    return isinstance(value, Mapping) and all(
        isinstance(name, str) and _is_file(content) for name, content in value.items()
    )


_files = satisfies(
    'a table of relative paths to text, or to { base64 = "..." } for binary content', _is_files
)
_name = satisfies("a non-empty string", lambda v: isinstance(v, str) and v.strip())


def file_contents(files: Mapping[str, Any]) -> dict[str, str | bytes]:
    """The ``files`` parameter as ``Job`` takes it: text stays text, base64 becomes bytes."""
    return {
        name: content if isinstance(content, str) else base64.b64decode(content["base64"])
        for name, content in files.items()
    }


@attrs.frozen(kw_only=True)
class ExecuteParams:
    """``python/execute``: run ``code`` (or the file ``file`` among ``files``) in a sandbox."""

    code: str | None = None
    file: str | None = attrs.field(default=None, validator=_name)
    # Any JSON value; the code sees it as the global ``args``.
    args: Any = None
    # Relative path -> text, or -> { base64 = "..." }; written to the job's directory.
    files: Any = attrs.field(factory=dict, validator=_files)
    # Seconds; at most the profile's timeout.
    timeout: float | None = attrs.field(default=None, validator=seconds())
    # A profile name (default: the hub's default_profile).
    profile: str | None = attrs.field(default=None, validator=_name)
    # Tighter container limits than the profile's (never looser).
    memory: Any = attrs.field(default=None, validator=_size)
    cpus: float | None = attrs.field(default=None, validator=positive("a number of CPUs"))
    pids: int | None = attrs.field(default=None, validator=at_least(8))
    # Bytes kept of stdout and of stderr each; at most the profile's.
    output_limit: Any = attrs.field(default=None, validator=_size)


@attrs.frozen(kw_only=True)
class ValidateParams:
    """``python/validate``: compile ``code`` (or ``file`` among ``files``) without running it."""

    code: str | None = None
    file: str | None = attrs.field(default=None, validator=_name)
    files: Any = attrs.field(factory=dict, validator=_files)


@attrs.frozen(kw_only=True)
class InfoParams:
    """``python/info``: the sandbox's Python, the profile's limits, the hub's engines."""

    profile: str | None = attrs.field(default=None, validator=_name)


def _tasks(_: Any, attribute: "attrs.Attribute[Any]", value: list[Any]) -> None:
    if len(value) > MAX_BATCH_TASKS:
        raise InvalidValue(attribute.name, f"at most {MAX_BATCH_TASKS} tasks", len(value))


@attrs.frozen(kw_only=True)
class BatchParams:
    """``python/batch``: many executions, at most ``max_concurrent`` at once, in order."""

    tasks: list[ExecuteParams] = attrs.field(validator=_tasks)
    max_concurrent: int = attrs.field(
        default=4, validator=in_range(1, MAX_BATCH_CONCURRENCY, "an integer")
    )
