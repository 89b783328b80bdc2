"""``gleitzeit serve`` as a child process, for tests and benchmarks that need the gateway as
users run it (its own process, its own event loop, stopped by SIGTERM)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["GatewayProcess"]


class GatewayProcess:
    """``python -m gleitzeit_core serve --port 0`` on 127.0.0.1 over the TOML ``config``, with
    only the named ``plugins`` loaded; ``url`` once ``start()`` returned. The log (stdout and
    stderr) is ``workdir/gateway.log``."""

    def __init__(self, config: str, workdir: Path, plugins: str = "ollama") -> None:
        self.config = workdir / "gleitzeit.toml"
        self.config.write_text(config, encoding="utf-8")
        self.log = workdir / "gateway.log"
        self.plugins = plugins
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self, timeout: float = 30.0) -> GatewayProcess:
        env = dict(os.environ, GLEITZEIT_LOAD_PLUGINS=self.plugins, PYTHONUNBUFFERED="1")
        # nothing from the machine's environment may point the gateway elsewhere
        for name in ("GLEITZEIT_CONFIG", "GLEITZEIT_GATEWAY_TOKEN", "OLLAMA_HOST", "OLLAMA_HOSTS"):
            env.pop(name, None)
        command = [sys.executable, "-m", "gleitzeit_core", "serve"]
        command += ["--config", str(self.config), "--host", "127.0.0.1", "--port", "0"]
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.log.read_text(errors="replace").splitlines():
                if "listening on" in line:
                    self.url = line.rsplit(" ", 1)[-1].strip()
                    return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the gateway did not start:\n{self.log.read_text(errors='replace')}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s; always reaps the child."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
