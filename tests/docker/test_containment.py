"""Containment: what untrusted code inside the sandbox cannot do, and what cannot leak."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable

import pytest
from gleitzeit_docker.execution import Job
from gleitzeit_docker.pool import WarmPool
from gleitzeit_docker.profiles import Profile

pytestmark = [pytest.mark.docker, pytest.mark.asyncio(loop_scope="session")]

# Job code: the pids of every other process running as the job's uid (its status, not the
# /proc owner, which a non-dumpable process hides).
JOB_UID_PROCESSES = (
    "import os\n"
    "def _uid(pid):\n"
    "    try:\n"
    "        return [ln.split()[1] for ln in open(f'/proc/{pid}/status') if ln[:4] == 'Uid:'][0]\n"
    "    except (OSError, IndexError):\n"
    "        return None\n"
    "result = sorted(int(p) for p in os.listdir('/proc') if p.isdigit()\n"
    "                and int(p) != os.getpid() and _uid(p) == str(os.getuid()))\n"
)


async def test_only_loopback_and_no_way_to_the_host(pool: WarmPool, sandboxed: Profile) -> None:
    """The container has only `lo`, and a port the host listens on at 127.0.0.1 is
    unreachable from inside (the container's loopback is its own)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    port = listener.getsockname()[1]
    try:
        # The listener really accepts connections on the host side.
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
        code = (
            "import os, socket\n"
            "dev = [l.split(':')[0].strip() for l in open('/proc/net/dev').readlines()[2:]]\n"
            "try:\n"
            "    socket.create_connection(('127.0.0.1', args), timeout=2).close()\n"
            "    outcome = 'connected'\n"
            "except OSError as e:\n"
            "    outcome = type(e).__name__\n"
            "result = {'net': sorted(os.listdir('/sys/class/net')), 'dev': dev, 'tcp': outcome}\n"
        )
        res = await pool.execute(sandboxed, Job(code=code, args=port))
    finally:
        listener.close()
    assert res.success, res.stderr
    assert res.result == {"net": ["lo"], "dev": ["lo"], "tcp": "ConnectionRefusedError"}


async def test_identity_capabilities_and_read_only_root(pool: WarmPool, sandboxed: Profile) -> None:
    """uid/gid 65534, no effective capabilities, no_new_privs, read-only root, /tmp writable
    but not executable."""
    code = (
        "import os\n"
        "status = dict(l.split(':\\t', 1) for l in open('/proc/self/status').read().splitlines()"
        " if ':\\t' in l)\n"
        "def attempt(path):\n"
        "    try:\n"
        "        open(path, 'w').write('x')\n"
        "        return 'written'\n"
        "    except OSError as e:\n"
        "        return e.strerror\n"
        "open('/tmp/run.sh', 'w').write('#!/bin/sh\\necho hi\\n')\n"
        "os.chmod('/tmp/run.sh', 0o755)\n"
        "try:\n"
        "    os.execv('/tmp/run.sh', ['/tmp/run.sh'])\n"
        "except OSError as e:\n"
        "    noexec = e.strerror\n"
        "result = {'uid': os.getuid(), 'gid': os.getgid(), 'euid': os.geteuid(),\n"
        "          'cap_eff': status['CapEff'].strip(), 'cap_bnd': status['CapBnd'].strip(),\n"
        "          'nnp': status['NoNewPrivs'].strip(), 'etc': attempt('/etc/x'),\n"
        "          'usr': attempt('/usr/x'), 'tmp': attempt('/tmp/x'), 'noexec': noexec}\n"
    )
    res = await pool.execute(sandboxed, Job(code=code))
    assert res.success, res.stderr
    out = res.result
    assert (out["uid"], out["gid"], out["euid"]) == (65534, 65534, 65534)
    assert out["cap_eff"] == "0000000000000000"
    assert out["cap_bnd"] == "0000000000000000"
    assert out["nnp"] == "1"
    assert out["etc"] == out["usr"] == "Read-only file system"
    assert out["tmp"] == "written"
    assert out["noexec"] == "Permission denied"


async def test_limits_are_visible_in_the_cgroup(pool: WarmPool, sandboxed: Profile) -> None:
    """Memory, pids and CPU quota limits are set on the container's cgroup."""
    code = (
        "def read(*paths):\n"
        "    for p in paths:\n"
        "        try:\n"
        "            return open(p).read().split()\n"
        "        except OSError:\n"
        "            pass\n"
        "result = {'mem': read('/sys/fs/cgroup/memory/memory.limit_in_bytes', "
        "'/sys/fs/cgroup/memory.max'),\n"
        "          'pids': read('/sys/fs/cgroup/pids/pids.max', '/sys/fs/cgroup/pids.max'),\n"
        "          'quota': read('/sys/fs/cgroup/cpu/cpu.cfs_quota_us',\n"
        "                        '/sys/fs/cgroup/cpu.max')}\n"
    )
    res = await pool.execute(sandboxed, Job(code=code))
    assert res.success, res.stderr
    assert res.result["mem"][0] == str(256 << 20)
    assert res.result["pids"][0] == "64"
    assert res.result["quota"][0] == "100000"  # 1.0 CPU of a 100 ms period


async def test_fork_bomb_is_stopped_by_the_pids_limit(
    make_pool: Callable[..., WarmPool], sandboxed: Profile
) -> None:
    """fork() fails with EAGAIN before 64 processes; a real fork bomb only burns its own
    timeout; the container is cleaned (no stray processes) and the pool keeps serving."""
    pool = make_pool(max_size=1)  # with generous health and start timeouts (conftest)
    counting = (
        "import os, time\n"
        "forked, err = 0, None\n"
        "for _ in range(500):\n"
        "    try:\n"
        "        pid = os.fork()\n"
        "    except OSError as e:\n"
        "        err = e.errno\n"
        "        break\n"
        "    if pid == 0:\n"
        "        time.sleep(60)\n"
        "        os._exit(0)\n"
        "    forked += 1\n"
        "result = {'forked': forked, 'errno': err}\n"
    )
    res = await pool.execute(sandboxed, Job(code=counting))
    assert res.success, res.stderr
    assert res.result["errno"] == 11  # EAGAIN
    assert 40 < res.result["forked"] < 64
    # The sleeping children were swept: the next run in the same container sees none.
    after = await pool.execute(sandboxed, Job(code=JOB_UID_PROCESSES))
    assert after.container_id == res.container_id
    assert after.result == []  # no process of the job's uid but this run

    bomb = (
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    )
    started = time.perf_counter()
    res = await pool.execute(sandboxed, Job(code=bomb, timeout=3))
    assert res.error == "timeout after 3 s"
    # its own 3 s (plus the kill), far from the profile's 60 s; generous for a loaded machine
    assert time.perf_counter() - started < sandboxed.timeout / 2
    res = await pool.execute(sandboxed, Job(code="result = 'still serving'"))
    assert (res.success, res.result) == (True, "still serving")


async def test_memory_bomb_reports_the_memory_limit(pool: WarmPool, sandboxed: Profile) -> None:
    """Allocating past 256m is OOM-killed and reported as a memory-limit error."""
    res = await pool.execute(sandboxed, Job(code="blob = bytearray(512 << 20)\nprint('never')"))
    assert res.success is False
    assert res.error == "memory limit exceeded (256m)"
    assert res.exit_code == 137
    assert "never" not in res.stdout
    res = await pool.execute(sandboxed, Job(code="result = 1"))
    assert res.success


async def test_infinite_loop_ends_at_its_timeout(pool: WarmPool, sandboxed: Profile) -> None:
    """`while True: pass` is killed from outside at its timeout; output so far survives,
    and its exit code is the SIGKILL it got (128 + 9, as for any signal), never 0."""
    started = time.perf_counter()
    res = await pool.execute(
        sandboxed, Job(code="print('started')\nwhile True:\n    pass", timeout=1.5)
    )
    elapsed = time.perf_counter() - started
    assert res.success is False
    assert res.error == "timeout after 1.5 s"
    assert res.exit_code == 137
    assert res.stdout == "started\n"
    # at its own 1.5 s, far from the profile's 60 s (generous: a loaded machine is slow)
    assert 1.4 < elapsed < sandboxed.timeout / 2


async def test_huge_output_is_truncated(pool: WarmPool, sandboxed: Profile) -> None:
    """Megabytes of stdout/stderr are capped at 64 KiB each with truncated=True."""
    code = "import sys\nprint('x' * 3_000_000)\nsys.stderr.write('e' * 500_000)\nresult = 'done'"
    res = await pool.execute(sandboxed, Job(code=code))
    assert res.success is True
    assert res.truncated is True
    assert len(res.stdout) == len(res.stderr) == 64 * 1024
    assert res.result == "done"
    res = await pool.execute(sandboxed, Job(code="print('y' * 5000)", output_limit=1024))
    assert (len(res.stdout), res.truncated) == (1024, True)


async def test_no_state_leaks_between_runs(
    make_pool: Callable[..., WarmPool], sandboxed: Profile
) -> None:
    """A reused container shows run 2 nothing of run 1: globals, module state, env,
    files in /tmp and /dev/shm, background processes, System V shared memory."""
    pool = make_pool(max_size=1)
    first = (
        "import ctypes, json, os, subprocess\n"
        "LEAK = 'secret'\n"
        "json.LEAK = 'secret'\n"
        "os.environ['LEAK'] = 'secret'\n"
        "open('/tmp/leak.txt', 'w').write('secret')\n"
        "open('/dev/shm/leak', 'w').write('secret')\n"
        "os.makedirs('/tmp/locked/deeper')\n"
        "os.chmod('/tmp/locked', 0)\n"
        "subprocess.Popen(['python3', '-c', 'import time; time.sleep(60)'],\n"
        "                 start_new_session=True, stdout=subprocess.DEVNULL)\n"
        "shm = ctypes.CDLL(None).shmget(0x1234, 4096, 0o1000 | 0o600)\n"
        "result = {'shm': shm}\n"
    )
    second = (
        "import json, os\n" + JOB_UID_PROCESSES + "procs = result\n"
        "shm = open('/proc/sysvipc/shm').read().splitlines()[1:]\n"
        "result = {'global': 'LEAK' in globals(), 'module': hasattr(json, 'LEAK'),\n"
        "          'env': 'LEAK' in os.environ, 'tmp': sorted(os.listdir('/tmp')),\n"
        "          'cwd': os.path.basename(os.getcwd()), 'shm_files': os.listdir('/dev/shm'),\n"
        "          'procs': procs, 'sysv': shm}\n"
    )
    one = await pool.execute(sandboxed, Job(code=first))
    assert one.success, one.stderr
    assert one.result["shm"] >= 0
    two = await pool.execute(sandboxed, Job(code=second))
    assert two.success, two.stderr
    assert two.container_id == one.container_id  # really the same, reused container
    out = two.result
    assert (out["global"], out["module"], out["env"]) == (False, False, False)
    assert out["tmp"] == [out["cwd"]]  # only this run's own fresh directory
    assert out["shm_files"] == []
    assert out["procs"] == []  # no process of the job's uid but this run: the sleeper is gone
    assert out["sysv"] == []


@pytest.mark.parametrize("result_pipe", ["closed", "kept open"])
async def test_a_forged_exit_report_does_not_outlive_the_run(
    make_pool: Callable[..., WarmPool], sandboxed: Profile, result_pipe: str
) -> None:
    """The runner answers once a job's process has closed its stdout and stderr and
    reported its exit status (its last write), without waiting for the exit itself. A job
    that forges that report (writes it on its result pipe, closes its output pipes, closes
    the result pipe or keeps it and writes more, and keeps running) gets its chosen status,
    and is gone before the next run in the same container starts."""
    pool = make_pool(max_size=1)
    after_report = "        os.close(fd)\n" if result_pipe == "closed" else "        kept = fd\n"
    forger = (
        "import os, time\n"
        "outputs = {os.readlink('/proc/self/fd/1'), os.readlink('/proc/self/fd/2')}\n"
        "for fd in range(3, 256):\n"
        "    try:\n"
        "        target = os.readlink(f'/proc/self/fd/{fd}')\n"
        "    except OSError:\n"
        "        continue\n"
        "    if target.startswith('pipe:') and target not in outputs:\n"
        '        os.write(fd, b\'{"result":"forged","exit":7}\')\n' + after_report + "os.close(1)\n"
        "os.close(2)\n"
        "time.sleep(0.5)\n"
        "if 'kept' in globals():\n"
        "    os.write(kept, b'more')\n"
        "time.sleep(600)\n"
    )
    one = await pool.execute(sandboxed, Job(code=forger))
    assert (one.exit_code, one.result) == (7, "forged"), one
    two = await pool.execute(sandboxed, Job(code=JOB_UID_PROCESSES))
    assert two.success, two.stderr
    assert two.container_id == one.container_id  # the same, reused container
    assert two.result == []  # the forger's process is gone


async def test_timeouts_and_ooms_do_not_block_other_runs(
    pool: WarmPool, sandboxed: Profile
) -> None:
    """A hanging run and normal runs side by side: the normal ones finish while the hanging
    one is still running (they do not wait for its timeout)."""
    hang = asyncio.ensure_future(pool.execute(sandboxed, Job(code="while True: pass", timeout=8)))
    quick = await asyncio.gather(
        *(pool.execute(sandboxed, Job(code=f"result={i}")) for i in range(4))
    )
    assert [r.result for r in quick] == [0, 1, 2, 3]
    assert not hang.done()
    assert (await hang).error == "timeout after 8 s"


# Job code: a spy that outlives its run. It finds the next run's ``secret.txt`` through that
# run's /proc/<pid>/cwd (the same uid may follow it), reads it and writes it back changed.
SPY = (
    "import os, time\n"
    "def spy():\n"
    "    me = os.getpid()\n"
    "    deadline = time.monotonic() + 20\n"
    "    while time.monotonic() < deadline:\n"
    "        for p in os.listdir('/proc'):\n"
    "            if not p.isdigit() or int(p) == me:\n"
    "                continue\n"
    "            try:\n"
    "                path = f'/proc/{p}/cwd/secret.txt'\n"
    "                secret = open(path).read()\n"
    "                open(path, 'w').write('TAMPERED ' + secret)\n"
    "                return\n"
    "            except OSError:\n"
    "                continue\n"
    "        time.sleep(0.002)\n"
    "def detach(keep=-1):\n"
    "    # a grandchild in its own session, holding none of the run's descriptors\n"
    "    if os.fork():\n"
    "        return False\n"
    "    os.setsid()\n"
    "    if os.fork():\n"
    "        os._exit(0)\n"
    "    for fd in range(1024):\n"
    "        if fd != keep:\n"
    "            try:\n"
    "                os.close(fd)\n"
    "            except OSError:\n"
    "                pass\n"
    "    return True\n"
)

# Job code: the victim: gives a spy time to act, then answers its ``secret.txt`` as it is now.
VICTIM = "import time\ntime.sleep(2)\nresult = open('secret.txt').read()\n"


async def _spy_reaches_next_run(pool: WarmPool, profile: Profile, spy_job: str) -> str:
    """Run ``spy_job`` (built on ``SPY``), then a victim in the same container: the victim's
    secret as the victim sees it at its end."""
    one = await pool.execute(profile, Job(code=SPY + spy_job))
    assert one.stderr == "", one.stderr
    two = await pool.execute(profile, Job(code=VICTIM, files={"secret.txt": "s3cret"}))
    assert two.container_id == one.container_id  # the same, reused container
    assert two.success, two.stderr
    return str(two.result)


async def test_a_thread_whose_process_leader_exited_does_not_survive_the_sweep(
    make_pool: Callable[..., WarmPool], sandboxed: Profile
) -> None:
    """A process whose main thread ended with the bare exit syscall (not exit_group) shows
    as a zombie in /proc while its other threads run on. Such a thread, detached from the
    run, is still killed before the next run in the same container starts: it can neither
    read that run's files nor write into its output."""
    pool = make_pool(max_size=1)
    leader_exits = (
        "import ctypes, platform, threading\n"
        "SYS_EXIT = {'x86_64': 60, 'aarch64': 93}[platform.machine()]\n"
        "r, w = os.pipe()\n"
        "if detach(keep=w):\n"
        "    threading.Thread(target=spy).start()\n"
        "    os.write(w, b'x')\n"
        "    ctypes.CDLL(None).syscall(SYS_EXIT, 0)  # this thread only\n"
        "os.close(w)\n"
        "os.read(r, 1)\n"
        "time.sleep(0.2)\n"
    )
    assert await _spy_reaches_next_run(pool, sandboxed, leader_exits) == "s3cret"


async def test_a_job_that_has_itself_traced_does_not_hang_the_cleanup(
    make_pool: Callable[..., WarmPool], sandboxed: Profile
) -> None:
    """A job lets a detached helper of its own trace it (PR_SET_PTRACER, PTRACE_SEIZE), so
    its exit is reported to that tracer first and never to the runner. The runner's
    cleanup still ends in bounded time: the same container serves the next run, and the
    tracer is gone by then."""
    pool = make_pool(max_size=1)
    traced = (
        "import ctypes, os, time\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "libc.prctl(0x59616D61, ctypes.c_ulong(2**64 - 1), 0, 0, 0)  # PR_SET_PTRACER_ANY\n"
        "target = os.getpid()\n"
        "go_r, go_w = os.pipe()\n"
        "r, w = os.pipe()\n"
        "middle = os.fork()\n"
        "if middle == 0:\n"
        "    os.setsid()\n"
        "    if os.fork():\n"
        "        os._exit(0)\n"
        "    os.read(go_r, 1)  # traced, a signal would stop the job: its SIGCHLD comes first\n"
        "    os.write(w, str(libc.ptrace(0x4206, target, 0, 0)).encode())  # PTRACE_SEIZE\n"
        "    os.closerange(0, 1024)\n"
        "    while True:\n"
        "        time.sleep(1)  # never waits for its tracee\n"
        "os.waitpid(middle, 0)\n"
        "os.write(go_w, b'x')\n"
        "os.close(w)\n"
        "result = int(os.read(r, 16))\n"
    )
    one = await pool.execute(sandboxed, Job(code=traced))
    assert one.result == 0, one  # the helper really traces the job's process
    two = await pool.execute(sandboxed, Job(code=JOB_UID_PROCESSES))
    assert two.success, two.stderr
    assert two.container_id == one.container_id  # not discarded as hung
    assert two.result == []  # the tracer is gone
