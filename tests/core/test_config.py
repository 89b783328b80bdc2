"""Config loading: strict types, one problem per line with its key path, exit code 2 in the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from gleitzeit_core import ConfigError, UnknownNameError
from gleitzeit_core._config import load_config
from gleitzeit_core._plugins import PluginManager
from gleitzeit_core._runtime import Runtime
from gleitzeit_core.testing import echo

from .conftest import Run, Site

ECHO_DIST = {"gleitzeit": {"echo": "gleitzeit_core.testing.echo"}}
ONLY_ECHO = {"GLEITZEIT_LOAD_PLUGINS": "echo"}


def echo_manager() -> PluginManager:
    manager = PluginManager(autoload=False)
    manager.load()
    manager.add(echo, "echo")
    return manager


def test_every_problem_is_reported_with_its_key_path() -> None:
    """Several mistakes in one config give one line each, naming the full key path."""
    with pytest.raises(ConfigError) as info:
        load_config(
            {
                "hubs": {
                    "llm": {
                        "kind": "echo",
                        "health": {"interval": "fast", "bogus": 1},
                        "retries": -1,
                        "resources": [{"url": "echo://a", "labels": "gpu"}],
                    }
                },
                "gateway": {"port": 70000},
                "nonsense": {},
            }
        )
    problems = info.value.problems
    assert 'hubs.llm.health.interval: expected a number of seconds > 0, got "fast"' in problems
    assert any(p.startswith("hubs.llm.health.bogus: unknown key") for p in problems)
    assert "hubs.llm.retries: expected an integer >= 0, got -1" in problems
    assert 'hubs.llm.resources[0].labels: expected a list of strings, got "gpu"' in problems
    assert "gateway.port: expected a port between 0 and 65535, got 70000" in problems
    assert any(p.startswith("nonsense: unknown section") for p in problems)
    assert len(problems) == 6


def test_types_are_strict() -> None:
    """A boolean is not an integer and a string is not a number, even if Python would cast it."""
    with pytest.raises(ConfigError) as info:
        load_config({"hubs": {"a": {"kind": "echo", "retries": True, "request_timeout": "5"}}})
    assert sorted(info.value.problems) == [
        'hubs.a.request_timeout: expected a number of seconds > 0, got "5"',
        "hubs.a.retries: expected an integer >= 0, got true",
    ]


def test_unknown_strategy_lists_the_installed_ones() -> None:
    """A strategy name nobody registered fails with the names that are installed."""
    config = load_config(
        {"hubs": {"a": {"kind": "echo", "strategy": "fastest", "resources": [{"url": "echo://x"}]}}}
    )
    with pytest.raises(ConfigError) as info:
        Runtime(config, echo_manager())
    message = str(info.value)
    assert "hubs.a.strategy: unknown strategy 'fastest'" in message
    assert "p2c" in message
    assert "round_robin" in message


def test_unknown_breaker_names_the_pip_command() -> None:
    """A first-party breaker that is not installed comes with the pip command that adds it."""
    config = load_config(
        {"hubs": {"a": {"kind": "echo", "breaker": {"kind": "window"}, "resources": []}}}
    )
    manager = PluginManager(autoload=False)  # as if no breaker plugin were installed
    manager.load()
    manager.add(echo, "echo")
    with pytest.raises(UnknownNameError) as info:
        manager.registries.breakers.get("window")
    assert "installed breakers" in str(info.value)
    with pytest.raises(ConfigError, match="pip install gleitzeit-breaker-window"):
        Runtime(config, manager)


def test_a_disabled_breaker_plugin_is_named_as_disabled_not_missing() -> None:
    """A first-party breaker whose plugin is installed but disabled is answered with what
    disabled it, never with a pip command (installing it again would not help)."""
    config = load_config(
        {"hubs": {"a": {"kind": "echo", "breaker": {"kind": "window"}, "resources": []}}}
    )
    manager = PluginManager(disabled={"breaker-window": "GLEITZEIT_DISABLED_PLUGINS"})
    manager.load()
    manager.add(echo, "echo")
    with pytest.raises(ConfigError) as info:
        Runtime(config, manager)
    message = str(info.value)
    assert "installed but disabled" in message
    assert "GLEITZEIT_DISABLED_PLUGINS" in message
    assert "pip install" not in message


def test_unknown_names_are_plural_right_and_suggest_the_closest() -> None:
    """An unknown strategy lists the installed *strategies* (not "strategys") and names the
    closest one."""
    error = UnknownNameError("strategy", "p2k", ["p2c", "random"])
    assert "installed strategies: p2c, random" in str(error)
    assert 'did you mean "p2c"?' in str(error)
    assert "installed hub kinds" in str(UnknownNameError("hub kind", "x", []))


def test_strategy_options_are_checked() -> None:
    """Options of a strategy chosen by table are structured strictly into its class."""
    config = load_config(
        {"hubs": {"a": {"kind": "echo", "strategy": {"kind": "consistent_hash", "replicas": "x"}}}}
    )
    with pytest.raises(ConfigError, match=r"hubs\.a\.strategy\.replicas"):
        Runtime(config, echo_manager())


def test_unknown_hub_kind_lists_installed_kinds() -> None:
    """A hub kind no plugin provides is named with the installed kinds and a pip hint."""
    config = load_config({"hubs": {"a": {"kind": "ollama2"}}})
    with pytest.raises(ConfigError, match=r"hubs\.a\.kind: unknown hub kind 'ollama2'.*echo"):
        Runtime(config, echo_manager())


def test_toml_file_is_read(tmp_path: Path) -> None:
    """A TOML file is read from its path and keeps kind-specific keys for the hub kind."""
    path = tmp_path / "g.toml"
    path.write_text(
        '[hubs.e]\nkind = "echo"\nstrategy = "round_robin"\n'
        '[[hubs.e.resources]]\nurl = "echo://a"\nweight = 2.0\n',
        encoding="utf-8",
    )
    config = load_config(path)
    assert config.hubs["e"].strategy.kind == "round_robin"
    assert config.hubs["e"].resources[0].weight == 2.0
    assert config.source == str(path)


def write_config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ('[hubs.e]\nkind = "echo"\nretries = "two"\n', "hubs.e.retries: expected an integer"),
        ('[hubs.e]\nkind = "echo"\nspeed = 3\n', "hubs.e.speed: unknown key"),
        ('[hubs.e]\nkind = "echo"\nstrategy = "fastest"\n', "hubs.e.strategy: unknown strategy"),
        ("[hubs.e\n", "not valid TOML"),
    ],
)
def test_run_exits_2_with_a_one_line_message(
    gleitzeit: Run, site: Site, tmp_path: Path, toml: str, expected: str
) -> None:
    """`gleitzeit run` with a bad config exits 2 with the problem on one line, no traceback."""
    site.distribution("gleitzeit-echo", ECHO_DIST)
    result = gleitzeit(
        "run",
        "echo/say",
        "--params",
        '{"text": "hi"}',
        "--config",
        write_config(tmp_path, toml),
        env=ONLY_ECHO,
    )
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_run_prints_the_json_result(gleitzeit: Run, site: Site, tmp_path: Path) -> None:
    """`gleitzeit run METHOD --params JSON` prints the provider's JSON result."""
    site.distribution("gleitzeit-echo", ECHO_DIST)
    config = write_config(
        tmp_path, '[hubs.e]\nkind = "echo"\n[[hubs.e.resources]]\nurl = "echo://a"\n'
    )
    result = gleitzeit(
        "run", "echo/say", "--params", '{"text": "hello"}', "--config", config, env=ONLY_ECHO
    )
    assert result.returncode == 0, result.stderr
    assert '"text": "hello"' in result.stdout
    assert '"resource": "a"' in result.stdout


def test_run_with_bad_params_names_the_field(gleitzeit: Run, site: Site, tmp_path: Path) -> None:
    """Wrong parameters fail with a message naming the field, exit 1."""
    site.distribution("gleitzeit-echo", ECHO_DIST)
    config = write_config(
        tmp_path, '[hubs.e]\nkind = "echo"\n[[hubs.e.resources]]\nurl = "echo://a"\n'
    )
    result = gleitzeit(
        "run", "echo/say", "--params", '{"text": 5}', "--config", config, env=ONLY_ECHO
    )
    assert result.returncode == 1
    assert "params.text: expected a string, got 5" in result.stderr


def test_a_value_out_of_an_attrs_validators_range_says_the_bound() -> None:
    """A field checked by attrs' own ``ge(1)`` (a third-party strategy's ``max_in_flight``)
    set to 0 reads "expected a number >= 1, got 0", not a type complaint."""
    import attrs

    from gleitzeit_core._structuring import structure

    @attrs.frozen
    class Options:
        max_in_flight: int = attrs.field(default=8, validator=attrs.validators.ge(1))

    with pytest.raises(ConfigError) as info:
        structure({"max_in_flight": 0}, Options, path="hubs.llm.strategy")
    assert info.value.problems == ["hubs.llm.strategy.max_in_flight: expected a number >= 1, got 0"]


def test_a_common_hub_key_misspelt_is_suggested_whatever_the_kind() -> None:
    """``retry = 2`` in a hub of a kind with its own keys (or none) suggests ``retries``,
    never a list of kind-only keys."""
    from gleitzeit_core._checking import check_config

    manager = echo_manager()
    error = check_config(
        {"hubs": {"e": {"kind": "echo", "retry": 2, "resources": [{"url": "echo://a"}]}}},
        plugins=manager,
    )
    assert error is not None
    assert error.problems == ['hubs.e.retry: unknown key; did you mean "retries"?']
