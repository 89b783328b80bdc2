"""Exposure: serving beyond loopback without a key, and credentials in resource URLs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from gleitzeit_ollama.discovery import EnvDiscoverer
from gleitzeit_ollama.settings import OllamaSettings

from gleitzeit_core import resource_id_for
from gleitzeit_core._errors import ConfigError
from gleitzeit_core._gateway import check_bind
from gleitzeit_core._keys import KeyConfig, KeyRing
from tests.security.conftest import CHAT, ServeFactory


@pytest.mark.usefixtures("isolated")
def test_serve_refuses_an_open_non_loopback_bind(tmp_path: Path) -> None:
    """``gleitzeit serve --host 0.0.0.0`` with no key exits with a message naming the fix,
    before binding anything."""
    config = tmp_path / "g.toml"
    config.write_text('[hubs.llm]\nkind = "ollama"\ndiscovery = []\n')
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "gleitzeit_core",
            "serve",
            "--config",
            str(config),
            "--host",
            "0.0.0.0",
            "--port",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "--insecure-no-auth" in done.stderr
    assert "without an API key" in done.stderr


def test_check_bind_allows_loopback_keys_or_an_explicit_insecure_flag() -> None:
    """Loopback binds need no key; a wide bind needs a key, or ``insecure_no_auth``, which
    returns the warning printed on every start."""
    open_ring = KeyRing({}, anonymous=KeyRing.from_config(_Gateway()).anonymous)
    keyed = KeyRing({"k": KeyConfig(token="t")})
    for host in ["127.0.0.1", "::1", "localhost", "127.0.0.2"]:
        assert check_bind(host, open_ring) is None
    for host in ["0.0.0.0", "::", "192.0.2.1", "gpu-box.lan"]:
        with pytest.raises(ConfigError, match="insecure-no-auth"):
            check_bind(host, open_ring)
        assert check_bind(host, keyed) is None
        warning = check_bind(host, open_ring, insecure_no_auth=True)
        assert warning is not None
        assert "NO authentication" in warning


class _Gateway:
    token = None
    token_env = "GLEITZEIT_TEST_UNSET_TOKEN"
    keys: dict[str, KeyConfig] = {}


async def test_resource_ids_and_status_never_carry_credentials(
    serve_gateway: ServeFactory, http: aiohttp.ClientSession
) -> None:
    """A configured URL with ``user:password@`` keeps its credentials for the calls but
    its id and /gleitzeit/status show neither; discovery from OLLAMA_HOSTS too."""
    assert resource_id_for("http://bob:hunter2@gpu:11434/") == "gpu:11434"
    found = await EnvDiscoverer(
        OllamaSettings(), {"OLLAMA_HOSTS": "http://bob:hunter2@gpu:11434,alice:pw@box"}
    ).discover(None)
    assert [spec.id for spec in found] == ["gpu:11434", "box:11434"]
    assert found[0].endpoint == "http://bob:hunter2@gpu:11434"
    served = await serve_gateway(userinfo="bob:hunter2")
    sim = served.sim_url.removeprefix("http://")
    async with http.post(f"{served.url}/api/chat", json=CHAT) as reply:
        assert reply.status == 200  # calls still go to the instance, credentials and all
    async with http.get(f"{served.url}/gleitzeit/status") as reply:
        text = await reply.text()
    assert "hunter2" not in text
    assert "bob" not in text
    assert [r["id"] for r in json.loads(text)["hubs"][0]["resources"]] == [sim]
