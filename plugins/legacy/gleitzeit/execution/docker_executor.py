"""Old import path: ``from gleitzeit.execution.docker_executor import DockerExecutor``.

Served by the gleitzeit-legacy shim over a Docker hub and the python/v1 provider: the old
arguments work, the sandbox is the hardened one (no host /tmp, timeouts enforced).
"""

from gleitzeit_legacy.docker_executor import (
    ContainerConfig,
    ContainerPool,
    DockerExecutor,
    SecurityLevel,
)

__all__ = ["ContainerConfig", "ContainerPool", "DockerExecutor", "SecurityLevel"]
