"""The old ``local`` execution mode, made safe to leave on: a child process with a timeout.

The old provider ran local code with ``exec`` inside the server process and wrapped it in
``asyncio.wait_for``, which cannot interrupt synchronous code - an endless loop hung the
server. Here the code runs in a separate interpreter (``python -I``, its own session and
working directory); at the timeout the whole process group is killed. It is still *trusted*
execution on the host: only callers allowed to run arbitrary code should get it, which is why
the mode must be switched on explicitly.

``allowed_local_modules`` (stored but never checked before) is enforced as a check of the
code's import statements - a guard against mistakes, not a sandbox.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["disallowed_imports", "run_local"]

# The child: reads {"code", "args"} from stdin, runs the code with the args as variables, and
# writes {"result"} or {"error"} as JSON to the file named by argv[1].
_CHILD = r"""
import json, sys, traceback
job = json.loads(sys.stdin.read())
scope = {"__name__": "__main__", "__builtins__": __builtins__}
scope.update(job.get("args") or {})
out = {}
code = 0
try:
    exec(compile(job["code"], "<code>", "exec"), scope)
except SystemExit as exc:
    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    if code:
        out["error"] = f"SystemExit: {exc.code}"
except BaseException as exc:
    traceback.print_exc()
    out["error"] = f"{type(exc).__name__}: {exc}"
    code = 1
if "result" in scope:
    try:
        json.dumps(scope["result"], allow_nan=False)
        out["result"] = scope["result"]
    except (TypeError, ValueError):
        out["result"] = repr(scope["result"])
with open(sys.argv[1], "w", encoding="utf-8") as fh:
    json.dump(out, fh)
sys.stdout.flush()
sys.stderr.flush()
sys.exit(code)
"""

_OUTPUT_LIMIT = 4 << 20


def disallowed_imports(code: str, allowed: Iterable[str]) -> list[str]:
    """Top-level module names the code imports that are not in ``allowed``."""
    permitted = set(allowed)
    found: list[str] = []
    for node in ast.walk(ast.parse(code)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        for name in names:
            root = name.split(".", 1)[0]
            if root not in permitted and root not in found:
                found.append(root)
    return found


def _kill(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


async def run_local(
    code: str,
    args: Mapping[str, Any] | None,
    timeout: float,
    *,
    allowed_modules: Iterable[str] | None = None,
) -> dict[str, Any]:
    """Run ``code`` in a child interpreter; the old local result shape
    ``{success, stdout, stderr, result?, error?, execution_mode: "local"}`` (plus
    ``exit_code``)."""
    base: dict[str, Any] = {"execution_mode": "local"}
    try:
        ast.parse(code)
    except SyntaxError as exc:
        return {
            **base,
            "success": False,
            "stdout": "",
            "stderr": "",
            "exit_code": None,
            "error": f"SyntaxError: {exc}",
        }
    if allowed_modules:
        bad = disallowed_imports(code, allowed_modules)
        if bad:
            return {
                **base,
                "success": False,
                "stdout": "",
                "stderr": "",
                "exit_code": None,
                "error": f"imports not in allowed_local_modules: {', '.join(bad)}",
            }
    payload = json.dumps({"code": code, "args": dict(args or {})}, default=repr).encode()
    with tempfile.TemporaryDirectory(prefix="gleitzeit-local-") as workdir:
        result_path = Path(workdir) / "result.json"
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-I",
            "-c",
            _CHILD,
            str(result_path),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=workdir,
            start_new_session=True,  # its own process group: the kill takes its children too
        )
        try:
            async with asyncio.timeout(timeout):
                stdout, stderr = await process.communicate(payload)
        except TimeoutError:
            _kill(process)
            stdout, stderr = await process.communicate()
            return {
                **base,
                "success": False,
                "stdout": _text(stdout),
                "stderr": _text(stderr),
                "exit_code": process.returncode,
                "error": f"timeout after {timeout:g} s",
            }
        except BaseException:
            _kill(process)
            await process.wait()
            raise
        finally:
            _kill(process)  # nothing of it may outlive the call (children it started, say)
        try:
            reply = json.loads(result_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            reply = {"error": f"the child exited with code {process.returncode} before reporting"}
    result: dict[str, Any] = {
        **base,
        "success": process.returncode == 0 and "error" not in reply,
        "stdout": _text(stdout),
        "stderr": _text(stderr),
        "exit_code": process.returncode,
    }
    if "result" in reply:
        result["result"] = reply["result"]
    if "error" in reply:
        result["error"] = reply["error"]
    return result


def _text(data: bytes | None) -> str:
    return (data or b"")[:_OUTPUT_LIMIT].decode("utf-8", "replace")
