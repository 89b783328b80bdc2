"""One ``DeprecationWarning`` per old class and process, naming what to use instead.

The same messages mark the old classes (and the pre-hub constructor shapes) with PEP 702's
``@deprecated`` (``typing_extensions.deprecated`` with ``category=None``: type checkers flag
old usage, the runtime warning stays this module's one per class and process). Each names the
replacement the migration plan names ("Use OllamaHub instead").
"""

from __future__ import annotations

import threading
import warnings

__all__ = ["PLAN", "REPLACEMENTS", "message", "warn_once", "warned"]

# old class -> (what the migration plan names as its replacement, how to reach it here)
PLAN: dict[str, tuple[str, str]] = {
    "OllamaPoolManager": (
        "OllamaHub",
        "gleitzeit.hub.ollama_hub.OllamaHub; underneath, an Ollama hub: "
        'Runtime.from_config({"hubs": {"llm": {"kind": "ollama", ...}}}) and '
        "runtime.hubs['llm'] (leases, status) - gleitzeit_core.Runtime",
    ),
    "OllamaPoolProvider": (
        "OllamaPoolProvider(provider_id, hub=OllamaHub(...))",
        "the instances list of the pre-hub constructor becomes the hub's instances; "
        'underneath, the llm/v1 provider: await runtime.execute("llm/chat", params) '
        "(gleitzeit_core.Runtime; migrate the config with `gleitzeit migrate-config`)",
    ),
    "OllamaProvider": (
        "OllamaPoolProvider(provider_id, hub=OllamaHub(...))",
        'the llm/v1 provider: Runtime.from_config({"hubs": {"llm": {"kind": "ollama", '
        '"resources": [{"url": URL}]}}}) and await runtime.execute("llm/generate", params)',
    ),
    "DockerExecutor": (
        "DockerHub",
        "gleitzeit.hub.docker_hub.DockerHub (get_or_create_instance, execute_in_container); "
        "underneath, a Docker hub and the python/v1 provider: await runtime.execute("
        "\"python/execute\", params) (gleitzeit_core.Runtime with a hub of kind 'docker')",
    ),
    "ContainerPool": (
        "DockerHub",
        "the plan moved ContainerPool into DockerHub; underneath, the Docker hub's warm pool: "
        "[hubs.NAME] kind = 'docker' with pool = { max_size, idle_ttl, min_idle }",
    ),
    "PythonDockerProvider": (
        "PythonDockerProvider(provider_id, hub=DockerHub(...))",
        "docker_config and pool_config of the pre-hub constructor go to the DockerHub; "
        'underneath, the python/v1 provider: await runtime.execute("python/execute", '
        "params) (gleitzeit_core.Runtime; migrate the config with `gleitzeit migrate-config`)",
    ),
}
REPLACEMENTS: dict[str, str] = {name: f"{plan} ({how})" for name, (plan, how) in PLAN.items()}


def message(name: str) -> str:
    """The deprecation message of ``name`` - the same for the warning and for PEP 702."""
    plan, how = PLAN.get(name, ("the hub architecture", "docs/migration.md"))
    return (
        f"{name} is deprecated. Use {plan} instead ({how}); the gleitzeit-legacy shim keeps "
        "the old API working meanwhile - docs/migration.md lists every old name and key"
    )


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
    warnings.warn(message(name), DeprecationWarning, stacklevel=stacklevel)
