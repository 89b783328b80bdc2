"""The pre-hub import paths of Gleitzeit, served by the ``gleitzeit-legacy`` shim.

``gleitzeit.orchestration.ollama_pool``, ``gleitzeit.providers.*`` and
``gleitzeit.execution.docker_executor`` keep old code running on top of the hub architecture.
Each class warns once with a ``DeprecationWarning`` naming its replacement; docs/migration.md
maps every old name and config key to the new ones.

With the shim disabled (``gleitzeit plugins disable legacy``, ``GLEITZEIT_DISABLED_PLUGINS``,
an allow-list without it, or ``[plugins] disabled`` in ``$GLEITZEIT_CONFIG``) importing any of
these modules raises an ``ImportError`` that says so and how to enable it again.

The hub-era paths of the migration plan are here too: ``gleitzeit.hub.{base,ollama_hub,
docker_hub}``, ``gleitzeit.providers.{ollama_pool_provider,python_docker_provider,adapters}``,
``gleitzeit.common.{circuit_breaker,metrics,health_monitor,load_balancer}``,
``gleitzeit.migration.helpers`` and ``gleitzeit.config.features`` (``FEATURES``).

When the original ``gleitzeit`` distribution is installed as well, importing this package warns
(``ShadowWarning``) and says which one ``import gleitzeit`` gets.
"""

from gleitzeit_legacy.shadow import warn_if_shadowed
from gleitzeit_legacy.switch import ensure_enabled

ensure_enabled(__name__)
warn_if_shadowed()  # the original gleitzeit distribution installed too: say so

__all__: list[str] = []
