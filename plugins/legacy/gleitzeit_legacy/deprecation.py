"""One ``DeprecationWarning`` per old class and process, naming what to use instead."""

from __future__ import annotations

import threading
import warnings

__all__ = ["REPLACEMENTS", "warn_once", "warned"]

# old class -> what replaces it (shown in the warning and in docs/migration.md)
REPLACEMENTS: dict[str, str] = {
    "OllamaPoolManager": (
        'an Ollama hub: Runtime.from_config({"hubs": {"llm": {"kind": "ollama", ...}}}) and '
        "runtime.hubs['llm'] (leases, status) - gleitzeit_core.Runtime"
    ),
    "OllamaPoolProvider": (
        'the llm/v1 provider over an Ollama hub: await runtime.execute("llm/chat", params) '
        "(gleitzeit_core.Runtime; migrate the config with `gleitzeit migrate-config`)"
    ),
    "OllamaProvider": (
        'the llm/v1 provider: Runtime.from_config({"hubs": {"llm": {"kind": "ollama", '
        '"resources": [{"url": URL}]}}}) and await runtime.execute("llm/generate", params)'
    ),
    "DockerExecutor": (
        'a Docker hub and the python/v1 provider: await runtime.execute("python/execute", '
        "params) (gleitzeit_core.Runtime with a hub of kind 'docker')"
    ),
    "ContainerPool": (
        "the Docker hub's warm pool: [hubs.NAME] kind = 'docker' with "
        "pool = { max_size, idle_ttl, min_idle }"
    ),
    "PythonDockerProvider": (
        'the python/v1 provider over a Docker hub: await runtime.execute("python/execute", '
        "params) (gleitzeit_core.Runtime; migrate the config with `gleitzeit migrate-config`)"
    ),
}

_lock = threading.Lock()
_warned: set[str] = set()


def warned() -> frozenset[str]:
    """The classes that have warned in this process."""
    return frozenset(_warned)


def warn_once(name: str, *, stacklevel: int = 3) -> None:
    """Warn that the old class ``name`` is deprecated, the first time only."""
    with _lock:
        if name in _warned:
            return
        _warned.add(name)
    replacement = REPLACEMENTS.get(name, "the hub architecture (docs/migration.md)")
    warnings.warn(
        f"{name} is deprecated and served by the gleitzeit-legacy compatibility shim; "
        f"use {replacement} instead (docs/migration.md lists every old name and key)",
        DeprecationWarning,
        stacklevel=stacklevel,
    )
