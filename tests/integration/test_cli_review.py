"""Second look at the newcomer's CLI (issue 18), each a real process on loopback: ``status``
finds the key of the gateway it was pointed at, a reader that closes the pipe ends
``status --watch`` quietly, and ``doctor`` never prints a URL's password."""

from __future__ import annotations

import socket
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from .support import GLEITZEIT, gateway, gleitzeit, simulator, user_env

TOKEN = "s3cr3t-admin-token-7f2a"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _config(tmp_path: Path, url: str, extra: str = "") -> Path:
    path = tmp_path / "g.toml"
    path.write_text(
        f'[gateway]\nport = {_free_port()}\n{extra}\n[hubs.llm]\nkind = "ollama"\n'
        f'discovery = ["static"]\n\n[[hubs.llm.resources]]\nid = "sim"\nurl = "{url}"\n',
        encoding="utf-8",
    )
    return path


def test_status_of_a_config_with_a_token_uses_that_token(tmp_path: Path) -> None:
    """``status --config`` of a config whose ``[gateway] token`` the gateway requires answers
    the table (exit 0), and so does ``GLEITZEIT_CONFIG``; asked without any key, the 401 says
    how to give one (``--token`` or ``GLEITZEIT_GATEWAY_TOKEN``). The token is never printed."""
    with simulator(tmp_path, "llama3.2") as url:
        config = _config(tmp_path, url, f'token = "{TOKEN}"')
        with gateway(tmp_path, config) as served:
            port = served.rsplit(":", 1)[1]
            by_option = gleitzeit(tmp_path, "status", "--config", str(config))
            assert by_option.returncode == 0, by_option.stderr
            assert "sim" in by_option.stdout
            env = user_env(tmp_path, GLEITZEIT_CONFIG=str(config))
            by_env = gleitzeit(tmp_path, "status", "--json", env=env)
            assert by_env.returncode == 0, by_env.stderr
            keyless = gleitzeit(tmp_path, "status", "--port", port)
            assert keyless.returncode == 1
            assert keyless.stderr.startswith("gleitzeit: ")
            assert "401" in keyless.stderr
            assert "--token" in keyless.stderr
            assert "GLEITZEIT_GATEWAY_TOKEN" in keyless.stderr
            for result in (by_option, by_env, keyless):
                assert TOKEN not in result.stdout + result.stderr


def test_the_configs_token_goes_only_to_the_configs_gateway(tmp_path: Path) -> None:
    """With ``GLEITZEIT_CONFIG`` holding a ``[gateway] token``, ``status --url`` of another
    server, and ``status --port`` of another port, do not send that token (a server on
    loopback records the Authorization headers it got)."""
    seen: list[str | None] = []

    class Recorder(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization"))
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"error": "no"}')

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = str(server.server_address[1])
        config = _config(tmp_path, "http://127.0.0.1:1", f'token = "{TOKEN}"')
        env = user_env(tmp_path, GLEITZEIT_CONFIG=str(config))
        by_url = gleitzeit(tmp_path, "status", "--url", f"http://127.0.0.1:{port}", env=env)
        by_port = gleitzeit(tmp_path, "status", "--port", port, env=env)
    finally:
        server.shutdown()
        server.server_close()
    assert by_url.returncode == 1
    assert by_port.returncode == 1
    assert seen == [None, None]


def test_status_watch_piped_to_head_ends_quietly(tmp_path: Path) -> None:
    """``status --watch`` (table and ``--json``) piped into ``head``: when head has its lines
    and closes the pipe, status ends by itself with no message on stderr (not "gleitzeit:
    BrokenPipeError"), and head got complete snapshots."""
    with simulator(tmp_path, "llama3.2") as url:
        config = _config(tmp_path, url)
        with gateway(tmp_path, config):
            for extra in ([], ["--json"]):
                command = [GLEITZEIT, "status", "--config", str(config), "--watch"]
                shell = (
                    " ".join([*command, *extra, "--interval", "0.1"])
                    + " 2>status.err | head -n 3 >head.out; echo ${PIPESTATUS[0]} >status.rc"
                )
                subprocess.run(
                    ["bash", "-c", shell],
                    cwd=tmp_path,
                    env=user_env(tmp_path),
                    timeout=120,
                    check=True,
                )
                assert (tmp_path / "status.err").read_text() == "", extra
                assert len((tmp_path / "head.out").read_text().splitlines()) == 3
                # click's convention for a closed pipe: quietly, exit 1 (not a hang, not 0)
                assert (tmp_path / "status.rc").read_text().strip() == "1"


def test_doctor_does_not_print_a_resource_urls_password(tmp_path: Path) -> None:
    """A resource URL with ``user:password@`` that does not answer: ``doctor`` names the
    resource and its host:port but not the password (nor the user part)."""
    dead = f"http://ops:hunter2-pass@127.0.0.1:{_free_port()}"
    config = _config(tmp_path, dead)
    result = gleitzeit(tmp_path, "doctor", "--config", str(config), "--timeout", "5")
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "hub llm (ollama): sim at http://127.0.0.1:" in output
    assert "hunter2-pass" not in output
    assert "ops:" not in output
