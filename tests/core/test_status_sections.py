"""Status sections: plugins add top-level keys to the runtime's status (and so to
``/gleitzeit/status`` and ``gleitzeit status``) without the core knowing what they hold."""

from __future__ import annotations

import types
from typing import Any

import pytest
from rich.console import Console

from gleitzeit_core import hookimpl
from gleitzeit_core._plugins import PluginManager
from gleitzeit_core._runtime import Runtime
from gleitzeit_core._status import to_json
from gleitzeit_core._status_view import status_tables
from gleitzeit_core.testing import echo


def _runtime(*plugins: tuple[Any, str]) -> Runtime:
    manager = PluginManager(autoload=False)
    manager.load()
    manager.add(echo, "echo")
    for plugin, name in plugins:
        manager.add(plugin, name)
    config = {"hubs": {"e": {"kind": "echo", "resources": [{"url": "echo://a"}]}}}
    return Runtime.from_config(config, plugins=manager)


def _section_plugin() -> types.SimpleNamespace:
    counter = {"calls": 0}

    @hookimpl
    def gleitzeit_startup(runtime: Any) -> None:
        def produce() -> dict[str, Any]:
            counter["calls"] += 1
            return {"fast": {"requests": counter["calls"], "p50_ms": 1.5}, "mode": "on"}

        runtime.add_status_section("lanes", produce)

    return types.SimpleNamespace(gleitzeit_startup=gleitzeit_startup)


async def test_a_plugin_section_is_a_top_level_key_computed_per_status() -> None:
    """A section added at startup appears as its own top-level key of the status JSON, next to
    the core's keys, and is computed afresh for each status; the table view shows it."""
    async with _runtime((_section_plugin(), "lanes")) as runtime:
        first = to_json(runtime.status())
        second = to_json(runtime.status())
    assert {"version", "hubs", "providers", "plugins", "lanes"} <= set(first)
    assert "sections" not in first
    assert first["lanes"]["fast"]["requests"] == 1
    assert second["lanes"]["fast"]["requests"] == 2
    console = Console(width=160, record=True)
    for table in status_tables(second):
        console.print(table)
    text = console.export_text()
    assert "lanes" in text
    assert "mode: on" in text


async def test_core_keys_are_refused_and_a_broken_section_does_not_break_the_status() -> None:
    """A section may not take a core key; one whose producer raises shows the error instead
    of taking the whole status down."""
    async with _runtime() as runtime:
        with pytest.raises(ValueError, match="'hubs'"):
            runtime.add_status_section("hubs", dict)

        def broken() -> Any:
            raise RuntimeError("no numbers today")

        runtime.add_status_section("broken", broken)
        data = to_json(runtime.status())
    assert data["broken"] == {"error": "RuntimeError: no numbers today"}
    assert data["hubs"][0]["name"] == "e"


def test_a_flat_section_shows_one_row_per_key() -> None:
    """A section of plain values (the gateway's: draining, in flight, ...) is shown as a row
    per key with its value, not as an empty table with the values crammed under it."""
    data = {"version": "x", "hubs": [], "providers": {}, "plugins": {}}
    data["gateway"] = {"draining": False, "in_flight": 3, "last_reload": None}
    console = Console(width=80, record=True)
    for table in status_tables(data):
        console.print(table)
    lines = console.export_text().splitlines()
    assert any("draining" in line and "False" in line for line in lines)
    assert any("in flight" in line and "3" in line for line in lines)
    assert any("last reload" in line and "-" in line for line in lines)
