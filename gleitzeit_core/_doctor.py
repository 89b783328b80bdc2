"""``gleitzeit doctor``: what is installed, what is broken, and what to do about it.

Checks, in order: the plugins (with versions; a broken one with its error), the config (every
problem, as ``gleitzeit config check`` reports them), whether the gateway's port is free, and
whether every resource of every hub answers its kind's own health probe (Ollama instances,
Docker engines, ...), each within a timeout. One line per finding; a problem is followed by
a ``fix:`` line. Exit code 0 when nothing is wrong, 1 otherwise.
"""

from __future__ import annotations

import asyncio
import os
import urllib.request
from typing import Any

import click

from ._errors import ConfigError, GleitzeitError
from ._resources import public_endpoint

__all__ = ["run_doctor"]


class Report:
    """Collects findings and prints them as they come."""

    def __init__(self) -> None:
        self.problems = 0

    def section(self, title: str) -> None:
        click.echo(f"\n{title}")

    def ok(self, text: str) -> None:
        click.echo(f"  ok    {text}")

    def note(self, text: str) -> None:
        click.echo(f"  --    {text}")

    def problem(self, text: str, fix: str) -> None:
        self.problems += 1
        click.echo(f"  FAIL  {text}")
        click.echo(f"        fix: {fix}")


def run_doctor(config: str | None, timeout: float) -> int:
    report = Report()
    _plugins(report, config)
    path = config or os.environ.get("GLEITZEIT_CONFIG") or None
    valid = _config(report, path)
    if valid:
        _gateway(report, path, timeout)
        _backends(report, path, timeout)
    else:
        report.section("Gateway and backends")
        report.note("not checked: the config has problems (see above)")
    click.echo("\nall good" if not report.problems else f"\n{report.problems} problem(s) found")
    return 0 if not report.problems else 1


def _plugins(report: Report, config: str | None) -> None:
    from ._plugins import PluginSelection

    report.section("Plugins")
    try:
        manager = PluginSelection.resolve(config).manager().load()
    except ConfigError as exc:
        report.problem(f"cannot read the plugin settings: {exc}", "fix the file named above")
        return
    for record in manager.report():
        label = f"{record.name} ({record.distribution or '?'} {record.version or '?'})"
        if record.status == "loaded":
            report.ok(f"{label} loaded")
        elif record.status == "disabled":
            report.note(f"{label} disabled by {record.disabled_by or 'a deny-list'}")
        else:
            report.problem(
                f"{label} is broken: {record.error}",
                f"reinstall it (pip install --force-reinstall {record.distribution or record.name})"
                f" or `gleitzeit plugins disable {record.name}`",
            )


def _config(report: Report, path: str | None) -> bool:
    from ._checking import check_config

    report.section("Config")
    if path is None:
        report.note(
            "no config (--config or GLEITZEIT_CONFIG): each installed hub kind whose backend "
            "answers gets a default hub; `gleitzeit config example` prints one to start from"
        )
        return True
    try:
        error = check_config(path)
    except ConfigError as exc:
        report.problem(str(exc), f"give the path of a TOML config file (checked: {path})")
        return False
    if error is None:
        report.ok(f"{path} is valid")
        return True
    for line in error.problems:
        report.problem(f"{path}: {line}", "edit the key named; `gleitzeit config check` rechecks")
    return False


def _gateway(report: Report, path: str | None, timeout: float) -> None:
    from ._config import load_config
    from ._reachability import port_problem

    report.section("Gateway")
    gateway = load_config(path).gateway if path else load_config({}).gateway
    busy = port_problem(gateway.host, gateway.port)
    where = f"{gateway.host}:{gateway.port}"
    if busy is None:
        report.ok(f"{where} is free for `gleitzeit serve`")
        return
    host = "127.0.0.1" if gateway.host in ("0.0.0.0", "::") else gateway.host
    if _is_gateway(f"http://{host}:{gateway.port}", timeout):
        report.ok(f"{where}: a Gleitzeit gateway already runs there (`gleitzeit status`)")
        return
    report.problem(
        f"{busy}, by something that is not a Gleitzeit gateway",
        "stop that program, or set another [gateway] port (or `gleitzeit serve --port N`)",
    )


def _is_gateway(url: str, timeout: float) -> bool:
    try:
        with urllib.request.urlopen(url + "/gleitzeit/health", timeout=timeout) as response:
            return response.status in (200, 503)
    except urllib.error.HTTPError as exc:
        return exc.code == 503  # degraded, but a gateway
    except (OSError, ValueError):
        return False


def _backends(report: Report, path: str | None, timeout: float) -> None:
    from ._runtime import Runtime

    report.section("Backends")
    try:
        runtime = Runtime.from_config(path)
    except GleitzeitError as exc:
        report.problem(f"cannot build the hubs: {exc}", "see the plugin and config findings")
        return
    for kind, why in runtime.skipped_hubs.items():
        report.note(f"no default {kind} hub: {why}")
    if not runtime.hubs:
        report.problem(
            "no hub to route to",
            "start a backend (Ollama, Docker) or name yours in a config "
            "(`gleitzeit config example`)",
        )
        return
    asyncio.run(_probe_all(report, runtime, timeout))


async def _probe_all(report: Report, runtime: Any, timeout: float) -> None:
    for name, hub in runtime.hubs.items():
        try:
            try:
                await asyncio.wait_for(hub.discover(), timeout * 2)
            except TimeoutError:
                report.problem(f"hub {name}: discovery took over {timeout * 2:g} s", _fix(name))
            for source, error in hub.discovery_errors.items():
                report.problem(f"hub {name}: discovery {source} failed: {error}", _fix(name))
            if not hub.resources:
                report.problem(f"hub {name} ({hub.kind}) has no resources", _fix(name))
            probe = hub.monitor.probe if hub.monitor is not None else None
            for resource in hub.resources:
                where = public_endpoint(resource.endpoint)  # never user:password@
                label = f"hub {name} ({hub.kind}): {resource.id} at {where}"
                if probe is None:
                    report.note(f"{label}: not probed (health checks are off)")
                    continue
                try:
                    result = await asyncio.wait_for(probe.probe(resource), timeout)
                except TimeoutError:
                    report.problem(f"{label}: no answer within {timeout:g} s", _fix(name))
                    continue
                if result.ok:
                    report.ok(f"{label} answers")
                else:
                    report.problem(f"{label}: {result.detail or 'probe failed'}", _fix(name))
        finally:
            await hub.stop()
            close = getattr(hub.monitor.probe if hub.monitor else None, "close", None)
            if close is not None:
                outcome = close()
                if asyncio.iscoroutine(outcome):
                    await outcome


def _fix(hub: str) -> str:
    return (
        f"start the server or engine there, or correct its url in [hubs.{hub}] "
        "(`gleitzeit config check` validates the file)"
    )
