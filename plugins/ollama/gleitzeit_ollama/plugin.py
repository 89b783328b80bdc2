"""Hook implementations of the Ollama plugin (entry point ``ollama``).

Everything is registered as a lazy ``"module:attribute"`` string, so loading the plugin imports
neither aiohttp nor the hub: a config that never selects ``ollama`` pays nothing for it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from gleitzeit_core import Register, hookimpl
from gleitzeit_core.kinds import HubKind, ProviderKind

if TYPE_CHECKING:
    import click

__all__ = ["default_hub_config"]

DEFAULT_URL = "http://127.0.0.1:11434"


def default_hub_config() -> dict[str, Any]:
    """The hub used when a config names none: ``OLLAMA_HOSTS``/``OLLAMA_HOST``, else the
    local default instance."""
    if os.environ.get("OLLAMA_HOSTS", "").strip() or os.environ.get("OLLAMA_HOST", "").strip():
        return {"kind": "ollama", "discovery": ["env"]}
    return {"kind": "ollama", "discovery": ["static"], "resources": [{"url": DEFAULT_URL}]}


@hookimpl
def gleitzeit_register_hubs(register: Register) -> None:
    register(
        "ollama",
        HubKind(
            factory="gleitzeit_ollama.hub:OllamaHub",
            settings_class="gleitzeit_ollama.settings:OllamaSettings",
            resource_options="gleitzeit_ollama.settings:OllamaResourceOptions",
            default_probe="ollama",
            default_discovery=("static", "env"),
            default_port=11434,
            default_config=default_hub_config,
            description="Ollama servers, routed by model (loaded > installed), capped per model",
            install_hint="pip install gleitzeit-ollama",
        ),
    )


@hookimpl
def gleitzeit_register_discoverers(register: Register) -> None:
    register("env", "gleitzeit_ollama.discovery:make_env")
    register("scan", "gleitzeit_ollama.discovery:make_scan")


@hookimpl
def gleitzeit_register_probes(register: Register) -> None:
    register("ollama", "gleitzeit_ollama.probe:OllamaProbe")


@hookimpl
def gleitzeit_register_strategies(register: Register) -> None:
    register("model_aware", "gleitzeit_ollama.strategy:ModelAwareStrategy")
    register("prefix_affinity", "gleitzeit_ollama.prefix_affinity:PrefixAffinityStrategy")


@hookimpl
def gleitzeit_register_providers(register: Register) -> None:
    register(
        "llm/v1",
        ProviderKind(
            factory="gleitzeit_ollama.provider:LlmProvider",
            hub_kind="ollama",
            description="generate, chat, vision, embed, list_models, pull_model over Ollama",
        ),
    )


@hookimpl
def gleitzeit_register_commands(cli: click.Group) -> None:
    from gleitzeit_ollama.sim.cli import sim_command  # only when a plugin command is asked for

    cli.add_command(sim_command)


@hookimpl
def gleitzeit_register_routes(router: Any) -> None:
    """The Ollama HTTP API on the gateway, over every Ollama hub (``gleitzeit_ollama.routes``)."""
    from gleitzeit_ollama.routes import register_routes  # only when a gateway is built

    register_routes(router)
