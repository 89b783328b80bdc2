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

from ._errors import GleitzeitError

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
        hint = ""
        if exc.code in (401, 403):
            hint = (
                "; give a key that may read the status with --token or GLEITZEIT_GATEWAY_TOKEN"
                " (or the gateway's --config, whose [gateway] token is used)"
            )
        raise GleitzeitError(
            f"{url} answered HTTP {exc.code}: {exc.read(4096).decode(errors='replace')}{hint}"
        ) from None
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise GleitzeitError(
            f"cannot reach a gateway at {url}: {getattr(exc, 'reason', exc)}; is `gleitzeit "
            "serve` running? Point at it with --url, --port or --config"
        ) from None


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


# (column, wide only): the narrow set fits 80 columns; --wide adds the rest
_COLUMNS = (
    ("resource", False),
    ("health", False),
    ("breaker", True),
    ("in flight", False),
    ("requests", False),
    ("req/s", True),
    ("error %", False),
    ("p50 ms", True),
    ("p95 ms", False),
    ("p99 ms", True),
    ("ejections", True),
    ("details", True),
)


def status_tables(data: Any, *, wide: bool = True) -> list[Table]:
    tables = []
    columns = [name for name, wide_only in _COLUMNS if wide or not wide_only]
    for hub in data.get("hubs", []):
        counters = hub.get("counters", {})
        title = (
            f"hub [bold]{hub['name']}[/] ({hub['kind']}, {hub['strategy']})"
            f" · leases {counters.get('leases', 0)} · failovers {counters.get('failovers', 0)}"
            f" · no resource {counters.get('no_resource', 0)}"
            + (" · [red]PANIC: routing to unhealthy resources[/]" if hub.get("panic") else "")
        )
        table = Table(title=title, title_justify="left")
        for column in columns:
            table.add_column(
                column,
                justify="left" if column in ("resource", "details", "health") else "right",
                overflow="fold",
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
            cells = {
                "resource": res["id"],
                "health": f"[{colour}]{health}[/]",
                "breaker": res["breaker"],
                "in flight": str(res["in_flight"]),
                "requests": str(metrics["requests"]),
                "req/s": f"{metrics['rate_per_s']:.1f}",
                "error %": f"{100 * metrics['error_rate']:.1f}",
                "p50 ms": _ms(metrics["p50_ms"]),
                "p95 ms": _ms(metrics["p95_ms"]),
                "p99 ms": _ms(metrics["p99_ms"]),
                "ejections": str(res["ejections"]),
                "details": ", ".join(f"{k}: {_short(v)}" for k, v in details.items()),
            }
            table.add_row(*(cells[column] for column in columns))
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
    if not rows:  # a flat section (the gateway's: draining, in_flight, ...): one row per key
        flat = Table(title=f"[bold]{name}[/]", title_justify="left")
        flat.add_column("")
        flat.add_column("value")
        for key, value in section.items():
            flat.add_row(key.replace("_", " "), _cell(value))
        return flat
    columns = list(next(iter(rows.values())) or ["value"])
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


def _console(wide: bool = False) -> Console:
    # a terminal has its own width; a pipe gets 80 columns, or room for every column
    if sys.stdout.isatty():
        return Console()
    return Console(width=200 if wide else 80)


def show_status(data: Any, console: Console | None = None, *, wide: bool = False) -> None:
    console = console or _console(wide)
    tables = status_tables(data, wide=wide)
    if not tables:
        console.print("no hubs")
    for table in tables:
        console.print(table)
    if not wide:
        console.print("[dim]more columns: gleitzeit status --wide; everything: --json[/]")


def watch_status(
    url: str, interval: float, token: str | None, *, wide: bool = False, as_json: bool = False
) -> None:
    """Refresh every ``interval`` seconds: in place on a terminal; on a pipe (or with
    ``as_json``) one complete snapshot after another, each flushed at once."""
    console = _console(wide)
    if as_json or not sys.stdout.isatty():
        while True:
            stamp = time.strftime("%H:%M:%S")
            try:
                data = fetch_status(url, token)
                if as_json:
                    print(json.dumps(data), flush=True)
                else:
                    console.print(f"-- {url} at {stamp}")
                    show_status(data, console, wide=wide)
            except GleitzeitError as exc:
                print(f"gleitzeit: {exc}", file=sys.stderr, flush=True)
            sys.stdout.flush()
            time.sleep(interval)
    with Live(console=console, refresh_per_second=4) as live:
        while True:
            try:
                live.update(Group(*status_tables(fetch_status(url, token), wide=wide)))
            except GleitzeitError as exc:
                live.update(f"[red]{exc}[/]")
            time.sleep(interval)


def plugins_table(records: list[Any], conflicts: dict[str, dict[str, list[str]]]) -> None:
    console = _console(wide=True)
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
        status = f"[{colour}]{record.status}[/]"
        if record.status == "disabled" and record.disabled_by:
            status += f" by {record.disabled_by}"
        table.add_row(
            record.name,
            record.distribution or "-",
            record.version or "-",
            status,
            registered or "-",
            record.error or "",
        )
    console.print(table)
    for record in records:
        for note in record.notes:
            console.print(f"[yellow]note[/] ({record.name}): {note}")
        for warning in record.warnings:
            console.print(f"[yellow]warning[/] ({record.name}): {warning}")
    for kind, names in conflicts.items():
        for name, owners in names.items():
            console.print(f"[red]conflict[/]: {kind} {name!r} registered by {', '.join(owners)}")
