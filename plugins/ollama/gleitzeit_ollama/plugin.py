"""Hook implementations of the Ollama plugin (entry point ``ollama``).

Everything is registered as a lazy ``"module:attribute"`` string, so loading the plugin imports
neither aiohttp nor the hub: a config that never selects ``ollama`` pays nothing for it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from gleitzeit_core import HubKind, ProviderKind, Register, hookimpl

if TYPE_CHECKING:  # the gateway (and aiohttp) load only when routes are registered
    from gleitzeit_core import RouteRegistrar

__all__ = ["default_hub_check", "default_hub_config"]

DEFAULT_URL = "http://127.0.0.1:11434"


def default_hub_config() -> dict[str, Any]:
    """The hub used when a config names none: ``OLLAMA_HOSTS``/``OLLAMA_HOST``, else the
    local default instance."""
    if _env_hosts():
        return {"kind": "ollama", "discovery": ["env"]}
    return {"kind": "ollama", "discovery": ["static"], "resources": [{"url": DEFAULT_URL}]}


def _env_hosts() -> bool:
    return bool(
        os.environ.get("OLLAMA_HOSTS", "").strip() or os.environ.get("OLLAMA_HOST", "").strip()
    )


def default_hub_check() -> str | None:
    """Why the config-less default hub would be empty: nothing listens on the local default
    port. Instances named in ``OLLAMA_HOST(S)`` were asked for, so they are always added."""
    if _env_hosts():
        return None
    from gleitzeit_core import connect_problem

    problem = connect_problem(DEFAULT_URL, timeout=1.0)
    if problem is None:
        return None
    return (
        f"no Ollama server answers at {DEFAULT_URL} ({problem}); start one (`ollama serve`), "
        'set OLLAMA_HOST, or name your servers in a config ([hubs.NAME] with kind = "ollama")'
    )


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
            default_check=default_hub_check,
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
        ),
    )


@hookimpl
def gleitzeit_register_routes(router: RouteRegistrar) -> None:
    """The Ollama HTTP API on the gateway, over every Ollama hub (``gleitzeit_ollama.routes``)."""
    from gleitzeit_ollama.routes import register_routes  # only when a gateway is built

    register_routes(router)
