"""Old import path: ``from gleitzeit.providers.python_docker_provider import
PythonDockerProvider`` (served by the gleitzeit-legacy shim; modes local, sandboxed,
datascience, minimal - local only when switched on); the plan's Phase 3 shape
``PythonDockerProvider(provider_id, hub=DockerHub(...))`` too."""

from gleitzeit_legacy.docker_executor import SecurityLevel
from gleitzeit_legacy.docker_hub import DockerConfig, DockerHub
from gleitzeit_legacy.python_provider import PythonDockerProvider

__all__ = ["DockerConfig", "DockerHub", "PythonDockerProvider", "SecurityLevel"]
