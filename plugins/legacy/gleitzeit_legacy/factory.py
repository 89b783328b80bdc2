"""``create_provider_with_hub(type, config)``: an old-style provider object on the new hubs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .adapter import HubProviderAdapter
from .migration import _kind

__all__ = ["create_provider_with_hub"]


def create_provider_with_hub(
    provider_type: str, config: Mapping[str, Any] | None = None, **options: Any
) -> HubProviderAdapter:
    """Build the provider an old config describes, running on a hub.

    ``provider_type`` is an old provider type (``ollama_pool``, ``ollama``,
    ``python_docker``) with that provider's old config (the YAML entry or the constructor's
    arguments as a dict) - or a protocol (``llm/v1``, ``python/v1``) with a *new* config, which
    gives a plain ``HubProviderAdapter`` over ``Runtime.from_config(config)``. ``options`` are
    passed on (``features=``, ``rollout_key=``, ``runtime=``, ...).
    """
    cfg = dict(config or {})
    if "/" in provider_type:
        provider_id = str(options.pop("provider_id", provider_type.split("/", 1)[0]))
        return HubProviderAdapter(provider_id, provider_type, config=cfg, **options)
    kind = _kind({"type": provider_type}, provider_type)
    provider_id = str(cfg.get("provider_id") or options.pop("provider_id", provider_type))
    if kind == "pool":
        from .ollama_providers import OllamaPoolProvider

        lb = cfg.get("load_balancing_config") or cfg.get("load_balancing") or {}
        breaker = cfg.get("circuit_breaker_config")
        if breaker is None and isinstance(lb, Mapping):
            breaker = lb.get("circuit_breaker")
        return OllamaPoolProvider(
            provider_id,
            list(cfg.get("instances") or []),
            {k: v for k, v in dict(lb).items() if k != "circuit_breaker"},
            breaker,
            cfg.get("timeout", 60),
            **options,
        )
    if kind == "single":
        from .ollama_providers import OllamaProvider

        url = cfg.get("ollama_url") or cfg.get("endpoint") or cfg.get("url")
        return OllamaProvider(
            provider_id,
            str(url or "http://localhost:11434"),
            cfg.get("timeout", 60),
            default_model=cfg.get("default_model"),
            **options,
        )
    if kind == "python":
        from .python_provider import PythonDockerProvider

        return PythonDockerProvider(
            provider_id,
            cfg.get("docker_config"),
            cfg.get("pool_config"),
            cfg.get("default_mode", "sandboxed"),
            cfg.get("allowed_local_modules"),
            **options,
        )
    raise ValueError(
        f"unknown provider type {provider_type!r}; known: ollama_pool, ollama, python_docker, "
        "or a protocol (llm/v1, python/v1) with a new config"
    )
