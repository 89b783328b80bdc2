"""``python/validate`` off the event loop: untrusted source is compiled in a separate process.

``compile()`` holds the GIL for as long as it runs (2 MiB of code blocked the gateway 2.2 s and
took 835 MiB), so a thread would not help. Each validation runs ``python -I -S`` on the host
with the source on stdin, under an address-space limit (``RLIMIT_AS``) and a wall-clock
timeout after which it is killed; a semaphore bounds how many run at once, and source above
``max_size`` is refused before any process starts. Nothing is executed: the worker only
compiles. Its answer has the shape of the old in-process check:
``{valid, error, line, column}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
from typing import Any

from .profile_fields import format_size, parse_size

__all__ = ["Validator"]

# The worker: limit its own memory first, then read and compile; never exec.
_WORKER = r"""
import json, resource, sys
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
out = {"valid": True, "error": None, "line": None, "column": None}
try:
    source = sys.stdin.buffer.read().decode("utf-8", "surrogatepass")
    compile(source, "<code>", "exec", dont_inherit=True)
except SyntaxError as exc:
    where = f" (line {exc.lineno}, column {exc.offset})" if exc.lineno else ""
    out = {"valid": False, "error": f"{type(exc).__name__}: {exc.msg}{where}",
           "line": exc.lineno, "column": exc.offset}
except (ValueError, RecursionError, MemoryError) as exc:
    out = {"valid": False, "error": f"{type(exc).__name__}: {exc}", "line": None, "column": None}
sys.stdout.write(json.dumps(out))
"""


def _invalid(error: str) -> dict[str, Any]:
    return {"valid": False, "error": error, "line": None, "column": None}


class Validator:
    """Compiles source in a bounded worker process; see the module docstring."""

    def __init__(
        self,
        *,
        max_size: int | str = "1m",
        timeout: float = 5.0,
        memory: int | str = "512m",
        concurrency: int = 2,
    ) -> None:
        self.max_size = parse_size(max_size, "validate.max_size")
        self.memory = parse_size(memory, "validate.memory")
        self.timeout = timeout
        self._gate = asyncio.Semaphore(concurrency)

    def too_big(self, source: str) -> str | None:
        """Why ``source`` is refused without compiling (None: it is not)."""
        size = len(source.encode("utf-8", "surrogatepass"))
        if size <= self.max_size:
            return None
        return (
            f"{format_size(size)} of source is more than python/validate takes "
            f"({format_size(self.max_size)}; the hub's validate.max_size)"
        )

    async def validate(self, source: str) -> dict[str, Any]:
        """``{valid, error, line, column}``; the caller checks ``too_big`` first."""
        data = source.encode("utf-8", "surrogatepass")
        async with self._gate:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-I",
                "-S",
                "-c",
                _WORKER,
                str(self.memory),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
            try:
                async with asyncio.timeout(self.timeout):
                    out, _ = await proc.communicate(data)
            except TimeoutError:
                return _invalid(
                    f"compiling took longer than {self.timeout:g} s (the hub's "
                    "validate.timeout); nothing was checked"
                )
            finally:
                if proc.returncode is None:  # timed out or cancelled: no worker outlives us
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    await proc.wait()
        try:
            answer = json.loads(out)
        except ValueError:
            answer = None
        if proc.returncode != 0 or not isinstance(answer, dict):
            return _invalid(
                f"the compiler stopped (exit code {proc.returncode}), most likely out of its "
                f"memory ({format_size(self.memory)}; the hub's validate.memory)"
            )
        return answer
