"""The plan's Phase 1 import path ``gleitzeit.common`` (served by the gleitzeit-legacy shim):
``circuit_breaker``, ``metrics``, ``health_monitor``, ``load_balancer`` over the core."""
