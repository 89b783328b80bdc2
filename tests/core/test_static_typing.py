"""What a plugin author's type checker sees of an installation made by scripts/setup.sh."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from tests.core.test_import_contracts import _distributions


def test_mypy_finds_every_installed_package_from_any_folder(tmp_path: Path) -> None:
    """``mypy --strict`` run in a folder outside the checkout (a plugin author's own
    project) finds ``gleitzeit_core``, ``gleitzeit_core.testing`` and every installed
    first-party package as typed packages: the editable installs are visible to static tools
    (``editable_mode=compat``, not setuptools' import hook, which only Python runs) and every
    package ships ``py.typed``."""
    packages = ["gleitzeit_core", "gleitzeit_core.testing"] + [
        package
        for folder_packages in _distributions().values()
        for package in folder_packages
        if importlib.util.find_spec(package) is not None  # a tox env installs only some
    ]
    probe = tmp_path / "probe.py"
    probe.write_text("".join(f"import {name}\n" for name in packages), encoding="utf-8")
    env = {key: value for key, value in os.environ.items() if key != "MYPYPATH"}
    command = [sys.executable, "-m", "mypy", "--strict", "--follow-imports=skip"]
    command += ["--no-incremental", "--config-file=", "--no-error-summary", str(probe)]
    result = subprocess.run(
        command,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert len(packages) > 8
    assert result.returncode == 0, result.stdout + result.stderr
