"""python/v1 through the runtime: results, args and files, concurrency, validate, info, batch."""

from __future__ import annotations

import asyncio
import base64
import hashlib

import pytest

from gleitzeit_core import InvalidParams, Runtime

from .conftest import MakeRuntime, hub_config

pytestmark = [pytest.mark.docker, pytest.mark.asyncio(loop_scope="session")]

BINARY = bytes(range(256)) * 16 + b"\x00\xff\r\n"
RESULT_KEYS = {
    "success", "stdout", "stderr", "exit_code", "result", "error",
    "duration_ms", "truncated", "container_id", "engine", "path",
}  # fmt: skip


async def test_stdout_stderr_exit_code_and_result(shared: Runtime) -> None:
    """A successful run returns stdout, stderr, exit code 0, the JSON result and which
    engine and container ran it; a failing one says plainly why."""
    code = "import sys\nprint('hello')\nprint('oops', file=sys.stderr)\nresult = {'n': [1, 2.5]}"
    out = await shared.execute("python/execute", {"code": code})
    assert set(out) == RESULT_KEYS
    assert (out["success"], out["stdout"], out["stderr"], out["exit_code"]) == (
        True, "hello\n", "oops\n", 0,
    )  # fmt: skip
    assert out["result"] == {"n": [1, 2.5]}
    assert out["error"] is None
    assert out["engine"] == shared.hubs["sandbox"].resources[0].id
    assert out["container_id"]
    assert out["path"] == "runner"

    out = await shared.execute("python/execute", {"code": "import sys\nprint('bye')\nsys.exit(3)"})
    assert (out["success"], out["exit_code"], out["error"], out["stdout"]) == (
        False, 3, "exit code 3", "bye\n",
    )  # fmt: skip
    out = await shared.execute("python/execute", {"code": "raise ValueError('bad value')"})
    assert (out["exit_code"], out["error"]) == (1, "exit code 1: ValueError: bad value")
    assert "Traceback" in out["stderr"]


async def test_args_and_files_arrive_intact(shared: Runtime) -> None:
    """args (any JSON) is the global `args`; text files and base64 binary files land
    byte-exact in the working directory, and `file` runs one of them."""
    args = {"name": "Grüße ✓", "values": [1, 2, 3], "nested": {"ok": True, "none": None}}
    files = {
        "sub/dir/note.txt": "line 1\nGrüße ✓\n",
        "blob.bin": {"base64": base64.b64encode(BINARY).decode()},
        "main.py": (
            "import hashlib, os\n"
            "data = open('blob.bin', 'rb').read()\n"
            "result = {'args': args, 'text': open('sub/dir/note.txt', encoding='utf-8').read(),\n"
            "          'sha': hashlib.sha256(data).hexdigest(), 'size': len(data)}\n"
        ),
    }
    out = await shared.execute("python/execute", {"file": "main.py", "files": files, "args": args})
    assert out["success"], out
    assert out["result"] == {
        "args": args,
        "text": "line 1\nGrüße ✓\n",
        "sha": hashlib.sha256(BINARY).hexdigest(),
        "size": len(BINARY),
    }


async def test_sixteen_concurrent_executions(make_runtime: MakeRuntime) -> None:
    """16 executions at once (a fresh hub whose pool has room for all) each get their own
    container and their own correct result."""
    runtime = await make_runtime(hub_config("sixteen"))
    code = "import time\ntime.sleep(0.3)\nresult = args * args"
    results = await asyncio.gather(
        *(runtime.execute("python/execute", {"code": code, "args": i}) for i in range(16))
    )
    assert [r["result"] for r in results] == [i * i for i in range(16)]
    assert all(r["success"] for r in results)
    assert len({r["container_id"] for r in results}) == 16


async def test_validate_compiles_without_running(shared: Runtime) -> None:
    """python/validate reports syntax errors with line and column and runs nothing."""
    ok = await shared.execute("python/validate", {"code": "import os\nos._exit(1)"})
    assert ok == {"valid": True, "error": None, "line": None, "column": None}
    bad = await shared.execute("python/validate", {"code": "x = 1\ny = (\n"})
    assert (bad["valid"], bad["line"]) == (False, 2)
    assert "SyntaxError" in bad["error"]
    from_file = await shared.execute(
        "python/validate", {"file": "a.py", "files": {"a.py": "def f(:\n  pass"}}
    )
    assert from_file["valid"] is False
    with pytest.raises(InvalidParams, match="exactly one of"):
        await shared.execute("python/validate", {})


async def test_info_shows_the_sandbox_python_and_limits(shared: Runtime) -> None:
    """python/info reports the Python inside the container, the chosen profile's limits,
    the enabled profiles (not the disabled networked one) and the engines."""
    out = await shared.execute("python/info", {"profile": "minimal"})
    assert str(out["python_version"]).startswith("3.")
    assert out["profile"] == "minimal"
    assert out["limits"]["memory"] == "128m"
    assert set(out["profiles"]) == {"sandboxed", "minimal", "datascience"}
    assert out["profiles"]["sandboxed"]["pids"] == 64
    assert [e["health"] for e in out["engines"]] == ["healthy"]
    assert out["default_profile"] == "sandboxed"


async def test_batch_runs_in_order_with_bounded_concurrency(shared: Runtime) -> None:
    """python/batch returns results in task order; at most max_concurrent run at once; a
    failing task (bad code, or a limit it may not have) never fails the batch."""
    probe = "import time\ntime.sleep(0.4)\nresult = args"
    tasks: list[dict[str, object]] = [{"code": probe, "args": i} for i in range(6)]
    tasks.insert(2, {"code": "raise RuntimeError('task two')"})
    tasks.insert(4, {"code": "result = 1", "memory": "4g"})
    started = asyncio.get_running_loop().time()
    out = await shared.execute("python/batch", {"tasks": tasks, "max_concurrent": 2})
    elapsed = asyncio.get_running_loop().time() - started
    results = out["results"]
    assert [r["result"] for r in results] == [0, 1, None, 2, None, 3, 4, 5]
    assert results[2]["error"] == "exit code 1: RuntimeError: task two"
    assert "params.tasks[4].memory" in results[4]["error"]
    assert out["summary"] == {"total": 8, "successful": 6, "failed": 2}
    assert out["success"] is False
    assert elapsed >= 1.2  # six 0.4 s tasks, two at a time: at least three rounds
    with pytest.raises(InvalidParams, match=r"params\.max_concurrent"):
        await shared.execute("python/batch", {"tasks": [], "max_concurrent": 1000})
