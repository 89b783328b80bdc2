"""Hook implementations of the legacy shim (entry point ``legacy``).

The shim registers no hub, provider, strategy or breaker: the old classes build their runtimes
from the Ollama and Docker plugins. All it adds is the ``gleitzeit migrate-config`` command,
and that module is imported only when the command line asks for plugin commands.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gleitzeit_core import hookimpl

if TYPE_CHECKING:
    import click

__all__: list[str] = []


@hookimpl
def gleitzeit_register_commands(cli: click.Group) -> None:
    from gleitzeit_legacy.switch import disabled_reason

    # The command line loads plugin commands without reading $GLEITZEIT_CONFIG's [plugins]
    # disabled (a core gap); the shim honours that list itself.
    if disabled_reason() is not None:
        return
    from gleitzeit_legacy.cli import migrate_config_command  # only when commands are wanted

    cli.add_command(migrate_config_command)
