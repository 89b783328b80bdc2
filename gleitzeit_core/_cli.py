"""The ``gleitzeit`` command line.

Errors become messages here, at the boundary: every line of a message starts with
``gleitzeit:``, an expected failure (a bad config, a busy port, a backend that does not answer,
a plugin that cannot be imported) is one line per problem and the fix, never a traceback; the
traceback is there with ``--debug`` (or ``GLEITZEIT_DEBUG=1``). Exit codes (docs/cli.md):
0 success, 1 a failure (including a run whose result says it failed), 2 a usage or config
error, 130 interrupted.

``--help``, ``--version``, completion and ``plugins enable|disable`` never import a
third-party plugin: plugin commands are listed from the plugins' metadata (entry point group
``gleitzeit.commands``) and imported only when one of them runs, so a broken plugin can always
be switched off.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import json
import logging
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import click

from . import __version__
from ._errors import ConfigError, GleitzeitError

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "cli",
    "debug_enabled",
    "explain",
    "fail",
    "guarded",
    "main",
]

EXIT_OK = 0
EXIT_FAILED = 1  # something did not work: a backend, a port, a plugin, a failed result
EXIT_USAGE = 2  # the command line or the config is wrong (click uses 2 for usage errors too)
EXIT_INTERRUPTED = 130

_CONFIG_HELP = "TOML config file (default: $GLEITZEIT_CONFIG)."
_CONTEXT = {"help_option_names": ["-h", "--help"]}


def debug_enabled() -> bool:
    """Whether tracebacks were asked for (``--debug`` or ``GLEITZEIT_DEBUG=1``)."""
    if os.environ.get("GLEITZEIT_DEBUG", "").lower() in ("1", "true", "yes"):
        return True
    ctx = click.get_current_context(silent=True)
    root = ctx.find_root() if ctx is not None else None
    if root is None:
        return False
    # params: parsed before a subcommand is looked up (and before the callback sets obj)
    return bool(root.params.get("debug") or (isinstance(root.obj, dict) and root.obj.get("debug")))


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    """Print ``message`` (every line prefixed ``gleitzeit:``) to stderr and exit ``code``."""
    for line in str(message).splitlines() or [""]:
        click.echo(f"gleitzeit: {line}", err=True)
    sys.exit(code)


def explain(exc: BaseException) -> tuple[str, int] | None:
    """The message and exit code of an expected failure, or ``None`` for a bug."""
    if isinstance(exc, ConfigError):
        return str(exc), EXIT_USAGE
    if isinstance(exc, GleitzeitError):
        return str(exc), EXIT_FAILED
    if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
        return (
            f"the address is already in use ({exc.strerror}); another program listens on that "
            "port: stop it, or choose another with --port",
            EXIT_FAILED,
        )
    if isinstance(exc, OSError) and exc.errno == errno.EACCES:
        return f"permission denied: {exc}; ports below 1024 need root", EXIT_FAILED
    if isinstance(exc, ImportError):
        name = exc.name or "a module"
        return (
            f"cannot import {name}: {exc}; a plugin is broken or half-installed: "
            "`gleitzeit doctor` names it; reinstall it, or `gleitzeit plugins disable NAME`",
            EXIT_FAILED,
        )
    if isinstance(exc, ConnectionError | TimeoutError):
        return f"{type(exc).__name__}: {exc}", EXIT_FAILED
    return None


def guarded(func: Callable[..., Any]) -> Callable[..., Any]:
    """Run a command body so that an expected failure exits with a message and the documented
    code, without a traceback (unless ``--debug``). Plugin commands use it too, so every
    ``gleitzeit`` command fails the same way."""

    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except BrokenPipeError:
            # the reader went away (`| head`): click ends quietly with 1, as rich does for
            # the tables; not a ConnectionError to explain
            raise
        except KeyboardInterrupt:
            sys.exit(EXIT_INTERRUPTED)
        except Exception as exc:
            explained = explain(exc)
            if explained is None or debug_enabled():
                raise
            message, code = explained
            if not isinstance(exc, GleitzeitError):  # ours say all there is; others may not
                message += " (--debug shows the traceback)"
            fail(message, code)

    run.__name__ = func.__name__
    run.__doc__ = func.__doc__
    return run


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


class LazyGroup(click.Group):
    """Core commands are always there. Plugin commands are listed from the plugins' metadata
    and imported on first use; commands a plugin adds only through the
    ``gleitzeit_register_commands`` hook load when an unknown name is asked for."""

    _plugins_loaded = False

    def _declared(self) -> dict[str, Any]:
        from ._plugins import PluginSelection, command_entry_points

        # a broken config file is reported by the command itself
        selection = PluginSelection.resolve(_config_option(), lenient=True)
        return {
            name: command
            for name, command in command_entry_points().items()
            if name not in self.commands
            and selection.reason(command.plugin, command.distribution) is None
        }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self._declared()})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        declared = self._declared().get(cmd_name)
        if declared is not None:
            try:
                loaded = declared.load()
            except Exception as exc:
                if debug_enabled():
                    raise
                dist = (
                    f" ({declared.distribution} {declared.version})"
                    if declared.distribution
                    else ""
                )
                fail(
                    f"plugin {declared.plugin!r}{dist} cannot be imported, so `gleitzeit "
                    f"{cmd_name}` is unavailable: {type(exc).__name__}: {exc}; reinstall it "
                    f"(pip install --force-reinstall {declared.distribution or declared.plugin}) "
                    f"or `gleitzeit plugins disable {declared.plugin}` (--debug shows the "
                    "traceback)",
                    EXIT_FAILED,
                )
            if isinstance(loaded, click.Command):
                self.add_command(loaded, cmd_name)
                return loaded
        if not self._plugins_loaded:
            self.load_plugin_commands()
            return super().get_command(ctx, cmd_name)
        return None

    def shell_complete(self, ctx: click.Context, incomplete: str) -> list[Any]:
        """Complete command names, plugin ones from metadata (nothing imported), then
        options."""
        from click.shell_completion import CompletionItem

        declared = self._declared()
        items: list[Any] = []
        for name in self.list_commands(ctx):
            if not name.startswith(incomplete):
                continue
            plugin = declared.get(name)
            if plugin is not None:
                items.append(
                    CompletionItem(name, help=f"from {plugin.distribution or plugin.plugin}")
                )
                continue
            command = self.commands.get(name)
            if command is not None and not command.hidden:
                items.append(CompletionItem(name, help=command.get_short_help_str()))
        items.extend(click.Command.shell_complete(self, ctx, incomplete))
        return items

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        core = [(n, c) for n, c in self.commands.items() if not c.hidden]
        rows = [(n, c.get_short_help_str(limit=formatter.width - 20)) for n, c in sorted(core)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)
        declared = self._declared()
        if declared:
            with formatter.section("Plugin commands"):
                formatter.write_dl(
                    [
                        (name, f"from {c.distribution or c.plugin} (gleitzeit {name} -h)")
                        for name, c in sorted(declared.items())
                    ]
                )

    def load_plugin_commands(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        from ._plugins import PluginSelection

        try:
            selection = PluginSelection.resolve(_config_option())
        except ConfigError as exc:
            fail(str(exc), EXIT_USAGE)
        manager = selection.manager().load()
        manager.call_each("gleitzeit_register_commands", cli=self)


@click.group(
    cls=LazyGroup,
    context_settings=_CONTEXT,
    epilog="Exit codes: 0 ok, 1 failed, 2 usage or config error. "
    "Completion: gleitzeit completion bash|zsh|fish.",
)
@click.version_option(__version__, "-V", "--version", prog_name="gleitzeit")
@click.option("--debug", is_flag=True, help="Show tracebacks of failures and debug logs.")
@click.option("-v", "--verbose", count=True, help="Show informational logs too.")
@click.pass_context
def cli(ctx: click.Context, debug: bool, verbose: int) -> None:
    """Route work to pools of resources: Ollama servers, Docker sandboxes, and more."""
    ctx.obj = {"debug": debug}
    show_logs(debug=debug or debug_enabled(), verbose=verbose)


# -- plugins ------------------------------------------------------------------------------------
@cli.group()
def plugins() -> None:
    """List, enable and disable plugins."""


def _manager(config: str | None) -> Any:
    from ._plugins import PluginSelection

    return PluginSelection.resolve(config).manager().load()


@plugins.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--config", type=click.Path(readable=False), default=None, help=_CONFIG_HELP)
@guarded
def plugins_list(as_json: bool, config: str | None) -> None:
    """Every plugin: distribution, version, status (and what disabled it), error, and what it
    registered."""

    from ._plugins import command_entry_points

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
    manager.check_imports()
    for name, command in command_entry_points().items():
        record = manager.records.get(command.plugin)
        if record is not None and name not in record.commands:
            record.commands = sorted([*record.commands, name])
    records = manager.report()
    if as_json:
        payload = {
            "plugins": [dataclasses.asdict(r) for r in records],
            "conflicts": manager.conflicts(),
        }
        click.echo(json.dumps(payload, indent=2))
        return
    from ._status_view import plugins_table

    plugins_table(records, manager.conflicts())


def _plugin_names() -> dict[str, str]:
    """Every installed plugin's name (and distribution name) -> its plugin name, from
    metadata only."""
    from ._plugins import GROUP, LIGHT_GROUPS, _short, distribution_of, entry_points_snapshot

    names: dict[str, str] = {}
    for ep in entry_points_snapshot():
        dist = distribution_of(ep)[0]
        if ep.group == GROUP:
            plugin = ep.name
        elif ep.group in LIGHT_GROUPS:
            plugin = _short(dist) or ep.name
        else:
            continue
        names[plugin.lower()] = plugin
        if dist:
            names[dist.lower()] = plugin
    return names


def _persist(name: str, disable: bool) -> None:
    from ._configfile import user_disabled_plugins, write_user_disabled
    from ._plugins import BUILTIN
    from ._validators import did_you_mean

    current = set(user_disabled_plugins())
    if disable:
        if name.lower() == BUILTIN:
            fail("the built-ins are part of the core and cannot be disabled", EXIT_USAGE)
        installed = _plugin_names()
        if name.lower() not in installed:
            guess = did_you_mean(name.lower(), sorted(installed))
            listing = ", ".join(sorted(set(installed.values()))) or "none"
            fail(
                f"no installed plugin is named {name!r}; installed plugins: {listing}"
                + (f'; did you mean "{installed[guess]}"?' if guess else "")
                + " (see `gleitzeit plugins list`)",
                EXIT_USAGE,
            )
        current.add(installed[name.lower()])
        name = installed[name.lower()]
    else:
        if name not in current:
            fail(
                f"{name!r} is not disabled in the user config; disabled there: "
                + (", ".join(sorted(current)) or "nothing")
                + " (a plugin may also be disabled by GLEITZEIT_DISABLED_PLUGINS or a config "
                "file's [plugins] disabled: `gleitzeit plugins list` says which)",
                EXIT_USAGE,
            )
        current.discard(name)
    path = write_user_disabled(sorted(current))
    click.echo(f"{'disabled' if disable else 'enabled'} {name} (saved in {path})")


def _complete_installed(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Installed plugin names (from metadata, nothing imported) for ``plugins disable``."""
    names = sorted(set(_plugin_names().values()))
    return [name for name in names if name.startswith(incomplete)]


def _complete_disabled(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """The user config's disabled plugins for ``plugins enable``; none when it is unreadable
    (completion must never print an error into the shell)."""
    from ._configfile import user_disabled_plugins

    try:
        names = sorted(user_disabled_plugins())
    except GleitzeitError:
        return []
    return [name for name in names if name.startswith(incomplete)]


@plugins.command("disable")
@click.argument("name", shell_complete=_complete_installed)
@guarded
def plugins_disable(name: str) -> None:
    """Disable an installed plugin without uninstalling it; it will not even be imported."""
    _persist(name, disable=True)


@plugins.command("enable")
@click.argument("name", shell_complete=_complete_disabled)
@guarded
def plugins_enable(name: str) -> None:
    """Enable a plugin disabled with `gleitzeit plugins disable`."""
    _persist(name, disable=False)


# -- config -------------------------------------------------------------------------------------
@cli.group("config")
def config_group() -> None:
    """Check a config file, or print a commented one to start from."""


@config_group.command("check")
@click.argument("file", required=False, type=click.Path(readable=False))
@guarded
def config_check(file: str | None) -> None:
    """Report every problem of FILE (default: $GLEITZEIT_CONFIG) in one run, starting nothing.
    Exit 0 when it is valid, 2 when it is not."""
    from ._checking import check_config

    path = file or os.environ.get("GLEITZEIT_CONFIG")
    if not path:
        fail("no config to check: give a FILE or set GLEITZEIT_CONFIG", EXIT_USAGE)
    error = check_config(path)
    if error is not None:
        count = len(error.problems)
        fail(f"{error}\n{path}: {count} problem{'s' if count != 1 else ''}", EXIT_USAGE)
    click.echo(f"{path}: ok")


@config_group.command("example")
def config_example() -> None:
    """Print a commented config to start from (gleitzeit config example > gleitzeit.toml)."""
    from importlib.resources import files

    click.echo(files("gleitzeit_core").joinpath("example.toml").read_text("utf-8"), nl=False)


# -- doctor -------------------------------------------------------------------------------------
@cli.command()
@click.option("--config", type=click.Path(readable=False), default=None, help=_CONFIG_HELP)
@click.option("--timeout", type=float, default=2.0, show_default=True, help="Per check, seconds.")
@guarded
def doctor(config: str | None, timeout: float) -> None:
    """Check the installation: plugins, the config, the gateway port, and whether each
    Ollama instance and Docker engine answers; says what to do about each problem.
    Exit 0 when all is well, 1 otherwise."""
    from ._doctor import run_doctor

    sys.exit(run_doctor(config, timeout))


# -- completion ---------------------------------------------------------------------------------
@cli.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the completion script for SHELL (it completes plugin commands too).

    \b
    bash:  eval "$(gleitzeit completion bash)"        (in ~/.bashrc)
    zsh:   eval "$(gleitzeit completion zsh)"         (in ~/.zshrc)
    fish:  gleitzeit completion fish > ~/.config/fish/completions/gleitzeit.fish
    """
    from click.shell_completion import get_completion_class

    completer = get_completion_class(shell)
    assert completer is not None  # the choice above lists only shells click supports
    click.echo(completer(cli, {}, "gleitzeit", "_GLEITZEIT_COMPLETE").source())


# -- run ----------------------------------------------------------------------------------------
def _failed(result: Any) -> bool:
    """A result that says it did not work (``python/execute``'s ``success: false``)."""
    return isinstance(result, dict) and result.get("success") is False


@cli.command()
@click.argument("method")
@click.option("--params", default="{}", help="Parameters as a JSON object.")
@click.option("--config", type=click.Path(readable=False), default=None, help=_CONFIG_HELP)
@guarded
def run(method: str, params: str, config: str | None) -> None:
    """Run one provider METHOD (e.g. llm/chat) and print its JSON result. Exits 1 when the
    result says it failed (python/execute with success: false)."""
    try:
        parsed = json.loads(params)
    except ValueError as exc:
        fail(f"--params is not valid JSON: {exc}", EXIT_USAGE)
    if not isinstance(parsed, dict):
        fail("--params must be a JSON object", EXIT_USAGE)
    from ._runtime import Runtime

    runtime = Runtime.from_config(config)

    async def go() -> bool:
        async with runtime:
            result = await runtime.execute(method, parsed)
            if hasattr(result, "__aiter__"):
                async for chunk in result:
                    click.echo(json.dumps(chunk))
                return True
            click.echo(json.dumps(result, indent=2))
            return not _failed(result)

    if not asyncio.run(go()):
        fail(f"{method} ran but did not succeed (see the result above)", EXIT_FAILED)


# -- serve --------------------------------------------------------------------------------------
@cli.command()
@click.option("--config", type=click.Path(readable=False), default=None, help=_CONFIG_HELP)
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
    see docs/security.md. SIGTERM or Ctrl-C drains (requests in flight finish within
    [gateway] shutdown_grace; a second one cuts them) and exits 0; SIGHUP re-reads the config
    (docs/scale-out.md)."""
    from ._gateway import serve as serve_gateway
    from ._gateway import speedups
    from ._reachability import migrate_problem, port_problem
    from ._runtime import Runtime

    show_info_of("gleitzeit.gateway")  # it tells the operator when it drains or reloads
    runtime = Runtime.from_config(config)
    bind_host = host or runtime.config.gateway.host
    bind_port = runtime.config.gateway.port if port is None else port
    reuse_port = runtime.config.gateway.reuse_port
    busy = port_problem(bind_host, bind_port, reuse_port=reuse_port) if bind_port else None
    if busy is not None:
        fail(
            f"cannot serve: {busy}; stop what runs there (`gleitzeit status --port "
            f"{bind_port}` tells whether it is a gateway), or choose another with --port "
            "or [gateway] port",
            EXIT_FAILED,
        )

    loop_factory, faster = speedups(runtime.config.gateway.speedups)

    def ready(url: str) -> None:
        click.echo(f"gleitzeit gateway listening on {url}", err=True)
        handover = migrate_problem() if reuse_port else None
        if handover is not None:
            click.echo(f"  WARNING: {handover}", err=True)
        if faster:
            click.echo(f"  speedups: {', '.join(faster)}", err=True)
        for name, hub in runtime.hubs.items():
            found = ", ".join(r.id for r in hub.resources) or "no resources yet"
            click.echo(f"  hub {name} ({hub.kind}): {found}", err=True)
        for kind, why in runtime.skipped_hubs.items():
            click.echo(f"  no {kind} hub: {why}", err=True)
        for label, message in (
            (f"{n}/{src}", err)
            for n, h in runtime.hubs.items()
            for src, err in h.discovery_errors.items()
        ):
            click.echo(f"  discovery {label} failed: {message}", err=True)
        sys.stderr.flush()

    async def go() -> None:
        await serve_gateway(
            runtime,
            host=host,
            port=port,
            ready=ready,
            insecure_no_auth=insecure_no_auth,
            signals=True,
        )

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(go())


# -- status -------------------------------------------------------------------------------------
def _gateway_target(
    url: str | None, config: str | None, port: int | None
) -> tuple[str, str | None]:
    """Which gateway ``status`` asks, and with which admin token: ``--url``, else the gateway
    of ``--config``/``GLEITZEIT_CONFIG`` (its host and port), else 127.0.0.1:11500; ``--port``
    replaces the port. The token is the config's ``[gateway] token`` (or its ``token_env``
    variable), the one ``gleitzeit serve`` of that config accepts, and only for that gateway:
    never sent to a ``--url`` (any server); ``--token`` wins over it."""
    from ._config import GatewayConfig, load_config

    if url:
        return url.rstrip("/"), None
    gateway = GatewayConfig()
    if config or os.environ.get("GLEITZEIT_CONFIG"):
        gateway = load_config(config).gateway
    token = gateway.token or os.environ.get(gateway.token_env) or None
    if port is not None and port != gateway.port:
        token = None  # another port: whatever listens there is not that config's gateway
    host = gateway.host
    if host in ("0.0.0.0", "::", ""):  # listening everywhere: ask it on loopback
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port if port is not None else gateway.port}", token


@cli.command()
@click.option("--url", default=None, help="Gateway URL (default: from the config, else :11500).")
@click.option("--config", type=click.Path(readable=False), default=None, help=_CONFIG_HELP)
@click.option("--port", type=int, default=None, help="Gateway port on loopback.")
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON.")
@click.option("--wide", "-w", is_flag=True, help="Every column: breaker, percentiles, details.")
@click.option("--watch", is_flag=True, help="Refresh every --interval seconds.")
@click.option("--interval", type=float, default=2.0, show_default=True)
@click.option(
    "--token",
    envvar="GLEITZEIT_GATEWAY_TOKEN",
    default=None,
    help="Bearer token (default: the config's [gateway] token or token_env).",
)
@guarded
def status(
    url: str | None,
    config: str | None,
    port: int | None,
    as_json: bool,
    wide: bool,
    watch: bool,
    interval: float,
    token: str | None,
) -> None:
    """Show hubs and resources of a running gateway (fits 80 columns; --wide for more)."""
    from ._status_view import fetch_status, show_status, watch_status

    target, config_token = _gateway_target(url, config, port)
    token = token or config_token
    if watch:
        watch_status(target, interval, token, wide=wide, as_json=as_json)
        return
    data = fetch_status(target, token)
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        show_status(data, wide=wide)


class _EchoHandler(logging.Handler):
    """Log records as ``gleitzeit:`` lines on the current stderr (looked up per record, so a
    captured or replaced stderr gets them): those at ``threshold`` or above, and the
    informational ones of the loggers in ``info_from`` (what a command reports as it runs)."""

    def __init__(self) -> None:
        super().__init__()
        self.threshold = logging.WARNING
        self.info_from: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < self.threshold and not (
            record.levelno >= logging.INFO
            and any(
                record.name == name or record.name.startswith(name + ".") for name in self.info_from
            )
        ):
            return False
        return bool(super().filter(record))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            for line in self.format(record).splitlines() or [""]:
                click.echo(f"gleitzeit: {line}", err=True)
        except Exception:
            self.handleError(record)


def _echo_handler() -> _EchoHandler:
    root = logging.getLogger()
    handler = next((h for h in root.handlers if isinstance(h, _EchoHandler)), None)
    if handler is None:
        handler = _EchoHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        root.addHandler(handler)
    return handler


def show_logs(*, debug: bool = False, verbose: int = 0) -> None:
    """What the core's and the plugins' logs show on the command line: warnings and errors,
    ``-v`` adds information, ``--debug`` everything (the library itself only logs)."""
    level = logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING
    _echo_handler().threshold = level
    root = logging.getLogger()
    root.setLevel(min(level, root.level or logging.WARNING))


def show_info_of(logger_name: str) -> None:
    """Show ``logger_name``'s informational records at the default level too: what a
    long-running command says as it goes (``serve``: draining, config reloaded)."""
    _echo_handler().info_from.add(logger_name)
    logger = logging.getLogger(logger_name)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)


def main() -> None:
    # before click parses: plugin commands load (and may log) before the group's callback runs
    args = sys.argv[1:]
    show_logs(
        debug="--debug" in args or debug_enabled(),
        verbose=sum(a in ("-v", "--verbose") for a in args),
    )
    cli(prog_name="gleitzeit")
