"""One exception hierarchy for Gleitzeit.

Every error says what failed, where, and what to do. Each class also subclasses the built-in
exception a caller would reach for first (``ConfigError`` is a ``ValueError``, ``RequestTimeout``
a ``TimeoutError``), so ``except ValueError`` keeps working for code that knows nothing of us.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._outcomes import FailureClass

__all__ = [
    "ConfigError",
    "DuplicateNameError",
    "EmptyPool",
    "GleitzeitError",
    "InvalidParams",
    "NoResourceAvailable",
    "PluginLoadError",
    "ProviderUnavailable",
    "RequestTimeout",
    "ResourceError",
    "UnknownMethod",
    "UnknownNameError",
]


class GleitzeitError(Exception):
    """Base class of every error Gleitzeit raises on purpose."""


class ConfigError(GleitzeitError, ValueError):
    """A configuration is invalid; ``problems`` holds one line per problem, each naming its key."""

    def __init__(self, problems: Sequence[str] | str, *, source: str | None = None) -> None:
        self.problems: list[str] = [problems] if isinstance(problems, str) else list(problems)
        self.source = source
        prefix = f"{source}: " if source else ""
        super().__init__("\n".join(prefix + p for p in self.problems))


class UnknownNameError(ConfigError, LookupError):
    """A config names a strategy, breaker, probe or hub kind that no installed plugin registered."""

    def __init__(
        self,
        kind: str,
        name: str,
        installed: Sequence[str],
        *,
        path: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.kind = kind
        self.name = name
        self.installed = sorted(installed)
        where = f"{path}: " if path else ""
        listing = ", ".join(self.installed) if self.installed else "none"
        from ._validators import did_you_mean

        guess = did_you_mean(name, self.installed)
        message = f"{where}unknown {kind} {name!r}; installed {plural(kind)}: {listing}"
        if guess:
            message += f'; did you mean "{guess}"?'
        if hint:
            message += f"; {hint}"
        super().__init__(message)


def plural(noun: str) -> str:
    """``strategy`` -> ``strategies``, ``hub kind`` -> ``hub kinds``."""
    if noun.endswith("y") and noun[-2:-1] not in "aeiou":
        return noun[:-1] + "ies"
    return noun if noun.endswith("s") else noun + "s"


class DuplicateNameError(GleitzeitError, ValueError):
    """Two plugins registered the same name for one kind; neither is chosen silently."""

    def __init__(self, kind: str, name: str, owners: Sequence[str]) -> None:
        self.kind = kind
        self.name = name
        self.owners = list(owners)
        super().__init__(
            f"{kind} {name!r} is registered by more than one plugin ({', '.join(self.owners)}); "
            f"disable one of them with `gleitzeit plugins disable NAME`"
        )


class PluginLoadError(GleitzeitError, ImportError):
    """A plugin failed to import or to run a hook; raised only in strict mode."""

    def __init__(self, plugin: str, distribution: str | None, version: str | None, error: str):
        self.plugin = plugin
        self.distribution = distribution
        self.version = version
        self.error = error
        dist = f" ({distribution} {version})" if distribution else ""
        super().__init__(
            f"plugin {plugin!r}{dist} failed to load: {error}; "
            f"disable it with `gleitzeit plugins disable {plugin}`"
        )


class NoResourceAvailable(GleitzeitError, LookupError):
    """No resource of a hub can take the request; ``reasons`` maps each candidate to why not."""

    def __init__(self, hub: str, reasons: Mapping[str, str], detail: str | None = None) -> None:
        self.hub = hub
        self.reasons = dict(reasons)
        listing = "; ".join(f"{rid}: {why}" for rid, why in sorted(self.reasons.items()))
        message = f"hub {hub!r}: no resource available"
        if detail:
            message += f" ({detail})"
        message += f" - {listing}" if listing else " - the hub has no resources"
        super().__init__(message)


class EmptyPool(GleitzeitError, LookupError):
    """A strategy was asked to choose from no candidates at all."""

    def __init__(self, strategy: str) -> None:
        self.strategy = strategy
        super().__init__(f"strategy {strategy!r} was given no candidates to choose from")


class RequestTimeout(GleitzeitError, TimeoutError):
    """The request's deadline passed before any resource answered."""


class ResourceError(GleitzeitError, ConnectionError):
    """A call to a resource failed; ``failure`` tells the hub whose fault it was.

    Providers raise it (or a subclass) so the hub can count the failure against the resource and
    decide whether to fail over. ``status`` is the upstream status code when there was one.
    """

    def __init__(
        self,
        message: str,
        *,
        failure: FailureClass,
        resource: str | None = None,
        status: int | None = None,
        body: object = None,
    ) -> None:
        self.failure = failure
        self.resource = resource
        self.status = status
        self.body = body
        where = f"{resource}: " if resource else ""
        super().__init__(where + message)


class UnknownMethod(GleitzeitError, LookupError):
    """No installed provider offers the requested method."""

    def __init__(self, method: str, available: Sequence[str]) -> None:
        self.method = method
        self.available = sorted(available)
        listing = ", ".join(self.available) or "none"
        super().__init__(f"unknown method {method!r}; available methods: {listing}")


class InvalidParams(GleitzeitError, ValueError):
    """The parameters of a method call are wrong; one line per problem, each naming its field."""

    def __init__(self, method: str, problems: Sequence[str]) -> None:
        self.method = method
        self.problems = list(problems)
        super().__init__(f"{method}: " + "; ".join(self.problems))


class ProviderUnavailable(GleitzeitError, LookupError):
    """A provider is installed, but no hub of the kind it runs on is configured."""

    def __init__(self, protocol: str, hub_kind: str | None) -> None:
        self.protocol = protocol
        self.hub_kind = hub_kind
        super().__init__(
            f"provider {protocol!r} is installed but no hub of kind {hub_kind!r} is configured; "
            f"add a [hubs.NAME] table with kind = {hub_kind!r}"
        )
