"""Re-reading the config file of a running runtime (``SIGHUP``, ``POST /gleitzeit/reload``).

The file goes through the same one check as ``gleitzeit config check``
(:func:`gleitzeit_core._checking.check_config`); any problem keeps the running config whole and
is reported line by line, each line starting with its key path. A valid file is applied
without dropping a request:

* resources of a hub's ``resources`` list: a new one joins at once (as at start: it serves
  before its first probe, and a failing probe takes it out again); a changed one (weight,
  ``max_concurrency``, labels...) keeps its breaker, metrics and calls in flight; a removed
  one drains (no new calls; those in flight finish, up to ``[gateway] request_timeout``) and
  then leaves the hub;
* a hub's ``strategy``, ``breaker`` (every resource gets a new breaker; calls in flight
  record their outcome on the breaker that admitted them), ``request_timeout``,
  ``attempt_timeout``, ``retries``, ``queue_timeout`` and ``max_waiting``;
* what the caller's ``prepare`` applies (the gateway: its API keys and ``max_batch``).

Anything else that changed (a new or removed hub, ``[state]``, ``[providers]``, the listening
address...) is listed in ``restart_needed`` and takes effect at the next (rolling) restart.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from ._config import GatewayConfig, GleitzeitConfig, HubConfig, load_config
from ._errors import ConfigError, DuplicateNameError
from ._resources import ResourceSpec
from ._wiring import HubPlan, plan_hub

if TYPE_CHECKING:
    from ._hub import ResourceHub
    from ._runtime import Runtime

__all__ = ["GATEWAY_LIVE_KEYS", "Commit", "ReloadReport", "reload_config"]

# what a caller's prepare step returns: applies its part, says what changed (cannot fail)
Commit = Callable[[], list[str]]

# [gateway] keys a reload applies (through the gateway's prepare step or by being read per
# request); every other one changes only at a restart
GATEWAY_LIVE_KEYS = frozenset({"keys", "token", "token_env", "max_batch", "shutdown_grace"})
_HUB_LIVE = ("request_timeout", "attempt_timeout", "retries", "queue_timeout", "max_waiting")
_HUB_RESTART = ("kind", "discovery", "seed", "health", "outlier", "options")


@attrs.frozen(kw_only=True)
class ReloadReport:
    """How one reload went: applied whole (``ok``) or not at all (``problems``)."""

    ok: bool
    source: str
    at: float  # Unix time
    problems: list[str] = attrs.field(factory=list)  # each starts with its key path
    applied: list[str] = attrs.field(factory=list)
    restart_needed: list[str] = attrs.field(factory=list)  # key paths differing from the start

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


async def reload_config(
    runtime: Runtime,
    source: str | os.PathLike[str] | None = None,
    *,
    prepare: Callable[[GleitzeitConfig], Commit] | None = None,
) -> ReloadReport:
    """Re-read ``source`` (default: the file the runtime was built from) and apply it, or
    nothing of it. ``prepare(new_config)`` checks the caller's own part (raising
    ``ConfigError``) and returns the step that applies it."""
    old = runtime.config
    path = str(source) if source is not None else old.source
    # a refused reload changes nothing: what waited for a restart still does
    earlier = runtime.last_reload.restart_needed if runtime.last_reload is not None else []

    def refused(problems: list[str]) -> ReloadReport:
        return ReloadReport(
            ok=False,
            source=path or "",
            at=time.time(),
            problems=problems,
            restart_needed=list(earlier),
        )

    if path is None or path == "<config>":
        return refused(["config: not started from a config file; start with --config FILE"])
    from ._checking import check_config  # imports the plugin machinery: only when reloading

    try:
        error = check_config(path, plugins=runtime.plugins)
        new = load_config(path) if error is None else None
    except ConfigError as exc:
        error, new = exc, None
    if error is not None or new is None:
        return refused(list(error.problems) if error is not None else ["config: not readable"])
    # against what the process started with, not the last file: a change reverted in the file
    # needs no restart, and one made by an earlier reload still does
    restart = _restart_needed(runtime.started_config, new)
    commits: list[Commit] = []
    problems: list[str] = []
    for name in sorted(set(old.hubs) & set(new.hubs)):
        hub = runtime.hubs.get(name)
        before, after = old.hubs[name], new.hubs[name]
        if hub is None or before == after or before.kind != after.kind:
            continue
        try:
            plan = plan_hub(name, after, runtime.registries, clock=hub.clock)
        except (ConfigError, DuplicateNameError) as exc:
            problems.extend(getattr(exc, "problems", [str(exc)]))
            continue
        try:
            old_specs = plan_hub(name, before, runtime.registries, clock=hub.clock).specs
        except (ConfigError, DuplicateNameError):
            old_specs = []  # cannot happen for a config that started; then only add
        commits.append(_hub_commit(runtime, hub, before, plan, old_specs))
    if prepare is not None:
        try:
            commits.append(prepare(new))
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        return refused(problems)
    applied: list[str] = []
    for commit in commits:  # nothing below raises: the new config goes in whole
        applied.extend(commit())
    # a hub that left the file still runs until a restart: keep the config it runs with, so
    # a later file that brings it back is compared with that (and its changes applied)
    running = {name: hub for name, hub in old.hubs.items() if name in runtime.hubs}
    runtime.config = attrs.evolve(new, hubs={**running, **new.hubs})
    return ReloadReport(
        ok=True,
        source=path,
        at=time.time(),
        applied=applied,
        restart_needed=sorted(restart),
    )


def _restart_needed(old: GleitzeitConfig, new: GleitzeitConfig) -> list[str]:
    sections = ("plugins", "providers", "features", "state")
    paths = [s for s in sections if getattr(old, s) != getattr(new, s)]
    was, now = old.gateway, new.gateway
    for field in attrs.fields(GatewayConfig):
        name = field.name
        if name not in GATEWAY_LIVE_KEYS and getattr(was, name) != getattr(now, name):
            paths.append(f"gateway.{name}")
    paths.extend(f"hubs.{name}" for name in sorted(set(old.hubs) ^ set(new.hubs)))
    for name in sorted(set(old.hubs) & set(new.hubs)):
        before, after = old.hubs[name], new.hubs[name]
        paths.extend(
            f"hubs.{name}.{key}"
            for key in _HUB_RESTART
            if getattr(before, key) != getattr(after, key)
        )
    return paths


def _hub_commit(
    runtime: Runtime,
    hub: ResourceHub,
    before: HubConfig,
    plan: HubPlan,
    old_specs: list[ResourceSpec],
) -> Commit:
    def commit() -> list[str]:
        name, after = hub.name, plan.config
        lines: list[str] = []
        if before.strategy != after.strategy:
            hub.use_strategy(plan.strategy, after.strategy.kind)
            lines.append(f"hubs.{name}.strategy: now {after.strategy.kind}")
        if before.breaker != after.breaker:
            hub.replace_breakers(plan.breaker_factory)
            kind = after.breaker.kind if after.breaker is not None else "none"
            lines.append(f"hubs.{name}.breaker: new {kind} breakers for every resource")
        for key in _HUB_LIVE:
            value = getattr(after, key)
            if getattr(before, key) != value:
                setattr(hub, key, value)
                lines.append(f"hubs.{name}.{key}: now {value}")
        for discoverer in hub.discoverers:  # a later discovery must not bring removed ones back
            if getattr(discoverer, "name", None) == "static" and hasattr(discoverer, "specs"):
                discoverer.specs = list(plan.specs)
        was = {spec.id: spec for spec in old_specs}
        now = {spec.id: spec for spec in plan.specs}
        for rid, spec in now.items():
            if rid not in was:
                hub.add(spec)
                lines.append(f"hubs.{name}.resources: added {rid} ({spec.endpoint})")
            elif spec != was[rid]:
                hub.add(spec)  # same id: a new spec, the same state
                lines.append(f"hubs.{name}.resources: changed {rid}")
        for rid in was.keys() - now.keys():
            if rid in hub:
                calls = hub.get(rid).in_flight
                runtime.keep_running(_retire(hub, rid, runtime.config.gateway.request_timeout))
                lines.append(f"hubs.{name}.resources: removed {rid} (draining {calls} call(s))")
        return lines

    return commit


async def _retire(hub: ResourceHub, resource_id: str, timeout: float) -> None:
    """Drain a removed resource, then take it out, unless a later reload brought it back."""
    try:
        await hub.drain(resource_id, timeout)
    except TimeoutError:
        pass  # the gateway has cut those requests by now
    except KeyError:
        return
    except asyncio.CancelledError:
        raise
    if resource_id in hub and hub.get(resource_id).draining:
        await hub.remove(resource_id, drain=False)
