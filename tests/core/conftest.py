"""Fixtures for core tests: fake installed distributions and the CLI run as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


class Site:
    """A folder on PYTHONPATH holding fake installed distributions with entry points."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def distribution(
        self,
        name: str,
        entry_points: dict[str, dict[str, str]],
        modules: dict[str, str] | None = None,
        version: str = "1.0",
    ) -> None:
        info = self.root / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8"
        )
        lines = []
        for group, entries in entry_points.items():
            lines.append(f"[{group}]")
            lines.extend(f"{key} = {value}" for key, value in entries.items())
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        for module, source in (modules or {}).items():
            path = self.root / (module.replace(".", "/") + ".py")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(source, encoding="utf-8")


@pytest.fixture
def site(tmp_path: Path) -> Site:
    root = tmp_path / "site"
    root.mkdir()
    return Site(root)


Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def gleitzeit(site: Site, tmp_path: Path) -> Run:
    """Run ``gleitzeit ARGS`` in a child process that also sees the fake distributions."""

    def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        child_env = {
            key: value for key, value in os.environ.items() if not key.startswith("GLEITZEIT_")
        }
        child_env["PYTHONPATH"] = str(site.root)
        child_env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
        child_env.update(env or {})
        return subprocess.run(
            [sys.executable, "-m", "gleitzeit_core", *args],
            capture_output=True,
            text=True,
            env=child_env,
            timeout=60,
            check=False,
        )

    return run


def listed(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The plugins of ``plugins list --json`` by name."""
    assert result.returncode == 0, result.stderr
    return {p["name"]: p for p in json.loads(result.stdout)["plugins"]}
