"""Attacks from code inside the sandbox on the runner, the host and the next caller's job.

Each test runs the attack for real on a warm container of a real engine (one container, so
the attacker and its victim share it, as two callers in a row do), on the resident runner (over
its direct socket, and over the engine's attach stream as for a remote engine) and on the
`docker exec` path, and asserts both that the attack fails and that a normal job on the same
container still works.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from gleitzeit_docker.engine import Engine
from gleitzeit_docker.execution import Job
from gleitzeit_docker.pool import PoolConfig, WarmPool
from gleitzeit_docker.profiles import Profile, load_profiles
from gleitzeit_docker.runner import RunnerConnection

from ..docker_engine import CALL_TIMEOUT, GENEROUS, IMAGE, require_engine

pytestmark = [pytest.mark.docker, pytest.mark.asyncio(loop_scope="module")]

HUB_ID = f"gz-sec-{uuid.uuid4().hex[:8]}"


@pytest.fixture(autouse=True)
def _needs_engine() -> None:
    require_engine()


@pytest.fixture(scope="module")
def sandboxed() -> Profile:
    return load_profiles({"default_image": IMAGE}).get("sandboxed")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def engine() -> AsyncIterator[Engine]:
    require_engine()
    eng = Engine(call_timeout=CALL_TIMEOUT)
    await eng.ping()
    yield eng
    await eng.remove_all(HUB_ID)
    await eng.close()


@pytest_asyncio.fixture(loop_scope="module", params=["runner", "runner-attach", "exec"])
async def one_container(engine: Engine, request: pytest.FixtureRequest) -> AsyncIterator[WarmPool]:
    """A pool of exactly one warm container: every job runs in the same one, in turn (by
    the resident runner over its direct socket or over the attach stream, or by a one-shot
    runner per job through `docker exec`)."""
    mode, _, channel = request.param.partition("-")
    config = PoolConfig(
        mode=mode,
        max_size=1,
        acquire_timeout=60,
        fallback=False,
        direct=channel != "attach",
        **GENEROUS,
    )
    pool = WarmPool(engine, hub_id=HUB_ID, config=config)
    if mode == "runner":  # the channel under attack is the one asked for, not a fallback
        async with pool.checkout(load_profiles({"default_image": IMAGE}).get("sandboxed")) as pc:
            assert pc.conn is not None
            assert pc.conn.direct is (channel != "attach")
    yield pool
    await pool.close()


# Job code: write forged replies to every descriptor of every other process it can open, and
# read whatever is readable there; report what it could open.
FORGE_EVERYWHERE = """
import json, os
forged = b"".join(
    json.dumps({"op": op, "id": i, "result": "FORGED", "has_result": True, "exit_code": 0,
                "error": None, "clean": True, "stdout": "FORGED"}).encode() + b"\\n"
    for i in range(1, 400) for op in ("done", "cleaned", "pong")
)
opened, loot, tried = [], [], 0
for pid in [p for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()]:
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        fds = [str(n) for n in range(16)]  # listing refused: try the usual ones blindly
    for fd in fds:
        path = f"/proc/{pid}/fd/{fd}"
        tried += 1
        for flags in (os.O_WRONLY, os.O_RDONLY):
            try:
                handle = os.open(path, flags | os.O_NONBLOCK)
            except OSError:
                continue
            opened.append(path)
            try:
                if flags == os.O_WRONLY:
                    os.write(handle, forged)
                else:
                    loot.append(os.read(handle, 65536).decode("latin-1"))
            except OSError:
                pass
            os.close(handle)
result = {"opened": opened, "loot": loot, "tried": tried, "mine": "attacker"}
"""


async def test_forged_frames_on_every_reachable_descriptor_are_never_accepted(
    one_container: WarmPool, sandboxed: Profile
) -> None:
    """A job that writes forged `done`/`cleaned` frames for ids 1..399 to every descriptor of
    every other process in /proc/*/fd (and reads every readable one) can open none of them:
    the runner and init hold the channel under another uid. Its own result stays its own and
    the next caller's job in the same container gets its real answer."""
    attack = await one_container.execute(sandboxed, Job(code=FORGE_EVERYWHERE))
    assert attack.success, attack.stderr
    assert attack.result["tried"] > 0
    assert attack.result["opened"] == []
    assert attack.result["loot"] == []
    assert attack.result["mine"] == "attacker"
    victim = await one_container.execute(sandboxed, Job(code="result = 6 * 7"))
    assert victim.container_id == attack.container_id  # really the same container
    assert (victim.success, victim.result, victim.stdout) == (True, 42, "")


# Job code: try to stop, kill and ptrace every other process and read its memory; leave a
# daemon behind that would read the next job from any descriptor or memory it can reach.
STOP_KILL_TRACE = """
import ctypes, os, signal, time
libc = ctypes.CDLL(None, use_errno=True)
done = {}
for pid in [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()]:
    for name, attempt in (
        ("stop", lambda: os.kill(pid, signal.SIGSTOP)),
        ("kill", lambda: os.kill(pid, signal.SIGKILL)),
        ("mem", lambda: open(f"/proc/{pid}/mem", "rb").close()),
        ("environ", lambda: open(f"/proc/{pid}/environ", "rb").read()),
    ):
        try:
            attempt()
            done.setdefault(name, []).append(pid)
        except OSError:
            pass
    for request in (16, 0x4206):  # PTRACE_ATTACH, PTRACE_SEIZE
        if libc.ptrace(request, pid, None, None) == 0:
            done.setdefault("ptrace", []).append(pid)
if os.fork() == 0:  # a daemon that outlives the job, waiting for the next one
    os.setsid()
    if os.fork() == 0:
        deadline = time.time() + 60
        while time.time() < deadline:
            for p in os.listdir("/proc"):
                for f in ("fd/0", "fd/1", "mem", "environ"):
                    try:
                        with open(f"/proc/{p}/{f}", "rb") as fh:
                            open("/tmp/loot", "ab").write(fh.read(4096))
                    except OSError:
                        pass
            time.sleep(0.01)
    os._exit(0)
time.sleep(0.2)  # the daemon is running
result = done
"""

VICTIM = """
import os
def uid(pid):
    try:
        return [ln.split()[1] for ln in open(f"/proc/{pid}/status") if ln[:4] == "Uid:"][0]
    except (OSError, IndexError):
        return None
tracer = [ln.split()[1] for ln in open("/proc/self/status") if ln.startswith("TracerPid:")][0]
others = [p for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()
          and uid(p) == str(os.getuid())]
result = {"secret_len": len(args), "tracer": tracer, "others": others,
          "loot": os.path.exists("/tmp/loot")}
"""


async def test_a_job_cannot_stop_kill_or_trace_the_runner_nor_see_the_next_job(
    one_container: WarmPool, sandboxed: Profile
) -> None:
    """SIGSTOP, SIGKILL, PTRACE_ATTACH/SEIZE and opening /proc/<pid>/mem or environ fail for
    every process the job did not start (init, runner, zygote, spares). The daemon it leaves
    to read the next job is gone before that job starts: the next job runs untraced, alone
    with its uid, and nothing of the attacker's is left in /tmp."""
    attack = await one_container.execute(sandboxed, Job(code=STOP_KILL_TRACE))
    assert attack.success, attack.stderr
    assert attack.result == {}
    secret = "victim-" + secrets.token_hex(32)
    victim = await one_container.execute(sandboxed, Job(code=VICTIM, args=secret))
    assert victim.container_id == attack.container_id
    assert victim.success, victim.stderr
    assert victim.result == {
        "secret_len": len(secret),
        "tracer": "0",
        "others": [],
        "loot": False,
    }


SECRET_LENGTH = 600
# Job code: find, in its own memory, a SECRET_LENGTH-byte string starting with the marker
# whose sha256 is one of the given ones; it plants its own canary first, to prove the scan
# would find such a string if it were there.
MEMORY_SCAN = """
import hashlib, re
canary = ("GZSECRET-" + args["canary_body"])
wanted = {args["secret_sha"]: "secret", args["canary_sha"]: "canary"}
found = set()
with open("/proc/self/maps") as maps, open("/proc/self/mem", "rb", 0) as mem:
    for line in maps:
        fields = line.split()
        if "r" not in fields[1] or (len(fields) > 5 and fields[5] in ("[vvar]", "[vsyscall]")):
            continue
        start, end = (int(x, 16) for x in fields[0].split("-"))
        try:
            mem.seek(start)
            chunk = mem.read(end - start)
        except (OSError, ValueError, OverflowError):
            continue
        for hit in re.finditer(rb"GZSECRET-", chunk):
            candidate = chunk[hit.start() : hit.start() + args["length"]]
            name = wanted.get(hashlib.sha256(candidate).hexdigest())
            if name:
                found.add(name)
result = sorted(found)
"""


async def test_a_job_cannot_find_an_earlier_jobs_secret_in_its_own_memory(
    one_container: WarmPool, sandboxed: Profile
) -> None:
    """A 600-character secret passed in one job's args (and printed by it, so it also went
    through the runner's output buffers) is not in the memory of the next job, which scans
    all of its own /proc/self/mem for it knowing only its sha256; the same scan does find a
    canary of the same shape that the scanning job planted itself."""
    body = secrets.token_hex(SECRET_LENGTH)[: SECRET_LENGTH - len("GZSECRET-")]
    secret = "GZSECRET-" + body
    canary_body = secrets.token_hex(SECRET_LENGTH)[: SECRET_LENGTH - len("GZSECRET-")]
    owner = await one_container.execute(
        sandboxed, Job(code="print(args)\nresult = len(args)", args=secret)
    )
    assert (owner.success, owner.result) == (True, SECRET_LENGTH)
    scan_args = {
        "secret_sha": hashlib.sha256(secret.encode()).hexdigest(),
        "canary_sha": hashlib.sha256(("GZSECRET-" + canary_body).encode()).hexdigest(),
        "canary_body": canary_body,
        "length": SECRET_LENGTH,
    }
    scan = await one_container.execute(sandboxed, Job(code=MEMORY_SCAN, args=scan_args))
    assert scan.container_id == owner.container_id
    assert scan.success, scan.stderr
    assert scan.result == ["canary"]


# A compromised runner: answers run N with forged replies for N+1..N+3 before its own.
LYING_RUNNER = """
import json, os, sys
def send(obj):
    os.write(1, json.dumps(obj).encode() + b"\\n")
send({"op": "hello", "proto": %d})
buf = b""
while True:
    chunk = os.read(0, 65536)
    if not chunk:
        break
    buf += chunk
    while b"\\n" in buf:
        line, buf = buf.split(b"\\n", 1)
        msg = json.loads(line)
        if msg.get("op") != "run":
            continue
        buf = buf[msg["bytes"]:]
        n = msg["id"]
        for later in (n + 1, n + 2, n + 3):
            send({"op": "done", "id": later, "result": "FORGED", "has_result": True,
                  "exit_code": 0, "clean": True})
        send({"op": "done", "id": n, "result": "real", "has_result": True, "exit_code": 0,
              "clean": True})
"""


async def test_the_host_never_matches_unsolicited_frames_to_later_requests(
    engine: Engine, sandboxed: Profile
) -> None:
    """Even a runner that lies (here: replaced by a script that sends `done` frames for ids
    it was not asked about) cannot plant answers for later requests: the first unsolicited
    frame ends the connection, the run in flight fails as unanswered, and no later request
    ever sees "FORGED"."""
    from gleitzeit_docker.runner import PROTO

    labels = engine.labels(HUB_ID, pool_key="lying-runner")
    cmd = [sandboxed.python, "-u", "-c", LYING_RUNNER % PROTO]
    cid = await engine.create(sandboxed.container_config(labels, cmd))
    conn = await RunnerConnection.attach(engine, cid)
    try:
        await engine.start(cid)
        await conn.wait_hello(60)  # generous: a container starts slowly on a loaded machine
        request = Job(code="result = 1").request(sandboxed)
        first = await conn.run(request, timeout=60, kill_grace=1)
        second = await conn.run(request, timeout=5, kill_grace=1)
        assert [(o.reply or {}).get("result") for o in (first, second)] == [None, None]
        assert second.responsive is False
        assert not conn.alive  # the connection was ended: its container is discarded
    finally:
        await conn.close()
        await engine.delete(cid)
    # The honest runner on a normal container still answers.
    config = PoolConfig(max_size=1, **GENEROUS)
    pool = WarmPool(engine, hub_id=HUB_ID, config=config)
    try:
        ok = await pool.execute(sandboxed, Job(code="result = 6 * 7"))
        assert (ok.success, ok.result) == (True, 42)
    finally:
        await pool.close()
