"""The runtime: plugins -> registries -> hubs -> providers, and ``execute(method, params)``.

::

    async with Runtime.from_config("gleitzeit.toml") as rt:
        reply = await rt.execute("llm/chat", {"model": "llama3.2", "messages": [...]})

``from_config`` loads the plugins and checks the whole config before anything starts, so a bad
config fails at once with every problem listed.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import random
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

import attrs

from ._caller import current_caller
from ._clock import Clock, SystemClock
from ._config import GleitzeitConfig, load_config
from ._errors import ConfigError, ProviderUnavailable, UnknownMethod
from ._features import FeatureFlags
from ._hub import ResourceHub
from ._keys import CallerCounters
from ._plugins import PluginManager, PluginSelection
from ._reload import Commit, ReloadReport, reload_config
from ._state import StateBackend
from ._status import RuntimeStatus
from ._validators import did_you_mean
from ._wiring import (
    FIRST_PARTY,
    build_hubs,
    build_providers,
    build_state,
    check_providers,
    provider_hint,
)

__all__ = ["Runtime"]


class Runtime:
    def __init__(
        self,
        config: GleitzeitConfig | None = None,
        plugins: PluginManager | None = None,
        *,
        clock: Clock | None = None,
    ) -> None:
        self.config = config or GleitzeitConfig()
        if plugins is None:
            plugins = PluginSelection.resolve(self.config).manager()
        self.plugins = plugins.load()
        self.registries = self.plugins.registries
        self.features = FeatureFlags(self.config.features, random.Random())
        # kinds whose default hub was left out (no config, backend not answering) -> why
        self.skipped_hubs: dict[str, str] = {}
        try:
            self.hubs: dict[str, ResourceHub] = build_hubs(
                self.config, self.registries, clock=clock, skipped=self.skipped_hubs
            )
        except ConfigError as exc:  # the providers' references are reported in the same run
            kinds = {name: hub.kind for name, hub in self.config.hubs.items()}
            more = check_providers(self.config, kinds, self.registries)
            raise ConfigError([*exc.problems, *more], source=exc.source) from None
        self.state: StateBackend = build_state(
            self.config, self.registries, clock=clock or SystemClock()
        )
        for hub in self.hubs.values():
            hub.state = self.state
        self.providers: dict[str, Any] = build_providers(
            self.config, self.hubs, self.registries, self
        )
        # providers and their methods are fixed from here on: look methods up in one table
        self._by_method: dict[str, Any] = {
            name: provider for provider in self.providers.values() for name in provider.methods()
        }
        # per gateway key: filled by the gateway's KeyRing, shown in status() and metrics
        self.callers: dict[str, CallerCounters] = {}
        # extra top-level sections of the status, added by plugins (see add_status_section)
        self.status_sections: dict[str, Callable[[], Any]] = {}
        self._started = False
        self._starting: asyncio.Future[None] | None = None
        self.last_reload: ReloadReport | None = None
        # what the restart-only settings run with: a reload changes only the live ones
        self.started_config = self.config
        self._background: set[asyncio.Task[None]] = set()  # drains a reload started

    @classmethod
    def from_config(
        cls,
        source: str | os.PathLike[str] | Mapping[str, Any] | GleitzeitConfig | None = None,
        *,
        plugins: PluginManager | None = None,
        clock: Clock | None = None,
    ) -> Runtime:
        """Build a runtime from a TOML path, a dict, a config object, or ``GLEITZEIT_CONFIG``."""
        if isinstance(source, GleitzeitConfig):
            config = source
        else:
            try:
                config = load_config(source)
            except ConfigError as exc:
                if source is None:
                    raise
                # the file has mistakes: report every one, names and references too, at once
                from ._checking import check_config

                raise (check_config(source, plugins=plugins) or exc) from None
        if plugins is None:
            plugins = PluginSelection.resolve(config).manager()
        return cls(config, plugins, clock=clock)

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> Runtime:
        """Start hubs and providers; concurrent callers all wait for the same start."""
        if self._starting is None:
            self._started = True
            self._starting = asyncio.ensure_future(self._start())
        await asyncio.shield(self._starting)
        return self

    async def _start(self) -> None:
        for hub in self.hubs.values():
            await hub.start()
        await self.state.start(self)
        for provider in self.providers.values():
            await provider.start()
        for _, result in self.plugins.call_each("gleitzeit_startup", runtime=self):
            if inspect.isawaitable(result):
                await result

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        starting, self._starting = self._starting, None
        if starting is not None and not starting.done():
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await starting
        for _, result in self.plugins.call_each("gleitzeit_shutdown", runtime=self):
            if inspect.isawaitable(result):
                await result
        background, self._background = self._background, set()
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        for provider in self.providers.values():
            await provider.stop()
        await self.state.stop()
        for hub in self.hubs.values():
            await hub.stop()

    async def __aenter__(self) -> Runtime:
        try:
            return await self.start()
        except BaseException:
            await self.stop()
            raise

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def reload(
        self,
        source: str | os.PathLike[str] | None = None,
        *,
        prepare: Callable[[GleitzeitConfig], Commit] | None = None,
    ) -> ReloadReport:
        """Re-read the config file and apply it whole or not at all (see
        ``gleitzeit_core._reload``); the report is also kept as ``last_reload``."""
        report = await reload_config(self, source, prepare=prepare)
        self.last_reload = report
        return report

    def keep_running(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` in the background until it ends or the runtime stops."""
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- execution ------------------------------------------------------------------------------
    def methods(self) -> dict[str, Any]:
        """Every method name mapped to the provider that serves it."""
        return dict(self._by_method)

    def provider_for(self, method: str) -> Any:
        methods = self._by_method
        provider = methods.get(method)
        if provider is not None:
            return provider
        prefix = method.split("/", 1)[0]
        for protocol in self.registries.providers.names():
            if protocol.split("/", 1)[0] == prefix and protocol not in self.providers:
                kind = self.registries.providers.get(protocol)
                unavailable = ProviderUnavailable(protocol, kind.hub_kind)
                why = self.skipped_hubs.get(kind.hub_kind or "")
                if why:  # no config, and the default hub's backend did not answer at start
                    unavailable.args = (f"{unavailable.args[0]}; no default hub: {why}",)
                raise unavailable
        error = UnknownMethod(method, list(methods))
        guess = did_you_mean(method, list(methods))
        if guess is not None:
            error.args = (f'{error.args[0]}; did you mean "{guess}"?',)
        registered = set(self.registries.providers.names())
        for protocol, dist in FIRST_PARTY["provider"].items():
            # only for what is not there: "pip install" of an installed plugin would not help
            if protocol.split("/", 1)[0] == prefix and protocol not in registered:
                hint = provider_hint(self.registries, protocol) or f"`pip install {dist}`"
                error.args = (f"{error.args[0]}; {prefix}/* is from {protocol}: {hint}",)
        raise error

    async def execute(self, method: str, params: Mapping[str, Any] | None = None) -> Any:
        """Validate ``params`` and run ``method`` on the provider that offers it."""
        provider = self.provider_for(method)
        return await provider.execute(method, params or {})

    def add_status_section(self, name: str, producer: Callable[[], Any]) -> None:
        """Show ``producer()`` (JSON-ready data) as the top-level key ``name`` of ``status()``
        and ``/gleitzeit/status``; plugins call it from ``gleitzeit_startup``. The names of the
        core's own keys are refused; adding a name again replaces its producer."""
        reserved = {field.name for field in attrs.fields(RuntimeStatus)}
        if name in reserved:
            raise ValueError(f"status section {name!r}: the core's status already has that key")
        self.status_sections[name] = producer

    def status(self) -> RuntimeStatus:
        """The whole status; a gateway key that is not an admin sees only its own counters
        under ``callers`` (another tenant's traffic is not its business), here so that every
        reader of the status (``/gleitzeit/status``, ``/metrics``, the dashboard) agrees."""
        from . import __version__

        caller = current_caller()
        visible = {
            name: counters
            for name, counters in sorted(self.callers.items())
            if caller is None or caller.admin or name == caller.name
        }
        return RuntimeStatus(
            version=__version__,
            hubs=[hub.status() for hub in self.hubs.values()],
            providers={proto: p.hub.name for proto, p in self.providers.items()},
            plugins={r.name: r.status for r in self.plugins.report()},
            callers={name: attrs.asdict(c) for name, c in visible.items()},
            sections={name: _section(produce) for name, produce in self.status_sections.items()},
            state=self.state.status(),
        )


def _section(produce: Callable[[], Any]) -> Any:
    # one broken section must not take the whole status (and the gateway's route) down
    try:
        return produce()
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
