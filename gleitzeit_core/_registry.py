"""Named registries, one per kind of thing plugins register, with duplicate detection.

An entry may be the object itself or a ``"module:attribute"`` reference that is imported only
when a config selects it, so registering costs a plugin nothing at startup.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from ._errors import DuplicateNameError, UnknownNameError

__all__ = ["KINDS", "Entry", "Register", "Registries", "Registry", "resolve_reference"]

T = TypeVar("T")


class Register(Protocol):
    """What a ``gleitzeit_register_*`` hook receives: ``register(name, target, hint=...)``.

    ``target`` is the registered object (a ``HubKind``, a strategy or breaker factory, ...) or
    a ``"module:attribute"`` reference imported only when a config selects it; ``hint`` is
    shown when a config names the entry and it cannot be used (say, how to install what it
    needs)."""

    def __call__(self, name: str, target: object, *, hint: str | None = None) -> None: ...


KINDS = (
    "hubs",
    "discoverers",
    "probes",
    "strategies",
    "breakers",
    "providers",
    "state_backends",
)

# what one item of each kind is called in messages
_SINGULAR = {
    "hubs": "hub kind",
    "discoverers": "discoverer",
    "probes": "probe",
    "strategies": "strategy",
    "breakers": "breaker",
    "providers": "provider",
    "state_backends": "state backend",
}


def resolve_reference(reference: str) -> Any:
    """Import ``"package.module:attribute.path"`` and return the attribute."""
    module_name, _, attribute = reference.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in filter(None, attribute.split(".")):
        target = getattr(target, part)
    return target


@dataclass(slots=True)  # not attrs: loaded at start-up, where attrs costs 20 ms
class Entry:
    """One registered name: what it refers to and which plugin registered it."""

    name: str
    target: Any
    plugin: str
    hint: str | None = None  # e.g. how to install it, shown when it is missing

    def load(self) -> Any:
        if isinstance(self.target, str) and ":" in self.target:
            self.target = resolve_reference(self.target)
        return self.target


class Registry(Generic[T]):
    """Names of one kind (strategies, say) mapped to what they refer to."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}
        self.conflicts: dict[str, list[str]] = {}  # name -> every plugin that claimed it

    @property
    def singular(self) -> str:
        return _SINGULAR.get(self.kind, self.kind)

    def add(self, name: str, target: Any, *, plugin: str, hint: str | None = None) -> None:
        if not isinstance(name, str) or not name:
            msg = f"plugin {plugin!r} registered a {self.singular} with an invalid name {name!r}"
            raise ValueError(msg)
        existing = self._entries.get(name)
        if existing is not None and existing.plugin != plugin:
            owners = self.conflicts.setdefault(name, [existing.plugin])
            owners.append(plugin)
            return
        self._entries[name] = Entry(name, target, plugin, hint)

    def remove_plugin(self, plugin: str) -> None:
        """Forget everything a plugin registered (used when its hook failed half-way)."""
        for name in [n for n, e in self._entries.items() if e.plugin == plugin]:
            del self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def by_plugin(self, plugin: str) -> list[str]:
        return sorted(n for n, e in self._entries.items() if e.plugin == plugin)

    def entry(self, name: str, *, path: str | None = None, hint: str | None = None) -> Entry:
        if name in self.conflicts:
            raise DuplicateNameError(self.singular, name, self.conflicts[name])
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(
                self.singular, name, self.names(), path=path, hint=hint
            ) from None

    def get(self, name: str, *, path: str | None = None, hint: str | None = None) -> Any:
        return self.entry(name, path=path, hint=hint).load()

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)


class Registries:
    """One registry per kind."""

    def __init__(self) -> None:
        self.hubs: Registry[Any] = Registry("hubs")
        self.discoverers: Registry[Any] = Registry("discoverers")
        self.probes: Registry[Any] = Registry("probes")
        self.strategies: Registry[Any] = Registry("strategies")
        self.breakers: Registry[Any] = Registry("breakers")
        self.providers: Registry[Any] = Registry("providers")
        # installed but disabled plugins (by name and by distribution) -> what disabled them
        self.disabled: dict[str, str] = {}
        # (kind, name) a disabled plugin declares in its metadata -> that plugin, so selecting
        # the name says what disabled it instead of "unknown"
        self.disabled_names: dict[tuple[str, str], str] = {}
        self.state_backends: Registry[Any] = Registry("state_backends")

    def of(self, kind: str) -> Registry[Any]:
        registry: Registry[Any] = getattr(self, kind)
        return registry

    def all(self) -> list[Registry[Any]]:
        return [self.of(kind) for kind in KINDS]

    def registered_by(self, plugin: str) -> dict[str, list[str]]:
        found = {kind: self.of(kind).by_plugin(plugin) for kind in KINDS}
        return {kind: names for kind, names in found.items() if names}

    def remove_plugin(self, plugin: str) -> None:
        for registry in self.all():
            registry.remove_plugin(plugin)
