"""``gleitzeit plugins disable|enable`` write the user config without being redirected: a
symlinked user config (dotfiles) is written through and stays a link, and a link an attacker
planted at a predictable temporary name next to it is neither followed nor used."""

from __future__ import annotations

from pathlib import Path

from .conftest import Run


def test_plugins_disable_writes_through_a_symlinked_user_config(
    gleitzeit: Run, tmp_path: Path
) -> None:
    """The user config is a link into a dotfiles folder: ``plugins disable`` updates the
    linked file (keeping its mode), the link stays a link, and ``plugins list`` reads it."""
    dotfiles = tmp_path / "dotfiles"
    dotfiles.mkdir()
    real = dotfiles / "gleitzeit.toml"
    real.write_text("[plugins]\ndisabled = []\n", encoding="utf-8")
    real.chmod(0o644)
    folder = tmp_path / "xdg" / "gleitzeit"
    folder.mkdir(parents=True)
    link = folder / "config.toml"
    link.symlink_to(real)
    result = gleitzeit("plugins", "disable", "breaker-window")
    assert result.returncode == 0, result.stderr
    assert link.is_symlink()
    assert "breaker-window" in real.read_text(encoding="utf-8")
    assert real.stat().st_mode & 0o777 == 0o644
    listed = gleitzeit("plugins", "list")
    assert "disabled by the user config" in listed.stdout


def test_a_planted_temporary_link_does_not_redirect_the_write(
    gleitzeit: Run, tmp_path: Path
) -> None:
    """Links at ``config.toml.tmp`` (the name a naive atomic write would use) pointing at
    another file: ``plugins disable`` and ``enable`` leave that file as it was, and the user
    config holds the setting."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n", encoding="utf-8")
    folder = tmp_path / "xdg" / "gleitzeit"
    folder.mkdir(parents=True)
    for name in ("config.toml.tmp", ".config.toml.tmp"):
        (folder / name).symlink_to(victim)
    assert gleitzeit("plugins", "disable", "breaker-window").returncode == 0
    user = folder / "config.toml"
    assert not user.is_symlink()
    assert "breaker-window" in user.read_text(encoding="utf-8")
    assert gleitzeit("plugins", "enable", "breaker-window").returncode == 0
    assert "breaker-window" not in user.read_text(encoding="utf-8")
    assert victim.read_text(encoding="utf-8") == "precious\n"
