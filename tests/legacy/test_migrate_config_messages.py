"""What ``gleitzeit migrate-config`` and ``gleitzeit_legacy.migrate`` tell a newcomer, run as
they are typed: the documented function is what ``from gleitzeit_legacy import migrate``
gives, a TOML or broken input is one line, every documented key is reported as documented,
and nothing is reported twice or unexplained."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

GLEITZEIT = str(Path(sys.executable).with_name("gleitzeit"))


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLEITZEIT_")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    return env


def _migrate(
    tmp_path: Path, old: str, name: str = "old.yaml", **env: str
) -> subprocess.CompletedProcess[str]:
    (tmp_path / name).write_text(old, encoding="utf-8")
    child = _env(tmp_path)
    child.update(env)
    args = [GLEITZEIT, "migrate-config", name] + ([] if env else ["--no-env"])
    return subprocess.run(
        args, capture_output=True, text=True, cwd=tmp_path, env=child, timeout=60, check=False
    )


def test_the_documented_migrate_is_the_function_however_it_is_reached(tmp_path: Path) -> None:
    """``from gleitzeit_legacy import migrate`` is the function before and after the module
    that holds it was imported, and ``gleitzeit_legacy.migrate`` the same function."""
    code = (
        "import gleitzeit_legacy\n"
        "from gleitzeit_legacy import migrate as first\n"
        "from gleitzeit_legacy.cli import migrate_config_command\n"
        "from gleitzeit_legacy import migrate as second\n"
        "assert callable(first) and first is second is gleitzeit_legacy.migrate, second\n"
        "print(sorted(first({'providers': {'ollama': {'endpoint': 'http://h:1'}}}, environ={})"
        ".config['hubs']))\n"
    )
    ran = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=_env(tmp_path),
        timeout=60,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "['ollama']"


def test_a_toml_input_is_answered_in_one_line(tmp_path: Path) -> None:
    """A new TOML config given to migrate-config: one line saying it is already the new
    format and how to check it, exit 2, no parser error."""
    result = _migrate(tmp_path, '[hubs.llm]\nkind = "ollama"\n', name="gleitzeit.toml")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "is a TOML file" in lines[0]
    assert "gleitzeit config check gleitzeit.toml" in lines[0]


def test_a_broken_yaml_is_one_line_with_its_position(tmp_path: Path) -> None:
    """A YAML syntax error is one line naming the file, the problem and its line."""
    result = _migrate(tmp_path, "providers:\n  ollama: [\n")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "old.yaml is not a valid old config" in lines[0]
    assert "(line 3" in lines[0]


def test_default_models_is_dropped_with_its_reason_for_every_ollama_provider(
    tmp_path: Path,
) -> None:
    """The documented ``default_models`` of a pool as of a single provider is reported as
    dropped because the new config has none, never as an unknown key."""
    old = (
        "providers:\n"
        "  pool:\n"
        "    type: ollama_pool\n"
        "    instances: [{id: a, url: 'http://127.0.0.1:11434'}]\n"
        "    default_models: [llama3.2]\n"
    )
    result = _migrate(tmp_path, old)
    assert result.returncode == 0, result.stderr
    assert "unknown key" not in result.stderr
    dropped = [line for line in result.stderr.splitlines() if "default_models" in line]
    assert dropped
    assert all(line.split()[0] == "dropped" for line in dropped)
    assert all("the new config has no default model" in line for line in dropped)


def test_one_hub_is_never_both_created_and_already_running(tmp_path: Path) -> None:
    """When GLEITZEIT_OLLAMA_INSTANCES replaces the instances of the file's Ollama hub, the
    report does not call that hub both created and already running llm/v1."""
    old = "providers:\n  ollama:\n    endpoint: http://127.0.0.1:11434\n"
    result = _migrate(tmp_path, old, GLEITZEIT_OLLAMA_INSTANCES="a:http://127.0.0.1:11435")
    assert result.returncode == 0, result.stderr
    assert "already runs" not in result.stderr
    assert "became the resources of hub 'ollama'" in result.stderr


def test_the_single_providers_num_parallel_is_explained(tmp_path: Path) -> None:
    """The ``num_parallel = 64`` written for a single Ollama provider comes with a note saying
    why and what to set it to."""
    result = _migrate(tmp_path, "providers:\n  ollama:\n    endpoint: http://127.0.0.1:11434\n")
    assert result.returncode == 0, result.stderr
    assert "num_parallel = 64" in result.stdout
    assert "num_parallel = 64" in result.stderr
    assert "OLLAMA_NUM_PARALLEL" in result.stderr
