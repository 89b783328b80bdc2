"""A config with a mistyped secret (``[gateway] token``, a key's ``token`` or
``token_sha256``): ``config check``, ``serve`` and ``doctor`` name the key and what was
expected, but never print the value, so a token cannot leak into a terminal or a CI log."""

from __future__ import annotations

import re
from pathlib import Path

from .conftest import Run

SECRETS = ["987654321", "sekret-list-value", "sekret-raw-token-in-sha-field"]
CONFIG = """\
[gateway]
token = 987654321

[gateway.keys.web]
token = ["sekret-list-value"]

[gateway.keys.ops]
token_sha256 = "sekret-raw-token-in-sha-field"
"""


def test_problems_with_secret_keys_never_quote_the_value(gleitzeit: Run, tmp_path: Path) -> None:
    """Each of the three problems is reported (key path, what was expected, the type given),
    exit 2 for ``config check`` and ``serve``, 1 for ``doctor``; no secret in any output."""
    config = tmp_path / "g.toml"
    config.write_text(CONFIG, encoding="utf-8")
    env = {"GLEITZEIT_LOAD_PLUGINS": ""}
    check = gleitzeit("config", "check", str(config), env=env)
    assert check.returncode == 2
    assert re.search(r"gateway\.token: expected .*, got a number \(not shown", check.stderr)
    assert "gateway.keys.web.token: expected a non-empty token, got a list" in check.stderr
    assert "gateway.keys.ops.token_sha256: expected 64 hex digits" in check.stderr
    serve = gleitzeit("serve", "--config", str(config), "--port", "0", env=env)
    assert serve.returncode == 2
    doctor = gleitzeit("doctor", "--config", str(config), env=env)
    assert doctor.returncode == 1
    assert "gateway.keys.ops.token_sha256" in doctor.stdout
    for result in (check, serve, doctor):
        for secret in SECRETS:
            assert secret not in result.stdout + result.stderr
