"""Running ``gleitzeit`` as a user does, with every first-party plugin installed: a command to
completion, or a server (a simulator, a gateway) in the background until the test ends."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

GLEITZEIT = str(Path(sys.executable).with_name("gleitzeit"))
REPO = Path(__file__).resolve().parents[2]


def user_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a user with no Gleitzeit settings of their own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GLEITZEIT_", "OLLAMA_"))}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    env.update(extra)
    return env


def gleitzeit(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [GLEITZEIT, *args],
        capture_output=True,
        text=True,
        env=env or user_env(tmp_path),
        cwd=cwd or tmp_path,
        timeout=120,
        check=False,
    )


@contextmanager
def background(
    args: list[str], env: dict[str, str], ready: str, stream: str = "stdout"
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Start ``args``; wait (up to 60 s) for a line containing ``ready`` on ``stream``;
    yield the process and that line; stop it with SIGTERM (SIGKILL after 20 s)."""
    process = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        pipe = process.stdout if stream == "stdout" else process.stderr
        assert pipe is not None
        deadline = time.monotonic() + 60
        line = ""
        while time.monotonic() < deadline:
            line = pipe.readline()
            if ready in line or not line:
                break
        assert ready in line, f"{args} did not start: {line!r} {process.poll()}"
        yield process, line
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()


@contextmanager
def simulator(tmp_path: Path, *models: str) -> Iterator[str]:
    """``gleitzeit sim ollama --port 0``; yields its URL."""
    args = [GLEITZEIT, "sim", "ollama", "--port", "0", "--models", ",".join(models)]
    args += ["--latency-ms", "1", "--tokens-per-s", "0"]
    with background(args, user_env(tmp_path), "listening on") as (_, line):
        found = re.search(r"http://\S+", line)
        assert found is not None, line
        yield found.group(0).rstrip("/")


@contextmanager
def gateway(tmp_path: Path, config: Path, **env: str) -> Iterator[str]:
    """``gleitzeit serve --config CONFIG``; yields its URL."""
    args = [GLEITZEIT, "serve", "--config", str(config)]
    with background(args, user_env(tmp_path, **env), "listening on", "stderr") as (_, line):
        found = re.search(r"http://\S+", line)
        assert found is not None, line
        yield found.group(0).rstrip("/")


def get_json(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def fenced_blocks(path: Path, language: str) -> list[str]:
    """The fenced code blocks of one language in a Markdown file, in order."""
    text = path.read_text(encoding="utf-8")
    return re.findall(rf"^```{language}\n(.*?)^```$", text, flags=re.S | re.M)
