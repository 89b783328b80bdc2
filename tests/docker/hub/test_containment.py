"""Containment through the runtime: bombs, leaks, and limits a request may only tighten."""

from __future__ import annotations

import asyncio
import time

import pytest

from gleitzeit_core import InvalidParams, Runtime

pytestmark = [pytest.mark.docker, pytest.mark.asyncio(loop_scope="session")]

FORK_BOMB = (
    "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
)
MEMORY_BOMB = "blob = bytearray(1 << 30)\nprint('never')"
LOOP = "print('started')\nwhile True:\n    pass"
FLOOD = "import sys\nprint('x' * 3_000_000)\nsys.stderr.write('e' * 500_000)\nresult = 'done'"
CGROUP = (
    "def read(*paths):\n"
    "    for p in paths:\n"
    "        try:\n"
    "            return open(p).read().split()[0]\n"
    "        except OSError:\n"
    "            pass\n"
    "result = {'mem': read('/sys/fs/cgroup/memory/memory.limit_in_bytes',"
    " '/sys/fs/cgroup/memory.max'),\n"
    "          'pids': read('/sys/fs/cgroup/pids/pids.max', '/sys/fs/cgroup/pids.max'),\n"
    "          'quota': read('/sys/fs/cgroup/cpu/cpu.cfs_quota_us', '/sys/fs/cgroup/cpu.max')}\n"
)


async def test_bombs_are_contained_and_the_pool_keeps_serving(shared: Runtime) -> None:
    """A fork bomb, a memory bomb, an infinite loop and a flood of output, all at once, each
    end with the right plain error; ordinary runs around them are served promptly, and none
    of it counts against the engine (user failures are not resource faults)."""
    execute = shared.execute
    await asyncio.gather(*(execute("python/execute", {"code": "1"}) for i in range(10)))  # warm
    started = time.perf_counter()
    forking = asyncio.ensure_future(execute("python/execute", {"code": FORK_BOMB, "timeout": 10}))
    bombs = asyncio.gather(
        forking,
        execute("python/execute", {"code": MEMORY_BOMB}),
        execute("python/execute", {"code": LOOP, "timeout": 1.5}),
        execute("python/execute", {"code": FLOOD}),
    )
    await asyncio.sleep(0.3)  # the bombs are running now
    quick = await asyncio.gather(
        *(execute("python/execute", {"code": f"result = {i}"}) for i in range(6))
    )
    assert [r["result"] for r in quick] == list(range(6))
    # served while the fork bomb still runs (two cores busy with bombs), not after it: no
    # clock needed, so a loaded machine cannot make this fail
    assert not forking.done()
    fork, memory, loop, flood = await bombs
    assert time.perf_counter() - started < 45  # their own timeouts, not the profile's 60 s

    assert (fork["success"], fork["error"]) == (False, "timeout after 10 s")
    assert (memory["success"], memory["error"]) == (False, "memory limit exceeded (256m)")
    assert memory["exit_code"] == 137
    assert "never" not in memory["stdout"]
    assert (loop["success"], loop["error"], loop["stdout"]) == (
        False, "timeout after 1.5 s", "started\n",
    )  # fmt: skip
    assert (flood["success"], flood["truncated"], flood["result"]) == (True, True, "done")
    assert len(flood["stdout"]) == len(flood["stderr"]) == 64 * 1024

    after = await execute("python/execute", {"code": "result = 'still serving'"})
    assert (after["success"], after["result"]) == (True, "still serving")
    (engine,) = shared.status().hubs[0].resources
    assert (engine.health, engine.breaker, engine.ejected) == ("healthy", "closed", False)
    assert engine.metrics.failures == {}


async def test_no_state_leaks_between_executions_in_a_reused_container(shared: Runtime) -> None:
    """Run 2 in the same container sees nothing of run 1: globals, module state, env, files
    in /tmp and /dev/shm, background processes."""
    first = (
        "import json, os, subprocess\n"
        "LEAK = 'secret'\n"
        "json.LEAK = 'secret'\n"
        "os.environ['LEAK'] = 'secret'\n"
        "open('/tmp/leak.txt', 'w').write('secret')\n"
        "open('/dev/shm/leak', 'w').write('secret')\n"
        "subprocess.Popen(['python3', '-c', 'import time; time.sleep(60)'],\n"
        "                 start_new_session=True, stdout=subprocess.DEVNULL)\n"
    )
    second = (
        "import json, os\n"
        "result = {'global': 'LEAK' in globals(), 'module': hasattr(json, 'LEAK'),\n"
        "          'env': 'LEAK' in os.environ, 'tmp': sorted(os.listdir('/tmp')),\n"
        "          'cwd': os.path.basename(os.getcwd()), 'shm': os.listdir('/dev/shm'),\n"
        "          'procs': len([p for p in os.listdir('/proc') if p.isdigit() and\n"
        "                        os.stat(f'/proc/{p}').st_uid == os.getuid()])}\n"
    )
    one = await shared.execute("python/execute", {"code": first})
    assert one["success"], one
    two = await shared.execute("python/execute", {"code": second})
    assert two["success"], two
    assert two["container_id"] == one["container_id"]  # really the same, reused container
    out = two["result"]
    assert (out["global"], out["module"], out["env"]) == (False, False, False)
    assert out["tmp"] == [out["cwd"]]  # only this run's own fresh directory
    assert out["shm"] == []
    assert out["procs"] == 1  # of the job's uid only this run: the sleeper is gone


async def test_requests_may_tighten_a_profile(shared: Runtime) -> None:
    """memory, cpus and pids given by a request are the container's real cgroup limits;
    timeout and output_limit apply to the run; another profile brings its own limits."""
    out = await shared.execute(
        "python/execute", {"code": CGROUP, "memory": "128m", "cpus": 0.5, "pids": 32}
    )
    assert out["success"], out
    assert out["result"] == {"mem": str(128 << 20), "pids": "32", "quota": "50000"}
    plain = await shared.execute("python/execute", {"code": CGROUP})
    assert plain["result"] == {"mem": str(256 << 20), "pids": "64", "quota": "100000"}
    assert plain["container_id"] != out["container_id"]  # other limits, other container
    minimal = await shared.execute("python/execute", {"code": CGROUP, "profile": "minimal"})
    assert minimal["result"] == {"mem": str(128 << 20), "pids": "32", "quota": "50000"}

    started = time.perf_counter()
    loop = await shared.execute("python/execute", {"code": "while True: pass", "timeout": 1})
    assert loop["error"] == "timeout after 1 s"
    assert time.perf_counter() - started < 30  # its own 1 s, not the profile's 60 (generous)
    short = await shared.execute(
        "python/execute", {"code": "print('y' * 5000)", "output_limit": "1k"}
    )
    assert (len(short["stdout"]), short["truncated"]) == (1024, True)


@pytest.mark.parametrize(
    ("field", "value"),
    [("memory", "1g"), ("cpus", 2.0), ("pids", 1000), ("timeout", 600), ("output_limit", "1m")],
)
async def test_requests_may_not_loosen_a_profile(
    shared: Runtime, field: str, value: object
) -> None:
    """Asking for more than the profile allows is refused with InvalidParams naming the
    field, before anything runs."""
    with pytest.raises(InvalidParams, match=rf"params\.{field}: request asks for") as caught:
        await shared.execute("python/execute", {"code": "result = 1", field: value})
    assert "may only tighten" in str(caught.value)


async def test_profiles_that_are_unknown_or_disabled_are_refused(shared: Runtime) -> None:
    """An unknown profile, and the networked one without allow_trusted, are InvalidParams."""
    with pytest.raises(InvalidParams, match=r"params\.profile: unknown docker profile 'nope'"):
        await shared.execute("python/execute", {"code": "1", "profile": "nope"})
    with pytest.raises(InvalidParams, match=r"params\.profile: profile 'trusted' allows network"):
        await shared.execute("python/execute", {"code": "1", "profile": "trusted"})
    with pytest.raises(InvalidParams, match=r"params\.tiemout: unknown key"):
        await shared.execute("python/execute", {"code": "1", "tiemout": 1})
