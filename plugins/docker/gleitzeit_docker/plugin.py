"""Hook implementations of the Docker plugin (entry point ``docker``).

Everything is registered as a lazy ``"module:attribute"`` string, so loading the plugin
imports neither aiodocker nor the hub: a config that never selects ``docker`` pays nothing.
"""

from __future__ import annotations

from typing import Any

from gleitzeit_core import HubKind, ProviderKind, Register, hookimpl

__all__ = ["default_hub_check", "default_hub_config"]


def default_hub_config() -> dict[str, Any]:
    """The hub used when a config names none: one engine, ``DOCKER_HOST`` or the default
    socket (the ``engines`` discoverer finds it), with the built-in profiles."""
    return {"kind": "docker"}


def default_hub_check() -> str | None:
    """Why the config-less default hub would be empty: no engine at the default socket. An
    engine named by ``DOCKER_HOST`` was asked for, so it is always added."""
    import os

    if os.environ.get("DOCKER_HOST", "").strip():
        return None
    from gleitzeit_core import connect_problem
    from gleitzeit_docker.discovery import default_engine_url

    url = default_engine_url()
    problem = connect_problem(url, timeout=1.0)
    if problem is None:
        return None
    return (
        f"no Docker engine answers at {url} ({problem}); start Docker, set DOCKER_HOST, "
        'or name your engines in a config ([hubs.NAME] with kind = "docker")'
    )


@hookimpl
def gleitzeit_register_hubs(register: Register) -> None:
    register(
        "docker",
        HubKind(
            factory="gleitzeit_docker.hub:DockerHub",
            settings_class="gleitzeit_docker.settings:DockerSettings",
            resource_options="gleitzeit_docker.settings:EngineOptions",
            default_probe="docker",
            default_discovery=("engines",),
            default_scheme="tcp",
            default_port=2375,
            default_config=default_hub_config,
            default_check=default_hub_check,
        ),
    )


@hookimpl
def gleitzeit_register_discoverers(register: Register) -> None:
    register("engines", "gleitzeit_docker.discovery:make_engines")


@hookimpl
def gleitzeit_register_probes(register: Register) -> None:
    register("docker", "gleitzeit_docker.probe:DockerProbe")


@hookimpl
def gleitzeit_register_providers(register: Register) -> None:
    register(
        "python/v1",
        ProviderKind(
            factory="gleitzeit_docker.provider:PythonProvider",
            hub_kind="docker",
        ),
    )
