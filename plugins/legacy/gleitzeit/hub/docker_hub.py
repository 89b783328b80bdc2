"""Hub-era import path: ``from gleitzeit.hub.docker_hub import DockerHub, DockerConfig``
(an adapter over the Docker plugin's hardened sandboxes; timeouts always enforced)."""

from gleitzeit_legacy.docker_hub import DockerConfig, DockerHub

__all__ = ["DockerConfig", "DockerHub"]
