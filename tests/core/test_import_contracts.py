"""The import-linter contracts (pyproject.toml) and tox's ``all`` environment list every
plugin, contrib and example package that exists: a new one cannot slip past them."""

from __future__ import annotations

import configparser
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# the legacy shim's old import name: the same distribution as gleitzeit_legacy, which it
# re-exports, so it is no independent plugin (the other contracts hold it like any other)
NOT_INDEPENDENT = {"gleitzeit": "plugins/legacy"}


def _distributions() -> dict[str, list[str]]:
    """Each plugin, contrib and example folder with a pyproject.toml -> its top-level
    packages (folders with an ``__init__.py``, tests aside)."""
    found: dict[str, list[str]] = {}
    for top in ("plugins", "contrib", "examples"):
        for folder in sorted((ROOT / top).iterdir()):
            if not (folder / "pyproject.toml").is_file():
                continue
            found[f"{top}/{folder.name}"] = sorted(
                package.parent.name
                for package in folder.glob("*/__init__.py")
                if package.parent.name != "tests"
            )
    return found


def _missing(listed: list[str], where: str, exclude: frozenset[str] = frozenset()) -> list[str]:
    wanted = {
        package: folder
        for folder, packages in _distributions().items()
        for package in packages
        if package not in exclude
    }
    problems = [
        f"{folder} has the package {package}: add it to {where}"
        for package, folder in sorted(wanted.items())
        if package not in listed
    ]
    problems += [
        f"{where} lists {name}, which no plugin, contrib or example folder has: remove it"
        for name in sorted(set(listed) - set(wanted) - {"gleitzeit_core"} - exclude)
    ]
    return problems


def test_the_import_contracts_list_every_package_there_is() -> None:
    """Every top-level package of every plugin, contrib and example folder is a root package
    of import-linter, forbidden to the core, held to the public API and (but the legacy
    shim's old name) independent of the others; and nothing is listed that does not exist.
    A failure names the folder, the package and the list to add it to."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    linter = config["tool"]["importlinter"]
    contracts = {c["name"]: c for c in linter["contracts"]}
    assert len(contracts) == 3
    core = next(c for c in contracts.values() if c.get("source_modules") == ["gleitzeit_core"])
    independence = next(c for c in contracts.values() if c["type"] == "independence")
    public = next(
        c for c in contracts.values() if c.get("forbidden_modules") == ["gleitzeit_core.*"]
    )
    section = "pyproject.toml [tool.importlinter]"
    problems = _missing(linter["root_packages"], f"{section} root_packages")
    assert "gleitzeit_core" in linter["root_packages"]
    problems += _missing(core["forbidden_modules"], f"{section} {core['name']!r} forbidden_modules")
    problems += _missing(
        independence["modules"],
        f"{section} {independence['name']!r} modules",
        exclude=frozenset(NOT_INDEPENDENT),
    )
    problems += _missing(public["source_modules"], f"{section} {public['name']!r} source_modules")
    assert problems == [], "\n".join(problems)


def test_tox_all_installs_every_plugin_contrib_and_example() -> None:
    """``tox -e all`` installs every plugin, contrib and example folder (editable), so its
    tests can import what they test; a folder it lacks is named."""
    tox = configparser.ConfigParser(interpolation=None)
    tox.read(ROOT / "tox.ini", encoding="utf-8")
    installed = {
        line.strip().removeprefix("-e ").strip()
        for line in tox["testenv:all"]["deps"].splitlines()
        if line.strip().startswith("-e ")
    }
    missing = sorted(set(_distributions()) - installed)
    assert missing == [], f"add `-e FOLDER` to [testenv:all] deps in tox.ini for {missing}"
