"""``python/validate`` cannot freeze the process that serves everyone else.

Compiling untrusted source used to run on the event loop: 2 MiB of code blocked every other
request for seconds and took hundreds of MiB. Now it is refused above ``validate.max_size``,
and below that it compiles in a worker process with a memory and time limit.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from gleitzeit_core import InvalidParams, Runtime


def _two_mib_of_code() -> str:
    lines, size, i = [], 0, 0
    while size < (2 << 20) - 64:
        line = f"v{i} = [{i}, {i}+1, 'x' * 3, {{'k': {i}}}]\n"
        lines.append(line)
        size += len(line)
        i += 1
    return "".join(lines)


TWO_MIB = _two_mib_of_code()


@pytest_asyncio.fixture
async def make_runtime(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> AsyncIterator[Any]:
    """A runtime with a docker hub whose engine is absent: validation needs none."""
    monkeypatch.setenv("GLEITZEIT_LOAD_PLUGINS", "docker")
    for key in ("GLEITZEIT_CONFIG", "GLEITZEIT_DISABLED_PLUGINS", "GLEITZEIT_STRICT_PLUGINS"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    made: list[Runtime] = []

    async def make(**validate: Any) -> Runtime:
        table = {
            "kind": "docker",
            "engines": [f"unix://{tmp_path / 'nobody.sock'}"],
            "validate": validate,
        }
        runtime = Runtime.from_config({"hubs": {"sandbox": table}})
        made.append(runtime)
        await runtime.start()
        return runtime

    yield make
    for runtime in made:
        await runtime.stop()


async def test_two_mib_of_code_is_refused_before_compiling(make_runtime: Any) -> None:
    """By default (validate.max_size = 1m) 2 MiB of source is refused with InvalidParams
    naming `params.code` and the limit, without starting a compiler; small code is still
    checked normally."""
    runtime = await make_runtime()
    with pytest.raises(InvalidParams) as refused:
        await runtime.execute("python/validate", {"code": TWO_MIB})
    assert "params.code" in str(refused.value)
    assert "validate.max_size" in str(refused.value)
    ok = await runtime.execute("python/validate", {"code": "x = 1"})
    assert ok == {"valid": True, "error": None, "line": None, "column": None}


async def test_a_big_validation_does_not_hold_up_other_requests(make_runtime: Any) -> None:
    """With the limit raised to 4m (and a time limit no loaded machine reaches), 2 MiB of
    code compiles in its worker while another request is served: the small validation is
    answered while the big one is still running (on the event loop, the small one could not
    even start before the big one ended)."""
    runtime = await make_runtime(max_size="4m", timeout=120)  # a loaded machine is slow
    big = asyncio.create_task(runtime.execute("python/validate", {"code": TWO_MIB}))
    await asyncio.sleep(0.05)  # the big one is under way
    small = await runtime.execute("python/validate", {"code": "def f(:\n    pass"})
    assert not big.done()
    assert (small["valid"], small["line"]) == (False, 1)
    result = await big
    assert result["valid"] is True


async def test_a_validation_over_its_time_or_memory_is_stopped(make_runtime: Any) -> None:
    """The worker is killed at validate.timeout and cannot grow past validate.memory; either
    way the answer says so (valid: false) instead of the server stalling or swelling."""
    slow = await make_runtime(max_size="4m", timeout=0.05)
    late = await slow.execute("python/validate", {"code": TWO_MIB})
    assert late["valid"] is False
    assert "validate.timeout" in late["error"]
    small = await make_runtime(max_size="4m", memory="64m")
    starved = await small.execute("python/validate", {"code": TWO_MIB})
    assert starved["valid"] is False
    assert "memory" in starved["error"].lower()
