"""Finding and loading plugins: entry points, allow- and deny-lists, and the load report.

Entry points are read once per process. Each plugin is imported and asked for its
registrations on its own, so one that fails is reported (name, distribution, version, error)
and skipped while the rest load; with ``GLEITZEIT_STRICT_PLUGINS=1`` the first failure is
fatal. A disabled plugin is never imported. The core's built-ins are a plugin like any other,
registered first.

Which plugins load is decided in one place, ``PluginSelection`` (the environment, the config
file and the user's ``gleitzeit plugins disable`` list); the runtime, the CLI and the legacy shim
all ask it. Environment: ``GLEITZEIT_LOAD_PLUGINS=a,b`` loads only those (empty: none),
``GLEITZEIT_DISABLED_PLUGINS=a,b`` skips those, ``GLEITZEIT_STRICT_PLUGINS=1`` makes errors fatal.

After a plugin registers, pluggy's ``check_pending`` runs for it: a hook implementation that
matches no hook specification (a misspelled ``gleitzeit_register_strategy``) makes the plugin
broken, with the hook's name in the report, instead of silently doing nothing. Problems are
logged on the ``gleitzeit.plugins`` logger; the CLI decides what to show.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pluggy

from . import _hookspecs as hookspecs
from ._errors import PluginLoadError
from ._registry import Registries

if TYPE_CHECKING:
    from ._config import GleitzeitConfig

__all__ = [
    "BUILTIN",
    "COMMANDS_GROUP",
    "PluginCommand",
    "PluginManager",
    "PluginRecord",
    "PluginSelection",
    "command_entry_points",
    "entry_points_snapshot",
]

log = logging.getLogger("gleitzeit.plugins")

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
_HOOK_NAMES = frozenset(name for name in dir(hookspecs) if name.startswith("gleitzeit_"))


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
    # what the loader found wrong that does not stop it: a private core module it imports
    warnings: list[str] = field(default_factory=list)
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


def _deny_list(names: Iterable[str] | Mapping[str, str]) -> dict[str, str]:
    reasons = names if isinstance(names, Mapping) else dict.fromkeys(names, "")
    return {name.lower(): why or "the caller's deny-list" for name, why in reasons.items()}


def _allow_list(names: Iterable[str] | None) -> frozenset[str] | None:
    return None if names is None else frozenset(name.lower() for name in names)


@dataclass(frozen=True, init=False)  # dataclasses, not attrs: start-up imports this module
class PluginSelection:
    """Which plugins this process loads and what left each other one out: the one answer the
    runtime, the CLI and the legacy shim share.

    ``resolve`` reads, first reason kept: ``GLEITZEIT_DISABLED_PLUGINS``, ``[plugins] disabled``
    of the config (a loaded config, a path or a dict; else ``$GLEITZEIT_CONFIG``), the user's
    deny-list (``gleitzeit plugins disable``), the allow-list ``GLEITZEIT_LOAD_PLUGINS`` and
    ``GLEITZEIT_STRICT_PLUGINS``; ``PluginManager()`` without a selection uses it too. The
    constructor takes the lists as they are and reads nothing: for a caller that has decided
    everything itself (a test of the loader).
    """

    disabled: Mapping[str, str]  # lower-cased name -> what disabled it
    allow: frozenset[str] | None
    strict: bool

    def __init__(
        self,
        disabled: Iterable[str] | Mapping[str, str] = (),
        allow: Iterable[str] | None = None,
        strict: bool = False,
    ) -> None:
        object.__setattr__(self, "disabled", _deny_list(disabled))
        object.__setattr__(self, "allow", _allow_list(allow))
        object.__setattr__(self, "strict", strict)

    @classmethod
    def resolve(
        cls,
        config: GleitzeitConfig | str | os.PathLike[str] | Mapping[str, Any] | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        extra: Iterable[str] | Mapping[str, str] = (),
        allow: Iterable[str] | None = None,
        strict: bool = False,
        lenient: bool = False,
    ) -> PluginSelection:
        """The selection of this process. ``extra`` adds names (with reasons, as a mapping);
        ``allow`` replaces ``GLEITZEIT_LOAD_PLUGINS`` (an embedder or a test that wants
        exactly these plugins: the deny-lists still apply); ``strict`` makes errors fatal
        whatever ``GLEITZEIT_STRICT_PLUGINS`` says; ``lenient`` makes an unreadable config or
        user config disable nothing instead of raising its ``ConfigError`` (for the shim's
        import-time check: the runtime reports the same file when it loads it)."""
        # the stdlib-only reader: the full config machinery (attrs, cattrs) is not needed here
        from ._configfile import plugins_disabled_in, user_config_path, user_disabled_plugins
        from ._errors import ConfigError

        env = os.environ if environ is None else environ
        deny: dict[str, str] = {}

        def add(names: Iterable[str], why: str) -> None:
            for name in names:
                deny.setdefault(name.lower(), why)

        add(_names(env.get("GLEITZEIT_DISABLED_PLUGINS")) or [], "GLEITZEIT_DISABLED_PLUGINS")
        try:
            if config is None or isinstance(config, (str, os.PathLike)):
                value = config if config is not None else env.get("GLEITZEIT_CONFIG")
                path = Path(value) if value else None
                if path is not None and path.exists():
                    add(plugins_disabled_in(path), f"[plugins] disabled in {path}")
            elif isinstance(config, Mapping):
                table = config.get("plugins")
                listed = table.get("disabled", []) if isinstance(table, Mapping) else []
                add([str(name) for name in listed], "[plugins] disabled in the config")
            else:  # a GleitzeitConfig (not imported here: see above)
                where = config.source or "the config"
                add(config.plugins.disabled, f"[plugins] disabled in {where}")
        except (OSError, UnicodeDecodeError, ConfigError):
            if not lenient:
                raise
        try:
            user = user_disabled_plugins()
        except ConfigError:
            if not lenient:
                raise
            user = []
        add(
            user,
            f"the user config {user_config_path()} (`gleitzeit plugins enable NAME` undoes it)",
        )
        more = extra if isinstance(extra, Mapping) else dict.fromkeys(extra, "")
        for name, why in more.items():
            deny.setdefault(name.lower(), why or "the caller's deny-list")
        strict = strict or env.get("GLEITZEIT_STRICT_PLUGINS", "").lower() in ("1", "true", "yes")
        allowed = _names(env.get("GLEITZEIT_LOAD_PLUGINS")) if allow is None else list(allow)
        return cls(deny, allowed, strict)

    def reason(self, *names: str | None) -> str | None:
        """What keeps a plugin (known by any of ``names``) from loading, or ``None``."""
        wanted = [n.lower() for n in names if n]
        for name in wanted:
            if name in self.disabled:
                return self.disabled[name]
        if self.allow is not None and not set(wanted) & self.allow:
            return "not listed in GLEITZEIT_LOAD_PLUGINS"
        return None

    def manager(self, *, autoload: bool = True) -> PluginManager:
        """A plugin manager that loads what this selection enables (not loaded yet)."""
        return PluginManager(selection=self, autoload=autoload)


class PluginManager:
    """Loads plugins and keeps what they registered, per kind, and a record per plugin."""

    def __init__(
        self,
        *,
        selection: PluginSelection | None = None,
        disabled: Iterable[str] | Mapping[str, str] = (),
        allow: Iterable[str] | None = None,
        strict: bool = False,
        autoload: bool = True,
    ) -> None:
        """Load what ``selection`` enables; without one, ``PluginSelection.resolve`` makes it
        as it does for the runtime and the CLI (the environment, ``$GLEITZEIT_CONFIG`` and
        the user's ``gleitzeit plugins disable`` list), with ``disabled`` added to the
        deny-lists, ``allow`` in place of ``GLEITZEIT_LOAD_PLUGINS`` and ``strict``. There is
        no way to build a plugin set that skips the user's deny-list by accident."""
        self.pm = pluggy.PluginManager(GROUP)
        self.pm.add_hookspecs(hookspecs)
        self.registries = Registries()
        self.records: dict[str, PluginRecord] = {}
        if selection is None:
            selection = PluginSelection.resolve(extra=disabled, allow=allow, strict=strict)
        self.selection = selection
        self.strict = self.selection.strict
        self.autoload = autoload
        self._loaded = False

    # -- loading --------------------------------------------------------------------------------
    def load(self) -> PluginManager:
        """Register the built-ins, then every enabled installed plugin. Idempotent."""
        if self._loaded:
            return self
        self._loaded = True
        from . import _builtins as builtins

        self.add(builtins, BUILTIN, distribution="gleitzeit-core", version=_core_version())
        if self.autoload:
            self._load_entry_points()
        return self

    def is_enabled(self, *names: str | None) -> bool:
        return self.selection.reason(*names) is None

    def disabled_reason(self, *names: str | None) -> str | None:
        """What keeps a plugin (by any of its names) from loading, or ``None``."""
        return self.selection.reason(*names)

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
            if record.status == "disabled":
                self.registries.disabled_names[(self.registries.of(kind).singular, ep.name)] = owner
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
        except Exception as exc:  # e.g. a hook implementation whose arguments match no spec
            return self._fail(name, distribution, version, module, _format(exc))
        unknown = self._unknown_hooks(plugin)
        if unknown:
            self.pm.unregister(name=name)
            problem = "; ".join(_unknown_hook_problem(hook) for hook in unknown)
            return self._fail(name, distribution, version, module, problem)
        record = PluginRecord(name, distribution, version, module, "loaded")
        record.hooks = sorted(caller.name for caller in self.pm.get_hookcallers(plugin) or [])
        self.records[name] = record
        for hook_name, kind in _REGISTER_HOOKS.items():
            registry = self.registries.of(kind)

            def register(
                item_name: str, target: object, *, hint: str | None = None, _r: Any = registry
            ) -> None:
                _r.add(item_name, target, plugin=name, hint=hint)

            try:
                self._call(hook_name, {"register": register}, only=name, isolate=False)
            except Exception as exc:
                self.registries.remove_plugin(name)
                self.pm.unregister(name=name)
                return self._fail(
                    name, distribution, version, module, f"{hook_name}: {_format(exc)}"
                )
        record.registered = self.registries.registered_by(name)
        return record

    def _unknown_hooks(self, plugin: object) -> list[str]:
        """The hook implementations of ``plugin`` that match no specification, found by
        pluggy's ``check_pending`` (which names only the first; all are listed here)."""
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            names = sorted(
                caller.name
                for caller in self.pm.get_hookcallers(plugin) or []
                if not caller.has_spec()
                and any(
                    impl.plugin is plugin and not impl.optionalhook
                    for impl in caller.get_hookimpls()
                )
            )
            return names or [str(exc)]
        return []

    def call_each(
        self,
        hook_name: str,
        *,
        before: Callable[[str], None] | None = None,
        after: Callable[[str, Any], None] | None = None,
        **kwargs: Any,
    ) -> list[tuple[str, Any]]:
        """Call a hook on every plugin separately; a plugin that raises is reported, not fatal.
        ``before(plugin)`` runs right before each plugin's call (to know who adds what),
        ``after(plugin, result)`` right after it (to see what it added)."""
        return self._call(hook_name, kwargs, before=before, after=after)

    def _call(
        self,
        hook_name: str,
        kwargs: Mapping[str, Any],
        *,
        only: str | None = None,
        isolate: bool = True,
        before: Callable[[str], None] | None = None,
        after: Callable[[str, Any], None] | None = None,
    ) -> list[tuple[str, Any]]:
        """The one loop every hook call goes through: each implementation on its own (of
        plugin ``only``, else of every plugin), so one that raises is reported and skipped
        (``isolate``; with ``strict`` fatal) while the others run; without ``isolate`` the
        exception propagates to the caller, which reports the plugin."""
        results: list[tuple[str, Any]] = []
        for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
            if only is not None and impl.plugin_name != only:
                continue
            if before is not None:
                before(impl.plugin_name)
            try:
                value = impl.function(**{arg: kwargs[arg] for arg in impl.argnames})
            except Exception as exc:
                if not isolate:
                    raise
                self._hook_failed(impl.plugin_name, hook_name, exc)
                continue
            results.append((impl.plugin_name, value))
            if after is not None:
                after(impl.plugin_name, value)
        return results

    def _hook_failed(self, plugin: str, hook_name: str, exc: Exception) -> None:
        record = self.records.get(plugin)
        message = f"{hook_name}: {_format(exc)}"
        if record is not None:
            record.status, record.error = "error", message
        if self.strict:
            raise PluginLoadError(
                plugin,
                record.distribution if record else None,
                record.version if record else None,
                message,
            ) from exc
        log.warning("plugin %r failed in %s", plugin, message)

    def _fail(
        self, name: str, dist: str | None, version: str | None, module: str | None, error: str
    ) -> PluginRecord:
        record = PluginRecord(name, dist, version, module, "error", error)
        self.records[name] = record
        if self.strict:
            raise PluginLoadError(name, dist, version, error)
        dist_text = f" ({dist} {version})" if dist else ""
        log.warning(
            "plugin %r%s failed to load and was skipped: %s "
            "(disable it with `gleitzeit plugins disable %s`)",
            name,
            dist_text,
            error,
            name,
        )
        return record

    def check_imports(self) -> None:
        """Add a warning to each loaded or broken plugin whose source imports a private core
        module (``gleitzeit_core._hub``): the API is ``gleitzeit_core``'s ``__all__`` and
        ``gleitzeit_core.testing``, anything else may change in any release. Reads the
        files of the modules its distribution's entry points name (a package whole); runs
        nothing. For ``gleitzeit plugins list``, not at every start-up."""
        tops: dict[str, set[str]] = {}
        for ep in entry_points_snapshot():
            dist = distribution_of(ep)[0]
            if dist:
                tops.setdefault(dist, set()).add(ep.value.split(":")[0].split(".")[0].strip())
        for record in self.records.values():
            if record.name == BUILTIN or record.status == "disabled" or not record.distribution:
                continue
            modules = tops.get(record.distribution, set()) - {"gleitzeit_core"}
            record.warnings = [
                f"{where} imports the private module {module}; import only from "
                "gleitzeit_core (its __all__) and gleitzeit_core.testing, the rest may change "
                "in any release"
                for where, module in private_core_imports(_source_files(modules))
            ]
            for warning in record.warnings:
                log.warning("plugin %r: %s", record.name, warning)

    def conflicts(self) -> dict[str, dict[str, list[str]]]:
        """Names claimed by more than one plugin, per kind."""
        return {r.kind: dict(r.conflicts) for r in self.registries.all() if r.conflicts}

    def report(self) -> list[PluginRecord]:
        for name, record in self.records.items():
            if record.status == "loaded":
                record.registered = self.registries.registered_by(name)
        return sorted(self.records.values(), key=lambda r: (r.name != BUILTIN, r.name))


_PUBLIC_MODULES = ("gleitzeit_core", "gleitzeit_core.testing")


def private_core_imports(paths: Iterable[Path]) -> list[tuple[str, str]]:
    """``(file:line, module)`` for every import of a core module other than the public API
    (``gleitzeit_core``, ``gleitzeit_core.testing`` and below) in these Python files,
    ``from gleitzeit_core import _hub`` included; read with ``ast``, nothing is run."""
    import ast

    found: list[tuple[str, str]] = []
    for path in paths:
        try:
            source = path.read_bytes()
        except OSError:
            continue
        if b"gleitzeit_core" not in source:
            continue
        try:
            tree = ast.parse(source, filename=str(path))
        except (SyntaxError, ValueError):
            continue  # importing it fails and is reported as such
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            modules: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.append(node.module)
                modules += [
                    f"{node.module}.{alias.name}"
                    for alias in node.names
                    if alias.name.startswith("_") and not alias.name.startswith("__")
                ]
            elif isinstance(node, ast.Import):
                modules += [alias.name for alias in node.names]
            for module in modules:
                if module.split(".")[0] != "gleitzeit_core" or module in _PUBLIC_MODULES:
                    continue
                if module.startswith("gleitzeit_core.testing."):
                    continue
                found.append((f"{path}:{node.lineno}", module))
    return found


def _source_files(modules: Iterable[str]) -> list[Path]:
    """The Python files of these top-level modules (every file of a package), found without
    importing them."""
    import importlib.util

    files: list[Path] = []
    for name in sorted(modules):
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        if spec is None:
            continue
        if spec.submodule_search_locations:
            for location in spec.submodule_search_locations:
                files += sorted(Path(location).rglob("*.py"))
        elif spec.origin and spec.origin.endswith(".py"):
            files.append(Path(spec.origin))
    return files


def _unknown_hook_problem(hook: str) -> str:
    from ._validators import did_you_mean

    guess = did_you_mean(hook, sorted(_HOOK_NAMES))
    fix = f'did you mean "{guess}"?' if guess else f"the hooks are {', '.join(sorted(_HOOK_NAMES))}"
    return f"unknown hook {hook}: no hook specification has that name; {fix}"


def _format(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _core_version() -> str:
    from . import __version__

    return __version__
