"""Migration: ``migrate_provider_config``, ``create_provider_with_hub`` and
``gleitzeit migrate-config``. Every key of the old formats is carried over or reported, the
output loads with the core's config loader, and an old config and its migrated form route the
same requests over the same instances."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from gleitzeit_legacy.migration import (
    Migration,
    Report,
    leaf_paths,
    migrate,
    migrate_provider_config,
)
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gleitzeit_core import Runtime
from gleitzeit_core._config import load_config
from tests.legacy.conftest import Sims, instances, preload, requests_to

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

GUIDE_YAML = """\
providers:
  ollama_pool:
    type: "ollama_pool"
    instances:
      - {id: "local", url: "http://localhost:11434", models: ["llama3.2","codellama"], max_concurrent: 5, tags: ["local","cpu"]}
      - {id: "gpu-server", url: "http://gpu-server:11434", models: ["llama3.2:70b"], max_concurrent: 2, tags: ["remote","gpu"], priority: 1, weight: 2.0, specialization: "large-models"}
    load_balancing: {strategy: "least_loaded", health_check_interval: 30, failover: true, retry_attempts: 3,
                     circuit_breaker: {failure_threshold: 5, recovery_timeout: 60, half_open_requests: 3}}
"""  # noqa: E501 - the guide's own lines

PYTHON_ENTRY: dict[str, Any] = {
    "type": "python_docker",
    "provider_id": "python-docker",
    "docker_config": {"image": "localpython:3", "images": {"minimal": "alpine-py"}, "tls": True},
    "pool_config": {"max_containers": 4, "idle_timeout": 120, "reuse_containers": False},
    "default_mode": "docker-datascience",
    "allowed_local_modules": ["math", "json"],
    "container_config": {
        "image": "x",
        "memory": "1g",
        "cpu": 1.5,
        "timeout": 90,
        "gpu": True,
        "mount_data": "/data",
    },
    "enabled": True,
}
CLI_CONFIG: dict[str, Any] = {
    "providers": {
        "ollama": {
            "enabled": True,
            "endpoint": "http://localhost:11434",
            "default_models": {
                "chat": "llama3.2:latest",
                "vision": "llava:latest",
                "embedding": "nomic-embed-text:latest",
            },
        },
        "python": {"enabled": False},
    },
    "execution": {"max_concurrent_tasks": 5},
    "batch": {"max_file_size": 1024, "max_concurrent": 5, "results_directory": "~/r"},
}
ENVIRONMENT = {
    "GLEITZEIT_OLLAMA_INSTANCES": "local:http://localhost:11434,gpu:http://gpu:11434",
    "GLEITZEIT_OLLAMA_STRATEGY": "weighted",
    "GLEITZEIT_OLLAMA_HEALTH_CHECK_INTERVAL": "15",
    "GLEITZEIT_OLLAMA_FAILOVER": "false",
    "GLEITZEIT_PYTHON_MODE": "minimal",
    "GLEITZEIT_DOCKER_IMAGE": "localpython:3",
    "GLEITZEIT_DOCKER_MEMORY": "300m",
    "GLEITZEIT_DOCKER_NETWORK": "bridge",
    "GLEITZEIT_DOCKER_TYPO": "1",
}


def _yaml(text: str) -> dict[str, Any]:
    import yaml

    loaded: dict[str, Any] = yaml.safe_load(text)
    return loaded


def assert_every_key_accounted(old: dict[str, Any], accounted: set[str]) -> None:
    """Each leaf key path of ``old`` is in the report, itself or through a parent."""
    missing = []
    for leaf in leaf_paths(old):
        parts = [leaf[:i] for i in range(len(leaf), 0, -1) if i == len(leaf) or leaf[i] in ".["]
        if not any(p in accounted for p in parts):
            missing.append(leaf)
    assert not missing, f"old keys neither carried over nor reported: {missing}"


def test_guide_config_migrates_and_loads() -> None:
    """The multi-instance guide's YAML becomes an Ollama hub with the same instances, limits,
    tags, weights, strategy, retries and breaker; it loads with ``load_config`` and builds."""
    old = _yaml(GUIDE_YAML)
    migration = migrate(old, environ={})
    config = load_config(migration.config)
    hub = config.hubs["ollama_pool"]
    assert hub.kind == "ollama"
    assert hub.strategy.kind == "least_loaded"
    assert hub.retries == 2
    assert hub.health.interval == 30.0
    assert hub.request_timeout == 60.0
    assert hub.breaker is not None
    assert hub.breaker.kind == "consecutive"
    assert hub.breaker.options["failures"] == 5
    assert hub.breaker.options["half_open_permits"] == 3
    local, gpu = hub.resources
    assert (local.id, local.url, local.max_concurrency, local.labels) == (
        "local",
        "http://localhost:11434",
        5,
        ["local", "cpu"],
    )
    assert (gpu.weight, gpu.priority, gpu.labels) == (2.0, 1, ["remote", "gpu"])
    assert local.options == {"models": ["llama3.2", "codellama"], "num_parallel": 5}
    assert config.providers["llm/v1"].hub == "ollama_pool"
    assert_every_key_accounted(old, migration.report.paths())
    dropped = dict(migration.report.dropped)
    assert "providers.ollama_pool.instances[1].specialization" in dropped
    Runtime.from_config(migration.config)  # every name resolves against the installed plugins


def test_every_key_of_every_old_format_is_accounted() -> None:
    """The CLI config, a Python Docker provider with every key, the pool provider's
    constructor arguments, a hub-era host/port instance and the environment variables: each
    key is carried over, changed or dropped - with a reason - and the result loads."""
    pool_kwargs = {
        "provider_id": "pool",
        "instances": [
            {
                "id": "v2",
                "host": "10.0.0.5",
                "port": 11435,
                "models": ["m"],
                "max_concurrent": 3,
                "tags": ["gpu"],
                "priority": 2,
                "bogus": 1,
            }
        ],
        "load_balancing_config": {
            "strategy": "latency_based",
            "failover": False,
            "retry_attempts": 5,
            "health_check_interval": 10,
            "x": 1,
        },
        "circuit_breaker_config": {
            "failure_threshold": 3,
            "recovery_timeout": 5,
            "half_open_requests": 1,
            "y": 2,
        },
        "timeout": 30,
    }
    for old in (CLI_CONFIG, {"providers": {"py": PYTHON_ENTRY}}, pool_kwargs):
        migration = migrate(old, environ={})
        load_config(migration.config)
        assert_every_key_accounted(old, migration.report.paths())
    dropped = dict(migrate(pool_kwargs, environ={}).report.dropped)
    for unknown in ("instances[0].bogus", "load_balancing_config.x", "circuit_breaker_config.y"):
        assert unknown in dropped  # unknown keys are reported one by one, never swallowed
    assert "providers.py.docker_config.tls" in dict(
        migrate({"providers": {"py": PYTHON_ENTRY}}, environ={}).report.dropped
    )
    pool = migrate(pool_kwargs, environ={}).config["hubs"]["llm"]
    assert pool["resources"][0]["url"] == "http://10.0.0.5:11435"
    assert pool["strategy"] == "least_latency"
    assert pool["retries"] == 0
    cli = migrate(CLI_CONFIG, environ={})
    assert list(cli.config["hubs"]) == ["ollama"]  # python was disabled: no hub
    assert cli.config["hubs"]["ollama"]["resources"][0]["url"] == "http://localhost:11434"
    docker = migrate({"providers": {"py": PYTHON_ENTRY}}, environ={}).config["hubs"]["py"]
    assert docker["default_profile"] == "datascience"
    assert docker["default_image"] == "localpython:3"
    assert docker["pool"] == {"max_size": 4, "idle_ttl": 120.0, "max_uses": 1}
    assert docker["profiles"]["minimal"]["image"] == "alpine-py"
    assert docker["profiles"]["datascience"]["memory"] == "1g"

    env = migrate({}, environ=ENVIRONMENT)
    load_config(env.config)
    accounted = env.report.paths()
    assert {f"${name}" for name in ENVIRONMENT} <= accounted
    llm = env.config["hubs"]["llm"]
    assert [r["id"] for r in llm["resources"]] == ["local", "gpu"]
    assert llm["strategy"] == "weighted_random"
    assert llm["retries"] == 0
    assert llm["health"]["interval"] == 15.0
    sandbox = env.config["hubs"]["sandbox"]
    assert sandbox["default_profile"] == "minimal"
    assert sandbox["default_image"] == "localpython:3"
    assert sandbox["profiles"]["minimal"]["memory"] == "300m"
    dropped = dict(env.report.dropped)
    assert "$GLEITZEIT_DOCKER_NETWORK" in dropped
    assert "$GLEITZEIT_DOCKER_TYPO" in dropped


def test_environment_overrides_the_file() -> None:
    """Environment variables apply over the file's values (and say so in the report)."""
    migration = migrate(_yaml(GUIDE_YAML), environ={"GLEITZEIT_OLLAMA_STRATEGY": "round_robin"})
    assert migration.config["hubs"]["ollama_pool"]["strategy"] == "round_robin"
    assert any(path == "$GLEITZEIT_OLLAMA_STRATEGY" for path, _ in migration.report.changed)


def test_unknown_strategy_is_refused() -> None:
    """An old config naming a strategy nobody knows is an error, not a silent default."""
    with pytest.raises(ValueError, match="unknown load balancing strategy"):
        migrate_provider_config(
            {
                "instances": [{"id": "a", "url": "http://a:1"}],
                "load_balancing_config": {"strategy": "fastest"},
            }
        )


def test_cli_writes_toml_that_loads(tmp_path: Path) -> None:
    """``gleitzeit migrate-config OLD.yaml -o NEW.toml`` (a real process, the command coming
    from the plugin) writes a config ``load_config`` accepts and prints the report, reading
    the old environment variables too; without ``-o`` the TOML goes to stdout."""
    old = tmp_path / "old.yaml"
    old.write_text(GUIDE_YAML, encoding="utf-8")
    new = tmp_path / "new.toml"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLEITZEIT_")}
    env |= {
        "GLEITZEIT_LOAD_PLUGINS": "legacy",
        "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
        "GLEITZEIT_OLLAMA_HEALTH_CHECK_INTERVAL": "12",
    }
    gleitzeit = [sys.executable, "-m", "gleitzeit_core"]
    done = subprocess.run(
        [*gleitzeit, "migrate-config", str(old), "-o", str(new)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "changed  providers.ollama_pool.load_balancing.failover" in done.stdout
    assert "dropped  providers.ollama_pool.instances[1].specialization" in done.stdout
    assert "$GLEITZEIT_OLLAMA_HEALTH_CHECK_INTERVAL" in done.stdout
    config = load_config(new)
    assert config.hubs["ollama_pool"].health.interval == 12.0
    again = subprocess.run(
        [*gleitzeit, "migrate-config", str(old), "-o", str(new)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert again.returncode == 2
    assert "--force" in again.stderr
    plain = subprocess.run(
        [*gleitzeit, "migrate-config", str(old), "--no-env"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert plain.returncode == 0
    assert tomllib.loads(plain.stdout)["hubs"]["ollama_pool"]["health"]["interval"] == 30.0
    assert "migrated" in plain.stderr


def test_cli_rejects_what_it_cannot_read(tmp_path: Path) -> None:
    """A broken YAML or a non-mapping input exits 2 with a message, no traceback."""
    from click.testing import CliRunner
    from gleitzeit_legacy.cli import migrate_config_command

    bad = tmp_path / "bad.yaml"
    bad.write_text("providers: [unclosed", encoding="utf-8")
    listing = tmp_path / "list.json"
    listing.write_text(json.dumps([1, 2]), encoding="utf-8")
    runner = CliRunner()
    for path in (bad, listing):
        result = runner.invoke(migrate_config_command, [str(path)])
        assert result.exit_code == 2
        assert "migrate-config" in result.output
        assert "Traceback" not in result.output


async def test_old_and_migrated_configs_route_alike(sims: Sims) -> None:
    """The same old config, once through the shim's ``OllamaPoolProvider`` and once migrated
    and run as ``Runtime.from_config(...)``: the same requests go to the same instances in
    the same order, and with one instance failing both absorb every failure the same way."""
    from gleitzeit_legacy import create_provider_with_hub

    trio = await sims(3)
    for sim in trio:
        await preload(sim)
    old = {
        "type": "ollama_pool",
        "instances": instances(trio),
        "load_balancing": {"strategy": "round_robin", "failover": True, "retry_attempts": 3},
    }

    async def order(run: Any) -> list[int]:
        served = []
        for _ in range(6):
            before = [requests_to(s) for s in trio]
            await run()
            after = [requests_to(s) for s in trio]
            served.append(next(i for i in range(3) if after[i] != before[i]))
        return served

    provider = create_provider_with_hub("ollama_pool", old)
    runtime = Runtime.from_config(migrate_provider_config(old))
    await runtime.start()
    try:
        await provider.initialize()
        body = {"prompt": "x", "model": "llama3.2"}
        shim_order = await order(lambda: provider.execute_path("hub", "llm/generate", body))
        legacy_order = await order(lambda: provider.execute_path("legacy", "llm/generate", body))
        new_order = await order(lambda: runtime.execute("llm/generate", body))
        assert shim_order == new_order == legacy_order == [0, 1, 2, 0, 1, 2]
        trio[1].set_faults(error_rate=1.0)
        for run in (
            lambda: provider.execute("llm/generate", body),
            lambda: runtime.execute("llm/generate", body),
        ):
            before = requests_to(trio[1])
            for _ in range(6):
                await run()
            assert requests_to(trio[1]) - before <= 6  # tried at most once per request
    finally:
        await provider.shutdown()
        await runtime.stop()


async def test_create_provider_with_hub_types(sims: Sims) -> None:
    """``create_provider_with_hub`` builds the old provider a type names, or a plain
    ``HubProviderAdapter`` over a new config when given a protocol."""
    from gleitzeit_legacy import HubProviderAdapter, create_provider_with_hub
    from gleitzeit_legacy.ollama_providers import OllamaPoolProvider, OllamaProvider
    from gleitzeit_legacy.python_provider import PythonDockerProvider

    (sim,) = await sims(1)
    assert isinstance(create_provider_with_hub("ollama", {"endpoint": sim.url}), OllamaProvider)
    assert isinstance(create_provider_with_hub("python_docker", {}), PythonDockerProvider)
    pool = create_provider_with_hub("ollama_pool", {"instances": instances([sim])})
    assert isinstance(pool, OllamaPoolProvider)
    new_config = migrate_provider_config({"instances": instances([sim])})
    adapter = create_provider_with_hub("llm/v1", new_config)
    assert type(adapter) is HubProviderAdapter
    await adapter.initialize()
    try:
        assert "llm/chat" in adapter.get_supported_methods()
        answer = await adapter.handle_request("llm/generate", {"model": "llama3.2", "prompt": "x"})
        assert answer["done"] is True
        envelope = await adapter.handle_request(
            {"jsonrpc": "2.0", "method": "llm/generate", "params": {"model": "m"}, "id": 1}
        )
        assert "error" in envelope
        assert envelope["id"] == 1
        health = await adapter.health_check()
        assert health["status"] == "healthy"
    finally:
        await adapter.shutdown()
        await pool.shutdown()
    with pytest.raises(ValueError, match="unknown provider type"):
        create_provider_with_hub("mcp", {})


# -- the TOML writer ------------------------------------------------------------------------
_scalars = (
    st.text(max_size=12)
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.booleans()
)
_keys = st.text(min_size=1, max_size=8)
_flat = st.dictionaries(_keys, _scalars | st.lists(_scalars, max_size=3), max_size=4)
_tables = st.recursive(
    _flat,
    lambda inner: st.dictionaries(
        _keys, inner | st.lists(_flat.filter(bool), min_size=1, max_size=2), max_size=3
    ),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(_tables)
@example({"\n": ""})  # a key with a newline broke the hand-written writer this replaced
def test_migrated_toml_round_trips(data: dict[str, Any]) -> None:
    """Whatever ``migrate-config`` writes, header included, reads back as the same data."""
    text = Migration(config=data, report=Report()).to_toml()
    assert text.startswith("# Migrated by")
    assert tomllib.loads(text) == data
