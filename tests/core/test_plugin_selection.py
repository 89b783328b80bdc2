"""One plugin selection for every way in: the runtime's two constructors, the hook loop's
per-plugin isolation."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from gleitzeit_core import (
    ConfigError,
    PluginManager,
    PluginSelection,
    Runtime,
    hookimpl,
    load_config,
)
from gleitzeit_core._configfile import write_user_disabled


@pytest.fixture
def user_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    for name in ("GLEITZEIT_CONFIG", "GLEITZEIT_DISABLED_PLUGINS", "GLEITZEIT_LOAD_PLUGINS"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def test_both_runtime_constructors_honour_the_user_deny_list(user_config: Path) -> None:
    """``gleitzeit plugins disable NAME`` (the user config) keeps the plugin out of a runtime
    built with ``Runtime(config)`` exactly as with ``Runtime.from_config``."""
    write_user_disabled(["builtin-extra", "ollama"])
    config = load_config({})
    for runtime in (Runtime(config), Runtime.from_config(config), Runtime.from_config({})):
        ollama = runtime.plugins.records.get("ollama")
        assert ollama is not None
        assert ollama.status == "disabled"
        assert "the user config" in (ollama.disabled_by or "")


def test_the_selection_names_what_disabled_a_plugin(user_config: Path, tmp_path: Path) -> None:
    """Environment first, then the config file, then the user config; an allow-list leaves
    out everything it does not name."""
    config = tmp_path / "gleitzeit.toml"
    config.write_text('[plugins]\ndisabled = ["b"]\n', encoding="utf-8")
    write_user_disabled(["c"])
    env = {"GLEITZEIT_DISABLED_PLUGINS": "a", "GLEITZEIT_CONFIG": str(config)}
    selection = PluginSelection.resolve(environ=env)
    assert selection.reason("a") == "GLEITZEIT_DISABLED_PLUGINS"
    assert str(config) in (selection.reason("b") or "")
    assert "the user config" in (selection.reason("c") or "")
    assert selection.reason("d") is None
    allow = PluginSelection.resolve(environ={"GLEITZEIT_LOAD_PLUGINS": "d"})
    assert allow.reason("d") is None
    assert allow.reason("e") == "not listed in GLEITZEIT_LOAD_PLUGINS"


def test_a_raising_startup_hook_is_reported_and_the_others_still_run(user_config: Path) -> None:
    """Hooks run through one loop, each plugin on its own: a plugin whose ``gleitzeit_startup``
    raises is marked as an error and the next plugin's startup still runs."""
    started: list[str] = []

    class Raising:
        @hookimpl
        def gleitzeit_startup(self, runtime: Runtime) -> None:
            raise RuntimeError("startup broke on purpose")

    class Recording:
        @hookimpl
        def gleitzeit_startup(self, runtime: Runtime) -> None:
            started.append("recording")

    manager = PluginSelection(allow=[]).manager().load()
    manager.add(Raising(), "raising")
    manager.add(Recording(), "recording")

    async def run() -> None:
        async with Runtime(load_config({}), manager):
            pass

    asyncio.run(run())
    assert started == ["recording"]
    assert manager.records["raising"].status == "error"
    assert "startup broke on purpose" in (manager.records["raising"].error or "")
    assert manager.records["recording"].status == "loaded"


@pytest.mark.parametrize(
    "build",
    [
        lambda: PluginManager(),
        lambda: PluginManager(allow=["ollama"]),
        lambda: PluginManager(disabled=["docker"], allow=["ollama", "docker"]),
        lambda: PluginManager(strict=True, allow=["ollama"]),
    ],
    ids=["no-arguments", "allow", "disabled", "strict"],
)
def test_every_plugin_manager_constructor_honours_the_user_deny_list(
    user_config: Path, build: Callable[[], PluginManager]
) -> None:
    """A ``PluginManager`` built without a selection (however its arguments narrow it) goes
    through ``PluginSelection.resolve``: a plugin the user switched off with ``gleitzeit
    plugins disable`` is not imported, and the record says the user config disabled it."""
    write_user_disabled(["ollama"])
    manager = build().load()
    ollama = manager.records.get("ollama")
    assert ollama is not None
    assert ollama.status == "disabled"
    assert "the user config" in (ollama.disabled_by or "")
    assert "gleitzeit_register_routes" not in ollama.hooks


def test_selection_reads_deny_lists_without_the_config_machinery(
    user_config: Path, tmp_path: Path
) -> None:
    """Resolving the selection (a config file and a user config, both with deny-lists) in a
    fresh interpreter leaves attrs, cattrs and the config classes unimported: start-up pays
    for them only when a config is actually loaded."""
    config = tmp_path / "gleitzeit.toml"
    config.write_text('[plugins]\ndisabled = ["b"]\n', encoding="utf-8")
    write_user_disabled(["c"])
    code = (
        "import sys; from gleitzeit_core._plugins import PluginSelection; "
        "s = PluginSelection.resolve(); assert s.reason('b') and s.reason('c'), s.disabled; "
        "print(sorted(m for m in ('attrs', 'cattrs', 'gleitzeit_core._config') "
        "if m in sys.modules))"
    )
    env = {**os.environ, "GLEITZEIT_CONFIG": str(config)}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("table", "expected"),
    [('disabled = "ollama"', "plugins.disabled"), ('disabled = []\nenabled = ["x"]', "enabled")],
)
def test_a_malformed_plugins_table_is_reported_with_its_key_path(
    user_config: Path, tmp_path: Path, table: str, expected: str
) -> None:
    """A ``[plugins]`` table that is not a plain list of names (a string, an unknown key) is
    a ``ConfigError`` naming the file and the key, from the user config as from a config
    file; it is never silently read as "nothing disabled"."""
    bad = tmp_path / "gleitzeit.toml"
    bad.write_text(f"[plugins]\n{table}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        PluginSelection.resolve(environ={"GLEITZEIT_CONFIG": str(bad)})
    assert expected in str(raised.value)
    assert str(bad) in str(raised.value)
    user = tmp_path / "xdg" / "gleitzeit" / "config.toml"
    user.parent.mkdir(parents=True, exist_ok=True)
    user.write_text(f"[plugins]\n{table}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        PluginSelection.resolve(environ={})
    assert expected in str(raised.value)
    assert str(user) in str(raised.value)
