"""The ``gleitzeit`` command line.

Errors become messages here, at the boundary: a bad config exits 2 with one line per problem
and no traceback; any other Gleitzeit error exits 1. ``--help``, ``--version`` and
``plugins enable|disable`` never import a third-party plugin, so a broken plugin can always be
switched off; plugin commands are loaded only when one of them is asked for.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import click

from . import __version__
from .errors import ConfigError, GleitzeitError

__all__ = ["cli", "guarded", "main"]

_CONFIG_HELP = "TOML config file (default: $GLEITZEIT_CONFIG)."


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"gleitzeit: {message}", err=True)
    sys.exit(code)


def guarded(func: Callable[..., Any]) -> Callable[..., Any]:
    """Run a command body, turning our errors into an exit code and a message: a config
    error exits 2, any other Gleitzeit error 1, both without a traceback. Plugin commands use
    it too, so every ``gleitzeit`` command fails the same way."""

    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ConfigError as exc:
            _fail(str(exc), 2)
        except GleitzeitError as exc:
            _fail(str(exc), 1)

    run.__name__ = func.__name__
    run.__doc__ = func.__doc__
    return run


class LazyGroup(click.Group):
    """Core commands are always there; plugin commands load on first use of an unknown name."""

    _plugins_loaded = False

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and not self._plugins_loaded:
            self.load_plugin_commands()
            command = super().get_command(ctx, cmd_name)
        return command

    def load_plugin_commands(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        from .config import disabled_plugins
        from .plugins import PluginManager

        try:
            disabled = disabled_plugins(_config_option())
        except ConfigError as exc:
            _fail(str(exc), 2)
        manager = PluginManager.from_env(disabled=disabled).load()
        manager.call_each("gleitzeit_register_commands", cli=self)


@click.group(
    cls=LazyGroup,
    epilog="Plugins add more commands (gleitzeit plugins list shows them).",
)
@click.version_option(__version__, prog_name="gleitzeit")
def cli() -> None:
    """Route work to pools of resources: Ollama servers, Docker sandboxes, and more."""


# -- plugins ------------------------------------------------------------------------------------
@cli.group()
def plugins() -> None:
    """List, enable and disable plugins."""


def _config_option() -> str | None:
    """The ``--config`` value on the command line, if any (read before click parses it, so
    plugin commands load with the same deny-list as the command that runs)."""
    args = sys.argv[1:]
    for index, arg in enumerate(args):
        if arg == "--config" and index + 1 < len(args):
            return args[index + 1]
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
    return None


def _manager(config: str | None) -> Any:
    from .config import disabled_plugins
    from .plugins import PluginManager

    return PluginManager.from_env(disabled=disabled_plugins(config)).load()


@plugins.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--config", type=click.Path(dir_okay=False), default=None, help=_CONFIG_HELP)
@guarded
def plugins_list(as_json: bool, config: str | None) -> None:
    """Every plugin: distribution, version, status, error, and what it registered."""
    import attrs

    manager = _manager(config)
    cli_group = click.get_current_context().find_root().command
    if isinstance(cli_group, LazyGroup):
        known = set(cli_group.commands)

        def note_commands(plugin: str, _: Any) -> None:
            added = set(cli_group.commands) - known
            known.update(added)
            record = manager.records.get(plugin)
            if record is not None:
                record.commands = sorted(added)

        manager.call_each("gleitzeit_register_commands", cli=cli_group, after=note_commands)
        cli_group._plugins_loaded = True

    def note_problems(plugin: str, notes: Any) -> None:
        record = manager.records.get(plugin)
        if record is not None and notes:
            record.notes = [str(note) for note in notes]

    manager.call_each("gleitzeit_plugin_notes", after=note_problems)
    records = manager.report()
    if as_json:
        payload = {
            "plugins": [attrs.asdict(r) for r in records],
            "conflicts": manager.conflicts(),
        }
        click.echo(json.dumps(payload, indent=2))
        return
    from .status_view import plugins_table

    plugins_table(records, manager.conflicts())


def _persist(name: str, disable: bool) -> None:
    from .config import read_user_config, write_user_disabled

    current = set(read_user_config().disabled)
    if disable:
        current.add(name)
    else:
        current.discard(name)
    path = write_user_disabled(sorted(current))
    click.echo(f"{'disabled' if disable else 'enabled'} {name} (saved in {path})")


@plugins.command("disable")
@click.argument("name")
@guarded
def plugins_disable(name: str) -> None:
    """Disable a plugin without uninstalling it; it will not even be imported."""
    _persist(name, disable=True)


@plugins.command("enable")
@click.argument("name")
@guarded
def plugins_enable(name: str) -> None:
    """Enable a plugin disabled with `gleitzeit plugins disable`."""
    _persist(name, disable=False)


# -- run ----------------------------------------------------------------------------------------
@cli.command()
@click.argument("method")
@click.option("--params", default="{}", help="Parameters as a JSON object.")
@click.option("--config", type=click.Path(dir_okay=False), default=None, help=_CONFIG_HELP)
@guarded
def run(method: str, params: str, config: str | None) -> None:
    """Run one provider METHOD (e.g. llm/chat) and print its JSON result."""
    try:
        parsed = json.loads(params)
    except ValueError as exc:
        _fail(f"--params is not valid JSON: {exc}", 2)
    if not isinstance(parsed, dict):
        _fail("--params must be a JSON object", 2)
    from .runtime import Runtime

    runtime = Runtime.from_config(config)

    async def go() -> None:
        async with runtime:
            result = await runtime.execute(method, parsed)
            if hasattr(result, "__aiter__"):
                async for chunk in result:
                    click.echo(json.dumps(chunk))
            else:
                click.echo(json.dumps(result, indent=2))

    asyncio.run(go())


# -- serve --------------------------------------------------------------------------------------
@cli.command()
@click.option("--config", type=click.Path(dir_okay=False), default=None, help=_CONFIG_HELP)
@click.option("--host", default=None, help="Address to bind (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default 11500).")
@click.option(
    "--insecure-no-auth",
    is_flag=True,
    help="Serve a non-loopback address without any API key (warns on every start).",
)
@guarded
def serve(config: str | None, host: str | None, port: int | None, insecure_no_auth: bool) -> None:
    """Serve the gateway: /gleitzeit/* plus the routes plugins add (the Ollama API).

    Without a key ([gateway] token or [gateway.keys.NAME]) it binds only loopback addresses;
    see docs/security.md."""
    from .gateway import serve as serve_gateway
    from .runtime import Runtime

    runtime = Runtime.from_config(config)

    def ready(url: str) -> None:
        click.echo(f"gleitzeit gateway listening on {url}", err=True)
        for name, hub in runtime.hubs.items():
            found = ", ".join(r.id for r in hub.resources) or "no resources yet"
            click.echo(f"  hub {name} ({hub.kind}): {found}", err=True)
        for label, message in (
            (f"{n}/{src}", err)
            for n, h in runtime.hubs.items()
            for src, err in h.discovery_errors.items()
        ):
            click.echo(f"  discovery {label} failed: {message}", err=True)
        sys.stderr.flush()

    async def go() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve_gateway(
            runtime,
            host=host,
            port=port,
            ready=ready,
            stop=stop,
            insecure_no_auth=insecure_no_auth,
        )

    asyncio.run(go())


# -- status -------------------------------------------------------------------------------------
@cli.command()
@click.option("--url", default="http://127.0.0.1:11500", show_default=True, help="Gateway URL.")
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON.")
@click.option("--watch", is_flag=True, help="Refresh every --interval seconds.")
@click.option("--interval", type=float, default=2.0, show_default=True)
@click.option("--token", envvar="GLEITZEIT_GATEWAY_TOKEN", default=None, help="Bearer token.")
@guarded
def status(url: str, as_json: bool, watch: bool, interval: float, token: str | None) -> None:
    """Show hubs and resources of a running gateway."""
    from .status_view import fetch_status, show_status, watch_status

    if watch:
        watch_status(url, interval, token)
        return
    data = fetch_status(url, token)
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        show_status(data)


def main() -> None:
    cli(prog_name="gleitzeit")
