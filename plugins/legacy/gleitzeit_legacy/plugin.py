"""Hook implementations of the legacy shim (entry point ``legacy``).

The shim registers no hub, provider, strategy or breaker: the old classes build their runtimes
from the Ollama and Docker plugins. It adds the ``gleitzeit migrate-config`` command, the
``paths`` section of every runtime's status (calls per dual-mode path and the live rollout
settings) and, in ``gleitzeit plugins list``, a note when the original ``gleitzeit``
distribution is installed next to the shim's ``gleitzeit`` package. Each imports its module
only when asked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gleitzeit_core import hookimpl

if TYPE_CHECKING:
    import click

    from gleitzeit_core import Runtime

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


@hookimpl
def gleitzeit_startup(runtime: Runtime) -> None:
    from gleitzeit_legacy.paths import section
    from gleitzeit_legacy.shadow import warn_once_if_shadowed

    runtime.add_status_section("paths", section)
    # the original package may have won the import (then the shim's own warning never ran)
    warn_once_if_shadowed()


@hookimpl
def gleitzeit_plugin_notes() -> list[str]:
    from gleitzeit_legacy.shadow import shadow_notes

    return shadow_notes()
