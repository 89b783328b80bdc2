"""Checks every breaker distribution's packaging must pass: its hook registers a lazy
reference, importing its plugin module imports no breaker code, and its entry point is
installed under the distribution's short name."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points
from types import ModuleType

from gleitzeit_core._registry import resolve_reference

__all__ = ["check_entry_point", "check_lazy_plugin_module", "check_lazy_reference"]


def check_lazy_reference(plugin: ModuleType, name: str, cls: type) -> None:
    registered: list[tuple[str, object]] = []
    plugin.gleitzeit_register_breakers(
        register=lambda item, target: registered.append((item, target))
    )
    assert len(registered) == 1
    item, target = registered[0]
    assert item == name
    assert isinstance(target, str)
    assert resolve_reference(target) is cls


def check_lazy_plugin_module(package: str) -> None:
    code = f"import sys, {package}.plugin; print('{package}.breaker' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def check_entry_point(short: str, package: str) -> None:
    found = {ep.name: ep for ep in entry_points(group="gleitzeit")}
    assert found[short].value == f"{package}.plugin"
    assert found[short].dist is not None
    assert found[short].dist.name == f"gleitzeit-{short}"
