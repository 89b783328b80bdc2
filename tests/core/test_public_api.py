"""The plugin author's API: docs/plugins.md lists exactly ``gleitzeit_core.__all__``, every
name imports, and the first-party plugins and examples import nothing else of the core."""

from __future__ import annotations

import importlib
import inspect
import re
import sys
import typing
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import gleitzeit_core
from gleitzeit_core._plugins import private_core_imports

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


def test_plugins_and_examples_import_only_the_public_api() -> None:
    """No shipped module of a plugin, contrib package or example (scripts included, which
    import-linter does not see) imports a core module but ``gleitzeit_core`` and
    ``gleitzeit_core.testing``, also not as ``from gleitzeit_core import _private``: the
    check ``gleitzeit plugins list`` runs on third-party plugins finds nothing here."""
    paths = []
    for top in ("plugins", "contrib", "examples"):
        for path in sorted((ROOT / top).rglob("*.py")):
            parts = path.relative_to(ROOT).parts
            if "tests" in parts or any(p.endswith(".egg-info") for p in parts):
                continue
            paths.append(path)
    assert len(paths) > 50
    assert private_core_imports(paths) == []


def _core_namespace() -> dict[str, object]:
    """Every module-level name of every core module: what an annotation written under
    ``TYPE_CHECKING`` (``Runtime`` in the gateway's) refers to."""
    namespace: dict[str, object] = {}
    for path in sorted((ROOT / "gleitzeit_core").glob("_[a-z]*.py")):
        module = importlib.import_module(f"gleitzeit_core.{path.stem}")
        namespace.update(vars(module))
    return namespace


def _private_types_in(annotation: object, scope: dict[str, object]) -> set[str]:
    """The core's non-public classes an annotation names (strings are read name by name, so
    one that cannot be evaluated at run time is still checked)."""
    found: set[str] = set()
    if isinstance(annotation, str):
        for dotted in re.findall(r"[A-Za-z_][A-Za-z0-9_.]*", annotation):
            head, *rest = dotted.split(".")
            value = scope.get(head)
            for part in rest:
                value = getattr(value, part, None)
            found |= _private_types_in(value, {}) if isinstance(value, type) else set()
        return found
    if isinstance(annotation, type):
        module = annotation.__module__
        if module.startswith("gleitzeit_core") and annotation.__name__ not in _PUBLIC:
            found.add(f"{module}.{annotation.__qualname__}")
    for arg in typing.get_args(annotation):
        found |= _private_types_in(arg, scope)
    return found


_PUBLIC = set(gleitzeit_core.__all__)


def _signatures(obj: object) -> Iterator[tuple[str, Callable[..., object] | type]]:
    if inspect.isclass(obj):
        yield "", obj
        for attribute, member in vars(obj).items():
            if attribute.startswith("_") and attribute != "__init__":
                continue
            function = member.__func__ if isinstance(member, classmethod | staticmethod) else member
            function = function.fget if isinstance(function, property) else function
            if inspect.isfunction(function):
                yield f".{attribute}", function
    elif inspect.isfunction(obj):
        yield "", obj


def test_every_type_in_a_public_signature_is_public() -> None:
    """A plugin author can name every type the public API hands out or asks for: the
    parameters, return values and fields of every ``__all__`` function and class (its public
    methods and properties), and the core classes a public class derives from, are in
    ``__all__`` themselves (a non-public one, such as the gateway's ``ConnectionGuard``,
    stays behind a private function)."""
    core = _core_namespace()
    offenders: dict[str, set[str]] = {}
    for name in sorted(_PUBLIC):
        obj = getattr(gleitzeit_core, name)
        if inspect.isclass(obj):
            for base in obj.__mro__[1:]:
                if base.__module__.startswith("gleitzeit_core") and base.__name__ not in _PUBLIC:
                    offenders.setdefault(f"{base.__module__}.{base.__name__}", set()).add(name)
        for member, function in _signatures(obj):
            scope = {**core, **getattr(function, "__globals__", vars(sys.modules[obj.__module__]))}
            for annotation in inspect.get_annotations(function).values():
                for private in _private_types_in(annotation, scope):
                    offenders.setdefault(private, set()).add(f"{name}{member}")
    assert offenders == {}, "\n".join(
        f"{private} appears in {', '.join(sorted(where))}: add it to __all__ (and "
        "docs/plugins.md) or keep it out of the public signatures"
        for private, where in sorted(offenders.items())
    )
