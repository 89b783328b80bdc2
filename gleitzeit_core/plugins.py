"""Finding and loading plugins: entry points, allow- and deny-lists, and the load report.

Entry points are read once per process. Each plugin is imported and asked for its
registrations on its own, so one that fails is reported (name, distribution, version, error)
and skipped while the rest load; with ``GLEITZEIT_STRICT_PLUGINS=1`` the first failure is
fatal. A disabled plugin is never imported. The core's built-ins are a plugin like any other,
registered first.

Environment: ``GLEITZEIT_LOAD_PLUGINS=a,b`` loads only those (empty: none),
``GLEITZEIT_DISABLED_PLUGINS=a,b`` skips those, ``GLEITZEIT_STRICT_PLUGINS=1`` makes errors fatal.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pluggy

from . import hookspecs
from .errors import PluginLoadError
from .registry import Registries

__all__ = [
    "BUILTIN",
    "COMMANDS_GROUP",
    "PluginCommand",
    "PluginManager",
    "PluginRecord",
    "command_entry_points",
    "entry_points_snapshot",
]

GROUP = "gleitzeit"
# command line commands a plugin adds, named in its metadata so `gleitzeit --help` can list
# them without importing the plugin
COMMANDS_GROUP = "gleitzeit.commands"
LIGHT_GROUPS = {
    "gleitzeit.strategies": "strategies",
    "gleitzeit.breakers": "breakers",
    "gleitzeit.probes": "probes",
}
BUILTIN = "builtin"
_REGISTER_HOOKS = {
    "gleitzeit_register_hubs": "hubs",
    "gleitzeit_register_discoverers": "discoverers",
    "gleitzeit_register_probes": "probes",
    "gleitzeit_register_strategies": "strategies",
    "gleitzeit_register_breakers": "breakers",
    "gleitzeit_register_providers": "providers",
    "gleitzeit_register_state_backends": "state_backends",
}


@dataclass(slots=True)  # dataclasses, not attrs: start-up imports this module
class PluginRecord:
    """One line of ``gleitzeit plugins list``."""

    name: str
    distribution: str | None
    version: str | None
    module: str | None
    status: str  # "loaded", "disabled" or "error"
    error: str | None = None
    registered: dict[str, list[str]] = field(default_factory=dict)
    commands: list[str] = field(default_factory=list)
    hooks: list[str] = field(default_factory=list)  # the hook implementations it provides
    notes: list[str] = field(default_factory=list)  # from gleitzeit_plugin_notes
    disabled_by: str | None = None  # what disabled it: the environment, a config file, ...


_SNAPSHOT: list[Any] | None = None


def entry_points_snapshot() -> list[Any]:
    """Every entry point of our groups, read from the installed distributions once."""
    global _SNAPSHOT
    if _SNAPSHOT is None:
        # the standard library's, which pluggy imports anyway (the importlib-metadata backport
        # cost another 20 ms of start-up)
        import importlib.metadata

        found = importlib.metadata.entry_points()  # every distribution read once, here
        groups = (GROUP, COMMANDS_GROUP, *LIGHT_GROUPS)
        _SNAPSHOT = [ep for group in groups for ep in found.select(group=group)]
    return list(_SNAPSHOT)


_DISTRIBUTIONS: dict[int, tuple[Any, str | None, str | None]] = {}


def distribution_of(ep: Any) -> tuple[str | None, str | None]:
    """The name and version of the distribution that declares ``ep``, from its metadata read
    once per distribution (``dist.name`` and ``dist.version`` parse the whole file each)."""
    dist = ep.dist
    if dist is None:
        return None, None
    known = _DISTRIBUTIONS.get(id(dist))
    if known is None or known[0] is not dist:
        metadata = dist.metadata
        known = (dist, metadata["Name"], metadata["Version"])
        _DISTRIBUTIONS[id(dist)] = known
    return known[1], known[2]


@dataclass(frozen=True, slots=True)
class PluginCommand:
    """A command a plugin declares in its metadata (entry point group ``gleitzeit.commands``)."""

    name: str
    plugin: str  # the plugin's name (its ``gleitzeit`` entry point), for the deny-lists
    distribution: str | None
    version: str | None
    entry_point: Any

    def load(self) -> Any:
        return self.entry_point.load()


def command_entry_points() -> dict[str, PluginCommand]:
    """Every command declared by an installed plugin, by command name; read from metadata
    only, nothing imported."""
    snapshot = entry_points_snapshot()
    plugin_of = {
        distribution_of(ep)[0]: ep.name for ep in snapshot if ep.group == GROUP and ep.dist
    }
    found: dict[str, PluginCommand] = {}
    for ep in snapshot:
        if ep.group != COMMANDS_GROUP:
            continue
        dist, version = distribution_of(ep)
        plugin = plugin_of.get(dist or "") or _short(dist) or ep.name
        found.setdefault(ep.name, PluginCommand(ep.name, plugin, dist, version, ep))
    return found


def _names(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [part.strip() for part in value.split(",") if part.strip()]


def _short(distribution: str | None) -> str | None:
    if distribution is None:
        return None
    name = distribution.lower().replace("_", "-")
    return name.removeprefix("gleitzeit-")


class PluginManager:
    """Loads plugins and keeps what they registered, per kind, and a record per plugin."""

    def __init__(
        self,
        *,
        disabled: Iterable[str] | Mapping[str, str] = (),
        allow: Iterable[str] | None = None,
        strict: bool = False,
        autoload: bool = True,
    ) -> None:
        self.pm = pluggy.PluginManager(GROUP)
        self.pm.add_hookspecs(hookspecs)
        self.registries = Registries()
        self.records: dict[str, PluginRecord] = {}
        # name -> what disabled it (shown by `plugins list` and in "not installed" messages)
        reasons = disabled if isinstance(disabled, Mapping) else dict.fromkeys(disabled, "")
        self.disabled: dict[str, str] = {}
        for name, why in reasons.items():
            self.disabled.setdefault(name.lower(), why or "the caller's deny-list")
        self.allow = None if allow is None else {name.lower() for name in allow}
        self.strict = strict
        self.autoload = autoload
        self._loaded = False

    @classmethod
    def from_env(
        cls,
        disabled: Iterable[str] | Mapping[str, str] = (),
        environ: Mapping[str, str] | None = None,
    ) -> PluginManager:
        """A manager configured by the ``GLEITZEIT_*`` variables plus extra deny-list names
        (a mapping gives what disabled each, for ``plugins list``)."""
        env = os.environ if environ is None else environ
        deny = dict.fromkeys(
            _names(env.get("GLEITZEIT_DISABLED_PLUGINS")) or [], "GLEITZEIT_DISABLED_PLUGINS"
        )
        extra = disabled if isinstance(disabled, Mapping) else dict.fromkeys(disabled, "")
        for name, why in extra.items():
            deny.setdefault(name, why)
        strict = env.get("GLEITZEIT_STRICT_PLUGINS", "").lower() in ("1", "true", "yes")
        return cls(disabled=deny, allow=_names(env.get("GLEITZEIT_LOAD_PLUGINS")), strict=strict)

    # -- loading --------------------------------------------------------------------------------
    def load(self) -> PluginManager:
        """Register the built-ins, then every enabled installed plugin. Idempotent."""
        if self._loaded:
            return self
        self._loaded = True
        from . import builtins

        self.add(builtins, BUILTIN, distribution="gleitzeit-core", version=_core_version())
        if self.autoload:
            self._load_entry_points()
        return self

    def is_enabled(self, *names: str | None) -> bool:
        return self.disabled_reason(*names) is None

    def disabled_reason(self, *names: str | None) -> str | None:
        """What keeps a plugin (by any of its names) from loading, or ``None``."""
        wanted = [n.lower() for n in names if n]
        for name in wanted:
            if name in self.disabled:
                return self.disabled[name]
        if self.allow is not None and not set(wanted) & self.allow:
            return "not listed in GLEITZEIT_LOAD_PLUGINS"
        return None

    def _disabled(
        self, name: str, dist: str | None, version: str | None, module: str | None
    ) -> PluginRecord:
        why = self.disabled_reason(name, dist)
        record = PluginRecord(name, dist, version, module, "disabled", disabled_by=why)
        self.records[name] = record
        self.registries.disabled[name] = why or ""
        if dist:
            self.registries.disabled[dist.lower()] = why or ""
        return record

    def _load_entry_points(self) -> None:
        snapshot = entry_points_snapshot()
        claims: dict[str, list[Any]] = {}
        for ep in snapshot:
            if ep.group == GROUP:
                claims.setdefault(ep.name, []).append(ep)
        for name, eps in sorted(claims.items()):
            first = eps[0]
            dist, version = distribution_of(first)
            if len(eps) > 1:
                owners = ", ".join(sorted(str(distribution_of(e)[0]) for e in eps if e.dist))
                self._fail(name, dist, version, first.value, f"plugin name claimed by {owners}")
                continue
            if not self.is_enabled(name, dist):
                self._disabled(name, dist, version, first.value)
                continue
            try:
                module = first.load()
            except Exception as exc:  # a broken plugin is reported, never fatal by default
                self._fail(name, dist, version, first.value, _format(exc))
                continue
            self.add(module, name, distribution=dist, version=version)
        for ep in snapshot:
            kind = LIGHT_GROUPS.get(ep.group)
            if kind is None:
                continue
            dist, version = distribution_of(ep)
            owner = _short(dist) or ep.name
            record = self.records.get(owner)
            if record is None:
                if self.is_enabled(owner, dist):
                    record = PluginRecord(owner, dist, version, None, "loaded")
                    self.records[owner] = record
                else:
                    record = self._disabled(owner, dist, version, None)
            if record.status != "loaded":
                continue
            self.registries.of(kind).add(ep.name, ep.value, plugin=owner)
            record.registered = self.registries.registered_by(owner)

    def add(
        self,
        plugin: ModuleType | object,
        name: str,
        *,
        distribution: str | None = None,
        version: str | None = None,
    ) -> PluginRecord:
        """Register a plugin object or module and collect what it registers."""
        module = getattr(plugin, "__name__", type(plugin).__name__)
        try:
            self.pm.register(plugin, name=name)
        except Exception as exc:  # e.g. a hook implementation that matches no spec
            return self._fail(name, distribution, version, module, _format(exc))
        record = PluginRecord(name, distribution, version, module, "loaded")
        record.hooks = sorted(caller.name for caller in self.pm.get_hookcallers(plugin) or [])
        self.records[name] = record
        for hook_name, kind in _REGISTER_HOOKS.items():
            registry = self.registries.of(kind)

            def register(
                item_name: str, target: Any, *, hint: str | None = None, _r: Any = registry
            ) -> None:
                _r.add(item_name, target, plugin=name, hint=hint)

            try:
                self._call_one(name, hook_name, register=register)
            except Exception as exc:
                self.registries.remove_plugin(name)
                self.pm.unregister(name=name)
                return self._fail(
                    name, distribution, version, module, f"{hook_name}: {_format(exc)}"
                )
        record.registered = self.registries.registered_by(name)
        return record

    def _call_one(self, plugin_name: str, hook_name: str, **kwargs: Any) -> list[Any]:
        results = []
        for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
            if impl.plugin_name == plugin_name:
                results.append(impl.function(**{arg: kwargs[arg] for arg in impl.argnames}))
        return results

    def call_each(
        self,
        hook_name: str,
        *,
        after: Callable[[str, Any], None] | None = None,
        **kwargs: Any,
    ) -> list[tuple[str, Any]]:
        """Call a hook on every plugin separately; a plugin that raises is reported, not fatal.
        ``after(plugin, result)`` runs right after each plugin's call (to see what it added)."""
        results: list[tuple[str, Any]] = []
        for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
            try:
                value = impl.function(**{arg: kwargs[arg] for arg in impl.argnames})
            except Exception as exc:
                record = self.records.get(impl.plugin_name)
                message = f"{hook_name}: {_format(exc)}"
                if record is not None:
                    record.status, record.error = "error", message
                if self.strict:
                    raise PluginLoadError(
                        impl.plugin_name,
                        record.distribution if record else None,
                        record.version if record else None,
                        message,
                    ) from exc
                print(
                    f"gleitzeit: plugin {impl.plugin_name!r} failed in {message}", file=sys.stderr
                )
                continue
            results.append((impl.plugin_name, value))
            if after is not None:
                after(impl.plugin_name, value)
        return results

    def _fail(
        self, name: str, dist: str | None, version: str | None, module: str | None, error: str
    ) -> PluginRecord:
        record = PluginRecord(name, dist, version, module, "error", error)
        self.records[name] = record
        if self.strict:
            raise PluginLoadError(name, dist, version, error)
        dist_text = f" ({dist} {version})" if dist else ""
        print(
            f"gleitzeit: plugin {name!r}{dist_text} failed to load and was skipped: {error} "
            f"(disable it with `gleitzeit plugins disable {name}`)",
            file=sys.stderr,
        )
        return record

    def conflicts(self) -> dict[str, dict[str, list[str]]]:
        """Names claimed by more than one plugin, per kind."""
        return {r.kind: dict(r.conflicts) for r in self.registries.all() if r.conflicts}

    def report(self) -> list[PluginRecord]:
        for name, record in self.records.items():
            if record.status == "loaded":
                record.registered = self.registries.registered_by(name)
        return sorted(self.records.values(), key=lambda r: (r.name != BUILTIN, r.name))


def _format(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _core_version() -> str:
    from . import __version__

    return __version__
