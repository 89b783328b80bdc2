"""``gleitzeit migrate-config`` of an old config with a value the new config refuses (the old
code took any ``url``): a config error (exit 2), naming the old file and the refused key, with
what to do; no "<config>" placeholder, no file written."""

from __future__ import annotations

from pathlib import Path

from .support import gleitzeit

OLD = """\
providers:
  ollama_pool:
    instances:
      - id: local
        url: http://127.0.0.1:11434
      - id: other
        url: not a url
"""


def test_a_refused_old_value_is_a_config_error_naming_the_old_file(tmp_path: Path) -> None:
    """Exit 2; each stderr line starts with ``gleitzeit: migrate-config:``; the refused URL is
    named with its new key and the old file; the output file is not written."""
    (tmp_path / "old.yaml").write_text(OLD, encoding="utf-8")
    result = gleitzeit(tmp_path, "migrate-config", "old.yaml", "-o", "new.toml", "--no-env")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert all(line.startswith("gleitzeit: migrate-config: ") for line in lines), lines
    assert "old.yaml" in lines[0]
    assert "hubs.ollama_pool.resources[1].url" in lines[0]
    assert "<config>" not in result.stderr
    assert "correct these values in old.yaml" in result.stderr
    assert not (tmp_path / "new.toml").exists()
