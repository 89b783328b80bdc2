"""The plugin author's API: docs/plugins.md lists exactly ``gleitzeit_core.__all__``, every
name imports, and the first-party plugins and examples import nothing else of the core."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import gleitzeit_core

ROOT = Path(__file__).resolve().parents[2]


def _documented() -> list[str]:
    text = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
    section = text.split("<!-- api:begin -->", 1)[1].split("<!-- api:end -->", 1)[0]
    names: list[str] = []
    for line in section.splitlines()[2:]:  # past the table's header
        cells = line.split("|")
        if len(cells) > 2:
            listed = re.sub(r"\([^)]*\)", "", cells[2])  # what a name is, in parentheses
            names += re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", listed)
    return names


def test_docs_list_exactly_the_public_api_and_every_name_imports() -> None:
    """Every name docs/plugins.md documents imports from ``gleitzeit_core`` (``from
    gleitzeit_core import X`` as a plugin writes it), none twice, and together they are
    ``__all__``: nothing public is undocumented, nothing documented is missing."""
    documented = _documented()
    assert len(documented) == len(set(documented)), "a name is listed twice"
    namespace: dict[str, object] = {}
    for name in documented:
        exec(f"from gleitzeit_core import {name}", namespace)
        assert namespace[name] is not None
    assert sorted(documented) == sorted(gleitzeit_core.__all__)


def test_every_public_name_is_defined_where_the_package_says() -> None:
    """``dir(gleitzeit_core)`` is ``__all__`` and each name resolves (the lazy table and the
    names agree); an unknown name is an ``AttributeError`` naming it."""
    assert dir(gleitzeit_core) == sorted(gleitzeit_core.__all__)
    for name in gleitzeit_core.__all__:
        assert getattr(gleitzeit_core, name) is not None
    with pytest.raises(AttributeError, match="HealthMonitor"):  # runtime machinery
        getattr(gleitzeit_core, "HealthMonitor")  # noqa: B009


def _core_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append(node.module)
            # `from gleitzeit_core import _hub` imports the private module gleitzeit_core._hub
            found += [
                f"{node.module}.{alias.name}"
                for alias in node.names
                if alias.name.startswith("_") and not alias.name.startswith("__")
            ]
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
    return [m for m in found if m.split(".")[0] == "gleitzeit_core"]


def test_plugins_and_examples_import_only_the_public_api() -> None:
    """No shipped module of a plugin, contrib package or example (scripts included, which
    import-linter does not see) imports a core module but ``gleitzeit_core`` and
    ``gleitzeit_core.testing``, also not as ``from gleitzeit_core import _private``."""
    allowed = ("gleitzeit_core", "gleitzeit_core.testing")
    offenders = []
    for top in ("plugins", "contrib", "examples"):
        for path in sorted((ROOT / top).rglob("*.py")):
            parts = path.relative_to(ROOT).parts
            if "tests" in parts or any(p.endswith(".egg-info") for p in parts):
                continue
            for module in _core_imports(path):
                if module not in allowed and not module.startswith("gleitzeit_core.testing."):
                    offenders.append(f"{path.relative_to(ROOT)}: {module}")
    assert offenders == []
