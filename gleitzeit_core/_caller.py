"""Who is asking: the identity and scopes of the client behind a request.

The gateway authenticates each request to a :class:`Caller` (an API key's name and scopes) and
runs the handler inside :func:`acting_as`, so providers and routes deep in the call can ask
:func:`current_caller` what this client may do without every signature carrying it. Code that
calls the runtime in-process (a library user, the operator) has no caller: ``None`` means the
operator, trusted with everything the configuration allows.
"""

from __future__ import annotations

import contextlib
import fnmatch
from collections.abc import Iterator
from contextvars import ContextVar

import attrs

from ._errors import GleitzeitError

__all__ = ["Caller", "PermissionDenied", "acting_as", "current_caller"]


class PermissionDenied(GleitzeitError, PermissionError):
    """A caller asked for something outside its key's scopes; ``scope`` names the missing one
    (``"admin"``, ``"methods"``, ``"models"``, ``"profiles"``)."""

    def __init__(self, caller: str, scope: str, detail: str) -> None:
        self.caller = caller
        self.scope = scope
        self.detail = detail
        super().__init__(f"key {caller!r} lacks scope {scope!r}: {detail}")


def _globs(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value)  # type: ignore[attr-defined]


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    # "*" (every local caller's and most keys' scope) matches anything: no glob to compile
    # and run on each request (fnmatch's cost showed in the gateway's profile)
    return "*" in patterns or any(fnmatch.fnmatchcase(name, p) for p in patterns)


@attrs.frozen(kw_only=True)
class Caller:
    """An authenticated client: a key's ``name`` (never its token) and what it may do.

    ``methods`` and ``models`` are glob patterns (``"llm/*"``); ``profiles`` names the sandbox
    profiles it may choose, ``None`` meaning the hub's defaults for untrusted clients;
    ``max_concurrent`` is the key's limit of requests in flight, which a provider that fans one
    request out (a batch) also holds the fan-out to (``None``: no limit).
    """

    name: str
    admin: bool = False
    methods: tuple[str, ...] = attrs.field(default=("*",), converter=_globs)
    models: tuple[str, ...] = attrs.field(default=("*",), converter=_globs)
    profiles: tuple[str, ...] | None = None
    max_concurrent: int | None = None

    def may_call(self, method: str) -> bool:
        return _matches(method, self.methods)

    def may_use_model(self, model: str) -> bool:
        return _matches(model, self.models)

    def check_admin(self, what: str) -> None:
        if not self.admin:
            raise PermissionDenied(self.name, "admin", f"{what} needs an admin key")

    def check_method(self, method: str) -> None:
        if not self.may_call(method):
            allowed = ", ".join(self.methods)
            raise PermissionDenied(self.name, "methods", f"{method!r} is not in {allowed}")

    def check_model(self, model: str) -> None:
        if not self.may_use_model(model):
            allowed = ", ".join(self.models)
            raise PermissionDenied(self.name, "models", f"model {model!r} is not in {allowed}")


_current: ContextVar[Caller | None] = ContextVar("gleitzeit_caller", default=None)


def current_caller() -> Caller | None:
    """The client the current request runs for, or ``None`` for in-process (operator) code."""
    return _current.get()


@contextlib.contextmanager
def acting_as(caller: Caller | None) -> Iterator[None]:
    """Run the enclosed code (and the tasks it starts) on behalf of ``caller``."""
    token = _current.set(caller)
    try:
        yield
    finally:
        _current.reset(token)
