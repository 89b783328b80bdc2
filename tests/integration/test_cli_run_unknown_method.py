"""``gleitzeit run`` of a method nobody serves, as a user types it with every first-party
plugin installed: a misspelt method gets the closest one, and the fix offered for a
first-party method's plugin matches the machine (never "pip install" of what is installed)."""

from __future__ import annotations

from pathlib import Path

from .support import gleitzeit, user_env

CONFIG = '[hubs.llm]\nkind = "ollama"\ndiscovery = ["static"]\nresources = []\n'


def test_a_misspelt_method_is_answered_with_the_closest_one(tmp_path: Path) -> None:
    """``run llm/chta``: exit 1, one line listing the methods and 'did you mean "llm/chat"',
    and no pip advice (gleitzeit-ollama is installed)."""
    (tmp_path / "g.toml").write_text(CONFIG, encoding="utf-8")
    result = gleitzeit(tmp_path, "run", "llm/chta", "--config", "g.toml", "--params", "{}")
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("gleitzeit: unknown method 'llm/chta'")
    assert 'did you mean "llm/chat"?' in lines[0]
    assert "pip install" not in lines[0]


def test_a_method_of_a_disabled_plugin_says_what_disabled_it(tmp_path: Path) -> None:
    """``run python/execute`` with the docker plugin installed but disabled by
    ``GLEITZEIT_DISABLED_PLUGINS``: the line says so, not "pip install gleitzeit-docker"."""
    (tmp_path / "g.toml").write_text(CONFIG, encoding="utf-8")
    env = user_env(tmp_path, GLEITZEIT_DISABLED_PLUGINS="docker")
    result = gleitzeit(
        tmp_path, "run", "python/execute", "--config", "g.toml", "--params", "{}", env=env
    )
    assert result.returncode == 1
    assert "'docker' is installed but disabled (GLEITZEIT_DISABLED_PLUGINS)" in result.stderr
    assert "pip install" not in result.stderr
