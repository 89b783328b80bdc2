"""The pre-hub import paths of Gleitzeit, served by the ``gleitzeit-legacy`` shim.

``gleitzeit.orchestration.ollama_pool``, ``gleitzeit.providers.*`` and
``gleitzeit.execution.docker_executor`` keep old code running on top of the hub architecture.
Each class warns once with a ``DeprecationWarning`` naming its replacement; docs/migration.md
maps every old name and config key to the new ones.

With the shim disabled (``gleitzeit plugins disable legacy``, ``GLEITZEIT_DISABLED_PLUGINS``,
an allow-list without it, or ``[plugins] disabled`` in ``$GLEITZEIT_CONFIG``) importing any of
these modules raises an ``ImportError`` that says so and how to enable it again.
"""

from gleitzeit_legacy.switch import ensure_enabled

ensure_enabled(__name__)

__all__: list[str] = []
