"""The runner's wire protocol, driven directly over pipes on the host (no engine needed).

The runner is started with ``reap: false``: its process sweep and directory wipe are for
sandbox containers only and must never run on a host (or in a CI container).
"""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from gleitzeit_docker.runner import runner_source


class Pipe:
    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdin is not None
        assert proc.stdout is not None
        self.proc = proc
        self.stdin: IO[bytes] = proc.stdin
        self.stdout: IO[bytes] = proc.stdout
        self.buffer = b""

    def send(self, msg: dict[str, Any]) -> None:
        self.stdin.write(json.dumps(msg).encode() + b"\n")
        self.stdin.flush()

    def run(self, ident: int, **job: Any) -> None:
        """A ``run`` header, then the job itself as raw bytes (what the host sends)."""
        payload = json.dumps(job).encode()
        header = {"op": "run", "id": ident, "bytes": len(payload)}
        self.stdin.write(json.dumps(header).encode() + b"\n" + payload)
        self.stdin.flush()

    def recv(self, timeout: float = 30.0) -> dict[str, Any]:
        # Read raw bytes into our own buffer: a buffered readline() could keep a second line
        # in Python's buffer where select() cannot see it.
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.stdout], [], [], max(0.0, left))
            assert ready, "the runner did not answer in time"
            chunk = os.read(self.stdout.fileno(), 65536)
            assert chunk, "the runner closed its output"
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        message: dict[str, Any] = json.loads(line)
        return message


def _start_runner(cfg: dict[str, Any], cwd: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-u", "-c", runner_source(), json.dumps({"reap": False, **cfg})],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=cwd,
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(5)
    for stream in (proc.stdin, proc.stdout):
        assert stream is not None
        stream.close()


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[Pipe]:
    proc = _start_runner({"once": False}, tmp_path)
    yield Pipe(proc)
    _stop(proc)


def test_hello_run_ping_kill_and_eof(runner: Pipe, tmp_path: Path) -> None:
    """hello, then run -> done + cleaned, ping -> pong, kill ends a run, EOF stops it."""
    hello = runner.recv()
    assert hello["op"] == "hello"
    assert hello["proto"] == 2
    runner.run(1, code="print('hi')\nresult = args + 1", args=41)
    done = runner.recv()
    assert (done["op"], done["id"], done["exit_code"]) == ("done", 1, 0)
    assert (done["stdout"], done["result"], done["has_result"]) == ("hi\n", 42, True)
    assert runner.recv() == {"op": "cleaned", "id": 1, "clean": True}
    runner.send({"op": "ping", "id": 2})
    assert runner.recv() == {"op": "pong", "id": 2, "busy": False, "clean": True}

    spinning = tmp_path / "spinning"  # made once 'spin' is printed: no guessing how long
    code = f"print('spin', flush=True)\nopen({str(spinning)!r}, 'w').close()\nwhile True: pass"
    runner.run(3, code=code)
    deadline = time.monotonic() + 30
    while not spinning.exists():
        assert time.monotonic() < deadline, "the run never started"
        time.sleep(0.02)
    runner.send({"op": "ping", "id": 4})  # answered while busy
    assert runner.recv() == {"op": "pong", "id": 4, "busy": True}
    started = time.monotonic()
    runner.send({"op": "kill", "id": 3})
    killed = runner.recv()  # the run never ends by itself: only the kill can end it
    assert time.monotonic() - started < 10.0  # at once, not after a grace (loaded CI: slow)
    assert (killed["id"], killed["killed"], killed["exit_code"], killed["signal"]) == (
        3,
        True,
        137,
        9,
    )
    assert killed["stdout"] == "spin\n"
    assert runner.recv()["op"] == "cleaned"

    runner.stdin.close()  # EOF: the runner stops (in a container: the container exits)
    assert runner.proc.wait(5) == 0


def test_protocol_channel_is_private(runner: Pipe) -> None:
    """Code writing straight to file descriptors 1/2, or printing garbage, cannot corrupt
    the protocol: it lands in the run's captured output."""
    runner.recv()  # hello
    code = (
        "import os\n"
        "os.write(1, b'raw-out\\n')\n"
        "os.write(2, b'raw-err\\n')\n"
        'print(\'{"op": "done"}\')'
    )
    runner.run(7, code=code)
    done = runner.recv()
    assert done["id"] == 7
    assert done["stdout"] == 'raw-out\n{"op": "done"}\n'
    assert done["stderr"] == "raw-err\n"


def test_a_line_that_never_ends_is_a_protocol_violation_not_a_growing_buffer() -> None:
    """An engine (or runner) that sends stdout without a newline is cut off once the line
    passes the frame limit; the buffer never holds more than the limit plus one chunk."""
    from aiodocker.stream import Message
    from gleitzeit_docker.runner import ProtocolViolation, _Frames

    frames = _Frames(max_line=1000)
    assert frames.feed(Message(1, b'{"op": "hello"}\n{"op"')) == [{"op": "hello"}]
    frames.feed(Message(1, b"x" * 95))  # with the 5 bytes left over: 100
    for _ in range(9):  # 1000 bytes: still within the limit
        frames.feed(Message(1, b"x" * 100))
    with pytest.raises(ProtocolViolation, match="longer than 1000 bytes"):
        frames.feed(Message(1, b"x" * 100))
    assert len(frames.buf) <= 1000 + 100


class SocketPipe(Pipe):
    """The same protocol over the runner's direct socket (its stdio stays the tether)."""

    def __init__(self, proc: subprocess.Popen[bytes], sock: socket.socket) -> None:
        super().__init__(proc)
        self.sock = sock
        self.reader = sock.makefile("rb", buffering=0)
        self.stdout = self.reader
        self.stdin = sock.makefile("wb", buffering=0)


def test_the_direct_socket_carries_the_protocol_and_its_loss_is_not_the_tethers(
    tmp_path: Path,
) -> None:
    """A runner told of the host's socket connects before its hello and says so; requests
    on the socket are answered on the socket; when the socket goes, the runner drops it and
    still answers on stdin; when stdin (the tether) ends, it stops."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(tmp_path / "h.sock"))
    listener.listen(1)
    listener.settimeout(30)
    proc = _start_runner({"once": False, "direct": str(tmp_path / "h.sock")}, tmp_path)
    try:
        stdio = Pipe(proc)
        assert stdio.recv()["direct"] is True
        conn, _ = listener.accept()
        direct = SocketPipe(proc, conn)
        direct.run(1, code="result = args * 2", args=21)
        done = direct.recv()
        assert (done["op"], done["id"], done["result"]) == ("done", 1, 42)
        assert direct.recv() == {"op": "cleaned", "id": 1, "clean": True}
        direct.send({"op": "ping", "id": 2})
        assert direct.recv() == {"op": "pong", "id": 2, "busy": False, "clean": True}
        conn.close()
        stdio.send({"op": "ping", "id": 3})
        assert stdio.recv() == {"op": "pong", "id": 3, "busy": False, "clean": True}
        stdio.stdin.close()
        assert proc.wait(10) == 0
    finally:
        listener.close()
        _stop(proc)


def test_without_the_hosts_socket_the_runner_says_so_and_serves_on_stdin(
    tmp_path: Path,
) -> None:
    """No socket at the path it was given: the hello says ``direct: false`` and stdin
    carries the protocol as before."""
    proc = _start_runner({"once": False, "direct": str(tmp_path / "missing.sock")}, tmp_path)
    try:
        stdio = Pipe(proc)
        assert stdio.recv()["direct"] is False
        stdio.run(1, code="result = 1")
        assert stdio.recv()["result"] == 1
    finally:
        _stop(proc)


# A module that, imported from the working directory, leaves a mark there.
PLANTED = "import pathlib\npathlib.Path(__file__).with_suffix('.imported').touch()\n"


def test_the_runner_never_imports_from_its_working_directory(tmp_path: Path) -> None:
    """Modules the runner imports (``base64``, ``tempfile``), planted in its working
    directory (in a container: /tmp, writable by jobs), are not imported by the runner; a
    job's own sys.path is as ``python3 -c`` gives it: its directory, then "" (its cwd)."""
    for name in ("base64", "tempfile"):
        (tmp_path / f"{name}.py").write_text(PLANTED)
    proc = _start_runner({"once": False}, tmp_path)
    try:
        runner = Pipe(proc)
        assert runner.recv()["op"] == "hello"
        runner.run(1, code="import os, sys\nresult = [sys.path[:2], os.getcwd()]")
        done = runner.recv()
        path, cwd = done["result"]
        assert path == [cwd, ""]
    finally:
        _stop(proc)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base64.py", "tempfile.py"]
