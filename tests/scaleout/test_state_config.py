"""The ``[state]`` section is checked like every other: ``gleitzeit config check`` and a
reload find its mistakes (a rolling restart must not be the first to), and never repeat the
Redis password they were given."""

from __future__ import annotations

from pathlib import Path

from gleitzeit_core import Runtime
from gleitzeit_core._checking import check_config

HUB = '[hubs.e]\nkind = "echo"\n[[hubs.e.resources]]\nid = "a"\nurl = "echo://a"\n'
BAD_URL = '[state]\nbackend = "redis"\nurl = "http://gw:hunter2secret@127.0.0.1:1/0"\n'
BAD_KEY = '[state]\nbackend = "redis"\nurl = "redis://127.0.0.1:1/0"\nop_timout = 1\n'


def test_config_check_finds_mistakes_in_the_state_section(tmp_path: Path) -> None:
    """A wrong URL scheme and an unknown key under [state] are problems with their key path
    (the password in the URL is not repeated); a valid section is none."""
    path = tmp_path / "gleitzeit.toml"
    path.write_text(BAD_URL)
    error = check_config(path)
    assert error is not None
    text = "\n".join(error.problems)
    assert "state.url: expected a redis://, rediss:// or unix:// URL" in text
    assert "hunter2secret" not in text
    path.write_text(BAD_KEY)
    error = check_config(path)
    assert error is not None
    assert any(line.startswith("state.op_timout: unknown key") for line in error.problems)
    path.write_text('[state]\nbackend = "redis"\nurl = "rediss://u:p@127.0.0.1:1/0"\n')
    assert check_config(path) is None


async def test_a_reload_refuses_a_state_section_the_next_start_would_refuse(
    tmp_path: Path,
) -> None:
    """A reload of a file whose [state] section is wrong is refused with the key path (it
    would be accepted as restart_needed, and the next restart would fail), and the problem
    shown in the status carries no password."""
    from gleitzeit_core._plugins import PluginManager
    from gleitzeit_core.testing import echo

    manager = PluginManager(allow=["redis"])
    manager.load()
    manager.add(echo, "echo")
    path = tmp_path / "gleitzeit.toml"
    path.write_text(HUB)
    runtime = Runtime.from_config(path, plugins=manager)
    await runtime.start()
    try:
        path.write_text(HUB + BAD_URL)
        report = await runtime.reload()
        assert not report.ok
        assert any(line.startswith("state.url: ") for line in report.problems)
        assert "hunter2secret" not in str(report.to_json())
    finally:
        await runtime.stop()
