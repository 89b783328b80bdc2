"""Phase 1.5 path: ``from gleitzeit.common.load_balancer import LoadBalancer, ...`` (the
core's strategies, chosen by the upstream names)."""

from gleitzeit_legacy.common import LoadBalancer, LoadBalancingStrategy, ResourceInfo

__all__ = ["LoadBalancer", "LoadBalancingStrategy", "ResourceInfo"]
