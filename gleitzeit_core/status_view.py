"""Rich tables for the command line: gateway status and the plugin list."""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from .errors import GleitzeitError

__all__ = ["fetch_status", "plugins_table", "show_status", "status_tables", "watch_status"]


def fetch_status(url: str, token: str | None = None, timeout: float = 5.0) -> Any:
    """GET /gleitzeit/status from a running gateway."""
    request = urllib.request.Request(url.rstrip("/") + "/gleitzeit/status")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise GleitzeitError(
            f"{url} answered HTTP {exc.code}: {exc.read().decode(errors='replace')}"
        ) from None
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise GleitzeitError(f"cannot reach a gateway at {url}: {exc}") from None


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def status_tables(data: Any) -> list[Table]:
    tables = []
    for hub in data.get("hubs", []):
        counters = hub.get("counters", {})
        title = (
            f"hub [bold]{hub['name']}[/] ({hub['kind']}, {hub['strategy']})"
            f" · leases {counters.get('leases', 0)} · failovers {counters.get('failovers', 0)}"
            f" · no resource {counters.get('no_resource', 0)}"
            + (" · [red]PANIC: routing to unhealthy resources[/]" if hub.get("panic") else "")
        )
        table = Table(title=title, title_justify="left")
        for column in (
            "resource",
            "health",
            "breaker",
            "in flight",
            "requests",
            "req/s",
            "error %",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "ejections",
            "details",
        ):
            table.add_column(
                column, justify="left" if column in ("resource", "details") else "right"
            )
        for res in hub.get("resources", []):
            metrics = res["metrics"]
            health = res["health"]
            if res.get("ejected"):
                health = f"ejected {res['ejected_for_s']:.0f}s"
            if res.get("draining"):
                health += " (draining)"
            colour = {"healthy": "green", "unhealthy": "red"}.get(res["health"], "yellow")
            details = res.get("details") or {}
            table.add_row(
                res["id"],
                f"[{colour}]{health}[/]",
                res["breaker"],
                str(res["in_flight"]),
                str(metrics["requests"]),
                f"{metrics['rate_per_s']:.1f}",
                f"{100 * metrics['error_rate']:.1f}",
                _ms(metrics["p50_ms"]),
                _ms(metrics["p95_ms"]),
                _ms(metrics["p99_ms"]),
                str(res["ejections"]),
                ", ".join(f"{k}: {_short(v)}" for k, v in details.items()),
            )
        tables.append(table)
    core_keys = ("version", "hubs", "providers", "plugins")
    for name, section in data.items():
        if name not in core_keys and isinstance(section, dict) and section:
            tables.append(_section_table(name, section))
    return tables


def _section_table(name: str, section: dict[str, Any]) -> Table:
    """A plugin's status section (``Runtime.add_status_section``): entries shaped like the
    first table entry are rows with its keys as columns; anything else goes in the caption."""
    rows = {k: v for k, v in section.items() if isinstance(v, dict)}
    columns = list(next(iter(rows.values()), {}) or ["value"])
    rows = {k: v for k, v in rows.items() if set(v) <= set(columns)}
    table = Table(title=f"[bold]{name}[/]", title_justify="left")
    table.add_column("")
    for column in columns:
        table.add_column(column.replace("_", " "), justify="right")
    for key, value in rows.items():
        table.add_row(key, *(_cell(value.get(c)) for c in columns))
    rest = []
    for key, value in section.items():
        if key in rows:
            continue
        if isinstance(value, dict):
            shown = ", ".join(f"{k} = {_cell(v)}" for k, v in value.items())
            rest.append(f"{key}: {shown}")
        else:
            rest.append(f"{key}: {_cell(value)}")
    if rest:
        table.caption = "\n".join(rest)
        table.caption_justify = "left"
    return table


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return _short(value)


def _short(value: Any) -> str:
    if isinstance(value, dict):
        return " ".join(str(k) for k in value) or "-"
    if isinstance(value, list | tuple):
        return " ".join(str(v) for v in value) or "-"
    return str(value)


def _console() -> Console:
    # piped output has no terminal width; a table cut to 80 columns would hide its numbers
    return Console() if sys.stdout.isatty() else Console(width=160)


def show_status(data: Any, console: Console | None = None) -> None:
    console = console or _console()
    for table in status_tables(data):
        console.print(table)


def watch_status(url: str, interval: float, token: str | None) -> None:
    console = _console()
    with Live(console=console, refresh_per_second=4) as live:
        while True:
            try:
                live.update(Group(*status_tables(fetch_status(url, token))))
            except GleitzeitError as exc:
                live.update(f"[red]{exc}[/]")
            time.sleep(interval)


def plugins_table(records: list[Any], conflicts: dict[str, dict[str, list[str]]]) -> None:
    console = _console()
    table = Table(title="gleitzeit plugins", title_justify="left")
    for column in ("name", "distribution", "version", "status", "registered", "error"):
        table.add_column(column)
    for record in records:
        colour = {"loaded": "green", "disabled": "yellow", "error": "red"}[record.status]
        registered = "; ".join(
            f"{kind}: {', '.join(names)}" for kind, names in record.registered.items()
        )
        if record.commands:
            registered += ("; " if registered else "") + "commands: " + ", ".join(record.commands)
        if "gleitzeit_register_routes" in record.hooks:
            registered += ("; " if registered else "") + "gateway routes"
        table.add_row(
            record.name,
            record.distribution or "-",
            record.version or "-",
            f"[{colour}]{record.status}[/]",
            registered or "-",
            record.error or "",
        )
    console.print(table)
    for record in records:
        for note in record.notes:
            console.print(f"[yellow]note[/] ({record.name}): {note}")
    for kind, names in conflicts.items():
        for name, owners in names.items():
            console.print(f"[red]conflict[/]: {kind} {name!r} registered by {', '.join(owners)}")
