"""The off switch: is the legacy shim disabled, and the ImportError that says so.

The old import paths (``gleitzeit.orchestration.ollama_pool`` and friends) call
``ensure_enabled()`` before anything else. The shim counts as disabled exactly when the core
would not load the plugin ``legacy``: ``GLEITZEIT_DISABLED_PLUGINS`` names it, an allow-list
``GLEITZEIT_LOAD_PLUGINS`` leaves it out, the config file in ``GLEITZEIT_CONFIG`` lists it under
``[plugins] disabled``, or ``gleitzeit plugins disable legacy`` put it in the user's deny-list.

This module imports only the standard library and ``gleitzeit_core.plugins``/``config`` (both
light), so the check costs next to nothing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from gleitzeit_core import ConfigError
from gleitzeit_core.config import plugins_disabled_in, read_user_config, user_config_path
from gleitzeit_core.plugins import PluginManager

__all__ = ["DISTRIBUTION", "PLUGIN", "disabled_reason", "ensure_enabled"]

PLUGIN = "legacy"
DISTRIBUTION = "gleitzeit-legacy"


def _config_file_disabled(environ: Mapping[str, str]) -> list[str]:
    """``[plugins] disabled`` of ``$GLEITZEIT_CONFIG`` (unreadable files disable nothing: the
    runtime reports them when it loads the same file)."""
    value = environ.get("GLEITZEIT_CONFIG")
    if not value:
        return []
    try:
        return plugins_disabled_in(value)
    except (OSError, UnicodeDecodeError, ConfigError):
        return []


def _user_disabled() -> list[str]:
    try:
        return list(read_user_config().disabled)
    except ConfigError:
        return []


def disabled_reason(environ: Mapping[str, str] | None = None) -> str | None:
    """Why the shim is disabled (``None``: it is enabled)."""
    env = os.environ if environ is None else environ
    from_file = _config_file_disabled(env)
    from_user = _user_disabled()
    manager = PluginManager.from_env(disabled=[*from_file, *from_user], environ=env)
    if manager.is_enabled(PLUGIN, DISTRIBUTION):
        return None
    names = {PLUGIN, DISTRIBUTION}
    reasons = []
    deny = {n.strip().lower() for n in env.get("GLEITZEIT_DISABLED_PLUGINS", "").split(",")}
    if names & deny:
        reasons.append("GLEITZEIT_DISABLED_PLUGINS lists it")
    allow = env.get("GLEITZEIT_LOAD_PLUGINS")
    if allow is not None and not names & {n.strip().lower() for n in allow.split(",")}:
        reasons.append("GLEITZEIT_LOAD_PLUGINS does not list it")
    if names & {n.lower() for n in from_file}:
        reasons.append(f"[plugins] disabled in {env.get('GLEITZEIT_CONFIG')} lists it")
    if names & {n.lower() for n in from_user}:
        reasons.append(f"the user config {user_config_path()} disables it")
    return "; ".join(reasons) or "the plugin manager does not enable it"


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
