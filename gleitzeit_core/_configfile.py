"""Config files as files: reading TOML with a size bound, the user's own settings file, and the
``[plugins] disabled`` list of either.

Plugin selection runs at every start-up and needs only the deny-lists, so this module imports
nothing but the standard library (``gleitzeit_core._config``, which checks a whole config,
pulls in attrs, cattrs and every settings class). A ``[plugins]`` table that is anything but a
plain list of names is handed to the config's own structuring, so the error a user sees is the
same one, from one place.

The user's own settings (plugins enabled or disabled with ``gleitzeit plugins``) live in
``$XDG_CONFIG_HOME/gleitzeit/config.toml``.
"""

from __future__ import annotations

import contextlib
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._errors import ConfigError

__all__ = [
    "MAX_CONFIG_BYTES",
    "plugins_disabled_in",
    "read_toml",
    "user_config_path",
    "user_disabled_plugins",
    "write_user_disabled",
]

# Bound on what is read as a config: a real one is a few KiB; a wrong path (/dev/zero, a
# disk image) must end in a message, not in memory exhaustion.
MAX_CONFIG_BYTES = 16 * 2**20


def read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A TOML file as a dict; a missing or malformed file is a ``ConfigError`` naming it."""
    path = Path(path)
    try:
        with path.open("rb") as file:
            data = file.read(MAX_CONFIG_BYTES + 1)
        if len(data) > MAX_CONFIG_BYTES:
            raise ConfigError(
                f"larger than {MAX_CONFIG_BYTES // 2**20} MiB: not a config file "
                "(a config is a few KiB of TOML); check the path",
                source=str(path),
            )
        return tomllib.loads(data.decode("utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"{path} is a directory, not a config file") from None
    except PermissionError:
        # before the generic EACCES explanation in the CLI, which is about ports
        raise ConfigError(
            "cannot read the file (permission denied); make it readable by this user "
            "(chmod u+r) or point --config / GLEITZEIT_CONFIG at another file",
            source=str(path),
        ) from None
    except UnicodeDecodeError:
        raise ConfigError("not a text file (expected TOML in UTF-8)", source=str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", source=str(path)) from None


def _disabled(raw: Mapping[str, Any], path: Path) -> list[str]:
    """``[plugins] disabled`` of a parsed file. The common shapes (no table, or a table with
    only a list of names) are read here; anything else goes through ``PluginsConfig``'s
    structuring, which accepts or reports it exactly as a full config load would."""
    table = raw.get("plugins", {})
    if isinstance(table, dict) and table.keys() <= {"disabled"}:
        names = table.get("disabled", [])
        if isinstance(names, list) and all(isinstance(name, str) for name in names):
            return list(names)
    from ._config import PluginsConfig
    from ._structuring import structure

    section = structure(table, PluginsConfig, path="plugins", source=str(path))
    return list(section.disabled)


def plugins_disabled_in(source: str | os.PathLike[str]) -> list[str]:
    """``[plugins] disabled`` of one config file. Only that table is read, so a mistake
    elsewhere in the file cannot stop a broken plugin being switched off."""
    path = Path(source)
    return _disabled(read_toml(path), path)


def user_config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "gleitzeit" / "config.toml"


def user_disabled_plugins() -> list[str]:
    """The user's persisted deny-list of plugins; a broken file is reported, not ignored."""
    path = user_config_path()
    if not path.exists():
        return []
    return plugins_disabled_in(path)


def write_user_disabled(disabled: list[str]) -> Path:
    """Persist the user's deny-list of plugins (atomically)."""
    # only `gleitzeit plugins enable|disable` writes (tempfile imports random: 4 ms of start-up)
    import tempfile

    import tomli_w

    path = user_config_path()
    # a symlinked config (dotfiles) is written through, not replaced by a file
    target = path.resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    document = {"plugins": {"disabled": sorted(set(disabled))}}
    text = "# Written by `gleitzeit plugins enable|disable`.\n" + tomli_w.dumps(document)
    # a fresh name (O_EXCL): a link planted at a fixed temporary name cannot redirect the write
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
        mode = target.stat().st_mode & 0o777 if target.exists() else 0o644
        os.chmod(tmp, mode)  # mkstemp's 0600 would change the user's file
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path
