"""The off switch. With the shim disabled - ``GLEITZEIT_DISABLED_PLUGINS``, an allow-list
without it, ``[plugins] disabled`` in the config file, or ``gleitzeit plugins disable legacy``
- nothing of it is imported at startup, ``import gleitzeit.orchestration.ollama_pool`` fails
with an ImportError that says so and how to enable it, and ``gleitzeit plugins list`` shows it
disabled. Every case runs in a fresh interpreter.

``tox -e legacy-disabled`` runs this file with ``GLEITZEIT_DISABLED_PLUGINS=legacy`` set for
the whole run; ``test_the_inherited_environment_decides`` checks that setting itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

INHERITED = os.environ.get("GLEITZEIT_DISABLED_PLUGINS")  # before any fixture changes it
OLD_IMPORT = "import gleitzeit.orchestration.ollama_pool"
CATCH = (
    "import sys\n"
    "try:\n"
    "    import gleitzeit.orchestration.ollama_pool\n"
    "except ImportError as exc:\n"
    "    print(f'ImportError: {exc}')\n"
    "    sys.exit(3)\n"
)
STARTUP = (
    "import json, sys\n"
    "from gleitzeit_core import Runtime\n"
    "runtime = Runtime.from_config(None)\n"
    "print(json.dumps(sorted(m for m in sys.modules"
    " if m == 'gleitzeit' or m.startswith(('gleitzeit.', 'gleitzeit_legacy')))))\n"
)


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLEITZEIT_")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    env.update(extra)
    return env


def _python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _gleitzeit(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gleitzeit_core", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _status(env: dict[str, str], *extra: str) -> dict[str, Any]:
    done = _gleitzeit("plugins", "list", "--json", *extra, env=env)
    assert done.returncode == 0, done.stderr
    plugins = {p["name"]: p for p in json.loads(done.stdout)["plugins"]}
    record: dict[str, Any] = plugins["legacy"]
    return record


def assert_disabled(env: dict[str, str], *list_args: str) -> None:
    """The old import fails with the message, startup imports nothing of the shim, and
    ``plugins list`` says disabled."""
    failed = _python(CATCH, env)
    assert failed.returncode == 3, failed.stderr  # an ImportError, caught as one
    assert "the legacy shim is disabled" in failed.stdout
    assert "gleitzeit plugins enable legacy" in failed.stdout
    started = _python(STARTUP, env)
    assert started.returncode == 0, started.stderr
    assert json.loads(started.stdout.splitlines()[-1]) == []
    assert _status(env, *list_args)["status"] == "disabled"
    help_text = _gleitzeit("migrate-config", "--help", env=env)
    assert help_text.returncode != 0
    assert "No such command" in help_text.stderr


def test_enabled_baseline(tmp_path: Path) -> None:
    """Enabled, the old import works; startup imports only the shim's light plugin module (no
    old classes, no ``gleitzeit`` package); ``plugins list`` shows it loaded; its command
    is there."""
    env = _env(tmp_path)
    done = _python(OLD_IMPORT + "\nprint('ok')", env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
    started = _python(STARTUP, env)
    assert started.returncode == 0, started.stderr
    assert json.loads(started.stdout.splitlines()[-1]) == [
        "gleitzeit_legacy",
        "gleitzeit_legacy.plugin",
    ]
    assert _status(env)["status"] == "loaded"
    assert _gleitzeit("migrate-config", "--help", env=env).returncode == 0


def test_disabled_by_environment_variable(tmp_path: Path) -> None:
    """``GLEITZEIT_DISABLED_PLUGINS=legacy`` switches the shim off."""
    assert_disabled(_env(tmp_path, GLEITZEIT_DISABLED_PLUGINS="ollama,legacy"))


def test_disabled_by_an_allow_list_without_it(tmp_path: Path) -> None:
    """``GLEITZEIT_LOAD_PLUGINS`` without ``legacy`` (here: only the Ollama plugin) too."""
    assert_disabled(_env(tmp_path, GLEITZEIT_LOAD_PLUGINS="ollama"))


def test_disabled_by_the_config_file(tmp_path: Path) -> None:
    """``[plugins] disabled = ["legacy"]`` in ``$GLEITZEIT_CONFIG`` too. (``plugins list``
    reads that file only with ``--config``: a core behaviour, reported.)"""
    config = tmp_path / "gleitzeit.toml"
    config.write_text('[plugins]\ndisabled = ["legacy"]\n', encoding="utf-8")
    assert_disabled(_env(tmp_path, GLEITZEIT_CONFIG=str(config)), "--config", str(config))


def test_disabled_and_enabled_by_the_user_config(tmp_path: Path) -> None:
    """``gleitzeit plugins disable legacy`` (the user's deny-list) switches it off, and
    ``gleitzeit plugins enable legacy`` - what the error message says - back on."""
    env = _env(tmp_path)
    assert _gleitzeit("plugins", "disable", "legacy", env=env).returncode == 0
    assert_disabled(env)
    assert "the user config" in _python(CATCH, env).stdout
    assert _gleitzeit("plugins", "enable", "legacy", env=env).returncode == 0
    assert _python(OLD_IMPORT, env).returncode == 0
    assert _status(env)["status"] == "loaded"


def test_the_inherited_environment_decides(tmp_path: Path) -> None:
    """With the environment this test run was started in (``tox -e legacy-disabled`` sets
    ``GLEITZEIT_DISABLED_PLUGINS=legacy``), the old import works exactly when that
    environment does not disable the shim."""
    env = _env(tmp_path)
    if INHERITED is not None:
        env["GLEITZEIT_DISABLED_PLUGINS"] = INHERITED
    disabled = "legacy" in {n.strip().lower() for n in (INHERITED or "").split(",")}
    if disabled:
        assert_disabled(env)
    else:
        assert _python(OLD_IMPORT, env).returncode == 0


@pytest.mark.parametrize(
    "module",
    [
        "gleitzeit.providers.ollama_pool_provider",
        "gleitzeit.providers.ollama_provider",
        "gleitzeit.execution.docker_executor",
        "gleitzeit.providers.python_docker_provider",
    ],
)
def test_every_old_path_is_switched_off(tmp_path: Path, module: str) -> None:
    """Every old module fails the same way when the shim is disabled."""
    code = CATCH.replace("gleitzeit.orchestration.ollama_pool", module)
    failed = _python(code, _env(tmp_path, GLEITZEIT_DISABLED_PLUGINS="legacy"))
    assert failed.returncode == 3
    assert "the legacy shim is disabled" in failed.stdout
