"""A config path that cannot be read (a directory, a file without read permission), given
with ``--config`` or ``GLEITZEIT_CONFIG``, is one ``gleitzeit: PATH: ...`` line that says what
is wrong with the file, and exit 2 (a config error) from every command, ``doctor`` included:
never click's own "Invalid value" format, advice about ports, or a traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import Run

COMMANDS = [
    ["config", "check"],
    ["status"],
    ["run", "llm/chat", "--params", "{}"],
    ["serve", "--port", "0"],
]


def _as_user_without_dac_override(
    args: list[str], tmp_path: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """``gleitzeit ARGS`` in a process that file permissions apply to: as root (CI), the
    capabilities that bypass them are dropped, so a mode-000 file is unreadable as for a user."""
    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        assert setpriv, "setpriv (util-linux) is needed to drop root's file-permission bypass"
        caps = "-dac_override,-dac_read_search"
        prefix = [setpriv, f"--inh-caps={caps}", f"--bounding-set={caps}"]
    child_env = {key: val for key, val in os.environ.items() if not key.startswith("GLEITZEIT_")}
    child_env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    child_env.update(env)
    return subprocess.run(
        [*prefix, sys.executable, "-m", "gleitzeit_core", *args],
        capture_output=True,
        text=True,
        env=child_env,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_an_unreadable_config_file_is_a_config_error(command: list[str], tmp_path: Path) -> None:
    """A config file without read permission, by ``--config`` (``config check``: FILE) and by
    ``GLEITZEIT_CONFIG``, is one line naming the file and "permission denied", exit 2."""
    unreadable = tmp_path / "g.toml"
    unreadable.write_text("[gateway]\nport = 11600\n", encoding="utf-8")
    unreadable.chmod(0)
    by_arg = [str(unreadable)] if command == ["config", "check"] else ["--config", str(unreadable)]
    for args, env in (
        ([*command, *by_arg], {}),
        (command, {"GLEITZEIT_CONFIG": str(unreadable)}),
    ):
        result = _as_user_without_dac_override(args, tmp_path, env)
        assert result.returncode == 2, (args, result.stderr)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith(f"gleitzeit: {unreadable}: "), lines[0]
        assert "permission denied" in lines[0]
        assert "port" not in lines[0].replace("--config", "")


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_a_directory_as_config_path_is_one_gleitzeit_line(
    command: list[str], gleitzeit: Run, tmp_path: Path
) -> None:
    """A directory given as the config, by argument or ``GLEITZEIT_CONFIG``, is one
    ``gleitzeit:`` line saying it is a directory, exit 2 (not click's "Invalid value")."""
    folder = tmp_path / "gleitzeit.toml"
    folder.mkdir()
    by_arg = [str(folder)] if command == ["config", "check"] else ["--config", str(folder)]
    for args, env in (([*command, *by_arg], {}), (command, {"GLEITZEIT_CONFIG": str(folder)})):
        result = gleitzeit(*args, env=env)
        assert result.returncode == 2, (args, result.stderr)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert lines == [f"gleitzeit: {folder} is a directory, not a config file"], result.stderr


def test_doctor_reports_an_unreadable_config_without_a_traceback(
    gleitzeit: Run, tmp_path: Path
) -> None:
    """``doctor`` with a directory or an unreadable file as config reports it as a failed
    check with a fix, exits 1, and shows no traceback and no advice about ports."""
    folder = tmp_path / "dir.toml"
    folder.mkdir()
    unreadable = tmp_path / "g.toml"
    unreadable.write_text("", encoding="utf-8")
    unreadable.chmod(0)
    env = {"GLEITZEIT_LOAD_PLUGINS": ""}
    for result, expected in (
        (gleitzeit("doctor", "--config", str(folder), env=env), "is a directory"),
        (
            _as_user_without_dac_override(["doctor", "--config", str(unreadable)], tmp_path, env),
            "permission denied",
        ),
    ):
        output = result.stdout + result.stderr
        assert result.returncode == 1, output
        assert "Traceback" not in output
        assert "FAIL" in output
        assert expected in output
        assert "ports below 1024" not in output


def _limit_memory() -> None:
    """Cap the child's address space, so a reader without a bound fails fast here
    instead of exhausting the machine."""
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (1536 * 2**20, 1536 * 2**20))


def test_an_endless_file_as_config_is_refused_not_read_to_exhaustion(tmp_path: Path) -> None:
    """``config check /dev/zero`` (a wrong path: endless, not a config) ends in one
    ``gleitzeit: /dev/zero: larger than ...`` line with exit 2, within a 1.5 GiB cap."""
    env = {key: val for key, val in os.environ.items() if not key.startswith("GLEITZEIT_")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    result = subprocess.run(
        [sys.executable, "-m", "gleitzeit_core", "config", "check", "/dev/zero"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
        preexec_fn=_limit_memory,
    )
    assert result.returncode == 2, result.stderr[-500:]
    assert result.stderr.startswith("gleitzeit: /dev/zero: larger than 16 MiB"), result.stderr
    assert len(result.stderr.splitlines()) == 1
