"""gleitzeit-legacy: the pre-hub Gleitzeit API on top of the hub architecture.

* the old import paths (``gleitzeit.orchestration.ollama_pool``, ``gleitzeit.providers.*``,
  ``gleitzeit.execution.docker_executor``) as thin adapters that build a ``Runtime`` and call it;
* ``HubProviderAdapter``: the old provider surface (``handle_request`` in both shapes,
  ``execute_legacy`` for JSON-RPC envelopes) over any runtime;
* migration: ``migrate_provider_config(old)``, ``migrate(old, environ=...)``,
  ``create_provider_with_hub(type, config)`` and ``gleitzeit migrate-config``;
* the migration plan's hub-era API (``gleitzeit.hub.*``, ``OllamaPoolProvider(id, hub=...)``,
  ``gleitzeit.config.features.FEATURES``, ``gleitzeit.common.*``) as adapters over the same;
* dual mode: each call takes the hub path or the legacy path as ``FEATURES`` decides, and the
  ``paths`` status section (``paths.LEDGER``) compares them.

Importing this package is cheap; each name is loaded on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "HubProviderAdapter",
    "Migration",
    "create_provider_with_hub",
    "migrate",
    "migrate_provider_config",
]

_WHERE = {
    "HubProviderAdapter": "gleitzeit_legacy.adapter",
    "Migration": "gleitzeit_legacy.migration",
    "migrate": "gleitzeit_legacy.migration",
    "migrate_provider_config": "gleitzeit_legacy.migration",
    "create_provider_with_hub": "gleitzeit_legacy.factory",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'gleitzeit_legacy' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
