"""The command line as a newcomer types it, each run a real ``gleitzeit`` process: help and
completion list plugin commands from metadata without importing them, expected failures are
one ``gleitzeit:`` line and the fix (the traceback only with ``--debug``), the documented exit
codes hold, ``plugins disable`` refuses what it cannot disable, ``plugins list`` says what
disabled a plugin, and a config-less start adds only the hubs whose backend answers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from gleitzeit_core.testing.probe_contract import free_loopback_port
from tests.integration.support import get_json

from .conftest import Run, Site, listed

# A plugin whose module cannot be imported at all, and that declares a command in metadata.
BROKEN = {
    "gleitzeit": {"broken": "gz_broken_plugin"},
    "gleitzeit.commands": {"frobnicate": "gz_broken_plugin.cli:frobnicate"},
}
BROKEN_MODULES = {"gz_broken_plugin/__init__": "raise ImportError('the wheel is half installed')"}

# A plugin with two hub kinds for config-less starts: one whose backend answers, one not,
# and a provider whose method reports a failed run.
KINDS_MODULE = """
from gleitzeit_core import hookimpl
from gleitzeit_core._kinds import HubKind, ProviderKind
from gleitzeit_core._provider import Method, ProtocolProvider
from gleitzeit_core.testing.echo import EchoHub, EchoProbe

class UpHub(EchoHub):
    kind = "up"

class DownHub(EchoHub):
    kind = "down"

def _up():
    return {"kind": "up", "resources": [{"id": "a", "url": "echo://a"}]}

def _down():
    return {"kind": "down", "resources": [{"id": "b", "url": "echo://b"}]}

class FailProvider(ProtocolProvider):
    protocol = "fail/v1"
    def methods(self):
        return {"fail/run": Method("fail/run", self.run)}
    async def run(self, params):
        return {"success": False, "error": "the code raised"}

@hookimpl
def gleitzeit_register_hubs(register):
    register("up", HubKind(factory=UpHub, default_probe="echo", default_scheme="echo",
                           default_config=_up, default_check=lambda: None))
    register("down", HubKind(factory=DownHub, default_probe="echo", default_scheme="echo",
                             default_config=_down,
                             default_check=lambda: "nothing answers at echo://b; start it"))

@hookimpl
def gleitzeit_register_probes(register):
    register("echo", EchoProbe)

@hookimpl
def gleitzeit_register_providers(register):
    register("fail/v1", ProviderKind(factory=FailProvider, hub_kind="up"))
"""
KINDS = {"gleitzeit": {"kinds": "gz_kinds"}}
ONLY_KINDS = {"GLEITZEIT_LOAD_PLUGINS": "kinds"}


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def test_dash_h_and_help_list_plugin_commands_without_importing_them(
    site: Site, gleitzeit: Run
) -> None:
    """``-h`` is ``--help``; both list a plugin's command from its metadata even though the
    plugin cannot even be imported (so nothing was imported to list it)."""
    site.distribution(
        "gz-broken",
        BROKEN,
        {"gz_broken_plugin/__init__": BROKEN_MODULES["gz_broken_plugin/__init__"]},
    )
    short = gleitzeit("-h")
    long = gleitzeit("--help")
    assert short.returncode == 0, short.stderr
    assert short.stdout == long.stdout
    assert "frobnicate" in short.stdout
    assert "gz-broken" in short.stdout
    assert "half installed" not in short.stderr + short.stdout  # never imported
    for core in ("config", "doctor", "completion", "plugins", "run", "serve", "status"):
        assert core in short.stdout


def test_an_unimportable_plugin_command_is_one_line_and_the_fix(site: Site, gleitzeit: Run) -> None:
    """Running a command of a plugin that cannot be imported prints one ``gleitzeit:`` line
    naming the plugin, the error and how to fix it, exit 1; ``--debug`` shows the traceback."""
    site.distribution(
        "gz-broken",
        BROKEN,
        {"gz_broken_plugin/__init__": BROKEN_MODULES["gz_broken_plugin/__init__"]},
    )
    result = gleitzeit("frobnicate")
    assert result.returncode == 1
    lines = _lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("gleitzeit: plugin 'broken'")
    assert "half installed" in lines[0]
    assert "gleitzeit plugins disable broken" in lines[0]
    assert "Traceback" not in result.stderr
    debug = gleitzeit("--debug", "frobnicate")
    assert debug.returncode != 0
    assert "Traceback" in debug.stderr


def test_a_disabled_plugins_commands_are_not_listed(site: Site, gleitzeit: Run) -> None:
    """A plugin disabled with ``plugins disable`` has its commands left out of ``--help``."""
    site.distribution(
        "gz-broken",
        BROKEN,
        {"gz_broken_plugin/__init__": BROKEN_MODULES["gz_broken_plugin/__init__"]},
    )
    assert gleitzeit("plugins", "disable", "broken").returncode == 0
    assert "frobnicate" not in gleitzeit("--help").stdout


def test_completion_covers_plugin_commands_in_every_shell(site: Site, gleitzeit: Run) -> None:
    """``gleitzeit completion bash|zsh|fish`` prints a script for that shell, and completing
    ``gleitzeit f`` offers the plugin command ``frobnicate`` (from metadata alone)."""
    site.distribution(
        "gz-broken",
        BROKEN,
        {"gz_broken_plugin/__init__": BROKEN_MODULES["gz_broken_plugin/__init__"]},
    )
    for shell, marker in (("bash", "complete "), ("zsh", "compdef"), ("fish", "complete ")):
        script = gleitzeit("completion", shell)
        assert script.returncode == 0, script.stderr
        assert "_GLEITZEIT_COMPLETE" in script.stdout
        assert marker in script.stdout
    env = {"_GLEITZEIT_COMPLETE": "bash_complete", "COMP_WORDS": "gleitzeit f", "COMP_CWORD": "1"}
    offered = gleitzeit(env=env)
    assert "frobnicate" in offered.stdout
    env["COMP_WORDS"] = "gleitzeit plugins "
    env["COMP_CWORD"] = "2"
    assert {"list", "enable", "disable"} <= {
        line.split(",")[-1] for line in gleitzeit(env=env).stdout.splitlines()
    }
    fish = gleitzeit(
        env={
            "_GLEITZEIT_COMPLETE": "fish_complete",
            "COMP_WORDS": "gleitzeit fr",
            "COMP_CWORD": "fr",
        }
    )
    assert "frobnicate" in fish.stdout


def test_plugins_disable_refuses_unknown_names_and_builtin(site: Site, gleitzeit: Run) -> None:
    """``plugins disable`` of a name nobody installed exits 2 with the installed names and the
    closest one, of ``builtin`` exits 2; neither writes the user config."""
    site.distribution("gz-kinds", KINDS, {"gz_kinds": KINDS_MODULE})
    typo = gleitzeit("plugins", "disable", "kinsd")
    assert typo.returncode == 2
    assert "no installed plugin is named 'kinsd'" in typo.stderr
    assert 'did you mean "kinds"?' in typo.stderr
    core = gleitzeit("plugins", "disable", "builtin")
    assert core.returncode == 2
    assert "cannot be disabled" in core.stderr
    assert listed(gleitzeit("plugins", "list", "--json"))["kinds"]["status"] == "loaded"
    done = gleitzeit("plugins", "disable", "kinds")
    assert done.returncode == 0, done.stderr
    again = gleitzeit("plugins", "enable", "nothing-like-it")
    assert again.returncode == 2


def test_plugins_list_says_what_disabled_a_plugin(
    site: Site, gleitzeit: Run, tmp_path: Path
) -> None:
    """A disabled plugin's record names what disabled it: the environment variable, the
    config file (by path) or the user config."""
    site.distribution("gz-kinds", KINDS, {"gz_kinds": KINDS_MODULE})
    by_env = listed(
        gleitzeit("plugins", "list", "--json", env={"GLEITZEIT_DISABLED_PLUGINS": "kinds"})
    )["kinds"]
    assert by_env["status"] == "disabled"
    assert "GLEITZEIT_DISABLED_PLUGINS" in by_env["disabled_by"]
    config = tmp_path / "g.toml"
    config.write_text('[plugins]\ndisabled = ["kinds"]\n', encoding="utf-8")
    by_file = listed(gleitzeit("plugins", "list", "--json", "--config", str(config)))["kinds"]
    assert str(config) in by_file["disabled_by"]
    by_env_config = listed(
        gleitzeit("plugins", "list", "--json", env={"GLEITZEIT_CONFIG": str(config)})
    )["kinds"]
    assert str(config) in by_env_config["disabled_by"]
    assert gleitzeit("plugins", "disable", "kinds").returncode == 0
    by_user = listed(gleitzeit("plugins", "list", "--json"))["kinds"]
    assert "user config" in by_user["disabled_by"]
    table = gleitzeit("plugins", "list")
    assert "disabled by the user config" in " ".join(table.stdout.split())


def test_config_check_exit_codes_and_one_prefix(gleitzeit: Run, tmp_path: Path) -> None:
    """``config check`` exits 0 for a valid file and 2 for a broken one, whose every line
    starts with ``gleitzeit: FILE:``; a missing file or no file at all is also 2, in one line."""
    good = tmp_path / "good.toml"
    good.write_text("[gateway]\nport = 11600\n", encoding="utf-8")
    ok = gleitzeit("config", "check", str(good), env={"GLEITZEIT_LOAD_PLUGINS": ""})
    assert ok.returncode == 0, ok.stderr
    assert f"{good}: ok" in ok.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text('[gateway]\nport = "x"\nprot = 1\n[hubz]\n', encoding="utf-8")
    broken = gleitzeit("config", "check", str(bad), env={"GLEITZEIT_LOAD_PLUGINS": ""})
    assert broken.returncode == 2
    lines = _lines(broken.stderr)
    assert len(lines) == 4  # three problems and the count
    assert all(line.startswith(f"gleitzeit: {bad}: ") for line in lines)
    assert any('gateway.prot: unknown key; did you mean "port"?' in line for line in lines)
    assert any('hubz: unknown section; did you mean "hubs"?' in line for line in lines)
    from_env = gleitzeit("config", "check", env={"GLEITZEIT_CONFIG": str(good)})
    assert from_env.returncode == 0
    missing = gleitzeit("config", "check", str(tmp_path / "nope.toml"))
    assert missing.returncode == 2
    assert len(_lines(missing.stderr)) == 1
    assert "not found" in missing.stderr
    assert gleitzeit("config", "check").returncode == 2


def test_config_example_is_valid_and_is_the_shipped_example(gleitzeit: Run) -> None:
    """``config example`` prints examples/gleitzeit.toml, commented; it parses as TOML."""
    import tomllib

    printed = gleitzeit("config", "example")
    assert printed.returncode == 0
    shipped = Path(__file__).parents[2] / "examples" / "gleitzeit.toml"
    assert printed.stdout == shipped.read_text(encoding="utf-8")
    assert printed.stdout.count("\n# ") >= 5  # it explains itself
    assert tomllib.loads(printed.stdout)["hubs"]


def _serve(
    site_root: Path, tmp_path: Path, *args: str, env: dict[str, str]
) -> subprocess.Popen[str]:
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("GLEITZEIT_")}
    child_env.update({"PYTHONPATH": str(site_root), "XDG_CONFIG_HOME": str(tmp_path / "xdg")})
    child_env.update(env)
    return subprocess.Popen(
        [sys.executable, "-m", "gleitzeit_core", "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env,
    )


def _wait_until_up(url: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            get_json(url + "/gleitzeit/health")
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("the gateway did not come up within 60 s")


def _stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=30)
    return err


def test_without_a_config_only_answering_hubs_are_added(site: Site, tmp_path: Path) -> None:
    """With no config, the default hub of a kind whose backend does not answer is left out and
    reported once at start; /gleitzeit/health is then ok, names the left-out kind and why."""
    site.distribution("gz-kinds", KINDS, {"gz_kinds": KINDS_MODULE})
    port = free_loopback_port()
    process = _serve(site.root, tmp_path, "--port", str(port), env=ONLY_KINDS)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, process)
        status, health = get_json(url + "/gleitzeit/health")
    finally:
        err = _stop(process)
    assert status == 200, health
    assert list(health["hubs"]) == ["up"]
    assert health["not_added"] == {"down": "nothing answers at echo://b; start it"}
    assert err.count("nothing answers at echo://b") == 1


def test_health_says_per_hub_what_is_wrong(site: Site, tmp_path: Path) -> None:
    """A hub with no resources makes health 503, and its entry says why; a good hub's entry
    lists no problems."""
    site.distribution("gz-kinds", KINDS, {"gz_kinds": KINDS_MODULE})
    config = tmp_path / "g.toml"
    config.write_text(
        '[hubs.empty]\nkind = "up"\n[hubs.fine]\nkind = "up"\n'
        '[[hubs.fine.resources]]\nid = "a"\nurl = "echo://a"\n',
        encoding="utf-8",
    )
    port = free_loopback_port()
    process = _serve(
        site.root, tmp_path, "--config", str(config), "--port", str(port), env=ONLY_KINDS
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, process)
        status, health = get_json(url + "/gleitzeit/health")
    finally:
        _stop(process)
    assert status == 503
    assert health["hubs"]["fine"]["problems"] == []
    assert any("no resources" in p for p in health["hubs"]["empty"]["problems"])


def test_serve_on_a_busy_port_is_one_line_exit_1(site: Site, gleitzeit: Run) -> None:
    """``serve`` on a port something already listens on: one line naming the port and what to
    do, exit 1, no traceback."""
    import socket

    site.distribution("gz-kinds", KINDS, {"gz_kinds": KINDS_MODULE})
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = gleitzeit("serve", "--port", str(port), env=ONLY_KINDS)
    assert result.returncode == 1
    lines = _lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert f"port {port}" in lines[0]
    assert "already in use" in lines[0]
    assert "--port" in lines[0]
    assert "Traceback" not in result.stderr


def test_a_run_whose_result_failed_exits_1(site: Site, gleitzeit: Run) -> None:
    """``gleitzeit run`` prints the result, and exits 1 when it says ``success: false``."""
    site.distribution("gz-kinds", KINDS, {"gz_kinds": KINDS_MODULE})
    result = gleitzeit("run", "fail/run", env=ONLY_KINDS)
    assert result.returncode == 1, result.stderr
    assert json.loads(result.stdout)["success"] is False
    assert "did not succeed" in result.stderr
    unknown = gleitzeit("run", "no/such", env=ONLY_KINDS)
    assert unknown.returncode == 1
    assert "Traceback" not in unknown.stderr
    bad_params = gleitzeit("run", "fail/run", "--params", "[", env=ONLY_KINDS)
    assert bad_params.returncode == 2


FACTORY_GONE = """
from gleitzeit_core import hookimpl
from gleitzeit_core._kinds import HubKind

@hookimpl
def gleitzeit_register_hubs(register):
    register("gone", HubKind(factory="gz_gone_module_that_is_not_there:Hub"))
"""


def test_a_hub_kind_whose_factory_cannot_be_imported_is_one_line(
    site: Site, gleitzeit: Run, tmp_path: Path
) -> None:
    """A config selecting a hub kind whose factory module is missing: ``serve`` exits 1 with
    one line naming the plugin, the module and the fix (no traceback); ``config check`` lists
    it as a problem of that hub."""
    site.distribution("gz-gone", {"gleitzeit": {"gone": "gz_gone"}}, {"gz_gone": FACTORY_GONE})
    config = tmp_path / "g.toml"
    config.write_text('[hubs.x]\nkind = "gone"\n', encoding="utf-8")
    env = {"GLEITZEIT_LOAD_PLUGINS": "gone"}
    result = gleitzeit("serve", "--config", str(config), "--port", "0", env=env)
    assert result.returncode == 1
    lines = _lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert "plugin 'gone'" in lines[0]
    assert "gz_gone_module_that_is_not_there" in lines[0]
    assert "gleitzeit plugins disable gone" in lines[0]
    checked = gleitzeit("config", "check", str(config), env=env)
    assert checked.returncode == 2
    assert f"gleitzeit: {config}: hubs.x.kind: plugin 'gone'" in checked.stderr


def test_doctor_names_a_broken_plugin_with_its_version_and_the_fix(
    site: Site, gleitzeit: Run, tmp_path: Path
) -> None:
    """``doctor`` lists each plugin with its distribution and version; a plugin that cannot be
    imported is a problem with its error and a ``fix:`` line (exit 1), while a default hub
    left out for want of a backend is a note, and an answering one is ok."""
    site.distribution(
        "gz-broken",
        BROKEN,
        {"gz_broken_plugin/__init__": BROKEN_MODULES["gz_broken_plugin/__init__"]},
    )
    site.distribution("gz-kinds", KINDS, {"gz_kinds": KINDS_MODULE}, version="2.5")
    config = tmp_path / "g.toml"  # no hubs (so the defaults), on a port surely free
    config.write_text(f"[gateway]\nport = {free_loopback_port()}\n", encoding="utf-8")
    env = {"GLEITZEIT_LOAD_PLUGINS": "broken,kinds", "GLEITZEIT_CONFIG": str(config)}
    result = gleitzeit("doctor", env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert any(line.split() == ["ok", "kinds", "(gz-kinds", "2.5)", "loaded"] for line in lines)
    broken = next(i for i, line in enumerate(lines) if "broken (gz-broken 1.0)" in line)
    assert lines[broken].split()[0] == "FAIL"
    assert "half installed" in lines[broken]
    assert "gleitzeit plugins disable broken" in lines[broken + 1]
    assert any("no default down hub: nothing answers at echo://b" in line for line in lines)
    assert any("hub up (up): a at echo://a answers" in line for line in lines)
    assert "1 problem(s) found" in result.stdout
