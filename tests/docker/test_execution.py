"""Execution results: output, exit codes, args, files, result values, the three paths."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from gleitzeit_docker.engine import Engine
from gleitzeit_docker.execution import ExecutionResult, Job, execute_fresh
from gleitzeit_docker.pool import WarmPool
from gleitzeit_docker.profiles import Profile

from .conftest import HUB_ID

pytestmark = [pytest.mark.docker, pytest.mark.asyncio(loop_scope="session")]

BINARY = bytes(range(256)) * 64 + b"\x00\xff\r\n\x1a"


async def test_stdout_stderr_exit_code_and_result(pool: WarmPool, sandboxed: Profile) -> None:
    """stdout, stderr, exit code 0 and a JSON result come back exactly."""
    code = (
        "import sys\nprint('hello')\nprint('oops', file=sys.stderr)\nresult = {'n': [1, 2.5, None]}"
    )
    res = await pool.execute(sandboxed, Job(code=code))
    assert res.success is True, res.error
    assert (res.stdout, res.stderr, res.exit_code) == ("hello\n", "oops\n", 0)
    assert res.result == {"n": [1, 2.5, None]}
    assert res.error is None
    assert res.truncated is False
    assert res.container_id
    assert res.duration_ms > 0
    assert set(res.as_dict()) >= {
        "success", "stdout", "stderr", "exit_code", "result", "error",
        "duration_ms", "truncated", "container_id",
    }  # fmt: skip


async def test_exit_codes_and_exceptions(pool: WarmPool, sandboxed: Profile) -> None:
    """sys.exit(3) gives exit code 3; an exception gives exit 1 with its traceback."""
    res = await pool.execute(sandboxed, Job(code="import sys\nprint('bye')\nsys.exit(3)"))
    assert (res.success, res.exit_code, res.error, res.stdout) == (False, 3, "exit code 3", "bye\n")
    res = await pool.execute(sandboxed, Job(code="x = 1\nraise ValueError('bad value')"))
    assert res.exit_code == 1
    assert res.error == "exit code 1: ValueError: bad value"
    assert 'File "<code>", line 2' in res.stderr
    assert "runner" not in res.stderr  # the runner's own frames are not shown


async def test_args_and_files_arrive_intact(pool: WarmPool, sandboxed: Profile) -> None:
    """args is a global; text and binary files land byte-exact in the working directory."""
    args = {"name": "Grüße ✓", "values": [1, 2, 3], "nested": {"ok": True}}
    code = (
        "import hashlib, os\n"
        "data = open('blob.bin', 'rb').read()\n"
        "result = {'args': args, 'text': open('sub/dir/note.txt', encoding='utf-8').read(),\n"
        "          'sha': hashlib.sha256(data).hexdigest(), 'size': len(data),\n"
        "          'cwd_files': sorted(os.listdir('.'))}\n"
    )
    job = Job(code=code, args=args, files={"blob.bin": BINARY, "sub/dir/note.txt": "línea\n"})
    res = await pool.execute(sandboxed, job)
    assert res.success, res.stderr
    import hashlib

    assert res.result["args"] == args
    assert res.result["text"] == "línea\n"
    assert res.result["size"] == len(BINARY)
    assert res.result["sha"] == hashlib.sha256(BINARY).hexdigest()
    assert res.result["cwd_files"] == ["blob.bin", "sub"]


async def test_file_mode_runs_a_copied_file_with_helpers(
    pool: WarmPool, sandboxed: Profile
) -> None:
    """`file` runs a script from `files` as __main__; sibling modules are importable."""
    files = {
        "main.py": "import helper\nif __name__ == '__main__':\n    result = helper.double(args)\n",
        "helper.py": "def double(x):\n    return x * 2\n",
    }
    res = await pool.execute(sandboxed, Job(file="main.py", files=files, args=21))
    assert res.success, res.stderr
    assert res.result == 42


async def test_non_json_result_becomes_a_repr(pool: WarmPool, sandboxed: Profile) -> None:
    """A result that is not JSON-serialisable comes back as its repr plus a note."""
    res = await pool.execute(sandboxed, Job(code="result = {1, 2, 3}"))
    assert res.success is True
    assert res.result == "{1, 2, 3}"
    assert res.note is not None
    assert "not JSON-serialisable" in res.note
    res = await pool.execute(sandboxed, Job(code="result = float('nan')"))
    assert (res.success, res.result) == (True, "nan")
    res = await pool.execute(sandboxed, Job(code="x = 1"))
    assert (res.result, res.note) == (None, None)


async def test_sixteen_concurrent_executions(pool: WarmPool, sandboxed: Profile) -> None:
    """16 executions at once all return their own correct result."""
    jobs = [
        Job(code="import time\ntime.sleep(0.2)\nresult = args * args", args=i) for i in range(16)
    ]
    results = await asyncio.gather(*(pool.execute(sandboxed, j) for j in jobs))
    assert [r.result for r in results] == [i * i for i in range(16)]
    assert all(r.success for r in results)
    assert len({r.container_id for r in results}) == 16  # one container each, concurrently
    assert pool.stats()["peak_size"] <= 16


async def test_three_paths_agree(
    engine: Engine, sandboxed: Profile, make_pool: Callable[..., WarmPool]
) -> None:
    """Fresh container, warm exec and resident runner give the same result for the same job."""
    code = (
        "import sys\n"
        "print('out', args['k'])\n"
        "print('err', len(open('data.bin', 'rb').read()), file=sys.stderr)\n"
        "result = {'sum': sum(args['xs'])}\n"
        "sys.exit(args['code'])\n"
    )
    job = Job(code=code, args={"k": "v", "xs": [1, 2, 3], "code": 4}, files={"data.bin": BINARY})
    runner_pool = make_pool(mode="runner", max_size=1)
    exec_pool = make_pool(mode="exec", max_size=1)
    results: list[ExecutionResult] = [
        await execute_fresh(engine, sandboxed, job, hub_id=HUB_ID),
        await exec_pool.execute(sandboxed, job),
        await runner_pool.execute(sandboxed, job),
    ]
    assert [r.path for r in results] == ["fresh", "exec", "runner"]
    seen = {(r.stdout, r.stderr, r.exit_code, str(r.result), r.error) for r in results}
    assert seen == {
        ("out v\n", f"err {len(BINARY)}\n", 4, "{'sum': 6}", "exit code 4"),
    }
    ok = Job(code="print(2 + 2)\nresult = 'fine'")
    again = [
        await execute_fresh(engine, sandboxed, ok, hub_id=HUB_ID),
        await exec_pool.execute(sandboxed, ok),
        await runner_pool.execute(sandboxed, ok),
    ]
    assert {(r.success, r.stdout, r.result) for r in again} == {(True, "4\n", "fine")}


async def test_info_reports_the_container_python(pool: WarmPool, sandboxed: Profile) -> None:
    """info() shows the Python inside the container and the profile's limits."""
    out = await pool.info(sandboxed)
    assert str(out["python_version"]).startswith("3.")
    assert "Linux" in str(out["platform"])
    assert out["limits"]["memory"] == "256m"
    assert out["profile"] == "sandboxed"
