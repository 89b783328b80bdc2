"""Item 7: the shim ships a top-level ``gleitzeit`` package; with the original ``gleitzeit``
distribution installed too, importing it and ``gleitzeit plugins list`` say so, and which of
the two ``import gleitzeit`` gets - instead of one silently shadowing the other. (The original
is stood in for by its metadata, and in the shadowing case its package, on ``PYTHONPATH``.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def _original(root: Path, *, with_package: bool) -> Path:
    info = root / "gleitzeit-0.0.4.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: gleitzeit\nVersion: 0.0.4\n", encoding="utf-8"
    )
    if with_package:
        (root / "gleitzeit").mkdir()
        (root / "gleitzeit" / "__init__.py").write_text("ORIGINAL = True\n", encoding="utf-8")
    return root


def _run(
    args: list[str], pythonpath: Path | None, tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLEITZEIT_")}
    env |= {"GLEITZEIT_LOAD_PLUGINS": "ollama,legacy", "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    env.pop("PYTHONPATH", None)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run(
        [sys.executable, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


IMPORT = ["-W", "always", "-c", "import gleitzeit, sys; print(gleitzeit.__file__)"]
PLUGINS = ["-m", "gleitzeit_core", "plugins", "list"]
PLUGINS_JSON = [*PLUGINS, "--json"]
START = [
    "-W",
    "always",
    "-c",
    "import asyncio, gleitzeit; from gleitzeit_core import Runtime\n"
    "print(gleitzeit.__file__)\n"
    "async def main():\n"
    "    async with Runtime.from_config({}):\n"
    "        pass\n"
    "asyncio.run(main())",
]


def test_alone_no_note(tmp_path: Path) -> None:
    """Without the original distribution, importing is silent and the plugin list has no note."""
    imported = _run(IMPORT, None, tmp_path)
    assert imported.returncode == 0, imported.stderr
    assert "ShadowWarning" not in imported.stderr
    listed = _run(PLUGINS_JSON, None, tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert '"notes": []' in listed.stdout
    assert "original gleitzeit" not in listed.stdout


def test_both_installed_shim_wins(tmp_path: Path) -> None:
    """The original's metadata next to the shim: ``import gleitzeit`` warns naming both, the
    version and the fix; ``gleitzeit plugins list`` shows the same note for ``legacy``."""
    root = _original(tmp_path / "site", with_package=False)
    imported = _run(IMPORT, root, tmp_path)
    assert imported.returncode == 0, imported.stderr
    assert "ShadowWarning" in imported.stderr
    assert "the original gleitzeit 0.0.4 is installed too" in imported.stderr
    assert "pip uninstall gleitzeit-legacy" in imported.stderr
    assert "plugins/legacy/gleitzeit" in imported.stdout  # the shim's package was loaded
    listed = _run(PLUGINS, root, tmp_path)
    assert listed.returncode == 0, listed.stderr
    flat = " ".join(listed.stdout.split())
    assert "note (legacy): the original gleitzeit 0.0.4 is installed too" in flat


@pytest.mark.parametrize("args", [PLUGINS, START])
def test_original_shadows_the_shim(tmp_path: Path, args: list[str]) -> None:
    """The original's package ahead on the path: the shim's own import warning cannot run,
    so the plugin list says the original shadows the shim and where ``import gleitzeit``
    goes, and a runtime starting with the shim's plugin warns the same."""
    root = _original(tmp_path / "site", with_package=True)
    done = _run(args, root, tmp_path)
    assert done.returncode == 0, done.stderr
    if args is START:
        assert str(root / "gleitzeit") in done.stdout  # what old code really gets
        assert "ShadowWarning" in done.stderr
        assert "the original gleitzeit 0.0.4 shadows the shim" in done.stderr
        return
    flat = " ".join(done.stdout.split())
    assert "note (legacy): the original gleitzeit 0.0.4 shadows the shim" in flat
    assert str(root / "gleitzeit" / "__init__.py") in flat
