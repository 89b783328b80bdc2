"""Runtime.reload: a config file re-read while calls run is applied whole (resources added,
drained, changed; strategy, breaker, timeouts) or not at all (every problem with its key path),
and what only a restart can change is listed, not applied."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from gleitzeit_core._errors import ResourceError
from gleitzeit_core._plugins import PluginManager
from gleitzeit_core._runtime import Runtime
from gleitzeit_core.testing import echo


def _toml(
    resources: dict[str, float],
    *,
    strategy: str = "round_robin",
    breaker: str = "",
    extra: str = "",
    retries: int = 2,
) -> str:
    lines = ["[hubs.e]", 'kind = "echo"', f'strategy = "{strategy}"', f"retries = {retries}"]
    if breaker:
        lines.append(f"breaker = {breaker}")
    lines += ["[hubs.e.health]", "interval = 0.05"]
    for rid, weight in resources.items():
        lines += ["[[hubs.e.resources]]", f'id = "{rid}"', f'url = "echo://{rid}"']
        lines.append(f"weight = {weight}")
    return "\n".join(lines) + "\n" + extra


@pytest.fixture
async def started(tmp_path: Path) -> Any:
    """``await started(text)`` -> (config path, started runtime over the echo hub)."""
    runtimes: list[Runtime] = []

    async def start(text: str) -> tuple[Path, Runtime]:
        manager = PluginManager(allow=["breaker-consecutive"])
        manager.load()
        manager.add(echo, "echo")
        path = tmp_path / "gleitzeit.toml"
        path.write_text(text, encoding="utf-8")
        runtime = Runtime.from_config(path, plugins=manager)
        await runtime.start()
        runtimes.append(runtime)
        return path, runtime

    yield start
    for runtime in runtimes:
        await runtime.stop()


def _say(delay: float = 0.0) -> dict[str, Any]:
    return {"text": "hi", "delay": delay}


async def test_resources_are_added_drained_and_changed_without_failing_a_call(
    started: Any,
) -> None:
    """Removing ``a`` while calls run on it lets them finish, then ``a`` leaves and gets no
    more calls; the added ``c`` gets calls at once; ``b``'s new weight shows."""
    path, runtime = await started(_toml({"a": 1.0, "b": 1.0}))
    hub = runtime.hubs["e"]
    calls = [asyncio.create_task(runtime.execute("echo/say", _say(0.3))) for _ in range(6)]
    await asyncio.sleep(0.05)
    on_a = hub.get("a").in_flight
    assert on_a > 0
    path.write_text(_toml({"b": 2.0, "c": 1.0}), encoding="utf-8")
    report = await runtime.reload()
    assert report.ok, report.problems
    assert f"hubs.e.resources: removed a (draining {on_a} call(s))" in report.applied
    assert "hubs.e.resources: added c (echo://c)" in report.applied
    assert "hubs.e.resources: changed b" in report.applied
    assert "a" in hub  # still draining its calls
    results = await asyncio.gather(*calls)
    assert [r["resource"] for r in results].count("a") == on_a  # none failed over or failed
    for _ in range(100):
        if "a" not in hub:
            break
        await asyncio.sleep(0.01)
    assert "a" not in hub
    after = [(await runtime.execute("echo/say", _say()))["resource"] for _ in range(10)]
    assert set(after) == {"b", "c"}
    assert hub.get("b").weight == 2.0


async def test_a_config_with_mistakes_changes_nothing_and_names_every_key_path(
    started: Any,
) -> None:
    """A reload of a file with a bad weight and an unknown strategy reports both with their
    key paths and leaves resources, strategy and the config object as they were."""
    path, runtime = await started(_toml({"a": 1.0, "b": 1.0}))
    before = runtime.config
    path.write_text(_toml({"a": 1.0, "b": -1.0, "c": 1.0}, strategy="nope"), encoding="utf-8")
    report = await runtime.reload()
    assert not report.ok
    assert any(p.startswith("hubs.e.resources[1].weight") for p in report.problems)
    assert any(p.startswith("hubs.e.strategy") for p in report.problems)
    assert runtime.config is before
    assert runtime.last_reload is report
    hub = runtime.hubs["e"]
    assert [r.id for r in hub.resources] == ["a", "b"]
    assert hub.strategy_name == "round_robin"
    path.write_text("[hubs.e\n", encoding="utf-8")  # not even TOML
    report = await runtime.reload()
    assert not report.ok
    assert "not valid TOML" in report.problems[0]


async def test_strategy_breaker_and_timeouts_apply_and_calls_in_flight_keep_their_breaker(
    started: Any,
) -> None:
    """A new strategy, breaker and retries apply to the next call; a call admitted by the
    old breaker reports its outcome (here a failure) to that breaker, not to the new one,
    which counts from zero."""
    path, runtime = await started(_toml({"a": 1.0}))
    hub = runtime.hubs["e"]
    old_breaker = hub.get("a").breaker
    failing = {**_say(0.3), "fail": "server_error"}
    slow = asyncio.create_task(runtime.execute("echo/say", failing))
    await asyncio.sleep(0.05)
    path.write_text(
        _toml(
            {"a": 1.0},
            strategy="p2c",
            breaker='{ kind = "consecutive", failures = 1, open_for = 60.0 }',
            retries=0,
        ),
        encoding="utf-8",
    )
    report = await runtime.reload()
    assert report.ok, report.problems
    assert hub.strategy_name == "p2c"
    assert hub.retries == 0
    new_breaker = hub.get("a").breaker
    assert new_breaker is not old_breaker
    assert type(new_breaker).__name__ == "ConsecutiveFailuresBreaker"
    with pytest.raises(ResourceError, match="told to fail"):
        await slow
    assert new_breaker.state.value == "closed"
    with pytest.raises(ResourceError, match="told to fail"):
        await runtime.execute("echo/say", {"text": "x", "fail": "server_error"})
    assert new_breaker.state.value == "open"  # failures = 1: the new settings count


async def test_what_needs_a_restart_is_listed_and_the_rest_applies(started: Any) -> None:
    """A new hub, a hub's health settings and the gateway's port are not changed by a
    reload: they are listed under restart_needed, and the rest of the file applies."""
    path, runtime = await started(_toml({"a": 1.0}))
    text = _toml(
        {"a": 1.0, "b": 1.0},
        extra='[gateway]\nport = 12345\n[hubs.f]\nkind = "echo"\n',
    ).replace("interval = 0.05", "interval = 0.5")
    path.write_text(text, encoding="utf-8")
    report = await runtime.reload()
    assert report.ok, report.problems
    assert set(report.restart_needed) == {"gateway.port", "hubs.f", "hubs.e.health"}
    assert "f" not in runtime.hubs
    assert "b" in runtime.hubs["e"]


async def test_a_restart_only_change_reverted_in_the_file_needs_no_restart(started: Any) -> None:
    """restart_needed compares the file with what the process started with: a port changed by
    one reload is listed, and once the file has the old port again nothing is (the process
    still listens there), while a refused file in between keeps the earlier answer."""
    original = _toml({"a": 1.0})
    path, runtime = await started(original)
    path.write_text(original + "[gateway]\nport = 12345\n", encoding="utf-8")
    assert (await runtime.reload()).restart_needed == ["gateway.port"]
    path.write_text("[gateway\n", encoding="utf-8")  # caught half-written
    refused = await runtime.reload()
    assert not refused.ok
    assert refused.restart_needed == ["gateway.port"]
    path.write_text(original, encoding="utf-8")
    report = await runtime.reload()
    assert report.ok, report.problems
    assert report.restart_needed == []


async def test_a_hub_that_left_the_file_and_came_back_gets_its_changes(started: Any) -> None:
    """A hub removed from the file keeps running (restart needed); when the file brings it
    back with another resource, that resource joins as it would in any hub."""
    with_f = _toml({"a": 1.0}) + '[hubs.f]\nkind = "echo"\n'
    with_f += '[[hubs.f.resources]]\nid = "f1"\nurl = "echo://f1"\n'
    path, runtime = await started(with_f)
    path.write_text(_toml({"a": 1.0}), encoding="utf-8")
    gone = await runtime.reload()
    assert gone.ok
    assert gone.restart_needed == ["hubs.f"]
    assert "f" in runtime.hubs
    back = with_f + '[[hubs.f.resources]]\nid = "f2"\nurl = "echo://f2"\n'
    path.write_text(back, encoding="utf-8")
    report = await runtime.reload()
    assert report.ok, report.problems
    assert report.restart_needed == []
    assert "hubs.f.resources: added f2 (echo://f2)" in report.applied
    assert "f2" in runtime.hubs["f"]


async def test_a_runtime_built_from_a_dict_has_nothing_to_reread() -> None:
    """Reload of a runtime made from a dict says so, and changes nothing."""
    manager = PluginManager(autoload=False)
    manager.load()
    manager.add(echo, "echo")
    config = {"hubs": {"e": {"kind": "echo", "resources": [{"url": "echo://a"}]}}}
    async with Runtime.from_config(config, plugins=manager) as runtime:
        report = await runtime.reload()
    assert not report.ok
    assert report.problems == ["config: not started from a config file; start with --config FILE"]
