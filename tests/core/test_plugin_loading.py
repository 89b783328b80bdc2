"""Plugin discovery through entry points, allow/deny lists, strict mode and the CLI verbs."""

from __future__ import annotations

import json
from pathlib import Path

from .conftest import Run, Site, listed

MARKER_PLUGIN = """
import os, pathlib
pathlib.Path(os.environ["MARKER"]).write_text("imported")
from gleitzeit_core import hookimpl

@hookimpl
def gleitzeit_register_strategies(register):
    register("marked", "gleitzeit_core._balancing:RandomStrategy")
"""


def test_builtins_are_listed(gleitzeit: Run) -> None:
    """`plugins list --json` shows the core's built-in plugin and what it registered."""
    plugins = listed(gleitzeit("plugins", "list", "--json"))
    builtin = plugins["builtin"]
    assert builtin["status"] == "loaded"
    assert builtin["distribution"] == "gleitzeit-core"
    assert {"p2c", "round_robin", "consistent_hash"} <= set(builtin["registered"]["strategies"])
    assert builtin["registered"]["probes"] == ["http", "tcp"]
    assert "gleitzeit_register_strategies" in builtin["hooks"]


def test_light_strategy_entry_point_is_listed_without_import(
    gleitzeit: Run, site: Site, tmp_path: Path
) -> None:
    """A package with only a gleitzeit.strategies entry point shows its strategy by name,
    and listing it does not import it."""
    marker = tmp_path / "marker"
    site.distribution(
        "gleitzeit-fancy",
        {"gleitzeit.strategies": {"fancy": "fancy_strategy:Fancy"}},
        {"fancy_strategy": MARKER_PLUGIN},
    )
    plugins = listed(gleitzeit("plugins", "list", "--json", env={"MARKER": str(marker)}))
    assert plugins["fancy"]["status"] == "loaded"
    assert plugins["fancy"]["registered"] == {"strategies": ["fancy"]}
    assert not marker.exists()


def test_broken_plugin_is_reported_and_skipped(gleitzeit: Run, site: Site) -> None:
    """A plugin that raises on import is listed as error with its message; the rest load and
    the command exits 0."""
    site.distribution(
        "gleitzeit-broken",
        {"gleitzeit": {"broken": "broken_plugin"}},
        {"broken_plugin": "raise RuntimeError('this plugin is broken on purpose')\n"},
        version="2.3",
    )
    result = gleitzeit("plugins", "list", "--json")
    plugins = listed(result)
    broken = plugins["broken"]
    assert broken["status"] == "error"
    assert broken["distribution"] == "gleitzeit-broken"
    assert broken["version"] == "2.3"
    assert "this plugin is broken on purpose" in broken["error"]
    assert plugins["builtin"]["status"] == "loaded"
    assert "gleitzeit plugins disable broken" in result.stderr


def test_strict_mode_makes_a_broken_plugin_fatal(gleitzeit: Run, site: Site) -> None:
    """With GLEITZEIT_STRICT_PLUGINS=1 a plugin load error exits non-zero, naming the plugin."""
    site.distribution(
        "gleitzeit-broken",
        {"gleitzeit": {"broken": "broken_plugin"}},
        {"broken_plugin": "raise RuntimeError('boom')\n"},
    )
    result = gleitzeit("plugins", "list", "--json", env={"GLEITZEIT_STRICT_PLUGINS": "1"})
    assert result.returncode != 0
    assert "broken" in result.stderr
    assert "boom" in result.stderr


def test_disabled_plugin_is_never_imported(gleitzeit: Run, site: Site, tmp_path: Path) -> None:
    """GLEITZEIT_DISABLED_PLUGINS=NAME lists it as disabled and its module is never imported."""
    marker = tmp_path / "marker"
    site.distribution(
        "gleitzeit-marked",
        {"gleitzeit": {"marked": "marked_plugin"}},
        {"marked_plugin": MARKER_PLUGIN},
    )
    env = {"MARKER": str(marker), "GLEITZEIT_DISABLED_PLUGINS": "marked"}
    plugins = listed(gleitzeit("plugins", "list", "--json", env=env))
    assert plugins["marked"]["status"] == "disabled"
    assert not marker.exists()
    plugins = listed(gleitzeit("plugins", "list", "--json", env={"MARKER": str(marker)}))
    assert plugins["marked"]["status"] == "loaded"
    assert plugins["marked"]["registered"] == {"strategies": ["marked"]}
    assert marker.exists()


def test_allow_list_loads_only_named_plugins(gleitzeit: Run, site: Site, tmp_path: Path) -> None:
    """GLEITZEIT_LOAD_PLUGINS loads only the plugins named; the empty string loads none."""
    marker = tmp_path / "marker"
    site.distribution(
        "gleitzeit-marked",
        {"gleitzeit": {"marked": "marked_plugin"}},
        {"marked_plugin": MARKER_PLUGIN},
    )
    env = {"MARKER": str(marker), "GLEITZEIT_LOAD_PLUGINS": ""}
    plugins = listed(gleitzeit("plugins", "list", "--json", env=env))
    assert plugins["marked"]["status"] == "disabled"
    assert plugins["builtin"]["status"] == "loaded"
    assert not marker.exists()
    env["GLEITZEIT_LOAD_PLUGINS"] = "marked"
    assert listed(gleitzeit("plugins", "list", "--json", env=env))["marked"]["status"] == "loaded"


def test_disable_persists_and_never_imports(gleitzeit: Run, site: Site, tmp_path: Path) -> None:
    """`plugins disable NAME` works with the plugin installed, without importing it, and is
    remembered in the user config until `plugins enable NAME`."""
    marker = tmp_path / "marker"
    site.distribution(
        "gleitzeit-marked",
        {"gleitzeit": {"marked": "marked_plugin"}},
        {"marked_plugin": MARKER_PLUGIN},
    )
    env = {"MARKER": str(marker)}
    result = gleitzeit("plugins", "disable", "marked", env=env)
    assert result.returncode == 0, result.stderr
    assert not marker.exists()
    saved = (tmp_path / "xdg" / "gleitzeit" / "config.toml").read_text()
    assert '"marked"' in saved
    assert listed(gleitzeit("plugins", "list", "--json", env=env))["marked"]["status"] == "disabled"
    assert not marker.exists()
    assert gleitzeit("plugins", "enable", "marked", env=env).returncode == 0
    assert listed(gleitzeit("plugins", "list", "--json", env=env))["marked"]["status"] == "loaded"


def test_help_and_version_do_not_import_plugins(gleitzeit: Run, site: Site, tmp_path: Path) -> None:
    """`--help` and `--version` work without importing any third-party plugin."""
    marker = tmp_path / "marker"
    site.distribution(
        "gleitzeit-marked",
        {"gleitzeit": {"marked": "marked_plugin"}},
        {"marked_plugin": MARKER_PLUGIN},
    )
    env = {"MARKER": str(marker)}
    assert gleitzeit("--help", env=env).returncode == 0
    version = gleitzeit("--version", env=env)
    assert version.returncode == 0
    assert "0.1.0" in version.stdout
    assert not marker.exists()


def test_two_distributions_claiming_one_name_are_reported(gleitzeit: Run, site: Site) -> None:
    """Two distributions with the same plugin name are reported; neither wins silently."""
    plugin = "from gleitzeit_core import hookimpl\n"
    site.distribution("gleitzeit-twin-a", {"gleitzeit": {"twin": "twin_a"}}, {"twin_a": plugin})
    site.distribution("gleitzeit-twin-b", {"gleitzeit": {"twin": "twin_b"}}, {"twin_b": plugin})
    twin = listed(gleitzeit("plugins", "list", "--json"))["twin"]
    assert twin["status"] == "error"
    assert "gleitzeit-twin-a" in twin["error"]
    assert "gleitzeit-twin-b" in twin["error"]


def test_duplicate_registered_names_are_conflicts(gleitzeit: Run, site: Site) -> None:
    """Two plugins registering the same strategy name show up as a conflict."""
    site.distribution(
        "gleitzeit-dup",
        {"gleitzeit.strategies": {"p2c": "gleitzeit_core._balancing:RandomStrategy"}},
    )
    result = gleitzeit("plugins", "list", "--json")
    conflicts = json.loads(result.stdout)["conflicts"]
    assert conflicts["strategies"]["p2c"] == ["builtin", "dup"]


MISSPELLED_PLUGIN = """
from gleitzeit_core import hookimpl

@hookimpl
def gleitzeit_register_strategy(register):  # the spec is gleitzeit_register_strategies
    register("never", "gleitzeit_core:RandomStrategy")

@hookimpl
def gleitzeit_register_breakers(register):
    register("half-registered", "gleitzeit_core:PassThroughBreaker")
"""


def test_a_misspelled_hook_makes_the_plugin_broken_naming_the_hook(
    gleitzeit: Run, site: Site
) -> None:
    """An installed plugin implementing ``gleitzeit_register_strategy`` (no such hook) is listed
    as broken, the error names the misspelled hook and the right one, nothing it registers
    through its other hooks is kept, and the other plugins load."""
    site.distribution(
        "gleitzeit-typo",
        {"gleitzeit": {"typo": "typo_plugin"}},
        {"typo_plugin": MISSPELLED_PLUGIN},
    )
    result = gleitzeit("plugins", "list", "--json")
    plugins = listed(result)
    typo = plugins["typo"]
    assert typo["status"] == "error"
    assert "gleitzeit_register_strategy" in typo["error"]
    assert 'did you mean "gleitzeit_register_strategies"' in typo["error"]
    assert typo["registered"] == {}
    assert plugins["builtin"]["status"] == "loaded"
    assert "gleitzeit: plugin 'typo'" in result.stderr
    strict = gleitzeit("plugins", "list", "--json", env={"GLEITZEIT_STRICT_PLUGINS": "1"})
    assert strict.returncode != 0
    assert "gleitzeit_register_strategy" in strict.stderr


def test_a_strategy_of_a_disabled_third_party_plugin_says_it_is_disabled(
    gleitzeit: Run, site: Site, tmp_path: Path
) -> None:
    """Selecting a strategy whose (third-party, light) plugin is installed but disabled is a
    config error saying which plugin declares it and what disabled it, not just "unknown
    strategy" (which sends the user to install what is installed)."""
    site.distribution(
        "gleitzeit-fancy",
        {"gleitzeit.strategies": {"fancy": "fancy_strategy:Fancy"}},
        {"fancy_strategy": MARKER_PLUGIN},
    )
    config = tmp_path / "gleitzeit.toml"
    config.write_text(
        '[hubs.llm]\nkind = "ollama"\nstrategy = "fancy"\n'
        'resources = [{ url = "http://127.0.0.1:9" }]\n',
        encoding="utf-8",
    )
    result = gleitzeit("config", "check", str(config), env={"GLEITZEIT_DISABLED_PLUGINS": "fancy"})
    assert result.returncode == 2
    assert "unknown strategy 'fancy'" in result.stderr
    assert "plugin 'fancy' is installed but disabled (GLEITZEIT_DISABLED_PLUGINS)" in result.stderr


PRIVATE_IMPORTING_PLUGIN = """
from gleitzeit_core import hookimpl
from gleitzeit_core._hub import ResourceHub
from gleitzeit_core import _lease


@hookimpl
def gleitzeit_register_hubs(register):
    register("peeking", "peeking_plugin:ResourceHub")
"""


def test_a_plugin_importing_a_private_core_module_is_warned_about(
    gleitzeit: Run, site: Site
) -> None:
    """An installed plugin that imports ``gleitzeit_core._hub`` (or ``from gleitzeit_core
    import _lease``) still loads, but ``plugins list`` warns, naming the plugin, the file and
    line and the private module; the first-party plugins get no warning."""
    site.distribution(
        "gleitzeit-peeking",
        {"gleitzeit": {"peeking": "peeking_plugin"}},
        {"peeking_plugin": PRIVATE_IMPORTING_PLUGIN},
    )
    result = gleitzeit("plugins", "list", "--json")
    plugins = listed(result)
    peeking = plugins["peeking"]
    assert peeking["status"] == "loaded"
    warned = " ".join(peeking["warnings"])
    assert "peeking_plugin.py:3 imports the private module gleitzeit_core._hub" in warned
    assert "peeking_plugin.py:4 imports the private module gleitzeit_core._lease" in warned
    assert "plugin 'peeking'" in result.stderr
    assert "gleitzeit_core._hub" in result.stderr
    others = {name: p["warnings"] for name, p in plugins.items() if name != "peeking"}
    assert all(warnings == [] for warnings in others.values()), others
    table = gleitzeit("plugins", "list")
    assert "warning (peeking)" in table.stdout
