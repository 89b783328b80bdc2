"""The runtime behind one old object, and the dual-mode bookkeeping.

Each old class translates its constructor arguments into a config dict and gets a
``Backend``: a ``Runtime`` built from that dict (or one the caller passes in and keeps), started
on first use, plus the two things every call needs - which path it takes (``FEATURES``, see
``gleitzeit_legacy.features``; an object's own ``features=`` pins it instead) and recording how
it went on that path (the process-wide ``paths.LEDGER`` behind the ``paths`` status section,
and this backend's own ledger for ``path_metrics()``).

``[features]`` and ``[plugins]`` of ``$GLEITZEIT_CONFIG`` apply to these runtimes too, so an
operator rolls the hub path out without touching old code.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gleitzeit_core import (
    FailureClass,
    InvalidParams,
    NoResourceAvailable,
    PluginSelection,
    ResourceError,
    ResourceHub,
    Runtime,
    UnknownMethod,
    current_caller,
)

from .features import hub_path_wanted
from .paths import HUB, LEDGER, LEGACY, PathLedger

__all__ = [
    "HUB",
    "LEGACY",
    "Backend",
    "failure_of",
    "overlay_from_env_config",
    "request_timeout",
]

log = logging.getLogger("gleitzeit.legacy")


def request_timeout(method: str, params: Mapping[str, Any], operator: float) -> float:
    """A request's ``timeout`` in seconds (absent, null or 0: the operator's ``operator``).
    A request made for a gateway client may shorten the operator's limit, never extend it
    (the rule of the ``llm/v1`` provider); no request gets an endless or negative deadline."""
    value = params.get("timeout")
    if not value:
        return float(operator)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise InvalidParams(
            method, [f"params.timeout: expected a number of seconds > 0, got {value!r}"]
        )
    if current_caller() is not None:
        return min(float(value), float(operator))
    return float(value)


def failure_of(exc: BaseException) -> FailureClass:
    """How a failed call through the old API counts in the path metrics."""
    if isinstance(exc, ResourceError):
        return exc.failure
    if isinstance(exc, asyncio.CancelledError):
        return FailureClass.CANCELLED
    if isinstance(exc, TimeoutError):
        return FailureClass.TIMEOUT
    if isinstance(exc, NoResourceAvailable):
        return FailureClass.OVERLOADED
    if isinstance(exc, InvalidParams | UnknownMethod | ValueError | TypeError | KeyError):
        return FailureClass.CLIENT_ERROR
    if isinstance(exc, ConnectionError | OSError):
        return FailureClass.CONNECTION
    return FailureClass.SERVER_ERROR


def overlay_from_env_config() -> dict[str, Any]:
    """``[features]`` and ``[plugins]`` of ``$GLEITZEIT_CONFIG`` (nothing else of it)."""
    value = os.environ.get("GLEITZEIT_CONFIG")
    if not value:
        return {}
    try:
        raw = tomllib.loads(Path(value).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        log.warning("gleitzeit legacy: ignoring GLEITZEIT_CONFIG=%s (%s)", value, exc)
        return {}
    return {key: raw[key] for key in ("features", "plugins") if isinstance(raw.get(key), dict)}


class Backend:
    """A runtime for one old object: built from a translated config, started lazily."""

    def __init__(
        self,
        config: Mapping[str, Any],
        *,
        hub: str,
        protocol: str,
        runtime: Runtime | None = None,
        features: Mapping[str, Any] | None = None,
        require_kinds: tuple[str, ...] = (),
    ) -> None:
        self.protocol = protocol
        self.require_kinds = require_kinds
        self.hub_name = hub
        self.owned = runtime is None
        self.dropped: list[str] = []  # what the installed plugins could not honour
        # features= pins this object's path rules; else FEATURES over the config file decides
        self.pinned = features is not None
        self.configured: dict[str, Any] | None = overlay_from_env_config().get("features")
        self.ledger = PathLedger()
        if runtime is None:
            runtime = self._build(dict(config), features)
        elif hub not in runtime.hubs:
            known = ", ".join(sorted(runtime.hubs)) or "none"
            raise ValueError(f"the runtime has no hub {hub!r}; its hubs: {known}")
        self.runtime = runtime
        self._starting: asyncio.Task[None] | None = None
        self._started = False

    def _build(self, config: dict[str, Any], features: Mapping[str, Any] | None) -> Runtime:
        overlay = overlay_from_env_config()
        for key, value in overlay.items():
            config.setdefault(key, value)
        if features is not None:
            config["features"] = dict(features)
        manager = PluginSelection.resolve(config).manager().load()
        for kind in self.require_kinds:
            if kind not in manager.registries.hubs:
                raise ImportError(
                    f"the legacy shim needs the hub kind {kind!r}, which no enabled plugin "
                    f"provides; `pip install gleitzeit-{kind}` (or enable the plugin {kind!r})"
                )
        for hub_table in config.get("hubs", {}).values():
            breaker = hub_table.get("breaker")
            if isinstance(breaker, dict) and breaker.get("kind") not in manager.registries.breakers:
                hub_table.pop("breaker")
                message = (
                    f"circuit breaker {breaker.get('kind')!r} is not installed, so the old "
                    "circuit_breaker_config is not applied; `pip install "
                    f"gleitzeit-breaker-{breaker.get('kind')}` to honour it"
                )
                self.dropped.append(message)
                log.warning("gleitzeit legacy: %s", message)
        return Runtime.from_config(config, plugins=manager)

    # -- lifecycle ------------------------------------------------------------------------------
    @property
    def hub(self) -> ResourceHub:
        return self.runtime.hubs[self.hub_name]

    @property
    def started(self) -> bool:
        return self._started

    async def start(self) -> None:
        """Start the runtime once (concurrent callers wait for the same start)."""
        if self._started:
            return
        if self._starting is None:
            self._starting = asyncio.get_running_loop().create_task(self._start())
        await asyncio.shield(self._starting)

    async def _start(self) -> None:
        try:
            if self.owned:
                await self.runtime.start()
            self._started = True
        finally:
            if not self._started:
                self._starting = None

    async def stop(self) -> None:
        starting, self._starting = self._starting, None
        if starting is not None and not starting.done():
            await asyncio.gather(starting, return_exceptions=True)
        if self._started and self.owned:
            await self.runtime.stop()
        self._started = False

    # -- dual mode ------------------------------------------------------------------------------
    def path_for(self, key: str | None, names: tuple[str, ...] = ()) -> str:
        """``"hub"`` or ``"legacy"`` for one call of the provider known by ``names``."""
        if self.pinned:
            wanted = self.runtime.features.hub_enabled_for(self.protocol, key)
        else:
            wanted = hub_path_wanted(names, self.protocol, key, self.configured)
        return HUB if wanted else LEGACY

    def record(self, path: str, duration: float, failure: FailureClass | None) -> None:
        LEDGER.record(path, duration, failure)
        self.ledger.record(path, duration, failure)

    def path_status(self) -> dict[str, Any]:
        """This backend's calls per path: requests, errors, error rate, p50/p95/p99."""
        return {path: self.ledger.figures(path) for path in (HUB, LEGACY)}


class Timer:
    """Monotonic stopwatch for path metrics."""

    __slots__ = ("started",)

    def __init__(self) -> None:
        self.started = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started
