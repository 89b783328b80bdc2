"""Hub-era import path: ``from gleitzeit.hub.base import ResourceHub, ResourceInstance, ...``.

``ResourceHub`` is the base both hub-era hubs share (an adapter over a runtime's hub);
instances, states and metrics have the upstream shapes (docs/migration.md).
"""

from gleitzeit_legacy.hub_base import (
    ResourceHubBase as ResourceHub,
)
from gleitzeit_legacy.hub_base import (
    ResourceInstance,
    ResourceMetrics,
    ResourceStatus,
    ResourceType,
)

__all__ = ["ResourceHub", "ResourceInstance", "ResourceMetrics", "ResourceStatus", "ResourceType"]
