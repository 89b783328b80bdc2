"""Completion as a bash user sets it up (``eval "$(gleitzeit completion bash)"``), in a real
bash: ``complete -p`` shows it registered, and pressing Tab offers commands, a plugin's
subcommands, options, and for ``plugins disable``/``enable`` the plugin names."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = r"""
eval "$(gleitzeit completion bash)"
complete -p gleitzeit
tab() {  # what bash would offer for the words given, the last one being completed
    COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); COMPREPLY=()
    _gleitzeit_completion gleitzeit "${COMP_WORDS[-1]}" "${COMP_WORDS[-2]}"
    echo "${COMP_WORDS[*]}|${COMPREPLY[*]}"
}
tab gleitzeit s
tab gleitzeit sim ''
tab gleitzeit status --w
tab gleitzeit plugins disable breaker-w
tab gleitzeit plugins enable ''
"""


def _bash(tmp_path: Path) -> dict[str, list[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLEITZEIT_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    disabled = subprocess.run(
        ["gleitzeit", "plugins", "disable", "breaker-window"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert disabled.returncode == 0, disabled.stderr
    result = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "complete -o nosort -F _gleitzeit_completion gleitzeit", lines
    return {words: offered.split() for words, offered in (line.split("|", 1) for line in lines[1:])}


def test_bash_completion_offers_commands_options_and_plugin_names(tmp_path: Path) -> None:
    """Sourced into bash, completion offers ``serve sim status`` for ``s``, the ollama plugin's
    ``sim ollama``, ``--watch``/``--wide`` for ``status --w``, the installed breaker-window
    for ``plugins disable breaker-w``, and for ``plugins enable`` the plugin the user
    disabled."""
    offered = _bash(tmp_path)
    assert {"serve", "sim", "status"} <= set(offered["gleitzeit s"])
    assert offered["gleitzeit sim "] == ["ollama"]
    assert {"--watch", "--wide"} <= set(offered["gleitzeit status --w"])
    assert offered["gleitzeit plugins disable breaker-w"] == ["breaker-window"]
    assert offered["gleitzeit plugins enable "] == ["breaker-window"]
