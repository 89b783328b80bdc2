"""The off switch: is the legacy shim disabled, and the ImportError that says so.

The old import paths (``gleitzeit.orchestration.ollama_pool`` and friends) call
``ensure_enabled()`` before anything else. The shim counts as disabled exactly when the core
would not load the plugin ``legacy``: ``GLEITZEIT_DISABLED_PLUGINS`` names it, an allow-list
``GLEITZEIT_LOAD_PLUGINS`` leaves it out, the config file in ``GLEITZEIT_CONFIG`` lists it under
``[plugins] disabled``, or ``gleitzeit plugins disable legacy`` put it in the user's deny-list.

This module imports only the standard library and the core's ``PluginSelection`` (light), so
the check costs next to nothing.
"""

from __future__ import annotations

from collections.abc import Mapping

from gleitzeit_core import PluginSelection

__all__ = ["DISTRIBUTION", "PLUGIN", "disabled_reason", "ensure_enabled"]

PLUGIN = "legacy"
DISTRIBUTION = "gleitzeit-legacy"


def disabled_reason(environ: Mapping[str, str] | None = None) -> str | None:
    """Why the shim is disabled (``None``: it is enabled), by the core's plugin selection;
    unreadable config files disable nothing here (the runtime reports them when it loads)."""
    selection = PluginSelection.resolve(environ=environ, lenient=True)
    return selection.reason(PLUGIN, DISTRIBUTION)


def ensure_enabled(module: str) -> None:
    """Raise an ``ImportError`` naming why the shim is off and how to switch it on (a plain
    one, so the traceback's last line reads ``ImportError: ... the legacy shim is disabled``)."""
    reason = disabled_reason()
    if reason is None:
        return
    raise ImportError(
        f"cannot import {module}: the legacy shim is disabled ({reason}). The old gleitzeit.* "
        f"import paths come from the plugin {PLUGIN!r} (distribution {DISTRIBUTION}); enable it "
        f"with `gleitzeit plugins enable {PLUGIN}` and make sure neither "
        "GLEITZEIT_DISABLED_PLUGINS, GLEITZEIT_LOAD_PLUGINS nor [plugins] disabled in "
        "$GLEITZEIT_CONFIG leaves it out - or move to the new API (docs/migration.md).",
        name=module,
    )
