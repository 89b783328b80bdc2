"""Hook implementations of the Docker plugin (entry point ``docker``).

Everything is registered as a lazy ``"module:attribute"`` string, so loading the plugin
imports neither aiodocker nor the hub: a config that never selects ``docker`` pays nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gleitzeit_core import Register, hookimpl
from gleitzeit_core.kinds import HubKind, ProviderKind

if TYPE_CHECKING:
    import click

__all__ = ["default_hub_config"]


def default_hub_config() -> dict[str, Any]:
    """The hub used when a config names none: one engine, ``DOCKER_HOST`` or the default
    socket (the ``engines`` discoverer finds it), with the built-in profiles."""
    return {"kind": "docker"}


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
            description="Docker engines; each runs a pool of hardened, warm Python sandboxes",
            install_hint="pip install gleitzeit-docker",
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
            description="execute, validate, info and batch of Python code in Docker sandboxes",
        ),
    )


@hookimpl
def gleitzeit_register_commands(cli: click.Group) -> None:
    from gleitzeit_docker.cli import docker_command  # only when a plugin command is asked for

    cli.add_command(docker_command)
