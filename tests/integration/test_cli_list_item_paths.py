"""Problems with one item of a list setting read like every other config problem, with the
item in the key path (``hubs.sb.engines[1]: ...``), whether a type check or a plugin's own
check found them: the one format docs/configuration.md promises."""

from __future__ import annotations

from pathlib import Path

from .support import gleitzeit


def test_a_bad_engine_url_and_a_bad_profile_name_name_their_item(tmp_path: Path) -> None:
    """A Docker hub's second engine URL and a ``client_profiles`` entry: each line is
    ``gleitzeit: FILE: hubs.NAME.KEY[i]: expected ..., got "VALUE"``, exit 2."""
    (tmp_path / "a.toml").write_text(
        '[hubs.sb]\nkind = "docker"\nengines = ["unix:///var/run/docker.sock", "not-a-url"]\n',
        encoding="utf-8",
    )
    (tmp_path / "b.toml").write_text(
        '[hubs.sb]\nkind = "docker"\nclient_profiles = ["nope"]\n', encoding="utf-8"
    )
    engines = gleitzeit(tmp_path, "config", "check", "a.toml")
    assert engines.returncode == 2
    assert engines.stderr.splitlines()[0] == (
        "gleitzeit: a.toml: hubs.sb.engines[1]: expected an engine URL such as "
        'unix:///var/run/docker.sock or tcp://host:2375, got "not-a-url"'
    )
    profiles = gleitzeit(tmp_path, "config", "check", "b.toml")
    assert profiles.returncode == 2
    assert profiles.stderr.startswith("gleitzeit: b.toml: hubs.sb.client_profiles[0]: 'nope'")
